#!/usr/bin/env python3
"""convert_checkpoint.py: public transformer checkpoints -> lpe model files (docs/methods.md §8).

usage:
  tools/convert_checkpoint.py tl   --checkpoint model_final.pth [--config config.json]
                                   [--tokenizer tokenizer.json|DIR] --out MODEL.h5 [--force]
  tools/convert_checkpoint.py gpt2 --checkpoint DIR [--tokenizer tokenizer.json|DIR]
                                   --out MODEL.h5 [--force]

tl    a TransformerLens state dict saved with torch.save, such as the paper's models
      NeelNanda/GELU_{1,2,4}L512W_C4_Code (file model_final.pth, with config.json beside it;
      tokenizer NeelNanda/gpt-neox-tokenizer-digits). Keys embed.W_E, pos_embed.W_pos,
      blocks.{i}.ln1.w ... unembed.W_U become the datasets embed/W_E, ... unchanged (docs/methods.md §8 is
      the TransformerLens layout); the attention buffers blocks.{i}.attn.mask / IGNORE are
      skipped; unembed.b_U is kept when present and not all zero (the paper's models have none).
      Without --config the shape is read off the tensors and act_fn / ln_eps come from
      --act-fn / --ln-eps (TransformerLens defaults: gelu, 1e-5).
gpt2  a Hugging Face GPT-2 checkpoint directory (config.json and model.safetensors, sharded
      model.safetensors.index.json or pytorch_model.bin), as save_pretrained writes it. c_attn
      [D, 3D] is split into W_Q, W_K, W_V [H, D, Dh]; c_proj rows into W_O [H, Dh, D]; the
      unembedding is lm_head.weight^T, or the tied wte^T; no unembedding bias.

The tokenizer (a tokenizers JSON file, or a directory holding tokenizer.json or vocab.json)
gives each token's bytes (tokenizer/bytes, tokenizer/offsets). Byte-level BPE vocabularies
(GPT-2, GPT-NeoX) are mapped back to raw bytes exactly, so a token that is half of a UTF-8
character keeps its byte; special tokens are their text. Tokens past the tokenizer's size get
empty bytes (a warning says how many).

Every tensor is checked (present, shape, floating dtype, finite values) and anything else in
the file refused; a truncated file is diagnosed down to the first tensor it cuts. Errors name
the file and the tensor and exit 2; nothing is written then (the output appears atomically).
Needs numpy, h5py; torch for .pth/.bin files; tokenizers for tokenizer.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import re
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lpefiles  # noqa: E402

ACTS = ("gelu", "gelu_new", "relu")


class InputError(Exception):
    """Bad input: reported as 'convert_checkpoint: MESSAGE' with exit code 2."""


# ---- reading torch files (state dicts) --------------------------------------------------------

def _torch_load(path: str) -> dict:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - setup problem, not input
        raise SystemExit(f"convert_checkpoint: reading {path} needs torch ({e}); "
                         "run tools/setup.sh --tools") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds; diagnose the file instead
        why = diagnose_torch_zip(path)
        raise InputError(f"{path}: cannot read as a torch checkpoint: {why or e}") from e
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a state dict (a dict of tensors), found {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise InputError(f"{path}: state dict key {k!r} is not a string")
        if not isinstance(v, torch.Tensor):
            raise InputError(f"{path}: entry {k} is a {type(v).__name__}, expected a tensor")
        out[k] = v.detach().cpu()
    return out


def _to_numpy(name: str, t, where: str) -> np.ndarray:
    """Float tensor (torch or numpy) -> float32 numpy array, refusing integers and non-finite."""
    if hasattr(t, "dtype") and hasattr(t, "numpy") and not isinstance(t, np.ndarray):
        import torch
        if not t.is_floating_point():
            raise InputError(f"{where}: tensor {name} has dtype {t.dtype}, expected a floating type")
        a = t.to(torch.float32).numpy()
    else:
        a = np.asarray(t)
        if a.dtype.kind != "f":
            raise InputError(f"{where}: tensor {name} has dtype {a.dtype}, expected a floating type")
        a = a.astype(np.float32)
    bad = ~np.isfinite(a)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad)), a.shape) if a.ndim else ()
        raise InputError(f"{where}: tensor {name} has a non-finite value ({a[idx]}) at index {tuple(map(int, idx))}")
    return a


# A torch zip checkpoint is data.pkl (the dict, tensors as references to storages) then one
# uncompressed entry per storage (.../data/KEY). When torch cannot open the file (the central
# directory at its end is gone when it is cut), walk the local entries from the front and say
# which tensor's bytes are missing.
_ELSIZE = {"FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2,
           "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
           "ByteStorage": 1, "BoolStorage": 1}


class _Ref:
    def __init__(self, name):
        self.name = name


class _TensorRec:
    def __init__(self, storage, offset, size):
        self.storage, self.offset, self.size = storage, offset, tuple(size)


def _rebuild(storage, offset, size, *rest):
    return _TensorRec(storage, offset, size)


class _Skeleton(pickle.Unpickler):
    """Reads data.pkl without torch: tensors become (storage key, element size, numel)."""

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            import collections
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_parameter"):
            if name == "_rebuild_parameter":
                return lambda data, *a: data
            return _rebuild
        if module == "torch":
            return _Ref(name)
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel)
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        st = pid[1]
        tname = st.name if isinstance(st, _Ref) else str(st)
        return (str(pid[2]), _ELSIZE.get(tname, 4), int(pid[4]))


def diagnose_torch_zip(path: str) -> str | None:
    """A sentence naming the first tensor a cut or damaged torch zip file lacks, or None."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return str(e)
    if not data.startswith(b"PK\x03\x04"):
        return None
    entries = {}  # entry name -> (data offset, local header offset)
    for m in re.finditer(rb"PK\x03\x04", data):
        o = m.start()
        if o + 30 > len(data):
            break
        n, e = struct.unpack_from("<HH", data, o + 26)
        name = data[o + 30:o + 30 + n].decode("utf-8", "replace")
        if name.endswith("data.pkl") or re.search(r"/data/\d+$", name):
            entries[name] = o + 30 + n + e
    pkl = [k for k in entries if k.endswith("data.pkl")]
    if not pkl:
        return "no data.pkl entry: not a torch checkpoint"
    prefix = pkl[0][: -len("data.pkl")]
    import io
    try:
        obj = _Skeleton(io.BytesIO(data[entries[pkl[0]]:])).load()
    except Exception as e:  # noqa: BLE001
        return f"its index (data.pkl) is damaged: {e}"
    if not isinstance(obj, dict):
        return None
    intact = 0
    for key, rec in obj.items():
        if not isinstance(rec, _TensorRec):
            continue
        skey, elsize, numel = rec.storage
        start = entries.get(f"{prefix}data/{skey}")
        need = numel * elsize
        if start is None or start + need > len(data):
            have = 0 if start is None else max(0, len(data) - start)
            return (f"the file is cut short ({len(data)} bytes): tensor {key} {list(rec.size)} "
                    f"(storage {skey}) has {have} of its {need} bytes; {intact} tensors before it "
                    "are complete")
        intact += 1
    return (f"all {intact} tensors are complete, but the archive's end (its directory) is cut or "
            "damaged: download the file again")


