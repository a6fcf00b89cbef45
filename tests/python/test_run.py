"""`lpe run` end to end on tiny random models (results layout per methods.md §8, reproducibility,
sweeps, naive sampling against exact enumeration) and `lpe info` on every kind of file.

Reference for the truth: `lpe truth --exact` files (themselves tested against a NumPy
enumeration in test_truth.py); the naive estimator is checked against them statistically.
"""
import os
import re

import h5py
import numpy as np
import pytest

import reference
from conftest import h5_tree, run_lpe, trees_equal, write_ini

TIMING = ("created", "seconds", "seconds_per_target")


@pytest.fixture(scope="module")
def case(tmp_path_factory, tiny_model, tiny_dists):
    """A directory with the tiny model, its distributions and their exact truth files."""
    d = tmp_path_factory.mktemp("run")
    os.symlink(tiny_model, d / "model.h5")
    os.symlink(tiny_dists, d / "dists.h5")
    probs = {}
    for n in ("a", "b"):
        run_lpe("truth", "--model", tiny_model, "--dist", tiny_dists, "--name", n, "--exact",
                "--out", d / f"truth_{n}.h5", check=0)
        with h5py.File(d / f"truth_{n}.h5", "r") as f:
            probs[n] = f["probs"][:]
    return dict(dir=d, probs=probs, model=tiny_model)


def ini_text(truth="exact", seed=1, budget=1024, targets="count = 6\np_min = 1e-3\np_max = 0.5",
             methods="[method naive]\n[method const]\n", extra=""):
    return (f"[experiment]\nmodel = model.h5\ndistributions = dists.h5\ntruth = {truth}\n"
            f"seed = {seed}\nbackend = cpu\nbudget = {budget}\n{extra}\n"
            f"[targets]\n{targets}\n\n{methods}")


def run(case, name, text, *args, check=0, out=None):
    d = case["dir"]
    ini = write_ini(d / f"{name}.ini", text)
    out = out or d / f"{name}.h5"
    r = run_lpe("run", ini, "--output", out, "--force", *args, check=check)
    return out, r


def test_layout(case):
    text = ini_text()
    out, r = run(case, "layout", text)
    with h5py.File(out, "r") as f:
        a = f.attrs
        assert a["config"] == (case["dir"] / "layout.ini").read_text()
        assert a["lpe_version"] and a["device"] and a["backend"] == "cpu"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", a["created"])
        assert a["format_version"] == 1 and a["seed"] == 1
        assert a["model_sha256"] == reference.model_content_sha256(case["model"])
        rows = 0
        for n in ("a", "b"):
            g, p = f[n], case["probs"][n]
            t, tp = g["targets"][:], g["true_prob"][:]
            assert g["targets"].dtype == np.int32 and g["true_prob"].dtype == np.float64
            assert len(t) == 6 and np.all(np.diff(t) > 0), t
            assert np.array_equal(tp, p[t])
            assert np.all((tp >= 1e-3) & (tp <= 0.5))
            assert g.attrs["n_candidates"] == np.sum((p >= 1e-3) & (p <= 0.5))
            assert g.attrs["truth"] == "exact" and g.attrs["truth_exact"] == 1
            nv = g["naive"]
            hits, est = nv["hits"][:], nv["estimate"][:]
            assert np.array_equal(est, hits / 1024)
            assert np.allclose(nv["std_error"][:], np.sqrt(est * (1 - est) / 1024), rtol=1e-12, atol=0)
            assert np.all(nv["model_calls"][:] == 1024)
            assert nv.attrs["budget"] == 1024 and nv.attrs["method"] == "naive"
            assert nv.attrs["seconds"] >= 0
            c = g["const"]["estimate"][:]
            assert np.allclose(c, tp.mean(), rtol=1e-12) and np.all(g["const"]["model_calls"][:] == 0)
            rows += len(t)
    # the table: one row per target, estimate and ratio per method
    lines = [l for l in r.stdout.splitlines() if l.startswith("| a |") or l.startswith("| b |")]
    assert len(lines) == rows, r.stdout
    assert "| dist | target | true p | naive | ratio | const | ratio |" in r.stdout


