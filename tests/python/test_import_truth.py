"""tools/import_truth.py: published counts (frequencies32-{dist}.pt) -> methods.md §8 ground truth.

The reference is lpe itself: `lpe truth` writes a sampled ground-truth file (src/truth.c); the
counts of that file, saved as the paper saves its counts (one torch tensor), must import into a
file that lpe treats exactly like its own: same datasets and attributes, accepted by `lpe run`
(which checks the model and distribution hashes), and mergeable with `lpe truth` shards so that
the merge equals one unsharded run bit for bit. Stand-ins: a tiny random model and distribution.
"""
import importlib
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import import_truth as it  # noqa: E402
from conftest import make_dist, make_model, run_lpe, write_ini  # noqa: E402

try:
    torch = importlib.import_module("torch")
except ImportError as e:  # the tests must run in CI: fail, never skip
    pytest.fail(f"torch is not installed ({e}); run tools/setup.sh", pytrace=False)

N = 4096


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("imp")
    model = make_model(d / "model.h5", layers=1, vocab=64, seed=3)
    dists = d / "dists.h5"
    make_dist(dists, "indent", vocab=64, k=4, support=8, const_first=0, seed=2)  # ARC's name...
    make_dist(dists, "colon", vocab=64, k=4, support=8, const_first=0, seed=2)   # ...and ours
    make_dist(dists, "other", vocab=64, k=4, support=6, zipf=0.5, seed=5)
    ref = d / "ref.h5"
    run_lpe("truth", "--model", model, "--dist", dists, "--name", "colon", "--samples", N,
            "--seed", 0, "--out", ref, check=0)
    return d, model, dists, ref


def save_pt(path, counts):
    torch.save(torch.as_tensor(counts), path)
    return path


def run(*args):
    import contextlib
    import io
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = it.main([str(a) for a in args])
    return rc, out.getvalue() + err.getvalue()


def attrs(path):
    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


@pytest.mark.parametrize("dtype", ["int64", "float64", "float32", "int32"])
def test_import_matches_what_lpe_truth_writes(setup, tmp_path, dtype):
    d, model, dists, ref = setup
    with h5py.File(ref, "r") as f:
        counts = f["counts"][()]
    pt = save_pt(tmp_path / "frequencies32-indent.pt", counts.astype(dtype))
    out = tmp_path / "colon.h5"
    rc, msg = run("--counts", pt, "--model", model, "--dists", dists, "--out", out,
                  "--n-samples", N)
    assert rc == 0, msg
    with h5py.File(ref, "r") as a, h5py.File(out, "r") as b:
        assert sorted(a) == sorted(b) == ["counts", "ranges"]
        for k in ("counts", "ranges"):
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k][()], b[k][()]), k
    ra, rb = attrs(ref), attrs(out)
    assert set(ra) <= set(rb), set(ra) - set(rb)
    for k in ra:
        if k not in ("created", "lpe_version"):
            assert ra[k] == rb[k], (k, ra[k], rb[k])
            assert type(ra[k]) is type(rb[k]), k
    assert rb["distribution"] == "colon"  # the paper's "indent" is methods.md §7's "colon"
    assert rb["source"] == "frequencies32-indent.pt" and len(rb["source_sha256"]) == 64
    assert out.stat().st_mode & 0o777 == ref.stat().st_mode & 0o777  # the mode lpe truth gives


def test_imported_truth_is_accepted_by_lpe_run_and_refused_for_another_dist(setup, tmp_path):
    d, model, dists, ref = setup
    with h5py.File(ref, "r") as f:
        counts = f["counts"][()]
    out = tmp_path / "truth_colon.h5"
    rc, msg = run("--counts", save_pt(tmp_path / "c.pt", counts), "--model", model, "--dists",
                  dists, "--name", "colon", "--out", out, "--n-samples", N)
    assert rc == 0, msg
    ini = write_ini(tmp_path / "e.ini", f"""
        [experiment]
        model = {model}
        distributions = {dists}
        names = colon
        truth = {tmp_path}/truth_{{dist}}.h5
        output = {tmp_path}/r.h5
        budget = 256
        [targets]
        count = 2
        p_min = 1e-4
        p_max = 0.5
        [method naive]
        """)
    r = run_lpe("run", ini, "--quiet", check=0)
    with h5py.File(tmp_path / "r.h5", "r") as f:
        t, p = f["colon/targets"][()], f["colon/true_prob"][()]
    assert np.array_equal(p, counts[t] / N)
    # the same counts declared for "other": lpe refuses them (distribution hash)
    rc, msg = run("--counts", tmp_path / "c.pt", "--model", model, "--dists", dists, "--name",
                  "other", "--out", tmp_path / "truth_other.h5", "--n-samples", N)
    assert rc == 0, msg
    (tmp_path / "truth_other.h5").rename(tmp_path / "truth_colon.h5")
    r = run_lpe("run", ini, "--quiet", "--force", check=2)
    assert "another distribution" in r.stderr, r.stderr


