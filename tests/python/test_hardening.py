"""Issue 13: a full disk, concurrent runs, reserved names and hostile inputs never lose or mix
results. One test (or a few) per case of the issue; each fails if its bug comes back."""
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from conftest import ENV, LPE, h5_tree, make_dist, make_model, run_lpe, trees_equal, write_ini

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference  # noqa: E402

TIMING = ("created", "seconds", "seconds_per_target")
ROOT = Path(__file__).resolve().parents[2]

INI = """
[experiment]
model = model.h5
distributions = dists.h5
truth = exact
backend = cpu
budget = {budget}
[targets]
count = 4
p_min = 1e-12
p_max = 0.1
[method naive]
[method itgis]
temperature = {temps}
"""


@pytest.fixture
def exp(tmp_path):
    """A small experiment: model, two distributions, the INI; returns the INI path."""
    make_model(tmp_path / "model.h5", seed=7)
    make_dist(tmp_path / "dists.h5", "a", vocab=64, k=4, support=8, seed=2, const_first=0)
    make_dist(tmp_path / "dists.h5", "b", vocab=64, k=4, support=6, factors=2, seed=3)
    return write_ini(tmp_path / "e.ini", INI.format(budget="2^10", temps="0.5, 1.0"))


def no_temporaries(d):
    return [f for f in os.listdir(d) if ".tmp" in f or f.endswith(".lock")] == []


def same_results(a, b):
    return trees_equal(h5_tree(a, skip_attrs=TIMING), h5_tree(b, skip_attrs=TIMING)) == []


# ---- 1. a full disk ------------------------------------------------------------------------

def run_limited(args, blocks, cwd=None):
    """bin/lpe with a file-size limit of `blocks` KiB and SIGXFSZ ignored: writes past the limit
    fail with EFBIG, as on a full disk, and no root is needed."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (blocks * 1024, blocks * 1024))
    return subprocess.run([str(LPE), *map(str, args)], capture_output=True, text=True, env=ENV,
                          preexec_fn=limit, cwd=cwd, timeout=300)


def test_model_init_past_the_file_size_limit(tmp_path):
    out = tmp_path / "x.h5"
    r = run_limited(["model", "init", "--out", out, "--preset", "small"], 64)
    assert r.returncode == 1, r.stderr
    assert f"{out}: file too large" in r.stderr
    assert not out.exists() and no_temporaries(tmp_path)


def test_dist_append_past_the_file_size_limit(exp, tmp_path):
    dists = exp.parent / "dists.h5"
    before = dists.read_bytes()
    for blocks in (len(before) // 1024 - 1, len(before) // 1024 + 1):
        r = run_limited(["dist", "random", "--out", dists, "--name", "c", "--vocab", 64, "--k", 4,
                         "--support", 8], blocks)
        assert r.returncode == 1, r.stderr
        assert f"{dists}: file too large" in r.stderr, r.stderr
        assert dists.read_bytes() == before and no_temporaries(exp.parent)


@pytest.mark.parametrize("blocks", [24, 40, 56])
def test_run_past_the_file_size_limit_keeps_results_and_resumes(exp, tmp_path, blocks):
    d = exp.parent
    ref = d / "ref.h5"
    run_lpe("run", exp, "--output", ref, check=0)
    # an earlier results file, replaced with --force by a run that fails: kept as it was
    old = d / "old.h5"
    shutil.copy(ref, old)
    before = old.read_bytes()
    r = run_limited(["run", exp, "--output", old, "--force"], blocks)
    assert r.returncode == 1 and "file too large" in r.stderr, r.stderr
    assert old.read_bytes() == before
    # a new output: the failed run leaves complete checkpoints only, and a rerun finishes the job
    out = d / "out.h5"
    r = run_limited(["run", exp, "--output", out], blocks)
    assert r.returncode == 1 and re.search(r"out\.h5[^:]*: file too large", r.stderr), r.stderr
    assert not out.exists()
    r = run_lpe("run", exp, "--output", out, check=0)
    assert same_results(ref, out)
    assert no_temporaries(d) and not (d / "out.h5.ckpt").exists()


@pytest.fixture
def tiny_fs(tmp_path):
    """A 300 KiB tmpfs (root only; skipped with the reason when mount is not permitted)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'not root'}); the "
                    "file-size-limit tests cover a full disk without root")
    yield mnt
    subprocess.run(["umount", str(mnt)], capture_output=True)


def test_model_init_on_a_full_tmpfs(tiny_fs):
    out = tiny_fs / "x.h5"
    r = run_lpe("model", "init", "--out", out, "--preset", "small")
    assert r.returncode == 1, r.stderr  # was SIGSEGV (139)
    assert f"{out}: no space left on device" in r.stderr
    assert os.listdir(tiny_fs) == []


