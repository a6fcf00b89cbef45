#!/usr/bin/env python3
"""heldout_check.py: a small held-out sample with each model's log-probabilities, for the tests.

Writes experiments/testbed/heldout_sample.h5:
  tokens    int32 [W, 1 + L]    W windows of the held-out stream, each [BOS] + L tokens
  positions int32 [P]           prediction positions checked (the model sees tokens[:, :pos+1]
                                and predicts tokens[:, pos+1])
  unigram, bigram  float64 [W, P]   baseline log-probabilities of those predictions (the
                                    baselines of train.py: add-one unigram; Dirichlet bigram,
                                    mu from losses.json)
  {model}   float64 [W, P]      the model's log-probabilities (PyTorch, float64 weights)
tests/python/test_testbed.py recomputes the models' values from the model files with the
independent float64 NumPy reference and checks that the models beat the bigram on the sample.

Usage: heldout_check.py --corpus DIR --tokenizer TOK.json --models M1.h5 ... --losses L.json
                        --out heldout_sample.h5
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import tokenizer as tok_mod  # noqa: E402
import train as train_mod  # noqa: E402

WINDOWS, LENGTH = 24, 32
POSITIONS = [3, 7, 15, 31]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--losses", required=True)
    ap.add_argument("--cache", default=str(train_mod.ROOT / "build" / "testbed"))
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    tok = tok_mod.load(a.tokenizer)
    V = tok.get_vocab_size(with_added_tokens=True)
    train = train_mod.token_stream(Path(a.corpus), tok, "train", Path(a.cache))
    held = train_mod.token_stream(Path(a.corpus), tok, "heldout", Path(a.cache))
    stride = (len(held) - LENGTH) // WINDOWS
    w = np.stack([held[i * stride:i * stride + LENGTH] for i in range(WINDOWS)])
    tokens = np.concatenate([np.full((WINDOWS, 1), tok_mod.BOS, np.int32), w], axis=1)
    pos = np.array(POSITIONS)
    prev, nxt = tokens[:, pos].astype(np.int64), tokens[:, pos + 1].astype(np.int64)

    losses = json.loads(Path(a.losses).read_text())
    mu = next(iter(losses.values()))["bigram_mu"]
    uni = (np.bincount(train, minlength=V) + 1.0) / (len(train) + V)
    ctx = np.bincount(train[:-1], minlength=V).astype(np.float64)
    codes = train[:-1].astype(np.int64) * V + train[1:]
    pair = np.array([[np.count_nonzero(codes == p * V + n) for p, n in zip(rp, rn)]
                     for rp, rn in zip(prev, nxt)], dtype=np.float64)
    out = {"tokens": tokens, "positions": pos.astype(np.int32),
           "unigram": np.log(uni[nxt]), "bigram": np.log((pair + mu * uni[nxt]) / (ctx[prev] + mu))}
    for path in a.models:
        m = train_mod.load_model(path).double()
        with torch.no_grad():
            lp = torch.log_softmax(m(torch.from_numpy(tokens).long()), -1).numpy()
        out[Path(path).stem] = np.take_along_axis(lp[:, pos, :], nxt[:, :, None], -1)[..., 0]
        print(f"heldout_check: {Path(path).stem}: mean log p {out[Path(path).stem].mean():.3f} "
              f"(bigram {out['bigram'].mean():.3f}, unigram {out['unigram'].mean():.3f})",
              file=sys.stderr)
    tmp = a.out + ".tmp"
    with h5py.File(tmp, "w") as f:
        for k, v in out.items():
            f.create_dataset(k, data=v)
        f.attrs["bigram_mu"] = mu
        f.attrs["description"] = ("held-out windows ([BOS] + 32 tokens) and log-probabilities of "
                                  "the tokens after `positions`: baselines and each model")
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