# ---- reading safetensors ------------------------------------------------------------------------

_ST_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "BF16": "bf16",
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
              "BOOL": np.bool_}


def read_safetensors(path: str) -> dict:
    """{name: numpy array} of a .safetensors file (8-byte header length, JSON header, data)."""
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise InputError(f"{path}: too short for a safetensors file ({len(data)} bytes)")
    (hlen,) = struct.unpack_from("<Q", data, 0)
    if 8 + hlen > len(data):
        raise InputError(f"{path}: header of {hlen} bytes runs past the end of the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8:8 + hlen])
    except ValueError as e:
        raise InputError(f"{path}: header is not JSON ({e})") from e
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dt, shape, (a, b) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{path}: tensor {name}: malformed header entry {info!r}") from e
        if dt not in _ST_DTYPES:
            raise InputError(f"{path}: tensor {name} has dtype {dt}, not supported")
        if base + b > len(data):
            raise InputError(f"{path}: the file is cut short ({len(data)} bytes): tensor {name} "
                             f"{shape} needs bytes {base + a}..{base + b}")
        raw = data[base + a:base + b]
        if dt == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(_ST_DTYPES[dt]).newbyteorder("<"))
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise InputError(f"{path}: tensor {name}: {len(raw)} bytes do not hold shape {shape} of {dt}")
        out[name] = arr.reshape(shape)
    return out


