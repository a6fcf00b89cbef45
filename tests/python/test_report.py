"""lpe report and tools/plot_results.py on hand-made results files (h5py), checked against the
NumPy reference of the scoring in tools/plot_results.py (an independent implementation: golden
section on the profiled loss, where src/eval.c uses Newton steps).

Layout (methods.md §8): /{dist}/targets, /{dist}/true_prob, /{dist}/{method}/estimate; root attribute
`model` gives the table's label.
"""
import csv
import io
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import ROOT, run_lpe

sys.path.insert(0, str(ROOT / "tools"))
import plot_results as ref  # noqa: E402


def make_results(path, model="models/gelu-xx.h5", seed=0):
    """d1: 7 targets, methods naive (zeros), qld, gld, itgis@temperature=0.45; d2: 5 targets,
    no gld; d3: no true_prob (skipped by the report)."""
    rng = np.random.default_rng(seed)
    truth = {"d1": 10 ** rng.uniform(-9, -5, 7), "d2": 10 ** rng.uniform(-8, -5, 5)}
    est = {}
    with h5py.File(path, "w") as f:
        f.attrs["model"] = model
        f.attrs["config"] = "[experiment]\nmodel = " + model + "\n"
        for d, p in truth.items():
            g = f.create_group(d)
            g["targets"] = np.arange(len(p), dtype=np.int32) + 10
            g["true_prob"] = p
            ms = {
                "naive": np.where(p > 3e-7, p * rng.uniform(0.5, 2, len(p)), 0.0),
                "qld": 30 * p ** 0.8 * np.exp(rng.normal(0, 0.7, len(p))),
                "itgis@temperature=0.45": p * np.exp(rng.normal(0, 0.3, len(p))),
            }
            if d == "d1":
                ms["gld"] = 1e-3 * p ** 0.4 * np.exp(rng.normal(0, 1, len(p)))
            for name, q in ms.items():
                g[f"{name}/estimate"] = q
                g[f"{name}/std_error"] = np.full(len(p), np.nan)
            est[d] = ms
        g = f.create_group("d3")
        g["targets"] = np.arange(3, dtype=np.int32)
        g["naive/estimate"] = np.zeros(3)
    return truth, est


def report(*args, check=0):
    return run_lpe("report", *args, check=check)


def test_report_csv_matches_numpy_reference(tmp_path):
    path = tmp_path / "r.h5"
    truth, est = make_results(path)
    r = report(path, "--format", "csv")
    assert "1 distribution(s) without ground truth skipped" in r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    seen = set()
    for row in rows:
        assert row["model"] == "gelu-xx"
        d, m = row["distribution"], row["method"]
        if d == "(mean)":
            continue
        p = truth[d]
        q = est[d][m] if m != "const" else np.full(len(p), p.mean())
        want = ref.score(p, q)
        for k in ref.METRICS:
            # both sides converge to the optimum to ~1e-10; the CSV prints 4 significant digits
            assert float(row[k]) == pytest.approx(want[k], rel=1e-3, abs=1e-12), (d, m, k)
        assert int(row["n"]) == want["n"] and int(row["n_zero"]) == want["n_zero"]
        seen.add((d, m))
    assert seen == {(d, m) for d in truth for m in list(est[d]) + ["const"]}
    # the means over distributions: gld is in one of two distributions
    mean = {row["method"]: row for row in rows if row["distribution"] == "(mean)"}
    assert int(mean["gld"]["n"]) == 1 and int(mean["qld"]["n"]) == 2
    want = np.mean([ref.score(truth[d], est[d]["qld"])["fitted"] for d in truth])
    assert float(mean["qld"]["fitted"]) == pytest.approx(want, rel=1e-3)
    # canonical order: const, naive, itgis..., qld, gld
    order = [row["method"] for row in rows if row["distribution"] == "d1"]
    assert order == ["const", "naive", "itgis@temperature=0.45", "qld", "gld"]


