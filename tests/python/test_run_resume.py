"""A killed `lpe run` resumes from its checkpoint (OUT.h5.ckpt/) and gives the same results file
as an uninterrupted run, apart from timing; a checkpoint of another experiment is refused."""
import os
import signal
import subprocess

from conftest import ENV, LPE, h5_tree, make_dist, make_model, run_lpe, trees_equal, write_ini

TIMING = ("created", "seconds", "seconds_per_target")

INI = """
[experiment]
model = model.h5
distributions = dists.h5
truth = exact
seed = {seed}
backend = cpu
budget = 4096
[targets]
count = 6
p_min = 1e-3
p_max = 0.5
[method naive]
[method itgis]
temperature = 0.5, 1.0
[method mhis]
burn_in = 256
"""


def setup(d):
    make_model(d / "model.h5", layers=2, seed=3)
    make_dist(d / "dists.h5", "a", vocab=64, k=4, support=8, seed=2, const_first=0)
    make_dist(d / "dists.h5", "b", vocab=64, k=4, support=6, factors=2, seed=3)


def kill_after_first_checkpoint(ini, out):
    """Run `lpe run` until it has checkpointed its first method run, where it kills itself with
    SIGKILL (LPE_TEST_KILL_AFTER_SAVES, run_ckpt.c): a kill at a known point, which no run can
    outpace. Returns the checkpointed run files."""
    env = dict(ENV, LPE_TEST_KILL_AFTER_SAVES="1")
    p = subprocess.run([str(LPE), "--quiet", "run", str(ini), "--output", str(out)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, timeout=300)
    assert p.returncode == -signal.SIGKILL, f"exit {p.returncode}: the run was not killed"
    return list((out.parent / (out.name + ".ckpt")).glob("*/*.h5"))


def test_resume_after_kill(tmp_path):
    setup(tmp_path)
    ini = write_ini(tmp_path / "e.ini", INI.format(seed=1))
    ref = tmp_path / "ref.h5"
    run_lpe("run", ini, "--output", ref, check=0)

    out = tmp_path / "out.h5"
    kept = kill_after_first_checkpoint(ini, out)
    assert kept, "the run finished before a checkpoint could be seen"
    assert not out.exists(), "a killed run must not leave its results file"
    r = run_lpe("run", ini, "--output", out, check=0)
    assert "from the checkpoint" in r.stderr
    assert trees_equal(h5_tree(ref, skip_attrs=TIMING), h5_tree(out, skip_attrs=TIMING)) == []
    assert not (tmp_path / "out.h5.ckpt").exists(), "the checkpoint is removed once the file is done"
    assert [f for f in os.listdir(tmp_path) if ".tmp." in f] == [], "stale temporary files removed"


def test_checkpoint_of_another_experiment(tmp_path):
    setup(tmp_path)
    ini = write_ini(tmp_path / "e.ini", INI.format(seed=1))
    out = tmp_path / "out.h5"
    assert kill_after_first_checkpoint(ini, out)
    other = write_ini(tmp_path / "e.ini", INI.format(seed=2))
    r = run_lpe("run", other, "--output", out, check=2)
    assert "checkpoint of a different experiment" in r.stderr and not out.exists()
    run_lpe("run", other, "--output", out, "--force", check=0)
    assert out.exists() and not (tmp_path / "out.h5.ckpt").exists()
    # the killed runs' temporary files were removed by the next run
    assert [f for f in os.listdir(tmp_path) if ".tmp." in f] == []