def test_truth_file_equals_exact(case):
    """truth = truth_{dist}.h5 (files from `lpe truth --exact`) selects the same targets and
    reports the same truth and estimates as truth = exact in the run."""
    ea, _ = run(case, "tex", ini_text())
    eb, _ = run(case, "tfile", ini_text(truth="truth_{dist}.h5"))
    skip = TIMING + ("config", "ini_path", "truth", "truth_path")
    ta, tb = h5_tree(ea, skip_attrs=skip), h5_tree(eb, skip_attrs=skip)
    assert trees_equal(ta, tb) == []
    with h5py.File(eb, "r") as f:
        assert f["a"].attrs["truth"] == "file" and f["a"].attrs["truth_path"].endswith("truth_a.h5")


def test_reproducible_and_seeded(case):
    fixed_targets = "count = 6\np_min = 1e-3\np_max = 0.5\nseed = 5"
    a, _ = run(case, "s1", ini_text(seed=1, budget=512, targets=fixed_targets))
    b, _ = run(case, "s1", ini_text(seed=1, budget=512, targets=fixed_targets),
               out=case["dir"] / "s1b.h5")
    c, _ = run(case, "s2", ini_text(seed=2, budget=512, targets=fixed_targets))
    ta, tb = h5_tree(a, skip_attrs=TIMING), h5_tree(b, skip_attrs=TIMING)
    assert len(ta) > 20 and trees_equal(ta, tb) == []
    tc = h5_tree(c, skip_attrs=TIMING)
    for n in ("a", "b"):
        assert np.array_equal(ta[f"{n}/targets"], tc[f"{n}/targets"])  # [targets] seed fixed
        assert not np.array_equal(ta[f"{n}/naive/estimate"], tc[f"{n}/naive/estimate"])
    # the target seed defaults to the experiment seed: another one picks other targets
    d, _ = run(case, "s3", ini_text(seed=3, budget=512, targets="count = 6\np_min = 1e-3\np_max = 0.5"))
    assert not np.array_equal(h5_tree(d)["b/targets"], ta["b/targets"])


@pytest.mark.parametrize("batch", [7, 256, 1000])
def test_batch_size_invariance(case, batch):
    """Rows of one target drawn by the backend (batches inside one target) or on the host
    (batches spanning targets) are the same samples: estimates do not depend on the batch."""
    ref, _ = run(case, "b0", ini_text(budget=512, methods="[method naive]\n"))
    got, _ = run(case, f"b{batch}", ini_text(budget=512, methods="[method naive]\n",
                                             extra=f"batch = {batch}"))
    for n in ("a", "b"):
        assert np.array_equal(h5_tree(ref)[f"{n}/naive/hits"], h5_tree(got)[f"{n}/naive/hits"])


def test_sweep(case):
    """A list value runs the method once per value, each stored as method@key=value; each run
    equals the same method run alone with that value."""
    out, r = run(case, "sweep", ini_text(methods="[method naive]\nbudget = 2^8, 1024\n"))
    alone, _ = run(case, "alone", ini_text(budget=256, methods="[method naive]\n"))
    with h5py.File(out, "r") as f, h5py.File(alone, "r") as g:
        for n in ("a", "b"):
            assert sorted(f[n].keys()) == ["eval", "naive@budget=1024", "naive@budget=2^8", "targets", "true_prob"]
            s = f[n]["naive@budget=2^8"]
            assert s.attrs["sweep"] == "budget=2^8" and s.attrs["budget"] == 256
            assert np.all(s["model_calls"][:] == 256)
            assert np.all(f[n]["naive@budget=1024"]["model_calls"][:] == 1024)
            assert np.array_equal(s["hits"][:], g[n]["naive"]["hits"][:])
    assert "naive@budget=2^8" in r.stdout