def test_run_on_a_full_tmpfs_says_so_and_resumes(exp, tiny_fs):
    ref = exp.parent / "ref.h5"
    run_lpe("run", exp, "--output", ref, check=0)
    out = tiny_fs / "out.h5"
    for fill_kib in (180, 200, 210, 230, 250, 270, 290):
        for f in tiny_fs.iterdir():
            shutil.rmtree(f) if f.is_dir() else f.unlink()
        (tiny_fs / "filler").write_bytes(b"\0" * (fill_kib * 1024))
        r = run_lpe("run", exp, "--output", out)
        assert r.returncode == 1, f"fill {fill_kib} KiB: exit {r.returncode}\n{r.stderr}"
        assert "no space left on device" in r.stderr and str(tiny_fs) in r.stderr, r.stderr
        assert not out.exists()
        (tiny_fs / "filler").unlink()
        run_lpe("run", exp, "--output", out, check=0)  # the space is back: resume, finish
        assert same_results(ref, out), f"fill {fill_kib} KiB"
        assert sorted(os.listdir(tiny_fs)) == ["out.h5"]


# ---- 2. two runs with one output -----------------------------------------------------------

def start_and_wait_for_lock(args, lock):
    p = subprocess.Popen([str(LPE), *map(str, args)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=ENV)
    t0 = time.time()
    while not lock.exists() and p.poll() is None and time.time() - t0 < 60:
        time.sleep(0.01)
    assert p.poll() is None and lock.exists(), "the first command ended before its lock was seen"
    return p


def test_second_run_on_the_same_output_is_refused(exp):
    d = exp.parent
    slow = write_ini(d / "slow.ini", INI.format(budget="2^22", temps="0.5, 1.0"))
    other = write_ini(d / "other.ini", INI.format(budget="2^12", temps="0.5, 1.0"))
    out = d / "out.h5"
    p = start_and_wait_for_lock(["run", slow, "--output", out, "--quiet"], d / "out.h5.lock")
    try:
        for ini in (slow, other):
            t0 = time.time()
            r = run_lpe("run", ini, "--output", out, "--force", check=1)
            assert time.time() - t0 < 20, "refused at once"
            assert f"{out} is in use: process {p.pid}" in r.stderr
    finally:
        p.kill()
        p.wait()
    # the killed run left its lock: a dead process's lock does not block the next run
    assert (d / "out.h5.lock").exists()
    run_lpe("run", other, "--output", out, check=0)
    with h5py.File(out, "r") as f:
        assert f.attrs["config"] == other.read_text() and f["a/naive"].attrs["budget"] == 4096
    assert not (d / "out.h5.lock").exists()


def test_stale_lock_of_a_dead_process(exp):
    d = exp.parent
    dead = subprocess.Popen(["true"])
    dead.wait()
    (d / "out.h5.lock").write_text(f"{dead.pid}\n")
    run_lpe("run", exp, "--output", d / "out.h5", check=0)
    assert (d / "out.h5").exists() and not (d / "out.h5.lock").exists()


def test_second_truth_on_the_same_output_is_refused(exp):
    d = exp.parent
    out = d / "t.h5"
    args = ["truth", "--model", d / "model.h5", "--dist", d / "dists.h5", "--name", "a",
            "--out", out]
    p = start_and_wait_for_lock(args + ["--samples", "2^40"], d / "t.h5.lock")
    try:
        r = run_lpe(*args, "--samples", 1000, "--force", check=1)
        assert f"{out} is in use: process {p.pid}" in r.stderr
    finally:
        p.kill()
        p.wait()
    run_lpe(*args, "--samples", 1000, check=0)
    assert not (d / "t.h5.lock").exists()


# ---- 3. reserved names ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["eval", ".", "..", "manifest.h5"])
def test_reserved_distribution_names_are_refused(tmp_path, name):
    r = run_lpe("dist", "random", "--out", tmp_path / "d.h5", "--name", name, "--vocab", 64,
                "--k", 4, "--support", 8, check=2)  # '.' exited 1
    assert f"distribution name '{name}' is reserved" in r.stderr


def test_distribution_file_with_an_eval_group_is_refused(exp):
    d = exp.parent
    with h5py.File(d / "dists.h5", "r") as f, h5py.File(d / "evil.h5", "w") as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        f.copy("a", g, name="eval")
    ini = write_ini(d / "evil.ini", exp.read_text().replace("dists.h5", "evil.h5")
                    .replace("truth = exact", "truth = exact\nnames = eval"))
    r = run_lpe("run", ini, "--output", d / "out.h5", check=2)
    assert "'eval' is reserved" in r.stderr and not (d / "out.h5").exists()


# ---- 4. repeated sweep values --------------------------------------------------------------

@pytest.mark.parametrize("key,values", [("temperature", "0.5, 0.5"), ("temperature", "0.5, 0.50"),
                                        ("budget", "2^8, 256")])
def test_repeated_sweep_value_is_an_ini_error(exp, key, values):
    d = exp.parent
    text = INI.format(budget="2^10", temps="0.5, 1.0")
    line = f"{key} = {values}"
    text = text.replace("[method itgis]\n", f"[method itgis]\n{line}\n") if key == "budget" \
        else text.replace("temperature = 0.5, 1.0", line)
    ini = write_ini(d / "rep.ini", text)
    lineno = ini.read_text().splitlines().index(line) + 1
    for force in ([], ["--force"]):
        r = run_lpe("run", ini, "--output", d / "out.h5", *force, check=2)
        assert f"rep.ini:{lineno}: [method itgis] {key}: value 2 of the list repeats value 1" in r.stderr
    assert not (d / "out.h5").exists() and not (d / "out.h5.ckpt").exists()


# ---- 5. outputs checked before any work ----------------------------------------------------

def test_output_directory_device_or_input_refused_before_work(exp):
    d = exp.parent
    (d / "dir").mkdir()
    model_before = (d / "model.h5").read_bytes()
    os.symlink(d / "model.h5", d / "link.h5")
    cases = [(d / "dir", "is a directory"), ("/dev/null", "not a regular file"),
             (d / "model.h5", "one of this command's inputs"),
             (d / "link.h5", "one of this command's inputs"),
             (d / "sub" / ".." / "dists.h5", "one of this command's inputs"),
             (exp, "one of this command's inputs")]
    for out, why in cases:
        t0 = time.time()
        r = run_lpe("run", exp, "--output", out, "--force", check=2)
        assert why in r.stderr, (out, r.stderr)
        assert time.time() - t0 < 10
    assert not (d / "dir.ckpt").exists() and os.listdir(d / "dir") == []
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert (d / "model.h5").read_bytes() == model_before
    r = run_lpe("model", "init", "--out", "/dev/null", "--force", check=2)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    r = run_lpe("truth", "--model", d / "model.h5", "--dist", d / "dists.h5", "--name", "a",
                "--samples", 100, "--out", d / "model.h5", "--force", check=2)
    assert (d / "model.h5").read_bytes() == model_before


# ---- 6. inputs that are not regular files --------------------------------------------------

def test_inputs_that_are_not_regular_files(tmp_path):
    fifo = tmp_path / "fifo.ini"
    os.mkfifo(fifo)
    for path in ("/dev/zero", fifo, tmp_path):
        r = run_lpe("run", path, timeout=20, check=2)
        assert "not a regular file" in r.stderr
    big = tmp_path / "big.ini"
    with open(big, "wb") as f:
        f.truncate(17 << 20)
    r = run_lpe("run", big, timeout=20, check=2)
    assert "more than the 16777216 allowed" in r.stderr
    r = run_lpe("info", "/dev/zero", timeout=20, check=2)
    assert "not a regular file" in r.stderr


# ---- 7. a failed start leaves no checkpoint ------------------------------------------------

def test_failed_start_leaves_no_checkpoint(exp):
    d = exp.parent
    r = run_lpe("run", exp, "--output", d / "out.h5", "--backend", "cuda")
    if r.returncode == 0:
        pytest.skip("this machine runs the CUDA backend: no failed start to test")
    assert r.returncode == 2, r.stderr
    assert not (d / "out.h5.ckpt").exists() and not (d / "out.h5").exists()
    r = run_lpe("run", exp, "--output", d / "out.h5", check=0)
    assert "resuming" not in r.stderr


def test_manifest_less_checkpoint_without_runs_is_discarded(exp):
    d = exp.parent
    (d / "out.h5.ckpt" / "a").mkdir(parents=True)
    (d / "out.h5.ckpt" / "manifest.h5.tmp.999999").write_bytes(b"partial")
    r = run_lpe("run", exp, "--output", d / "out.h5", check=0)
    assert "resuming" not in r.stderr and not (d / "out.h5.ckpt").exists()


# ---- 8. model identity ---------------------------------------------------------------------

def test_model_identity_is_its_content(exp):
    d = exp.parent
    m1 = make_model(d / "m1.h5", seed=3)
    time.sleep(1.1)  # HDF5 stamps times into the file: the bytes differ
    m2 = make_model(d / "m2.h5", seed=3)
    m4 = make_model(d / "m4.h5", seed=4)
    assert m1.read_bytes() != m2.read_bytes()
    sha = {m: re.search(r"sha256\s+([0-9a-f]{64})", run_lpe("info", m, check=0).stdout).group(1)
           for m in (m1, m2, m4)}
    assert sha[m1] == sha[m2] == reference.model_content_sha256(m1) != sha[m4]
    truth = d / "truth_a.h5"
    run_lpe("truth", "--model", m1, "--dist", d / "dists.h5", "--name", "a", "--exact",
            "--out", truth, check=0)
    base = INI.format(budget="2^10", temps="0.5, 1.0").replace("truth = exact",
                                                              "truth = truth_{dist}.h5\nnames = a")
    for m, code in ((m2, 0), (m4, 2)):
        ini = write_ini(d / f"t_{m.stem}.ini", base.replace("model.h5", m.name))
        r = run_lpe("run", ini, "--output", d / f"r_{m.stem}.h5", check=code)
        if code:
            assert "computed for another model" in r.stderr
    # ground truth made before models were hashed by content names the file's bytes: accepted
    # for that very file, still refused for another
    import hashlib
    with h5py.File(truth, "r+") as f:
        f.attrs["model_sha256"] = hashlib.sha256(m2.read_bytes()).hexdigest()
    ini = write_ini(d / "legacy.ini", base.replace("model.h5", m2.name))
    run_lpe("run", ini, "--output", d / "legacy.h5", check=0)
    ini = write_ini(d / "legacy1.ini", base.replace("model.h5", m1.name))
    run_lpe("run", ini, "--output", d / "legacy1.h5", check=2)


# ---- 9. smaller cases ----------------------------------------------------------------------

def test_global_quiet(exp):
    r = run_lpe("--quiet", "run", exp, "--output", exp.parent / "q.h5", check=0)
    assert r.stderr == ""


def test_version_names_the_code():
    """`lpe --version` (and every results file's lpe_version) is `git describe --always --dirty`
    of the build: a commit of this repository (the build may predate the last commit)."""
    v = run_lpe("--version", check=0).stdout.split()[1]
    assert v != "mut"
    g = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--git-dir"], capture_output=True)
    if g.returncode != 0:
        assert v == "unknown-not-a-git-checkout"
        return
    commit = re.search(r"(?:-g)?([0-9a-f]{7,40})(?:-dirty)?$", v)
    assert commit, v
    r = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", commit.group(1) + "^{commit}"])
    assert r.returncode == 0, f"{v} names no commit of this repository"


def test_budget_above_2_53_says_too_large(exp):
    d = exp.parent
    for b in ("2^64", "1e30", "99999999999999999999"):
        ini = write_ini(d / "b.ini", INI.format(budget=b, temps="0.5"))
        r = run_lpe("run", ini, "--output", d / "b.h5", check=2)
        assert f"'{b}' is too large: integers go up to 2^53" in r.stderr


def test_info_input_space_above_2_64(tmp_path):
    p = make_dist(tmp_path / "d.h5", "x", vocab=64, k=20, support=64)
    out = run_lpe("info", p, check=0).stdout
    assert "(2^120.0)" in out and "1.329e+36" in out


def test_docs_references_point_to_files():
    texts = [run_lpe("run", "--help", check=0).stdout, (ROOT / "README.md").read_text(),
             (ROOT / "experiments" / "quickstart.ini").read_text()]
    refs = {m for t in texts for m in re.findall(r"docs/[\w./-]*", t)}
    for ref in refs:
        ref = ref.rstrip(".")
        assert (ROOT / ref).exists(), ref


def test_valgrind_runs_lpe_as_built(exp):
    """The default build runs under valgrind (no AVX-512 from -march=native, and LPE_NO_REEXEC
    skips the OMP_WAIT_POLICY re-exec that valgrind cannot follow): a small run, no errors."""
    if not shutil.which("valgrind"):
        pytest.skip("valgrind is not installed")
    d = exp.parent
    ini = write_ini(d / "vg.ini", INI.format(budget="2^6", temps="1.0"))
    env = dict(ENV, LPE_NO_REEXEC="1")
    supp = Path(__file__).resolve().parent / "data" / "valgrind-dlopen.supp"
    r = subprocess.run(["valgrind", "-q", "--error-exitcode=9", f"--suppressions={supp}",
                        str(LPE), "--quiet", "run",
                        str(ini), "--output", str(d / "vg.h5")], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (d / "vg.h5").exists()


# ---- fuzz findings (tools/fuzz/run.sh), kept as regression tests ---------------------------

FUZZ = Path(__file__).resolve().parent / "data" / "fuzz"


@pytest.mark.parametrize("args,why", [
    (["dist", "show", FUZZ / "dist_huge_extent.h5"], "more than a readable file holds"),
    (["info", FUZZ / "model_huge_header.h5"], "cannot open as HDF5"),
    (["report", FUZZ / "results_huge_header.h5"], "not a results file"),
])
def test_fuzz_findings_are_input_errors(args, why):
    """Corrupt files found by the fuzzer: a declared extent of 2^56 values (once an attempted
    allocation, exit 1 'out of memory'), object headers HDF5 cannot allocate: exit 2, named."""
    r = run_lpe(*args, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert why in r.stderr, r.stderr