def test_report_zero_rule_hand_case(tmp_path):
    """Four targets worked out by hand (as in tests/c/test_eval.c): positive estimates exactly
    2p (fit removes them: loss 0), two zeros get c0 = 2.5e-6."""
    path = tmp_path / "z.h5"
    with h5py.File(path, "w") as f:
        f["d/targets"] = np.arange(4, dtype=np.int32)
        f["d/true_prob"] = np.array([1e-6, 2e-6, 4e-6, 3e-6])
        f["d/naive/estimate"] = np.array([2e-6, 0, 8e-6, 0])
    D = lambda x: x - np.log(x) - 1  # noqa: E731
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO(report(path, "--format", "csv").stdout))
            if r["distribution"] == "d"}
    assert float(rows["naive"]["fitted"]) == pytest.approx((D(2 / 2.5) + D(3 / 2.5)) / 4, rel=1e-3)
    assert float(rows["naive"]["c0"]) == pytest.approx(2.5e-6, rel=1e-3)
    assert float(rows["naive"]["cv"]) == pytest.approx((D(2 / 3) + D(1.5)) / 4, rel=1e-3)
    const = (D(1 / 2.5) + D(2 / 2.5) + D(4 / 2.5) + D(3 / 2.5)) / 4
    assert float(rows["const"]["fitted"]) == pytest.approx(const, rel=1e-3)
    drop = {r["method"]: r for r in csv.DictReader(io.StringIO(
        report(path, "--format", "csv", "--zero", "drop").stdout)) if r["distribution"] == "d"}
    assert int(drop["naive"]["n"]) == 2 and int(drop["naive"]["n_zero"]) == 2
    assert float(drop["naive"]["fitted"]) < 1e-9


def test_report_markdown(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    make_results(a, model="gelu-1l.h5", seed=1)
    make_results(b, model="dir/gelu-2l.h5", seed=2)
    out = report(a, b).stdout
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("| method |"))
    assert header == "| method | gelu-1l | gelu-2l |"
    body = [line.split("|")[1].strip() for line in lines[lines.index(header) + 2:]
            if line.startswith("| ")]
    assert body[:5] == ["const", "naive", "itgis@temperature=0.45", "qld", "gld"]
    assert "(1/2)" in out  # gld ran in one of the two distributions
    assert "## gelu-1l (" in out and "## gelu-2l (" in out
    assert "*: some estimates were 0" in out  # naive has zeros
    for metric in ("unfitted", "logsq", "cv"):
        assert report(a, "--metric", metric).returncode == 0
    # two files of one model get distinct labels
    out2 = report(a, a).stdout
    assert "gelu-1l:a.h5 | gelu-1l:a.h5" in out2


def test_report_bad_input(tmp_path):
    path = tmp_path / "r.h5"
    make_results(path)
    for args in (["--format", "xml", path], ["--metric", "best", path], ["--zero", "x", path],
                 ["--bogus", path], []):
        r = report(*args, check=2)
        assert "usage" in r.stderr, args
    assert "not found" in report(tmp_path / "missing.h5", check=2).stderr
    (tmp_path / "text.h5").write_text("not hdf5")
    assert "not an HDF5 file" in report(tmp_path / "text.h5", check=2).stderr
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f["x/targets"] = np.arange(3, dtype=np.int32)
    assert "no distribution with targets and true_prob" in report(tmp_path / "empty.h5",
                                                                   check=2).stderr
    with h5py.File(tmp_path / "bad.h5", "w") as f:  # an estimate of the wrong length
        f["d/targets"] = np.arange(3, dtype=np.int32)
        f["d/true_prob"] = np.full(3, 1e-6)
        f["d/qld/estimate"] = np.zeros(4)
    r = report(tmp_path / "bad.h5", check=2)
    assert "d/qld/estimate" in r.stderr
    assert report("--help", check=0).stdout.startswith("usage: lpe report")


def test_plot_results(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    make_results(a, model="gelu-1l.h5", seed=1)
    make_results(b, model="gelu-2l.h5", seed=2)
    out = tmp_path / "plots"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "plot_results.py"), str(a), str(b),
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["gelu-1l_losses.png", "gelu-1l_scatter.png", "gelu-2l_losses.png",
                     "gelu-2l_scatter.png", "mean_losses.png"]
    for p in out.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "plot_results.py"),
                        str(tmp_path / "nope.h5"), "--out", str(out)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "not found" in r.stderr


def test_report_merges_files_of_one_model(tmp_path):
    """One file per (model, distribution), as experiments/paper/ runs them: one column per model,
    its mean over the union of the files' distributions."""
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    make_results(a, model="gelu-1l.h5", seed=1)
    make_results(b, model="gelu-1l.h5", seed=2)
    with h5py.File(b, "a") as f:
        for d in ("d1", "d2", "d3"):
            f.move(d, "e" + d[1:])
    out = report(a, b).stdout
    header = next(line for line in out.splitlines() if line.startswith("| method |"))
    assert header == "| method | gelu-1l |"
    assert "| method | d1 | d2 | e1 | e2 | mean |" in out
    rows = list(csv.DictReader(io.StringIO(report(a, b, "--format", "csv").stdout)))
    per = [float(r["fitted"]) for r in rows if r["method"] == "qld" and r["distribution"] != "(mean)"]
    mean = [float(r["fitted"]) for r in rows if r["method"] == "qld" and r["distribution"] == "(mean)"]
    # the CSV prints 4 significant digits
    assert len(per) == 4 and len(mean) == 1 and mean[0] == pytest.approx(np.mean(per), rel=1e-3)
