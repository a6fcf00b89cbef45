"""experiments/notebooks/paper_figures.ipynb and experiments/paper/*.ini, run so they never rot.

1. The notebook, executed headless (tests/python/nbrun.py), on real `lpe run` results: two tiny
   models, one with all its distributions in one file (the testbed's layout), one split into a
   file per distribution (the paper INIs' layout). Its headline numbers must equal `lpe report`'s
   (the C evaluation) and it must write its figures.
2. The paper INIs carry methods.md §9's parameters (an independent transcription of its table below).
3. The whole paper path on stand-ins: a TransformerLens checkpoint converted, the eight families
   exported from stand-in corpora, ground truth sampled by lpe and imported through the
   published format (.pt counts), the gelu-1l INIs run unchanged except for their sizes (budget,
   targets, probability range, burn-in: the stand-in truth has 2^14 samples), then the notebook.
"""
import csv
import io
import json
import re
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(HERE))
from conftest import make_dist, make_model, run_lpe, write_ini  # noqa: E402
from nbrun import cell_sources, run_notebook  # noqa: E402

NB = ROOT / "experiments" / "notebooks" / "paper_figures.ipynb"
FAMILIES = ["hex", "camel", "colon", "if", "caps", "english", "spanish", "icl"]
# methods.md §9, transcribed: (model, method) -> temperatures in FAMILIES order
TEMPS = {
    ("gelu-1l", "itgis"): [1.0, 1.0, 1.0, 1.0, 1.5, 0.45, 0.67, 0.45],
    ("gelu-1l", "mhis"): [0.67, 2.24, 1.0, 2.24, 3.34, 1.5, 2.24, 1.0],
    ("gelu-2l", "itgis"): [1.5, 1.5, 1.0, 0.45, 0.45, 0.67, 0.67, 0.3],
    ("gelu-2l", "mhis"): [0.67, 2.24, 1.5, 1.5, 1.5, 2.24, 2.24, 0.67],
    ("gelu-4l", "itgis"): [5.0, 1.0, 0.67, 1.0, 0.67, 0.45, 1.0, 3.34],
    ("gelu-4l", "mhis"): [0.67, 2.24, 1.0, 1.0, 1.0, 1.5, 2.24, 0.67],
}


def ini_values(path):
    """{section: {key: value}} of an lpe INI (comments after ' ;' dropped)."""
    out, sec = {}, None
    for line in Path(path).read_text().splitlines():
        s = line.split(" ;")[0].strip()
        if not s or s.startswith((";", "#")):
            continue
        if s.startswith("["):
            sec = s.strip("[]").strip()
            out[sec] = {}
        else:
            k, v = (x.strip() for x in s.split("=", 1))
            out[sec][k] = v
    return out


def small_run(tmp, model, dists, names, out, seed=1):
    ini = write_ini(tmp / f"{Path(out).stem}.ini", f"""
        [experiment]
        model = {model}
        distributions = {dists}
        names = {names}
        truth = exact
        output = {out}
        seed = {seed}
        budget = 2^9
        [targets]
        count = 6
        p_min = 1e-5
        p_max = 0.05
        [method naive]
        [method itgis]
        batch = 64
        [method mhis]
        walkers = 8
        burn_in = 16
        [method qld]
        [method gld]
        [method const]
        """)
    run_lpe("run", ini, "--quiet", check=0)
    return Path(out)


def report_csv(*files):
    r = run_lpe("report", *files, "--format", "csv", check=0)
    return list(csv.DictReader(io.StringIO(r.stdout)))


def test_notebook_is_stored_clean():
    nb = json.loads(NB.read_text())
    assert nb["nbformat"] == 4
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            assert c["outputs"] == [] and c["execution_count"] is None, "commit the notebook without outputs"
    assert len(cell_sources(str(NB))) >= 5


