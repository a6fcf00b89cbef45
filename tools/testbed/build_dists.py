#!/usr/bin/env python3
"""build_dists.py: the eight docs/methods.md §7 families on the testbed's tokenizer and corpus, with the
shared recipes (tools/recipes.py), written to one docs/methods.md §8 distribution file.

Corpus counts: the train split of each sub-corpus (code -> CodeParrot's role, english -> C4's,
spanish -> Spanish C4's), every item (the paper counts 1024 or 2^14 items of far larger
corpora; ours have a few hundred to two thousand), each item [BOS] + tokens + [EOS] cut to 2^14
tokens as in the paper. Top-k cuts as in the paper.

Lengths (TESTBED_PARAMS) are shortened from the paper's (32/16/24 repetitions, 9 icl letters)
to about 14 positions, so that 2^22 ground-truth samples of the 4-layer model take about two
core-hours for all eight families (lpe truth on one CPU thread: ~4000 samples/s at k = 14).

Usage: build_dists.py --corpus DIR --tokenizer TOK.json --out dists.h5
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import corpus as corpus_mod  # noqa: E402
import recipes  # noqa: E402
import tokenizer as tok_mod  # noqa: E402

TESTBED_PARAMS = {
    "hex": {"reps": 12},
    "camel": {"reps": 12},
    "colon": {"reps": 12},
    "if": {"reps": 12},
    "caps": {"reps": 8},
    "english": {"reps": 12},
    "spanish": {"reps": 12},
    "icl": {"letters": "ARCTH"},
}
CORPUS_OF = {"code": "code", "english": "english", "spanish": "spanish"}


def corpus_items(tok, corpus_dir: Path, name: str):
    texts = [it["text"] for it in corpus_mod.read(corpus_dir / f"{name}.jsonl", "train")]
    return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    tok = tok_mod.load(a.tokenizer)
    vocab = tok_mod.vocab(tok)
    corpus_dir = Path(a.corpus)
    corpora = {c: corpus_items(tok, corpus_dir, c) for c in ("code", "english", "spanish")}
    n_items = {f: None for f in recipes.FAMILIES}
    fams = recipes.build_families(vocab, corpora, n_items=n_items, params=TESTBED_PARAMS)
    tmp = a.out + ".tmp"
    if os.path.exists(tmp):
        os.remove(tmp)
    summary = {}
    for f in fams:
        f.write(tmp)
        sizes = [int(f.factors[p].values.size) for p in f.positions]
        summary[f.name] = {"k": f.k, "support_sizes": sizes, "log2_inputs": round(f.log2_inputs(), 2)}
        print(f"dists: {f.name:8s} k {f.k:2d}  log2 inputs {f.log2_inputs():6.1f}  "
              f"supports {sorted(set(sizes))}  {f.description}", file=sys.stderr)
    manifest = json.loads((corpus_dir / "manifest.json").read_text())
    with h5py.File(tmp, "a") as h:
        h.attrs["source"] = "tools/testbed/build_dists.py with tools/recipes.py (docs/methods.md §7)"
        h.attrs["tokenizer_sha256"] = hashlib.sha256(Path(a.tokenizer).read_bytes()).hexdigest()
        h.attrs["corpus_sha256"] = json.dumps({c: v["sha256"] for c, v in manifest["corpora"].items()})
        h.attrs["debian_packages"] = json.dumps(manifest["packages"])
        h.attrs["params"] = json.dumps(TESTBED_PARAMS)
        h.attrs["corpus_items"] = "train split, every item; [BOS] + tokens + [EOS] cut to 2^14"
        for f in fams:
            h[f.name].attrs["recipe_params"] = json.dumps(TESTBED_PARAMS[f.name])
    os.replace(tmp, a.out)
    print(json.dumps(summary), file=sys.stderr)


if __name__ == "__main__":
    main()