# ---- tokenizer bytes ----------------------------------------------------------------------------

def _byte_level_decoder() -> dict:
    """The byte-level BPE alphabet (GPT-2): printable Latin-1 bytes stand for themselves, the
    other 68 bytes for the code points 256, 257, ... in byte order. Returns char -> byte."""
    keep = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def _uses_byte_level(cfg: dict) -> bool:
    def has(node):
        if isinstance(node, dict):
            if node.get("type") == "ByteLevel":
                return True
            return any(has(v) for v in node.values())
        if isinstance(node, list):
            return any(has(v) for v in node)
        return False
    return has(cfg.get("decoder")) or has(cfg.get("pre_tokenizer"))


def token_bytes(tokenizer: str, d_vocab: int) -> tuple[list, dict]:
    """(bytes of tokens 0..d_vocab-1, info) from a tokenizer file or directory."""
    p = Path(tokenizer)
    if p.is_dir():
        for name in ("tokenizer.json", "vocab.json"):
            if (p / name).exists():
                p = p / name
                break
        else:
            raise InputError(f"{tokenizer}: no tokenizer.json or vocab.json in this directory")
    if not p.exists():
        raise InputError(f"{p}: tokenizer file not found")
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as e:
        raise InputError(f"{p}: not a JSON file ({e})") from e
    if p.name == "vocab.json" or "model" not in cfg:
        vocab, added, byte_level = cfg, {}, True  # GPT-2 style token -> id map
        if not all(isinstance(v, int) for v in vocab.values()):
            raise InputError(f"{p}: expected a map from token strings to ids")
    else:
        model = cfg["model"]
        vocab = model.get("vocab")
        if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
            vocab = {piece: i for i, (piece, _) in enumerate(vocab)}
        if not isinstance(vocab, dict):
            raise InputError(f"{p}: model.vocab missing or not understood")
        added = {int(t["id"]): t["content"] for t in cfg.get("added_tokens", [])}
        byte_level = _uses_byte_level(cfg)
    by_id = {}
    for s, i in vocab.items():
        by_id[int(i)] = s
    n_tok = max([*by_id, *added, -1]) + 1
    if n_tok > d_vocab:
        raise InputError(f"{p}: the tokenizer has {n_tok} tokens, more than the model's d_vocab = {d_vocab}")
    dec = _byte_level_decoder()
    out, unmapped = [], 0
    for i in range(d_vocab):
        if i in added:
            out.append(added[i].encode("utf-8"))
        elif i in by_id:
            s = by_id[i]
            if byte_level and all(c in dec for c in s):
                out.append(bytes(dec[c] for c in s))
            else:
                if byte_level:
                    unmapped += 1
                out.append(s.replace("\u2581", " ").encode("utf-8"))  # SentencePiece space mark
        else:
            out.append(b"")
    info = {"tokenizer_file": str(p), "tokenizer_tokens": n_tok, "byte_level": int(byte_level),
            "tokens_without_bytes": d_vocab - len(set(by_id) | set(added))}
    if unmapped:
        print(f"convert_checkpoint: warning: {unmapped} tokens of {p} are outside the byte-level "
              "alphabet; stored as UTF-8 of their text", file=sys.stderr)
    if info["tokens_without_bytes"]:
        print(f"convert_checkpoint: warning: {info['tokens_without_bytes']} of the {d_vocab} "
              f"tokens are not in {p}; they get empty bytes", file=sys.stderr)
    return out, info