def test_merge_with_lpe_shards_equals_one_run(setup, tmp_path):
    """Imported [0, N) (seed 0) + `lpe truth` shard [N, 2N) merge into exactly the counts of
    one `lpe truth` run of 2N samples: the imported file is a sampled truth file like any other."""
    d, model, dists, ref = setup
    with h5py.File(ref, "r") as f:
        counts = f["counts"][()]
    imp = tmp_path / "imp.h5"
    assert run("--counts", save_pt(tmp_path / "c.pt", counts), "--model", model, "--dists", dists,
               "--name", "colon", "--out", imp, "--n-samples", N)[0] == 0
    common = ("--model", model, "--dist", dists, "--name", "colon", "--seed", 0)
    run_lpe("truth", *common, "--samples", 2 * N, "--shard", "1/2", "--out", tmp_path / "s1.h5", check=0)
    run_lpe("truth", *common, "--samples", 2 * N, "--out", tmp_path / "all.h5", check=0)
    run_lpe("truth", "merge", tmp_path / "m.h5", imp, tmp_path / "s1.h5", check=0)
    with h5py.File(tmp_path / "m.h5", "r") as a, h5py.File(tmp_path / "all.h5", "r") as b:
        assert np.array_equal(a["counts"][()], b["counts"][()])
        assert np.array_equal(a["ranges"][()], [[0, 2 * N]])


def test_paper_sized_float_counts(setup, tmp_path):
    """The published shape: d_vocab counts summing to 2^32, stored as floats."""
    d, model, dists, ref = setup
    rng = np.random.default_rng(1)
    c = rng.multinomial(2 ** 32, rng.dirichlet(np.full(64, 0.3))).astype(np.float64)
    out = tmp_path / "t.h5"
    rc, msg = run("--counts", save_pt(tmp_path / "frequencies32-colon.pt", c), "--model", model,
                  "--dists", dists, "--out", out)
    assert rc == 0, msg
    with h5py.File(out, "r") as f:
        assert f["counts"].dtype == np.uint64 and np.array_equal(f["counts"][()], c.astype(np.uint64))
        assert int(f.attrs["n_samples"]) == 2 ** 32
    r = run_lpe("info", out, check=0)
    assert "4294967296" in r.stdout or "2^32" in r.stdout, r.stdout
    # float32 storage rounds counts above 2^24: the sum check catches it; 'sum' accepts it
    c32 = c.astype(np.float32)
    assert c32.astype(np.float64).sum() != 2 ** 32
    pt = save_pt(tmp_path / "frequencies32-colon.pt", c32)
    rc, msg = run("--counts", pt, "--model", model, "--dists", dists, "--out", out, "--force")
    assert rc == 2 and "--n-samples sum" in msg, msg
    rc, msg = run("--counts", pt, "--model", model, "--dists", dists, "--out", out, "--force",
                  "--n-samples", "sum")
    assert rc == 0, msg
    with h5py.File(out, "r") as f:
        assert int(f.attrs["n_samples"]) == int(c32.astype(np.float64).sum())
    run_lpe("info", out, check=0)  # lpe reads it: counts sum to n_samples


@pytest.mark.parametrize("what,counts,named", [
    ("length", np.full(63, 64, dtype=np.int64), "63 counts, but the model"),
    ("sum", np.full(64, 63, dtype=np.int64), f"counts sum to {63 * 64}, expected {N}"),
    ("fraction", np.concatenate([[63.5, 64.5], np.full(62, 64.0)]), "entry 0 is 63.5"),
    ("negative", np.concatenate([[-1, 65], np.full(62, 64)]).astype(np.int64), "entry 0 is -1"),
    ("nan", np.concatenate([[np.nan], np.full(63, 64.0)]), "entry 0 is nan"),
    ("2-d", np.full((8, 8), 64, dtype=np.int64), "1-d tensor"),
])
def test_bad_counts_are_refused(setup, tmp_path, what, counts, named):
    d, model, dists, ref = setup
    out = tmp_path / "t.h5"
    rc, msg = run("--counts", save_pt(tmp_path / "f.pt", counts), "--model", model, "--dists",
                  dists, "--name", "colon", "--out", out, "--n-samples", N)
    assert rc == 2 and named in msg and "f.pt" in msg, msg
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_unknown_distribution_and_existing_output(setup, tmp_path):
    d, model, dists, ref = setup
    pt = save_pt(tmp_path / "f.pt", np.full(64, 64, dtype=np.int64))
    rc, msg = run("--counts", pt, "--model", model, "--dists", dists, "--name", "nope", "--out",
                  tmp_path / "t.h5", "--n-samples", N)
    assert rc == 2 and "nope" in msg, msg
    (tmp_path / "t.h5").write_text("x")
    rc, msg = run("--counts", pt, "--model", model, "--dists", dists, "--name", "colon", "--out",
                  tmp_path / "t.h5", "--n-samples", N)
    assert rc == 2 and "exists" in msg, msg


def test_compare(setup, tmp_path):
    """An independent lpe sample of the same distribution agrees; another distribution's
    counts do not."""
    d, model, dists, ref = setup
    common = ("--model", model, "--dist", dists, "--samples", 4 * N)
    run_lpe("truth", *common, "--name", "colon", "--seed", 7, "--out", tmp_path / "a.h5", check=0)
    run_lpe("truth", *common, "--name", "other", "--seed", 7, "--out", tmp_path / "b.h5", check=0)
    rc, msg = run("compare", ref, tmp_path / "a.h5")
    assert rc == 0 and "consistent" in msg, msg
    rc, msg = run("compare", ref, tmp_path / "b.h5")
    assert rc == 1 and "DIFFERENT" in msg, msg
