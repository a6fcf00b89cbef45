#!/usr/bin/env python3
"""import_truth.py: the paper's published ground truth -> lpe ground-truth files (docs/methods.md §8).

usage:
  tools/import_truth.py --counts frequencies32-hex.pt --model gelu-1l.h5 --dists paper.h5
                        [--name hex] --out truth/gelu-1l/hex.h5 [--n-samples 2^32] [--seed 0]
                        [--lpe bin/lpe] [--force]
  tools/import_truth.py compare A.h5 B.h5 [--z 6]

The paper's authors publish, per (model, distribution), the argmax counts of 2^32 samples:
one tensor of length d_vocab (integer or float holding integers) saved with torch.save, named
frequencies32-{dist}.pt. Their names "indent" and "ifelse" are our "colon" and "if"; --name
defaults to the file's name mapped that way.

Checks: a 1-d tensor of d_vocab entries (the model file's), every entry a finite non-negative
integer, summing to --n-samples (default 2^32) exactly ('--n-samples sum' accepts the counts'
own total, for counts rounded by float32 storage: 2^-24 relative error at most per entry). Output: what `lpe truth` writes for a
sampled run (src/truth.c): counts uint64 [V], ranges [[0, n]], attributes n_samples, exact = 0,
model_sha256 (of the model's content, as `lpe info` prints it), distribution, distribution_sha256 (lpe's canonical
hash of the normalised distribution, taken from `lpe dist show` so that it is lpe's own),
seed, stream, d_vocab, k, format_version, lpe_version, created; and the provenance attributes
source, source_sha256, importer. The seed is a label (the paper's samples come from its own
generator): counts of `lpe truth --seed S` over sample numbers past n (e.g. --samples 2^33
--shard 1/2) can be merged with the imported file by `lpe truth merge`, which is sound because
both are independent samples of one distribution.

Whether the counts belong to this distribution file is not something a file can prove: the
hash only records which distribution they were imported for. `compare` tests it: given the
imported file and `lpe truth` counts of the exported distribution (2^24 samples take minutes on
a GPU), it reports the largest two-sample z-score over tokens and exits 1 when any exceeds --z.

Exit codes: 0 success, 1 compare found a difference, 2 bad input (message names the file).
Needs numpy, h5py; torch to read .pt files; a built bin/lpe for the distribution hash.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAPER_NAMES = {"indent": "colon", "ifelse": "if"}  # the public code's names -> docs/methods.md §7's
TRUTH_FORMAT_VERSION = 1   # LPE_TRUTH_FORMAT_VERSION (include/lpe/truth.h)
STREAM_INPUT = 1           # LPE_STREAM_INPUT (include/lpe/philox.h)


class InputError(Exception):
    pass


def _int(s: str):
    """65536, 2^16 or 6.5536e4 (as lpe's command line), or "sum"."""
    if s == "sum":
        return s
    m = re.fullmatch(r"\s*(\d+)\s*\^\s*(\d+)\s*", s)
    if m:
        return int(m.group(1)) ** int(m.group(2))
    v = float(s)
    if v != int(v) or v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return int(v)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stream_of(purpose: int, slot: int) -> int:
    """lpe_stream (include/lpe/philox.h): purpose in the top 8 bits, slot below."""
    return (purpose << 24) | slot


def read_counts(path: str) -> np.ndarray:
    """The published tensor as uint64 counts, refusing anything that is not counts. Float32
    holds integers exactly only up to 2^24: larger float32 counts may have been rounded when
    they were saved, which the sum check then catches."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover
        raise SystemExit(f"import_truth: reading {path} needs torch ({e}); run tools/setup.sh") from e
    try:
        t = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{path}: cannot read as a torch file ({e})") from e
    if isinstance(t, dict) and len(t) == 1:
        t = next(iter(t.values()))
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{path}: expected one tensor of counts, found {type(t).__name__}")
    if t.dim() != 1:
        raise InputError(f"{path}: expected a 1-d tensor of counts, found shape {list(t.shape)}")
    if t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"{path}: counts of dtype {t.dtype} are not counts")
    if t.is_floating_point():
        a = t.double().numpy()
        bad = ~np.isfinite(a) | (a < 0) | (a != np.floor(a))
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"{path}: entry {i} is {float(a[i])!r}: expected a non-negative integer count")
        if a.max(initial=0) >= 2.0 ** 64:
            raise InputError(f"{path}: entry {int(np.argmax(a))} is too large for a count")
        return a.astype(np.uint64)
    a = t.numpy()
    if (a < 0).any():
        i = int(np.argmax(a < 0))
        raise InputError(f"{path}: entry {i} is {a[i]}: expected a non-negative count")
    return a.astype(np.uint64)


def dist_info(lpe: str, dists: str, name: str, d_vocab: int) -> tuple[str, int]:
    """(sha256, k) of a distribution as lpe loads it (normalised, checked against d_vocab)."""
    r = subprocess.run([lpe, "dist", "show", dists, name, "--vocab", str(d_vocab)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise InputError(f"lpe dist show {dists} {name}: {r.stderr.strip() or r.stdout.strip()}")
    sha = re.search(r"^\s*sha256: ([0-9a-f]{64})\s*$", r.stdout, re.M)
    k = re.search(r"positions k = (\d+)", r.stdout)
    if not sha or not k:
        raise InputError(f"lpe dist show {dists} {name}: output not understood:\n{r.stdout}")
    return sha.group(1), int(k.group(1))


def model_sha256(lpe: str, model: str) -> str:
    """The model's identity as lpe computes it (its content: configuration and weights)."""
    r = subprocess.run([lpe, "info", model], capture_output=True, text=True)
    sha = re.search(r"^\s*sha256\s+([0-9a-f]{64})\s*$", r.stdout, re.M)
    if r.returncode != 0 or not sha:
        raise InputError(f"lpe info {model}: {r.stderr.strip() or r.stdout.strip()}")
    return sha.group(1)


def lpe_version(lpe: str) -> str:
    r = subprocess.run([lpe, "--version"], capture_output=True, text=True)
    return r.stdout.strip().removeprefix("lpe ").strip() or "unknown"


def import_counts(counts_path: str, model: str, dists: str, name: str, out: str,
                  n_samples: int = 2 ** 32, seed: int = 0, lpe: str | None = None,
                  force: bool = False) -> dict:
    import h5py
    lpe = lpe or str(ROOT / "bin" / "lpe")
    if not os.path.exists(lpe):
        raise InputError(f"{lpe}: lpe is not built (run make): it gives the distribution hash")
    for p in (counts_path, model, dists):
        if not os.path.exists(p):
            raise InputError(f"{p}: not found")
    if os.path.exists(out) and not force:
        raise InputError(f"{out}: exists already (--force overwrites)")
    if not 0 <= seed < 2 ** 63:
        raise InputError(f"--seed {seed}: expected 0 <= seed < 2^63")
    try:
        with h5py.File(model, "r") as f:
            V = int(f.attrs["d_vocab"])
    except (OSError, KeyError) as e:
        raise InputError(f"{model}: not a model file ({e})") from e
    c = read_counts(counts_path)
    if c.size != V:
        raise InputError(f"{counts_path}: {c.size} counts, but the model {model} has d_vocab = {V}")
    total = int(c.sum(dtype=np.uint64))
    if n_samples == "sum":
        n_samples = total
    if total != n_samples or total == 0:
        raise InputError(f"{counts_path}: counts sum to {total}, expected {n_samples} "
                         "(--n-samples sets another total; --n-samples sum takes the counts' own, "
                         "e.g. for float32 counts rounded when saved)")
    dsha, k = dist_info(lpe, dists, name, V)
    attrs = {
        "n_samples": np.int64(n_samples), "exact": np.int64(0),
        "model_sha256": model_sha256(lpe, model), "distribution": name, "distribution_sha256": dsha,
        "seed": np.int64(seed), "stream": np.int64(stream_of(STREAM_INPUT, 0)),
        "d_vocab": np.int64(V), "k": np.int64(k),
        "format_version": np.int64(TRUTH_FORMAT_VERSION), "lpe_version": lpe_version(lpe),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": os.path.basename(counts_path), "source_sha256": sha256_file(counts_path),
        "importer": "tools/import_truth.py",
    }
    d = os.path.dirname(os.path.abspath(out))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".h5.tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("counts", data=c)
            f.create_dataset("ranges", data=np.array([[0, n_samples]], dtype=np.uint64))
            for key, v in attrs.items():
                f.attrs[key] = v
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    p = c / n_samples
    return {"d_vocab": V, "k": k, "n_samples": n_samples,
            "in_range": int(((p >= 1e-9) & (p <= 1e-5)).sum()), "distribution_sha256": dsha}


def compare(a: str, b: str, z_max: float = 6.0, min_count: int = 10) -> tuple[int, str]:
    """Two sampled truth files of one (model, distribution): largest |z| of p_a - p_b over
    tokens with at least min_count pooled counts (pooled binomial standard error)."""
    import h5py
    cs, ns = [], []
    for p in (a, b):
        try:
            with h5py.File(p, "r") as f:
                if "counts" not in f:
                    raise InputError(f"{p}: no counts dataset (an exact truth file? compare needs counts)")
                cs.append(f["counts"][()].astype(np.float64))
                ns.append(float(f.attrs["n_samples"]))
        except OSError as e:
            raise InputError(f"{p}: cannot read ({e})") from e
    if cs[0].size != cs[1].size:
        raise InputError(f"{a} has {cs[0].size} tokens, {b} has {cs[1].size}")
    pooled = (cs[0] + cs[1]) / (ns[0] + ns[1])
    keep = (cs[0] + cs[1]) >= min_count
    se = np.sqrt(pooled * (1 - pooled) * (1 / ns[0] + 1 / ns[1]))
    z = np.zeros_like(pooled)
    z[keep] = (cs[0][keep] / ns[0] - cs[1][keep] / ns[1]) / se[keep]
    worst = int(np.argmax(np.abs(z)))
    n_bad = int((np.abs(z) > z_max).sum())
    msg = (f"{int(keep.sum())} tokens with >= {min_count} counts; largest |z| = {abs(z[worst]):.2f} "
           f"at token {worst} (p = {cs[0][worst] / ns[0]:.3g} vs {cs[1][worst] / ns[1]:.3g}); "
           f"{n_bad} tokens beyond |z| > {z_max:g}")
    return (1 if n_bad else 0), msg


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "compare":
            ap = argparse.ArgumentParser(prog="import_truth.py compare",
                                         description="Do two sampled truth files agree?")
            ap.add_argument("a")
            ap.add_argument("b")
            ap.add_argument("--z", type=float, default=6.0, help="largest |z| allowed (default 6)")
            ap.add_argument("--min-count", type=int, default=10)
            x = ap.parse_args(argv[1:])
            rc, msg = compare(x.a, x.b, x.z, x.min_count)
            print(f"import_truth compare: {msg}: {'DIFFERENT' if rc else 'consistent'}")
            return rc
        ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
        ap.add_argument("--counts", required=True, help="frequencies32-{dist}.pt")
        ap.add_argument("--model", required=True, help="the converted model file")
        ap.add_argument("--dists", required=True, help="the exported distribution file")
        ap.add_argument("--name", help="distribution (default: from the file name)")
        ap.add_argument("--out", required=True, help="ground-truth file to write")
        ap.add_argument("--n-samples", type=_int, default=2 ** 32,
                        help="expected total (default 2^32); 'sum': whatever the counts sum to")
        ap.add_argument("--seed", type=int, default=0, help="seed label (see above; default 0)")
        ap.add_argument("--lpe", help="lpe binary (default bin/lpe of this repository)")
        ap.add_argument("--force", action="store_true")
        x = ap.parse_args(argv)
        name = x.name
        if name is None:
            m = re.fullmatch(r"frequencies\d*-(.+)\.pt", os.path.basename(x.counts))
            if not m:
                raise InputError(f"{x.counts}: cannot tell the distribution from the file name (--name)")
            name = PAPER_NAMES.get(m.group(1), m.group(1))
        info = import_counts(x.counts, x.model, x.dists, name, x.out, x.n_samples, x.seed,
                             x.lpe, x.force)
    except InputError as e:
        print(f"import_truth: {e}", file=sys.stderr)
        return 2
    print(f"import_truth: {x.out}: '{name}', {info['n_samples']} samples over {info['d_vocab']} "
          f"tokens (k = {info['k']}), {info['in_range']} tokens with p in [1e-9, 1e-5]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