# ---- shape checks ---------------------------------------------------------------------------

def _check(weights: dict, cfg: dict, where: str, src_name=lambda n: n) -> None:
    """Every docs/methods.md §8 tensor present with its shape; src_name(lpe name) = the name in the source."""
    legend = {"embed/W_E": "[d_vocab, d_model]", "pos_embed/W_pos": "[n_ctx, d_model]",
              "W_Q": "[n_heads, d_model, d_head]", "W_K": "[n_heads, d_model, d_head]",
              "W_V": "[n_heads, d_model, d_head]", "W_O": "[n_heads, d_head, d_model]",
              "b_Q": "[n_heads, d_head]", "b_K": "[n_heads, d_head]", "b_V": "[n_heads, d_head]",
              "W_in": "[d_model, d_mlp]", "b_in": "[d_mlp]", "W_out": "[d_mlp, d_model]",
              "unembed/W_U": "[d_model, d_vocab]", "unembed/b_U": "[d_vocab]"}
    for name, shape in lpefiles.model_shapes(cfg).items():
        src = src_name(name)
        if name not in weights:
            raise InputError(f"{where}: tensor {src} is missing")
        got = tuple(weights[name].shape)
        if got != tuple(shape):
            leg = legend.get(name, legend.get(name.split("/")[-1], "[d_model]"))
            raise InputError(f"{where}: tensor {src} has shape {list(got)}, expected {list(shape)} {leg}")


def _cfg_summary(cfg: dict) -> str:
    return ", ".join(f"{k} {cfg[k]}" for k in (*lpefiles.CONFIG_KEYS, "act_fn", "attn_only"))


# ---- TransformerLens ------------------------------------------------------------------------

TL_BUFFERS = ("attn.mask", "attn.IGNORE")


def convert_tl(checkpoint: str, config: str | None, act_fn: str, ln_eps: float) -> tuple[dict, dict]:
    sd = _torch_load(checkpoint)
    where = checkpoint
    for k in ("embed.W_E", "pos_embed.W_pos", "unembed.W_U"):
        if k not in sd:
            raise InputError(f"{where}: tensor {k} is missing (is this a TransformerLens state dict?)")
    layers = sorted({int(m.group(1)) for k in sd for m in [re.match(r"blocks\.(\d+)\.", k)] if m})
    if layers != list(range(len(layers))) or not layers:
        raise InputError(f"{where}: blocks numbered {layers}, expected 0 .. n_layers-1")
    if "blocks.0.attn.W_Q" not in sd:
        raise InputError(f"{where}: tensor blocks.0.attn.W_Q is missing")
    WE, WQ = sd["embed.W_E"], sd["blocks.0.attn.W_Q"]
    if WE.dim() != 2 or WQ.dim() != 3 or sd["pos_embed.W_pos"].dim() != 2:
        raise InputError(f"{where}: tensor embed.W_E {list(WE.shape)}, pos_embed.W_pos "
                         f"{list(sd['pos_embed.W_pos'].shape)} or blocks.0.attn.W_Q {list(WQ.shape)} "
                         "has the wrong rank")
    attn_only = int("blocks.0.mlp.W_in" not in sd)
    cfg = {"n_layers": len(layers), "d_model": int(WE.shape[1]), "n_heads": int(WQ.shape[0]),
           "d_head": int(WQ.shape[2]), "d_vocab": int(WE.shape[0]),
           "n_ctx": int(sd["pos_embed.W_pos"].shape[0]), "attn_only": attn_only,
           "d_mlp": 1 if attn_only else int(sd["blocks.0.mlp.W_in"].shape[-1]),
           "act_fn": act_fn, "ln_eps": ln_eps}
    if config:
        cfg = _apply_tl_config(cfg, config)
    w = {}
    for k, v in sd.items():
        if any(k.endswith(b) for b in TL_BUFFERS):
            continue
        name = k.replace(".", "/")
        if name not in lpefiles.model_shapes(dict(cfg, has_b_U=1)):
            raise InputError(f"{where}: unexpected tensor {k} (not part of the docs/methods.md §8 model: "
                             f"{_cfg_summary(cfg)})")
        w[name] = _to_numpy(k, v, where)
    if "unembed/b_U" in w and not np.any(w["unembed/b_U"]):
        del w["unembed/b_U"]  # an all-zero bias is no bias; lpe's unembedding then skips a pass
    cfg["has_b_U"] = int("unembed/b_U" in w)
    _check(w, cfg, where, lambda n: n.replace("/", "."))
    return cfg, w


