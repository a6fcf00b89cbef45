"""reference.py: an independent float64 NumPy implementation of the methods.md §2 transformer, for tests.

Written from methods.md §2 directly (not from the C code): the full forward over every position (no
pruning), the logits at the last position, and the gradient of one logit with respect to the
embedding input r0 = W_E[x] + W_pos[:k] by manual backpropagation through the whole graph.
`logit_of_r0` exposes the logit as a function of r0 so tests can check the backward by finite
differences (everything in float64, so central differences are accurate to ~1e-9).

cfg: dict as lpefiles.read_model returns (n_layers, d_model, n_heads, d_head, d_mlp, d_vocab,
n_ctx, act_fn, ln_eps, attn_only); w: dict of methods.md §8 dataset name -> array (any float dtype).
Shapes: k positions, D d_model, H heads, Dh d_head, F d_mlp, V d_vocab.
"""
from __future__ import annotations

import math

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _act(h, name):
    if name == "gelu":
        return 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))
    if name == "gelu_new":
        return 0.5 * h * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h ** 3)))
    if name == "relu":
        return np.maximum(h, 0.0)
    raise ValueError(name)


def _act_grad(h, name):
    if name == "gelu":
        return 0.5 * (1.0 + _erf(h / math.sqrt(2.0))) + h * np.exp(-0.5 * h * h) / math.sqrt(2 * math.pi)
    if name == "gelu_new":
        c = math.sqrt(2.0 / math.pi)
        t = np.tanh(c * (h + 0.044715 * h ** 3))
        return 0.5 * (1.0 + t) + 0.5 * h * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * h * h)
    if name == "relu":
        return (h > 0).astype(np.float64)
    raise ValueError(name)


def _ln(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    rs = 1.0 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    xh = (x - mu) * rs
    return xh * w + b, (xh, rs)


def _ln_back(dy, w, cache):
    xh, rs = cache
    g = dy * w
    return rs * (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True))


def _W(w):
    return {n: np.asarray(a, dtype=np.float64) for n, a in w.items()}


def embed(cfg, w, tokens):
    """r0 [k, D] of one sequence."""
    t = np.asarray(tokens)
    return (np.asarray(w["embed/W_E"], dtype=np.float64)[t]
            + np.asarray(w["pos_embed/W_pos"], dtype=np.float64)[: len(t)])


def _forward_r0(cfg, w, r0, keep=False):
    """Residual stream through every block and every position; returns (logits [V], caches)."""
    H, Dh, eps = cfg["n_heads"], cfg["d_head"], cfg["ln_eps"]
    k = r0.shape[0]
    mask = np.triu(np.ones((k, k), dtype=bool), 1)
    r = r0.copy()
    caches = []
    for layer in range(cfg["n_layers"]):
        p = f"blocks/{layer}/"
        a, ln1 = _ln(r, w[p + "ln1/w"], w[p + "ln1/b"], eps)
        q = np.einsum("id,hde->hie", a, w[p + "attn/W_Q"]) + w[p + "attn/b_Q"][:, None, :]
        kk = np.einsum("id,hde->hie", a, w[p + "attn/W_K"]) + w[p + "attn/b_K"][:, None, :]
        v = np.einsum("id,hde->hie", a, w[p + "attn/W_V"]) + w[p + "attn/b_V"][:, None, :]
        s = q @ kk.transpose(0, 2, 1) / math.sqrt(Dh)  # [H, k, k]
        s = np.where(mask, -np.inf, s)
        s = s - s.max(-1, keepdims=True)
        pr = np.exp(s)
        pr /= pr.sum(-1, keepdims=True)
        z = pr @ v  # [H, k, Dh]
        r = r + np.einsum("hie,hed->id", z, w[p + "attn/W_O"]) + w[p + "attn/b_O"]
        c = dict(ln1=ln1, q=q, k=kk, v=v, p=pr)
        if not cfg.get("attn_only", 0):
            a2, ln2 = _ln(r, w[p + "ln2/w"], w[p + "ln2/b"], eps)
            h = a2 @ w[p + "mlp/W_in"] + w[p + "mlp/b_in"]
            r = r + _act(h, cfg["act_fn"]) @ w[p + "mlp/W_out"] + w[p + "mlp/b_out"]
            c.update(ln2=ln2, h=h)
        caches.append(c)
    af, lnf = _ln(r[-1], w["ln_final/w"], w["ln_final/b"], eps)
    logits = af @ w["unembed/W_U"]
    if "unembed/b_U" in w:
        logits = logits + w["unembed/b_U"]
    return logits, dict(blocks=caches, lnf=lnf, act=af, k=k)


