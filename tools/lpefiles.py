"""lpefiles: read and write lpe's HDF5 model and distribution files (docs/methods.md §8) from Python.

Used by the tests (to build models and distributions independently of the C code), and by the
converters and testbed tools. Needs numpy and h5py only.

Model weights are a dict keyed by the dataset names of docs/methods.md §8 ("embed/W_E",
"blocks/0/attn/W_Q", ...), float32 arrays in TransformerLens layout.
"""
from __future__ import annotations

import os
import tempfile

import h5py
import numpy as np

MODEL_FORMAT_VERSION = 1
DIST_FORMAT_VERSION = 1
CONFIG_KEYS = ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "n_ctx")


def model_shapes(cfg: dict) -> dict:
    """Dataset name -> shape for a config (dict with CONFIG_KEYS, attn_only, has_b_U)."""
    D, H, Dh, F, V, C = (cfg[k] for k in ("d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "n_ctx"))
    s = {"embed/W_E": (V, D), "pos_embed/W_pos": (C, D)}
    for layer in range(cfg["n_layers"]):
        p = f"blocks/{layer}/"
        s.update({p + "ln1/w": (D,), p + "ln1/b": (D,),
                  p + "attn/W_Q": (H, D, Dh), p + "attn/W_K": (H, D, Dh), p + "attn/W_V": (H, D, Dh),
                  p + "attn/W_O": (H, Dh, D), p + "attn/b_Q": (H, Dh), p + "attn/b_K": (H, Dh),
                  p + "attn/b_V": (H, Dh), p + "attn/b_O": (D,)})
        if not cfg.get("attn_only", 0):
            s.update({p + "ln2/w": (D,), p + "ln2/b": (D,), p + "mlp/W_in": (D, F),
                      p + "mlp/b_in": (F,), p + "mlp/W_out": (F, D), p + "mlp/b_out": (D,)})
    s.update({"ln_final/w": (D,), "ln_final/b": (D,), "unembed/W_U": (D, V)})
    if cfg.get("has_b_U", 0):
        s["unembed/b_U"] = (V,)
    return s


def random_model(cfg: dict, seed: int = 0, scale: float = 1.0, ln_noise: float = 0.1) -> dict:
    """Random weights with non-trivial biases and LayerNorm parameters (so tests exercise every
    term; lpe's own `model init` zeroes biases as the paper's code does)."""
    rng = np.random.default_rng(seed)
    w = {}
    for name, shape in model_shapes(cfg).items():
        if name.endswith("/w") and ("ln" in name):
            a = 1.0 + ln_noise * rng.standard_normal(shape)
        elif name.split("/")[-1].startswith("b"):
            a = 0.1 * scale * rng.standard_normal(shape)
        else:
            fan_in = shape[-2] if len(shape) >= 2 else shape[0]
            a = scale * rng.standard_normal(shape) / np.sqrt(fan_in)
        w[name] = a.astype(np.float32)
    return w


def _atomic_h5(path: str, force: bool):
    if os.path.exists(path) and not force:
        raise FileExistsError(f"{path}: exists already")
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600: give the file the usual mode
    return tmp


def write_model(path: str, cfg: dict, weights: dict, vocab: list[bytes] | None = None,
                force: bool = True, check: bool = True) -> None:
    """Write a model file. With check, every docs/methods.md §8 tensor must be present with its shape."""
    if check:
        for name, shape in model_shapes(cfg).items():
            if name not in weights:
                raise KeyError(f"missing tensor {name}")
            if tuple(weights[name].shape) != tuple(shape):
                raise ValueError(f"{name}: shape {weights[name].shape}, expected {shape}")
    tmp = _atomic_h5(path, force)
    try:
        with h5py.File(tmp, "w") as f:
            for k in CONFIG_KEYS:
                f.attrs[k] = np.int64(cfg[k])
            f.attrs["act_fn"] = cfg.get("act_fn", "gelu")
            f.attrs["ln_eps"] = np.float64(cfg.get("ln_eps", 1e-5))
            f.attrs["attn_only"] = np.int64(cfg.get("attn_only", 0))
            f.attrs["format_version"] = np.int64(MODEL_FORMAT_VERSION)
            for name, a in weights.items():
                f.create_dataset(name, data=np.asarray(a, dtype=np.float32))
            if vocab is not None:
                offs = np.zeros(len(vocab) + 1, dtype=np.int64)
                offs[1:] = np.cumsum([len(b) for b in vocab])
                f.create_dataset("tokenizer/offsets", data=offs)
                f.create_dataset("tokenizer/bytes", data=np.frombuffer(b"".join(vocab), dtype=np.uint8))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_model(path: str) -> tuple[dict, dict]:
    """(cfg, weights) of a model file."""
    with h5py.File(path, "r") as f:
        cfg = {k: int(f.attrs[k]) for k in CONFIG_KEYS}
        cfg["act_fn"] = f.attrs["act_fn"] if isinstance(f.attrs["act_fn"], str) else f.attrs["act_fn"].decode()
        cfg["ln_eps"] = float(f.attrs["ln_eps"])
        cfg["attn_only"] = int(f.attrs["attn_only"])
        cfg["has_b_U"] = int("unembed/b_U" in f)
        weights = {name: np.asarray(f[name], dtype=np.float32) for name in model_shapes(cfg)}
    return cfg, weights


def write_dist(path: str, name: str, factors: list[tuple[list[int], list[float]]],
               positions: list[int], description: str = "", mode: str = "a") -> None:
    """Append distribution /{name}: factors = [(token ids, weights), ...], positions[j] = the
    factor of position j. Weights are stored as given (lpe normalises on load)."""
    values = np.concatenate([np.asarray(v, dtype=np.int32) for v, _ in factors]) if factors else np.zeros(0, np.int32)
    probs = np.concatenate([np.asarray(p, dtype=np.float64) for _, p in factors]) if factors else np.zeros(0)
    offsets = np.zeros(len(factors) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(v) for v, _ in factors])
    with h5py.File(path, mode) as f:
        g = f.create_group(name)
        g.create_dataset("values", data=values)
        g.create_dataset("probs", data=probs)
        g.create_dataset("offsets", data=offsets)
        g.create_dataset("positions", data=np.asarray(positions, dtype=np.int32))
        g.attrs["description"] = description
        f.attrs["format_version"] = np.int64(DIST_FORMAT_VERSION)


def read_dist(path: str, name: str) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """(factors as (values, normalised probs), positions)."""
    with h5py.File(path, "r") as f:
        g = f[name]
        values, probs, offsets = np.asarray(g["values"]), np.asarray(g["probs"]), np.asarray(g["offsets"])
        positions = np.asarray(g["positions"])
    factors = []
    for i in range(len(offsets) - 1):
        v, p = values[offsets[i]:offsets[i + 1]], probs[offsets[i]:offsets[i + 1]]
        factors.append((v, p / p.sum()))
    return factors, positions