def test_notebook_on_lpe_results_matches_lpe_report(tmp_path):
    m1 = make_model(tmp_path / "m1.h5", layers=1, vocab=64, seed=7)
    m2 = make_model(tmp_path / "m2.h5", layers=2, vocab=64, seed=8)
    dists = tmp_path / "d.h5"
    make_dist(dists, "a", vocab=64, k=4, support=8, const_first=0, seed=2)
    make_dist(dists, "b", vocab=64, k=4, support=6, factors=2, zipf=0.5, seed=3)
    r1 = small_run(tmp_path, m1, dists, "a, b", tmp_path / "r1.h5")
    r2a = small_run(tmp_path, m2, dists, "a", tmp_path / "r2a.h5")
    r2b = small_run(tmp_path, m2, dists, "b", tmp_path / "r2b.h5")
    figs = tmp_path / "figs"
    ns = run_notebook(str(NB), env={"LPE_RESULTS": f"{r1} {tmp_path}/r2?.h5", "LPE_FIGDIR": figs},
                      cwd=str(tmp_path))
    for name in ("headline", "per_distribution", "scatter", "diagnostics"):
        png = figs / f"{name}.png"
        assert png.exists() and png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000, name
    head = ns["headline"]
    assert set(ns["labels"]) == {"m1", "m2"} and len(ns["models"]["m2"]["files"]) == 2
    # the C evaluation: per (model, method) mean over distributions
    rows = report_csv(r1)
    want = {("m1", r["method"]): float(r["fitted"]) for r in rows if r["distribution"] == "(mean)"}
    per = {}
    for r in report_csv(r2a) + report_csv(r2b):
        if r["distribution"] != "(mean)":
            per.setdefault(r["method"], []).append(float(r["fitted"]))
    want.update({("m2", k): float(np.mean(v)) for k, v in per.items()})
    assert set(want) == set(head)
    for k, v in want.items():
        # the report prints 4 significant digits
        assert abs(head[k] - v) <= 5e-4 * abs(v) + 1e-12, (k, head[k], v)


def test_paper_inis_carry_spec9():
    files = sorted((ROOT / "experiments" / "paper").glob("*/*.ini"))
    assert len(files) == 24
    outputs = set()
    for (model, method), temps in TEMPS.items():
        for fam, t in zip(FAMILIES, temps):
            path = ROOT / "experiments" / "paper" / model / f"{fam}.ini"
            c = ini_values(path)
            e = c["experiment"]
            assert e["names"] == fam and e["budget"] == "2^16", path
            assert e["model"].endswith(f"models/{model}.h5") and e["truth"].endswith(f"truth/{model}/{{dist}}.h5")
            outputs.add(e["output"])
            assert c["targets"] == {"count": "256", "p_min": "1e-9", "p_max": "1e-5"}, path
            assert {s for s in c if s.startswith("method")} == {
                f"method {m}" for m in ("const", "naive", "itgis", "mhis", "qld", "gld")}, path
            assert float(c[f"method {method}"]["temperature"]) == t, (path, method)
            assert c["method itgis"]["batch"] == "256" and c["method itgis"]["decay"] == "0.9"
            assert c["method mhis"]["walkers"] == "32" and c["method mhis"]["burn_in"] == "2^10"
            assert c["method qld"] == {"variant": "paper, arc", "count_batch": "512"}
    assert len(outputs) == 24


SMALL = {"budget": "2^8", "count": "4", "p_min": "2e-4", "p_max": "0.5", "burn_in": "16", "batch": "32"}