def test_naive_unbiased(case):
    """Every token the model can output with p in [1e-3, 0.3] (59 targets over both
    distributions), 3 seeds, n = 2048 each: the z-scores (hits - n p) / sqrt(n p (1 - p)) must
    look standard normal: mean within 4/sqrt(N), sum of squares within 5 sqrt(2N) of N, none
    beyond 5.5. A biased estimator (or targets sharing samples) moves these by many units."""
    n, z = 2048, []
    for seed in (11, 12, 13):
        out, _ = run(case, f"u{seed}", ini_text(seed=seed, budget=n, methods="[method naive]\n",
                                                targets="count = 100\np_min = 1e-3\np_max = 0.3"))
        with h5py.File(out, "r") as f:
            for d in ("a", "b"):
                p, h = f[d]["true_prob"][:], f[d]["naive"]["hits"][:]
                z.extend((h - n * p) / np.sqrt(n * p * (1 - p)))
    z = np.array(z)
    N = len(z)
    assert N >= 150, N
    assert abs(z.mean()) * np.sqrt(N) < 4, z.mean()
    assert abs(np.sum(z ** 2) - N) < 5 * np.sqrt(2 * N), np.sum(z ** 2)
    assert np.max(np.abs(z)) < 5.5


def test_truth_none_with_list(case):
    out, r = run(case, "none", ini_text(truth="none", targets="list = 40, 3,\n  17",
                                        methods="[method naive]\n"))
    with h5py.File(out, "r") as f:
        assert list(f["a"]["targets"][:]) == [3, 17, 40] and "true_prob" not in f["a"]
        assert f["a"].attrs["truth"] == "none"
    assert "| a | 3 | - |" in r.stdout
    # the optimal constant needs the truth
    out, r = run(case, "none2", ini_text(truth="none", targets="list = 3", methods="[method const]\n"),
                 check=2)
    assert "needs ground truth" in r.stderr and not out.exists()


def test_no_candidates(case):
    out, r = run(case, "empty", ini_text(targets="count = 4\np_min = 0.999\np_max = 1"))
    assert "no targets" in r.stderr
    with h5py.File(out, "r") as f:
        assert f["a"]["targets"].shape == (0,) and "naive" not in f["a"]


def test_default_output_path(case, tmp_path):
    text = ini_text().replace("model.h5", str(case["dir"] / "model.h5")).replace(
        "dists.h5", str(case["dir"] / "dists.h5"))
    ini = write_ini(tmp_path / "cfg.ini", text)
    run_lpe("run", ini, "--quiet", cwd=tmp_path, check=0)
    assert (tmp_path / "results" / "cfg.h5").exists()


def test_info(case, tmp_path):
    d = case["dir"]
    out, _ = run(case, "info", ini_text())
    cases = [(d / "model.h5", "model", "d_model 16"), (d / "dists.h5", "distributions (2)", "supports"),
             (d / "truth_a.h5", "ground truth (exact)", "top tokens"), (out, "results", "naive")]
    for path, kind, fragment in cases:
        r = run_lpe("info", path, check=0)
        assert f"{path}: {kind}" in r.stdout and fragment in r.stdout, r.stdout
    (tmp_path / "x.h5").write_text("not hdf5")
    assert "not an HDF5 file" in run_lpe("info", tmp_path / "x.h5", check=2).stderr
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f["stuff"] = np.arange(3)
    assert "not a file lpe knows" in run_lpe("info", tmp_path / "y.h5", check=2).stderr
    run_lpe("info", check=2)


def test_distributions_of_different_lengths(case, tmp_path):
    """k = 3 and k = 5 in one run: the backend is re-created for the second length."""
    from conftest import make_dist
    dists = make_dist(tmp_path / "d.h5", "short", vocab=64, k=3, support=8, seed=8)
    make_dist(dists, "long", vocab=64, k=5, support=5, seed=9)
    text = ini_text(budget=256).replace("dists.h5", str(dists))
    out, r = run(case, "klen", text)
    with h5py.File(out, "r") as f:
        assert f["short"].attrs["k"] == 3 and f["long"].attrs["k"] == 5
        for n in ("short", "long"):
            assert len(f[n]["targets"]) > 0 and np.all(f[n]["naive"]["model_calls"][:] == 256)
