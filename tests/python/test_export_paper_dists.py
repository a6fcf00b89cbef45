"""tools/export_paper_dists.py on stand-in corpora with the public files' structure.

Stand-ins: C4-like .json.gz files (field "text", extra fields), CodeParrot-like ones (field
"content"), several files per corpus named as the real ones so that the paper's reading order
(reverse name order, "train_rev") is visible in the counts; the testbed's byte-level BPE
(experiments/testbed/tokenizer.json: BOS 1, EOS 0, with the fixed tokens the families need)
stands in for gpt-neox-tokenizer-digits. The text is made of the tokenizer's own tokens so
every filter has members.

Checks against an independent count (collections.Counter over [BOS] + encode(text) + [EOS] of
the first n items in reverse file order): the weights of the code factor (colon, if: top-k of
all code tokens, BOS and EOS included as in the paper), the camel support; the paper's
positions k per family; that lpe loads every group with the model's vocabulary; and bad inputs.
"""
import gzip
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_paper_dists as ex  # noqa: E402
import recipes  # noqa: E402
from conftest import run_lpe  # noqa: E402

TOK = ROOT / "experiments" / "testbed" / "tokenizer.json"
ITEMS = ["camel=4", "colon=4", "if=4", "caps=3", "english=6", "icl=6", "spanish=3"]


@pytest.fixture(scope="module")
def tok():
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        pytest.fail(f"tokenizers is not installed ({e}); run tools/setup.sh")
    return Tokenizer.from_file(str(TOK))


def single_tokens(tok, test, n, space=False):
    """Up to n token strings passing `test` that encode back to exactly themselves."""
    out = []
    for i in range(tok.get_vocab_size()):
        s = tok.decode([i])
        if test(s) and tok.encode(s, add_special_tokens=False).ids == [i]:
            out.append(s)
            if len(out) == n:
                break
    return out


def write_jsonl_gz(path, field, texts):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({field: t, "meta": 1}) + "\n")


def write_standin_corpora(d, tok):
    """C4 / Spanish C4 / CodeParrot stand-ins under d (code/, en/, es/) made of tok's own tokens;
    returns the camel tokens used. Also used by test_notebook.py's pipeline test."""
    camel = single_tokens(tok, recipes.is_camel, 12)
    caps = single_tokens(tok, recipes.is_caps, 6)
    words = {c: single_tokens(tok, lambda s, c=c: recipes.is_icl_word(s, c), 2) for c in "ARCTHEOY"}
    assert len(camel) >= 9 and caps and all(words.values()), "stand-in tokenizer lacks tokens"
    # code: three files; each item names camel tokens, the file number makes items distinct
    for f in range(3):
        texts = [f"def f{f}{i}(x):\n    if x:\n        return x={camel[(3 * f + i) % len(camel)]}\n"
                 f"    else:\n        return {i}\n" for i in range(3)]
        write_jsonl_gz(d / "code" / f"file-00000000000{f + 1}.json.gz", "content", texts)
    eng = " ".join(w for ws in words.values() for w in ws)
    for f in range(2):
        texts = [f"He screamed: \"{caps[i % len(caps)]}!\" She said{eng}, and{i} more." for i in range(4)]
        write_jsonl_gz(d / "en" / f"c4-train.0000{f}-of-00002.json.gz", "text", texts)
    write_jsonl_gz(d / "es" / "c4-es.tfrecord-00000-of-00001.json.gz", "text",
                   ["El niño come manzanas en la casa grande."] * 4)
    return camel


@pytest.fixture(scope="module")
def corpora(tmp_path_factory, tok):
    d = tmp_path_factory.mktemp("corpora")
    return d, write_standin_corpora(d, tok)


def export(d, out, *extra):
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = ex.main(["--tokenizer", str(TOK), "--code", str(d / "code"), "--english", str(d / "en"),
                      "--spanish", str(d / "es"), "--out", str(out), "--items", *ITEMS, *map(str, extra)])
    return rc, err.getvalue()


def counter(tok, d, sub, field, n, reverse=True):
    """Independent count: first n items of the files in reverse name order (or name order)."""
    files = sorted((d / sub).glob("*.json.gz"), key=lambda p: p.name, reverse=reverse)
    c, seen = Counter(), 0
    for f in files:
        with gzip.open(f, "rt") as fh:
            for line in fh:
                if seen == n:
                    return c
                ids = tok.encode(json.loads(line)[field], add_special_tokens=False).ids
                c.update([1] + ids + [0])
                seen += 1
    return c