def _apply_tl_config(cfg: dict, path: str) -> dict:
    try:
        c = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read the model config ({e})") from e
    norm = c.get("normalization", c.get("normalization_type", "LN"))
    checks = [("normalization", norm, "LN"),
              ("positional embedding", c.get("positional_embedding_type",
                                             "shortformer" if c.get("shortformer_pos") else "standard"), "standard"),
              ("attention_dir", c.get("attention_dir", "causal"), "causal"),
              ("use_local_attn", bool(c.get("use_local_attn", False)), False),
              ("final_rms", bool(c.get("final_rms", False)), False),
              ("use_attn_scale", bool(c.get("use_attn_scale", True)), True)]
    for what, got, want in checks:
        if got != want:
            raise InputError(f"{path}: {what} = {got!r}; lpe implements {want!r} only")
    out = dict(cfg)
    for k in lpefiles.CONFIG_KEYS:
        if k in c and c[k] is not None:
            if k == "d_mlp" and c.get("attn_only"):
                continue
            if int(c[k]) != cfg[k]:
                raise InputError(f"{path}: {k} = {c[k]}, but the checkpoint's tensors have {k} = {cfg[k]}")
    if "attn_only" in c and int(bool(c["attn_only"])) != cfg["attn_only"]:
        raise InputError(f"{path}: attn_only = {c['attn_only']}, but the checkpoint "
                         f"{'has no' if cfg['attn_only'] else 'has'} MLP tensors")
    act = c.get("act_fn", cfg["act_fn"])
    if act not in ACTS:
        raise InputError(f"{path}: act_fn = {act!r}; lpe implements {', '.join(ACTS)}")
    out["act_fn"] = act
    out["ln_eps"] = float(c.get("ln_eps", c.get("eps", cfg["ln_eps"])))
    return out


# ---- GPT-2 (Hugging Face) -------------------------------------------------------------------