def forward(cfg, w, tokens):
    """(logits [V] at the last position, final-LN activation [D]) in float64."""
    w = _W(w)
    logits, c = _forward_r0(cfg, w, embed(cfg, w, tokens))
    return logits, c["act"]


def logit_of_r0(cfg, w, r0, target):
    """The target logit as a function of the embedding input r0 [k, D] (w already float64)."""
    return _forward_r0(cfg, w, r0)[0][target]


def grad_r0(cfg, w, tokens, target):
    """(logits [V], d l_target / d r0 [k, D]) by manual backpropagation, float64."""
    w = _W(w)
    H, Dh = cfg["n_heads"], cfg["d_head"]
    logits, c = _forward_r0(cfg, w, embed(cfg, w, tokens))
    k = c["k"]
    dr = np.zeros((k, cfg["d_model"]))
    dr[-1] = _ln_back(w["unembed/W_U"][:, target], w["ln_final/w"], c["lnf"])
    for layer in reversed(range(cfg["n_layers"])):
        p, b = f"blocks/{layer}/", c["blocks"][layer]
        if not cfg.get("attn_only", 0):
            dh = (dr @ w[p + "mlp/W_out"].T) * _act_grad(b["h"], cfg["act_fn"])
            dr = dr + _ln_back(dh @ w[p + "mlp/W_in"].T, w[p + "ln2/w"], b["ln2"])
        dz = np.einsum("id,hed->hie", dr, w[p + "attn/W_O"])  # [H, k, Dh]
        pr, q, kk, v = b["p"], b["q"], b["k"], b["v"]
        dv = pr.transpose(0, 2, 1) @ dz
        dp = dz @ v.transpose(0, 2, 1)
        ds = pr * (dp - (pr * dp).sum(-1, keepdims=True)) / math.sqrt(Dh)
        dq = ds @ kk
        dk = ds.transpose(0, 2, 1) @ q
        da = (np.einsum("hie,hde->id", dq, w[p + "attn/W_Q"]) + np.einsum("hie,hde->id", dk, w[p + "attn/W_K"])
              + np.einsum("hie,hde->id", dv, w[p + "attn/W_V"]))
        dr = dr + _ln_back(da, w[p + "ln1/w"], b["ln1"])
    return logits, dr


def model_content_sha256(path):
    """The model identity lpe records (model_sha256), written from its definition in issue 13 /
    model.c's comment, not from the C code: sha256 over the tag "lpe-model-content-v1\\0", the
    config as little-endian int64 (n_layers, d_model, n_heads, d_head, d_mlp, d_vocab, n_ctx,
    attn_only, has_b_U), ln_eps's float64 bits, the activation name + NUL, then every tensor in
    the order of methods.md §8: name + NUL, rank and dims (int64 LE), float32 values (LE)."""
    import hashlib
    import struct

    import h5py
    h = hashlib.sha256()
    with h5py.File(path, "r") as f:
        a = f.attrs
        has_b_U = "unembed/b_U" in f
        attn_only = int(a["attn_only"])
        h.update(b"lpe-model-content-v1\0")
        for key in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "n_ctx"):
            h.update(struct.pack("<q", int(a[key])))
        h.update(struct.pack("<q", attn_only) + struct.pack("<q", int(has_b_U)))
        h.update(struct.pack("<d", float(a["ln_eps"])))
        act = a["act_fn"]
        h.update((act.decode() if isinstance(act, bytes) else str(act)).encode() + b"\0")
        names = ["embed/W_E", "pos_embed/W_pos"]
        for layer in range(int(a["n_layers"])):
            sub = ["ln1/w", "ln1/b", "attn/W_Q", "attn/W_K", "attn/W_V", "attn/W_O", "attn/b_Q",
                   "attn/b_K", "attn/b_V", "attn/b_O"]
            if not attn_only:
                sub += ["ln2/w", "ln2/b", "mlp/W_in", "mlp/b_in", "mlp/W_out", "mlp/b_out"]
            names += [f"blocks/{layer}/{s}" for s in sub]
        names += ["ln_final/w", "ln_final/b", "unembed/W_U"] + (["unembed/b_U"] if has_b_U else [])
        for n in names:
            x = np.asarray(f[n][()], dtype="<f4")
            h.update(n.encode() + b"\0" + struct.pack("<q", x.ndim))
            for d in x.shape:
                h.update(struct.pack("<q", d))
            h.update(x.tobytes())
    return h.hexdigest()