def group(path, name):
    with h5py.File(path, "r") as f:
        g = f[name]
        vals, probs, offs, pos = (g[k][()] for k in ("values", "probs", "offsets", "positions"))
    return [(vals[offs[i]:offs[i + 1]], probs[offs[i]:offs[i + 1]]) for i in range(len(offs) - 1)], pos


def test_all_eight_families_with_the_papers_lengths(tmp_path, corpora, tok):
    d, camel = corpora
    out = tmp_path / "paper.h5"
    rc, err = export(d, out)
    assert rc == 0, err
    n_scream = len(tok.encode(' screamed: "', add_special_tokens=False).ids)
    want_k = {"hex": 33, "camel": 33, "colon": 34, "if": 34, "caps": 2 + n_scream + 16,
              "english": 26, "spanish": 25, "icl": 1 + 3 * 9 + 2}
    with h5py.File(out, "r") as f:
        assert sorted(f) == sorted(want_k)
        files = json.loads(f.attrs["corpus_files"])
        assert [n for n, _ in files["code"]] == [f"file-00000000000{i}.json.gz" for i in (3, 2, 1)]
        assert f["english"].attrs["corpus_items"] == 6 and f["hex"].attrs["corpus_items"] == -1
    for name, k in want_k.items():
        factors, pos = group(out, name)
        assert len(pos) == k, name
        assert factors[pos[0]][0].tolist() == [1], f"{name}: BOS first"
        r = run_lpe("dist", "show", out, name, "--vocab", tok.get_vocab_size(), check=0)
        assert f"positions k = {k}" in r.stdout


def test_code_counts_match_an_independent_count(tmp_path, corpora, tok):
    d, camel = corpora
    out = tmp_path / "paper.h5"
    assert export(d, out)[0] == 0
    c = counter(tok, d, "code", "content", 4)  # 3 items of file 3, then 1 of file 2
    for name, rep_pos in (("colon", 1), ("if", 2)):
        factors, pos = group(out, name)
        vals, probs = factors[pos[rep_pos]]
        assert all(pos[rep_pos + j] == pos[rep_pos] for j in range(32)), name
        assert sorted(vals.tolist()) == sorted(c), name  # fewer than 1024 distinct: all of them
        total = sum(c.values())
        np.testing.assert_allclose(probs / probs.sum(), [c[v] / total for v in vals], rtol=1e-12)
    # camel: the camel tokens of exactly those 4 items
    factors, pos = group(out, "camel")
    vals = factors[pos[1]][0]
    want = sorted(t for t in c if recipes.is_camel(tok.decode([t])))
    assert vals.tolist() == want and len(want) >= 3
    # read in name order instead: other items, so another camel support
    out2 = tmp_path / "fwd.h5"
    assert export(d, out2, "--no-reverse", "--names", "camel")[0] == 0
    c2 = counter(tok, d, "code", "content", 4, reverse=False)
    want2 = sorted(t for t in c2 if recipes.is_camel(tok.decode([t])))
    assert group(out2, "camel")[0][1][0].tolist() == want2 != want


def test_bad_inputs(tmp_path, corpora):
    d, _ = corpora
    rc = ex.main(["--tokenizer", str(TOK), "--english", str(d / "en"), "--spanish",
                  str(d / "es"), "--out", str(tmp_path / "x.h5")])  # no --code: camel needs it
    assert rc == 2 and not (tmp_path / "x.h5").exists()
    bad = tmp_path / "bad"
    write_jsonl_gz(bad / "file-1.json.gz", "content", ["x"])
    with gzip.open(bad / "file-2.json.gz", "wt") as f:
        f.write('{"content": "ok"}\nnot json\n')
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "export_paper_dists.py"), "--tokenizer",
                        str(TOK), "--code", str(bad), "--out", str(tmp_path / "y.h5"), "--names",
                        "colon", "--items", "colon=3"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "file-2.json.gz:2: not a JSON object" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "export_paper_dists.py"), "--tokenizer",
                        str(TOK), "--code", str(d / "code"), "--out", str(tmp_path / "y.h5"),
                        "--names", "colon"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "fewer than the 1024" in r.stderr, r.stderr  # the paper's amount
    assert not (tmp_path / "y.h5").exists()


def test_clean_up_spaces_is_transformers_rule():
    assert ex.clean_up_spaces(" ,") == "," and ex.clean_up_spaces(" don't") == " don't"
    assert ex.clean_up_spaces(" n't") == "n't" and ex.clean_up_spaces(" is") == " is"