def test_paper_pipeline_on_standins(tmp_path):
    """convert -> export -> (lpe truth -> .pt -> import) -> lpe run (the gelu-1l INIs) -> notebook."""
    import importlib
    try:
        torch = importlib.import_module("torch")
        tokenizers = importlib.import_module("tokenizers")
        importlib.import_module("transformer_lens")
    except ImportError as e:
        pytest.fail(f"{e}; run tools/setup.sh (tools/requirements-tools.txt)")
    import convert_checkpoint
    import export_paper_dists
    import import_truth
    import test_convert as tc
    from test_export_paper_dists import write_standin_corpora

    tok_path = ROOT / "experiments" / "testbed" / "tokenizer.json"
    tok = tokenizers.Tokenizer.from_file(str(tok_path))
    V = tok.get_vocab_size()
    art = tmp_path / "results" / "paper"
    # 1. the checkpoint (TransformerLens layout, n_ctx >= the longest family, k = 34)
    m = tc.tl_model(n_layers=1, d_vocab=V, n_ctx=40, seed=12)
    with torch.no_grad():  # token embeddings that matter (tl_model scales them by 1/sqrt(V))
        m.embed.W_E.copy_(torch.randn(m.embed.W_E.shape, generator=torch.Generator().manual_seed(1)))
    ck = tmp_path / "dl" / "model_final.pth"
    ck.parent.mkdir()
    torch.save(tc.neel_state_dict(m), ck)
    assert convert_checkpoint.main(["tl", "--checkpoint", str(ck), "--tokenizer", str(tok_path),
                                    "--out", str(art / "models" / "gelu-1l.h5")]) == 0
    # 2. the eight families from stand-in corpora
    write_standin_corpora(tmp_path / "corpora", tok)
    c = tmp_path / "corpora"
    assert export_paper_dists.main(
        ["--tokenizer", str(tok_path), "--code", str(c / "code"), "--english", str(c / "en"),
         "--spanish", str(c / "es"), "--out", str(art / "dists.h5"), "--items", "camel=4",
         "colon=4", "if=4", "caps=3", "english=6", "icl=6", "spanish=3"]) == 0
    # 3. ground truth in the published format, imported
    (tmp_path / "gt").mkdir()
    n = 2 ** 14
    for fam in FAMILIES:
        t = tmp_path / "gt" / f"{fam}.h5"
        run_lpe("truth", "--model", art / "models" / "gelu-1l.h5", "--dist", art / "dists.h5",
                "--name", fam, "--samples", n, "--seed", 3, "--out", t, check=0)
        with h5py.File(t, "r") as f:
            counts = f["counts"][()]
        arc = {"colon": "indent", "if": "ifelse"}.get(fam, fam)
        pt = tmp_path / "gt" / f"frequencies32-{arc}.pt"
        torch.save(torch.tensor(counts.astype(np.int64)), pt)
        assert import_truth.main(["--counts", str(pt), "--model", str(art / "models" / "gelu-1l.h5"),
                                  "--dists", str(art / "dists.h5"), "--n-samples", str(n), "--out",
                                  str(art / "truth" / "gelu-1l" / f"{fam}.h5")]) == 0
    # 4. the paper's INIs for gelu-1l, sizes shrunk, paths and everything else as committed
    ini_dir = tmp_path / "experiments" / "paper" / "gelu-1l"
    ini_dir.mkdir(parents=True)
    for fam in FAMILIES:
        text = (ROOT / "experiments" / "paper" / "gelu-1l" / f"{fam}.ini").read_text()
        for k, v in SMALL.items():
            text, nsub = re.subn(rf"^({k}\s*=\s*)\S+", rf"\g<1>{v}", text, flags=re.M)
            assert nsub >= 1, k
        (ini_dir / f"{fam}.ini").write_text(text)
        run_lpe("run", ini_dir / f"{fam}.ini", "--quiet", cwd=tmp_path, check=0)
    runs = sorted((art / "runs" / "gelu-1l").glob("*.h5"))
    assert [p.stem for p in runs] == sorted(FAMILIES)
    for p in runs:  # every family has targets, so every method ran on something
        with h5py.File(p, "r") as f:
            assert f[p.stem]["targets"].size >= 1, p.stem
    # 5. the notebook with its default pattern (results/paper/runs/*/*.h5) from the root
    shutil.copytree(ROOT / "tools", tmp_path / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    ns = run_notebook(str(NB), env={"LPE_RESULTS": "results/paper/runs/*/*.h5"}, cwd=str(tmp_path))
    assert ns["labels"] == ["gelu-1l"] and len(ns["models"]["gelu-1l"]["dists"]) == 8
    assert {m for (_, m) in ns["headline"]} == {"const", "naive", "itgis", "mhis", "qld@variant=paper",
                                                "qld@variant=arc", "gld"}