def _hf_state_dict(d: Path) -> tuple[dict, str]:
    if (d / "model.safetensors").exists():
        p = d / "model.safetensors"
        return read_safetensors(str(p)), str(p)
    if (d / "model.safetensors.index.json").exists():
        p = d / "model.safetensors.index.json"
        idx = json.loads(p.read_text())
        sd = {}
        for f in sorted(set(idx.get("weight_map", {}).values())):
            if not (d / f).exists():
                raise InputError(f"{p}: shard {f} is missing")
            sd.update(read_safetensors(str(d / f)))
        return sd, str(p)
    if (d / "pytorch_model.bin").exists():
        p = d / "pytorch_model.bin"
        return _torch_load(str(p)), str(p)
    raise InputError(f"{d}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def convert_gpt2(ckpt_dir: str) -> tuple[dict, dict, str]:
    """(cfg, weights, the weights file read) of a GPT-2 save_pretrained directory."""
    d = Path(ckpt_dir)
    if not (d / "config.json").exists():
        raise InputError(f"{d}: config.json not found (expected a save_pretrained directory)")
    c = json.loads((d / "config.json").read_text())
    where_cfg = str(d / "config.json")
    if c.get("model_type", "gpt2") != "gpt2":
        raise InputError(f"{where_cfg}: model_type = {c.get('model_type')!r}, expected 'gpt2'")
    for key, want in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                      ("add_cross_attention", False)):
        if bool(c.get(key, want)) != want:
            raise InputError(f"{where_cfg}: {key} = {c.get(key)}; lpe implements {want} only")
    act = c.get("activation_function", "gelu_new")
    act = {"gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}.get(act)
    if act is None:
        raise InputError(f"{where_cfg}: activation_function = {c.get('activation_function')!r}; "
                         "lpe implements gelu_new, gelu and relu")
    try:
        D, H, L = int(c["n_embd"]), int(c["n_head"]), int(c["n_layer"])
        V, C = int(c["vocab_size"]), int(c.get("n_positions", c.get("n_ctx")))
    except (KeyError, TypeError) as e:
        raise InputError(f"{where_cfg}: missing {e}") from e
    if D % H:
        raise InputError(f"{where_cfg}: n_embd = {D} is not a multiple of n_head = {H}")
    F = int(c.get("n_inner") or 4 * D)
    Dh = D // H
    cfg = {"n_layers": L, "d_model": D, "n_heads": H, "d_head": Dh, "d_mlp": F, "d_vocab": V,
           "n_ctx": C, "act_fn": act, "ln_eps": float(c.get("layer_norm_epsilon", 1e-5)),
           "attn_only": 0, "has_b_U": 0}
    sd, where = _hf_state_dict(d)
    sd = {(k[len("transformer."):] if k.startswith("transformer.") else k): v for k, v in sd.items()}

    used = set()

    def get(k, shape):
        if k not in sd:
            raise InputError(f"{where}: tensor {k} is missing")
        a = _to_numpy(k, sd[k], where)
        if tuple(a.shape) != tuple(shape):
            raise InputError(f"{where}: tensor {k} has shape {list(a.shape)}, expected {list(shape)} "
                             f"({_cfg_summary(cfg)})")
        used.add(k)
        return a

    w = {"embed/W_E": get("wte.weight", (V, D)), "pos_embed/W_pos": get("wpe.weight", (C, D))}
    for i in range(L):
        p, q = f"h.{i}.", f"blocks/{i}/"
        w[q + "ln1/w"], w[q + "ln1/b"] = get(p + "ln_1.weight", (D,)), get(p + "ln_1.bias", (D,))
        wa, ba = get(p + "attn.c_attn.weight", (D, 3 * D)), get(p + "attn.c_attn.bias", (3 * D,))
        for j, n in enumerate("QKV"):
            # Conv1D: y = x @ W + b; columns [j D, (j+1) D) are Q/K/V, head h its Dh columns
            w[q + f"attn/W_{n}"] = np.ascontiguousarray(
                wa[:, j * D:(j + 1) * D].reshape(D, H, Dh).transpose(1, 0, 2))
            w[q + f"attn/b_{n}"] = np.ascontiguousarray(ba[j * D:(j + 1) * D].reshape(H, Dh))
        w[q + "attn/W_O"] = np.ascontiguousarray(get(p + "attn.c_proj.weight", (D, D)).reshape(H, Dh, D))
        w[q + "attn/b_O"] = get(p + "attn.c_proj.bias", (D,))
        w[q + "ln2/w"], w[q + "ln2/b"] = get(p + "ln_2.weight", (D,)), get(p + "ln_2.bias", (D,))
        w[q + "mlp/W_in"], w[q + "mlp/b_in"] = get(p + "mlp.c_fc.weight", (D, F)), get(p + "mlp.c_fc.bias", (F,))
        w[q + "mlp/W_out"] = get(p + "mlp.c_proj.weight", (F, D))
        w[q + "mlp/b_out"] = get(p + "mlp.c_proj.bias", (D,))
    w["ln_final/w"], w["ln_final/b"] = get("ln_f.weight", (D,)), get("ln_f.bias", (D,))
    if "lm_head.weight" in sd:
        w["unembed/W_U"] = np.ascontiguousarray(get("lm_head.weight", (V, D)).T)
    else:
        w["unembed/W_U"] = np.ascontiguousarray(w["embed/W_E"].T)  # tied embeddings
    # buffers of older checkpoints: the causal mask and its fill value
    rest = [k for k in sd if k not in used and not re.fullmatch(r"h\.\d+\.attn\.(bias|masked_bias)", k)]
    if rest:
        raise InputError(f"{where}: unexpected tensor {rest[0]} ({len(rest)} unexpected in all)")
    _check(w, cfg, where)
    return cfg, w, where


# ---- output -----------------------------------------------------------------------------------

def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def write(out: str, cfg: dict, w: dict, vocab: list | None, attrs: dict, force: bool) -> None:
    """Model file with provenance attributes, appearing atomically at `out`."""
    if os.path.exists(out) and not force:
        raise InputError(f"{out}: exists already (--force overwrites)")
    d = os.path.dirname(os.path.abspath(out))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".h5.tmp")
    os.close(fd)
    try:
        lpefiles.write_model(tmp, cfg, w, vocab=vocab, force=True)
        import h5py
        with h5py.File(tmp, "a") as f:
            for k, v in attrs.items():
                f.attrs[k] = v
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = ap.add_subparsers(dest="kind", required=True)
    tl = sub.add_parser("tl", help="TransformerLens state dict (the paper's gelu-1l/2l/4l)")
    tl.add_argument("--checkpoint", required=True, help="model_final.pth")
    tl.add_argument("--config", help="the checkpoint's config.json (checked against the tensors)")
    tl.add_argument("--act-fn", default="gelu", choices=ACTS, help="without --config (default gelu)")
    tl.add_argument("--ln-eps", type=float, default=1e-5, help="without --config (default 1e-5)")
    g2 = sub.add_parser("gpt2", help="Hugging Face GPT-2 checkpoint directory")
    g2.add_argument("--checkpoint", required=True, help="directory with config.json and weights")
    for p in (tl, g2):
        p.add_argument("--tokenizer", help="tokenizer.json, vocab.json or a directory with one")
        p.add_argument("--out", required=True, help="model file to write (HDF5)")
        p.add_argument("--force", action="store_true", help="overwrite --out")
    a = ap.parse_args(argv)
    try:
        if not os.path.exists(a.checkpoint):
            raise InputError(f"{a.checkpoint}: not found")
        if a.kind == "tl":
            cfg, w = convert_tl(a.checkpoint, a.config, a.act_fn, a.ln_eps)
            src = a.checkpoint
        else:
            cfg, w, src = convert_gpt2(a.checkpoint)
            if a.tokenizer is None and any((Path(a.checkpoint) / n).exists()
                                           for n in ("tokenizer.json", "vocab.json")):
                a.tokenizer = a.checkpoint  # save_pretrained keeps the tokenizer beside the weights
        attrs = {"source": os.path.basename(os.path.abspath(src)), "source_kind": a.kind,
                 "converter": "tools/convert_checkpoint.py"}
        if os.path.isfile(src):
            attrs["source_sha256"] = _sha256(src)
        vocab = None
        if a.tokenizer:
            vocab, info = token_bytes(a.tokenizer, cfg["d_vocab"])
            attrs["tokenizer_source"] = os.path.basename(info["tokenizer_file"])
            attrs["tokenizer_tokens"] = np.int64(info["tokenizer_tokens"])
        write(a.out, cfg, w, vocab, attrs, a.force)
    except InputError as e:
        print(f"convert_checkpoint: {e}", file=sys.stderr)
        return 2
    n = sum(int(np.prod(x.shape)) for x in w.values())
    print(f"convert_checkpoint: {a.out}: {_cfg_summary(cfg)}, ln_eps {cfg['ln_eps']:g}, "
          f"b_U {'yes' if cfg['has_b_U'] else 'no'}, {n} parameters"
          f"{', token bytes from ' + a.tokenizer if a.tokenizer else ', no token bytes'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
