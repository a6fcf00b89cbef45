"""tools/slurm/lpe-sbatch on a real single-node Slurm (slurm_cluster.py starts it for this test
session and stops it afterwards): a ground-truth job array and its merge job give the unsharded
`lpe truth` counts; an experiment in 3 target shards merged by the afterok job equals the
unsharded results file bit for bit; a shard cancelled mid-run (scancel) and resubmitted with the
same command resumes from its checkpoint and gives the same file. Skipped, with the reason
printed, only where Slurm cannot be installed or started (tools/setup_slurm.sh installs it)."""
import re
import time

import h5py
import numpy as np
import pytest

from conftest import ENV, ROOT, h5_tree, make_dist, make_model, run_lpe, trees_equal, write_ini
from slurm_cluster import Cluster, why_unavailable

SBATCH = ROOT / "tools" / "slurm" / "lpe-sbatch"
TIMING = ("created", "seconds", "seconds_per_target")


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    reason = why_unavailable()
    if reason is None:
        c = Cluster(tmp_path_factory.mktemp("slurm"))
        reason = c.start()
        if reason is not None:
            c.stop()
    if reason is not None:
        print(f"\ntest_slurm: skipped: {reason}")
        pytest.skip(reason)
    c.env.update({k: ENV[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    yield c
    c.stop()


def submit(c, d, *args):
    """lpe-sbatch ... --cpu; returns (array job id or None, merge job id, stdout)."""
    r = c.run("python3", SBATCH, *args, "--cpu", "--workdir", d, "--log-dir", d / "logs",
              timeout=120)
    arr = re.search(r"^array job (\d+)", r.stdout, re.M)
    merge = re.search(r"^merge job (\d+)", r.stdout, re.M)
    assert merge, r.stdout
    return (arr.group(1) if arr else None), merge.group(1), r.stdout


def logs(d):
    return "".join(f"--- {p.name}\n{p.read_text()}" for p in sorted((d / "logs").glob("*.out")))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("slurm_inputs")
    make_model(d / "model.h5", layers=2, seed=3)
    make_dist(d / "dists.h5", "a", vocab=64, k=4, support=8, seed=2, const_first=0)
    make_dist(d / "dists.h5", "b", vocab=64, k=4, support=6, factors=2, seed=3)
    return d


def test_truth_array_equals_unsharded(slurm, files, tmp_path):
    common = ["--model", files / "model.h5", "--dist", files / "dists.h5"]
    arr, merge, out = submit(slurm, tmp_path, "truth", *common, "--names", "a,b", "--samples",
                             "2^16", "--shards", 4, "--out", "truth/{model}/{dist}.h5")
    # 2 distributions x 4 shards: one array task each ('"4" in out' matched by accident, or
    # not: a timestamp or job id happened to hold a 4)
    assert re.search(r"^array job \d+: 8 of 8 tasks", out, re.M), out
    slurm.wait(arr, merge)
    assert slurm.state(merge) == "COMPLETED", logs(tmp_path)
    for name in ("a", "b"):
        ref = tmp_path / f"ref_{name}.h5"
        run_lpe("truth", "--model", files / "model.h5", "--dist", files / "dists.h5", "--name",
                name, "--samples", "2^16", "--out", ref, check=0)
        merged = tmp_path / "truth" / "model" / f"{name}.h5"
        assert f"merged file: {merged}" in out
        with h5py.File(ref, "r") as f, h5py.File(merged, "r") as g:
            assert np.array_equal(f["counts"][()], g["counts"][()])
            assert f["counts"][()].sum() == g["counts"][()].sum() == 2 ** 16
            assert f.attrs["n_samples"] == g.attrs["n_samples"]
    # run again: nothing to do
    r = slurm.run("python3", SBATCH, "truth", *common, "--names", "a,b", "--samples", "2^16",
                  "--shards", 4, "--out", "truth/{model}/{dist}.h5", "--cpu", "--workdir", tmp_path)
    assert "exists already" in r.stdout


QUICK = """
[experiment]
model = {d}/model.h5
distributions = {d}/dists.h5
truth = exact
seed = 1
backend = cpu
budget = {budget}
output = out/e.h5
[targets]
count = 40
p_min = 1e-4
p_max = 0.5
[method const]
[method naive]
[method itgis]
temperature = {temps}
batch = 96
[method mhis]
burn_in = 32
walkers = 8
[method qld]
[method gld]
"""


def test_experiment_in_3_shards_equals_unsharded(slurm, files, tmp_path):
    ini = write_ini(tmp_path / "e.ini", QUICK.format(d=files, budget=600, temps="0.5, 1.0"))
    arr, merge, out = submit(slurm, tmp_path, "run", ini, "--shards", 3)
    assert f"merged file: {tmp_path / 'out' / 'e.h5'}" in out
    ref = tmp_path / "ref.h5"
    run_lpe("--quiet", "run", ini, "--output", ref, check=0)
    slurm.wait(arr, merge)
    assert slurm.state(merge) == "COMPLETED", logs(tmp_path)
    a = h5_tree(ref, skip_attrs=TIMING)
    b = h5_tree(tmp_path / "out" / "e.h5", skip_attrs=TIMING)
    assert trees_equal(a, b) == []
    assert "a/eval/itgis@temperature=0.5/loss" in a and "eval@n_dists" in a


def test_cancelled_shard_resumes(slurm, files, tmp_path):
    ini = write_ini(tmp_path / "e.ini", QUICK.format(d=files, budget=1500,
                                                     temps="0.25, 0.5, 1.0, 2.0, 4.0"))
    args = ("run", ini, "--shards", 3, "--max-parallel", 2)
    arr, merge, _ = submit(slurm, tmp_path, *args)
    shard0 = tmp_path / "out" / "e.shard-0-of-3.h5"
    ckpt = tmp_path / "out" / "e.shard-0-of-3.h5.ckpt"
    t0 = time.time()
    while time.time() - t0 < 120 and not list(ckpt.glob("*/*.h5")):
        time.sleep(0.05)
    assert list(ckpt.glob("*/*.h5")), "shard 0 made no checkpoint\n" + logs(tmp_path)
    slurm.run("scancel", f"{arr}_0")
    slurm.wait(arr, merge)
    assert not shard0.exists(), "shard 0 finished before it was cancelled: make it longer"
    assert slurm.state(merge) != "COMPLETED"  # removed: its dependency can never be met
    assert not (tmp_path / "out" / "e.h5").exists()

    arr2, merge2, out = submit(slurm, tmp_path, *args)  # the same command again
    assert "1 of 3 tasks" in out
    slurm.wait(arr2, merge2)
    assert slurm.state(merge2) == "COMPLETED", logs(tmp_path)
    log = (tmp_path / "logs" / f"lpe-run-{arr2}_0.out").read_text()
    assert "resuming from the checkpoint" in log and "from the checkpoint" in log
    ref = tmp_path / "ref.h5"
    run_lpe("--quiet", "run", ini, "--output", ref, check=0)
    a = h5_tree(ref, skip_attrs=TIMING)
    b = h5_tree(tmp_path / "out" / "e.h5", skip_attrs=TIMING)
    assert trees_equal(a, b) == []


def test_dry_run_scripts(files, tmp_path):
    """No cluster needed: --dry-run prints both scripts with the resources asked for."""
    ini = write_ini(tmp_path / "e.ini", QUICK.format(d=files, budget=600, temps="1.0"))
    r = run_lpe_sbatch("run", ini, "--shards", 2, "--partition", "gpu", "--time", "1:00:00",
                       "--account", "lab", "--dry-run", "--workdir", tmp_path)
    assert "#SBATCH --gres=gpu:1" in r and "#SBATCH --partition=gpu" in r
    assert "#SBATCH --account=lab" in r and "#SBATCH --time=1:00:00" in r
    assert "--shard 1/2" in r and "merge" in r and "afterok" in r
    r = run_lpe_sbatch("run", ini, "--shards", 2, "--cpu", "--dry-run", "--workdir", tmp_path)
    assert "--gres" not in r and "--backend cpu" in r
    assert not (tmp_path / "slurm-logs").exists()


def run_lpe_sbatch(*args):
    import subprocess
    r = subprocess.run(["python3", str(SBATCH), *map(str, args)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout
