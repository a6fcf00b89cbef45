#!/usr/bin/env python3
"""train.py: one testbed language model, trained with PyTorch on the CPU, exported as a docs/methods.md §8
model file with its vocabulary bytes, checked against `lpe forward`, scored on held-out text
beside unigram and bigram baselines.

Architecture: docs/methods.md §2 exactly (pre-LN GPT in TransformerLens layout: W_Q [H, D, Dh], W_O
[H, Dh, D], ..., exact-erf GELU, LayerNorm eps 1e-5, no unembedding bias, as the paper's
gelu-*l models). Initialisation: the paper's scales (normal, std = 1/sqrt(fan) with W_O and
W_out scaled by the depth too, W_pos 1/sqrt(4 D)), biases 0.

Data: the corpus items (corpus.py) tokenised, each followed by EOS, concatenated (train and
held-out splits separately). A training row is [BOS] + a random window of ctx - 1 tokens of the
train stream, whose targets are the window shifted by one (BOS predicts its first token), so the
model always sees BOS first, as every docs/methods.md §7 input does. AdamW, linear warm-up then cosine
decay to a tenth, a fixed number of steps (reproducible: the schedule does not depend on speed).

Held-out loss: non-overlapping windows of each sub-corpus' held-out stream built the same way,
mean nats per predicted token, overall and per sub-corpus. Baselines on exactly the same predictions: unigram (add-one) and bigram with
Dirichlet smoothing toward the unigram, mu picked on the held-out text itself (flattering the
baseline, not the model).

Usage: train.py --corpus DIR --tokenizer TOK.json --layers L --steps N --out MODEL.h5
                [--report LOSSES.json] [--lpe bin/lpe] [--threads 2] ...
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import corpus as corpus_mod  # noqa: E402
import lpefiles  # noqa: E402
import tokenizer as tok_mod  # noqa: E402

# ---- data ----------------------------------------------------------------------------------


def token_stream(corpus_dir: Path, tok, split: str, cache_dir: Path) -> np.ndarray:
    """All items of a split, tokenised, each followed by EOS: int32 [n] (cached as .npy)."""
    cache = cache_dir / f"stream_{split}.npy"
    stamp = cache_dir / f"stream_{split}.key"
    key = json.dumps([(corpus_dir / "manifest.json").read_text(),
                      hashlib.sha256(tok.to_str().encode()).hexdigest()])
    if cache.exists() and stamp.exists() and stamp.read_text() == key:
        return np.load(cache)
    parts = []
    for name in ("code", "english", "spanish"):
        its = [it["text"] for it in corpus_mod.read(corpus_dir / f"{name}.jsonl", split)]
        for enc in tok.encode_batch(its, add_special_tokens=False):
            parts.append(np.asarray(enc.ids + [tok_mod.EOS], dtype=np.int32))
    s = np.concatenate(parts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache, s)
    stamp.write_text(key)
    return s


def heldout_windows(stream: np.ndarray, ctx: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs [n, ctx], targets [n, ctx]): [BOS] + w[:-1] -> w for consecutive windows w."""
    n = len(stream) // ctx
    w = stream[: n * ctx].reshape(n, ctx)
    x = np.concatenate([np.full((n, 1), tok_mod.BOS, np.int32), w[:, :-1]], axis=1)
    return x, w


def heldout_by_corpus(corpus_dir: Path, tok, ctx: int) -> dict:
    """{corpus: (inputs, targets)}: the held-out items of each sub-corpus, each followed by
    EOS, concatenated and cut into windows."""
    out = {}
    for name in ("code", "english", "spanish"):
        its = [it["text"] for it in corpus_mod.read(corpus_dir / f"{name}.jsonl", "heldout")]
        ids = [np.asarray(e.ids + [tok_mod.EOS], np.int32)
               for e in tok.encode_batch(its, add_special_tokens=False)]
        out[name] = heldout_windows(np.concatenate(ids), ctx)
    return out


# ---- model ---------------------------------------------------------------------------------


class GPT(torch.nn.Module):
    """docs/methods.md §2, parameters named and shaped as the docs/methods.md §8 datasets (with '/' -> '.')."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        L, D, H, Dh, Fm, V, C = (cfg[k] for k in ("n_layers", "d_model", "n_heads", "d_head",
                                                   "d_mlp", "d_vocab", "n_ctx"))
        shapes = lpefiles.model_shapes(dict(cfg, has_b_U=0))
        self.names = list(shapes)
        self.p = torch.nn.ParameterDict(
            {n.replace("/", "__"): torch.nn.Parameter(torch.zeros(s)) for n, s in shapes.items()})
        self.eps = cfg["ln_eps"]

    def w(self, name: str) -> torch.Tensor:
        return self.p[name.replace("/", "__")]

    def init(self, seed: int) -> None:
        """The paper's init scales; LayerNorm weights 1; biases 0."""
        c = self.cfg
        g = torch.Generator().manual_seed(seed)
        inv_var = {"W_E": c["d_model"], "W_pos": 4 * c["d_model"], "W_Q": c["d_model"],
                   "W_K": c["d_model"], "W_V": c["d_model"],
                   "W_O": c["n_heads"] * c["d_head"] * c["n_layers"], "W_in": c["d_model"],
                   "W_out": c["d_mlp"] * c["n_layers"], "W_U": c["d_model"]}
        with torch.no_grad():
            for name in self.names:
                last = name.split("/")[-1]
                t = self.w(name)
                if last in inv_var:
                    t.copy_(torch.randn(t.shape, generator=g) * inv_var[last] ** -0.5)
                elif last == "w":
                    t.fill_(1.0)
                else:
                    t.zero_()

    def ln(self, x, prefix):
        x = x - x.mean(-1, keepdim=True)
        x = x / torch.sqrt((x * x).mean(-1, keepdim=True) + self.eps)
        return x * self.w(prefix + "/w") + self.w(prefix + "/b")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] -> logits [B, T, V]."""
        B, T = tokens.shape
        r = self.w("embed/W_E")[tokens] + self.w("pos_embed/W_pos")[:T]  # [B, T, D]
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        for i in range(self.cfg["n_layers"]):
            p = f"blocks/{i}/"
            a = self.ln(r, p + "ln1")
            q = torch.einsum("btd,hde->bhte", a, self.w(p + "attn/W_Q")) + self.w(p + "attn/b_Q")[:, None]
            k = torch.einsum("btd,hde->bhte", a, self.w(p + "attn/W_K")) + self.w(p + "attn/b_K")[:, None]
            v = torch.einsum("btd,hde->bhte", a, self.w(p + "attn/W_V")) + self.w(p + "attn/b_V")[:, None]
            s = torch.einsum("bhqe,bhke->bhqk", q, k) / math.sqrt(self.cfg["d_head"])
            s = s.masked_fill(~mask, float("-inf"))
            z = torch.einsum("bhqk,bhke->bhqe", s.softmax(-1), v)  # [B, H, T, Dh]
            r = r + torch.einsum("bhte,hed->btd", z, self.w(p + "attn/W_O")) + self.w(p + "attn/b_O")
            m = self.ln(r, p + "ln2")
            h = F.gelu(m @ self.w(p + "mlp/W_in") + self.w(p + "mlp/b_in"))  # exact erf form
            r = r + h @ self.w(p + "mlp/W_out") + self.w(p + "mlp/b_out")
        return self.ln(r, "ln_final") @ self.w("unembed/W_U")

    def weights(self) -> dict:
        return {n: self.w(n).detach().cpu().numpy().astype(np.float32) for n in self.names}


def load_model(path: str) -> GPT:
    cfg, weights = lpefiles.read_model(path)
    m = GPT(cfg)
    with torch.no_grad():
        for n, a in weights.items():
            m.w(n).copy_(torch.from_numpy(a))
    return m


# ---- losses --------------------------------------------------------------------------------


def baseline_logprobs(train: np.ndarray, x: np.ndarray, y: np.ndarray, V: int,
                      mus=(0.3, 1, 3, 10, 30, 100, 300, 1000)) -> tuple[np.ndarray, dict]:
    """Unigram (add-one) and bigram log-probabilities of the predictions y given the previous
    tokens x: (unigram [n], {mu: bigram [n]}), the bigram with Dirichlet smoothing toward the
    unigram for each mu."""
    uni = (np.bincount(train, minlength=V) + 1.0) / (len(train) + V)
    prev, nxt = x.reshape(-1).astype(np.int64), y.reshape(-1).astype(np.int64)
    codes = train[:-1].astype(np.int64) * V + train[1:]
    pairs, pair_counts = np.unique(codes, return_counts=True)
    ctx_counts = np.bincount(train[:-1], minlength=V).astype(np.float64)
    q = prev * V + nxt
    idx = np.minimum(np.searchsorted(pairs, q), len(pairs) - 1)
    c_ab = np.where(pairs[idx] == q, pair_counts[idx], 0).astype(np.float64)
    c_a = ctx_counts[prev]
    return np.log(uni[nxt]), {mu: np.log((c_ab + mu * uni[nxt]) / (c_a + mu)) for mu in mus}


@torch.no_grad()
def model_logprobs(m: GPT, x: np.ndarray, y: np.ndarray, batch: int = 64) -> np.ndarray:
    out = []
    for i in range(0, len(x), batch):
        xb, yb = torch.from_numpy(x[i:i + batch]).long(), torch.from_numpy(y[i:i + batch]).long()
        lp = torch.log_softmax(m(xb), -1)
        out.append(torch.gather(lp, -1, yb[..., None])[..., 0].reshape(-1).numpy())
    return np.concatenate(out)


def evaluate(m: GPT, train: np.ndarray, held: dict, V: int) -> dict:
    """Held-out losses (nats per token) of the model and the baselines, over all held-out
    windows and per sub-corpus; the bigram's mu is the best on all held-out windows."""
    lp_m, lp_u, lp_b = {}, {}, {}
    for name, (x, y) in held.items():
        lp_m[name] = model_logprobs(m, x, y)
        lp_u[name], lp_b[name] = baseline_logprobs(train, x, y, V)
    cat = lambda d: np.concatenate(list(d.values()))  # noqa: E731
    mus = list(next(iter(lp_b.values())))
    mu = min(mus, key=lambda u: -np.mean(np.concatenate([lp_b[n][u] for n in held])))
    res = {"heldout_loss": float(-cat(lp_m).mean()), "unigram_loss": float(-cat(lp_u).mean()),
           "bigram_loss": float(-np.mean(np.concatenate([lp_b[n][mu] for n in held]))),
           "bigram_mu": mu, "heldout_tokens": int(sum(v[1].size for v in held.values())),
           "per_corpus": {}}
    for n in held:
        res["per_corpus"][n] = {"tokens": int(held[n][1].size),
                                "model": float(-lp_m[n].mean()), "unigram": float(-lp_u[n].mean()),
                                "bigram": float(-lp_b[n][mu].mean())}
    return res


# ---- lpe check -----------------------------------------------------------------------------


def check_with_lpe(m: GPT, path: str, lpe: str, rows: list) -> float:
    """Largest |logit difference| / (1 + max |logit|) between `lpe forward` and a float64
    PyTorch forward of the same weights over the given token rows; raises above 1e-4 (float32
    sums over d_model <= 512 terms through a few layers stay orders of magnitude below)."""
    m64 = GPT(m.cfg).double()
    with torch.no_grad():
        for n in m.names:
            m64.w(n).copy_(m.w(n).double())
    worst = 0.0
    for row in rows:
        r = subprocess.run([lpe, "forward", "--model", path, "--tokens", ",".join(map(str, row)),
                            "--logits", "--top", "1"], capture_output=True, text=True,
                           env=dict(os.environ, OMP_NUM_THREADS="1"), check=True)
        got = np.asarray(json.loads(r.stdout)["logits"], dtype=np.float64)
        with torch.no_grad():
            want = m64(torch.tensor([row]))[0, -1].numpy()
        err = float(np.max(np.abs(got - want)) / (1 + np.max(np.abs(want))))
        worst = max(worst, err)
        if err > 1e-4:
            raise RuntimeError(f"lpe forward disagrees with PyTorch on {path}: rel err {err:.3g}")
    return worst


# ---- training ------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ctx", type=int, default=64)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--d-head", type=int, default=32)
    ap.add_argument("--d-mlp", type=int, default=512)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval", action="store_true",
                    help="no training: evaluate --out (an existing model file), update --report")
    ap.add_argument("--cache", default=str(ROOT / "build" / "testbed"))
    ap.add_argument("--report", help="JSON file of losses (updated, one entry per model)")
    ap.add_argument("--lpe", default=str(ROOT / "bin" / "lpe"))
    ap.add_argument("--bench", type=int, default=0, help="only time this many steps")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    tok = tok_mod.load(a.tokenizer)
    V = tok.get_vocab_size(with_added_tokens=True)
    corpus_dir = Path(a.corpus)
    train = token_stream(corpus_dir, tok, "train", Path(a.cache))
    held = heldout_by_corpus(corpus_dir, tok, a.ctx)
    if a.eval:
        m = load_model(a.out)
        res = evaluate(m, train, held, V)
        print(json.dumps(res, indent=1), file=sys.stderr)
        if a.report:
            rep = json.loads(Path(a.report).read_text())
            rep[Path(a.out).stem].update(res)
            Path(a.report).write_text(json.dumps(rep, indent=1) + "\n")
        return
    cfg = {"n_layers": a.layers, "d_model": a.d_model, "n_heads": a.heads, "d_head": a.d_head,
           "d_mlp": a.d_mlp, "d_vocab": V, "n_ctx": a.ctx, "act_fn": "gelu", "ln_eps": 1e-5,
           "attn_only": 0}
    m = GPT(cfg)
    m.init(a.seed)
    decay = [p for n, p in m.p.items() if n.split("__")[-1].startswith("W_")]
    rest = [p for n, p in m.p.items() if not n.split("__")[-1].startswith("W_")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                             {"params": rest, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.99))
    steps = a.bench or a.steps
    rng = np.random.default_rng(a.seed)
    t0 = time.time()
    log_every = max(1, steps // 30)
    for step in range(steps):
        frac = step / max(1, steps - 1)
        lr = a.lr * (min(1.0, (step + 1) / a.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = rng.integers(0, len(train) - a.ctx, a.batch)
        w = np.stack([train[s:s + a.ctx] for s in starts])
        x = np.concatenate([np.full((a.batch, 1), tok_mod.BOS, np.int32), w[:, :-1]], axis=1)
        xb, yb = torch.from_numpy(x).long(), torch.from_numpy(w).long()
        lg = m(xb)
        loss = F.cross_entropy(lg.reshape(-1, V), yb.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        if step % log_every == 0 or step == steps - 1:
            el = time.time() - t0
            print(f"train {a.layers}l: step {step + 1}/{steps} loss {loss.item():.3f} lr {lr:.2e} "
                  f"{(step + 1) * a.batch * a.ctx / el:.0f} tok/s {el:.0f}s", file=sys.stderr, flush=True)
    el = time.time() - t0
    if a.bench:
        print(f"bench {a.layers}l: {a.bench * a.batch * a.ctx / el:.0f} tokens/s, "
              f"{el / a.bench:.3f} s/step", file=sys.stderr)
        return

    ev = evaluate(m, train, held, V)
    lpefiles.write_model(a.out, cfg, m.weights(), vocab=tok_mod.token_bytes(tok))
    hx, hy = held["english"]
    rows = [list(hx[0][:17]), list(hx[1]), [tok_mod.BOS] + list(held["code"][1][2][:8])]
    err = check_with_lpe(m, a.out, a.lpe, [[int(t) for t in r] for r in rows])
    res = {"layers": a.layers, "config": cfg, "steps": a.steps, "batch": a.batch, "lr": a.lr,
           "seed": a.seed, "train_tokens_seen": a.steps * a.batch * a.ctx,
           "train_stream_tokens": int(len(train)),
           "seconds": round(el, 1), "threads": a.threads, "torch": torch.__version__,
           **ev, "lpe_forward_max_rel_err": err}
    print(json.dumps(res, indent=1), file=sys.stderr)
    if a.report:
        rep = json.loads(Path(a.report).read_text()) if Path(a.report).exists() else {}
        rep[Path(a.out).stem] = res
        Path(a.report).write_text(json.dumps(rep, indent=1) + "\n")


if __name__ == "__main__":
    main()
