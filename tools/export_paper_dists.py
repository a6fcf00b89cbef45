#!/usr/bin/env python3
"""export_paper_dists.py: the paper's eight input distributions (docs/methods.md §7) on its tokenizer and
corpora, as one lpe distribution file (docs/methods.md §8).

usage:
  tools/export_paper_dists.py --tokenizer DIR|tokenizer.json
                              --code FILE|DIR... --english FILE|DIR... --spanish FILE|DIR...
                              --out paper_dists.h5 [--names hex,camel,...] [--force]
                              [--bos 1] [--eos 0] [--no-reverse] [--no-clean-up-spaces]
                              [--items FAMILY=N ...] [--param FAMILY.KEY=VALUE ...]

The families are built by tools/recipes.py, the module the testbed uses too (so the two cannot
drift), with the paper's parameters (recipes.PAPER and the family functions' defaults: hex,
camel, colon, if 32 repetitions; caps 16; english, spanish 24; icl on ARCTHEORY). This script
only supplies what is specific to the paper's setting:

- the tokenizer NeelNanda/gpt-neox-tokenizer-digits (a tokenizers JSON file; BOS 1, EOS 0);
  each token's string is its decoding alone, special tokens as their text, then the
  `transformers` clean-up of spaces before punctuation that the paper's transformers 4.x
  applied by default (" ," -> ","; no family's filter result depends on it, but the strings
  are stored faithfully); corpus text is encoded without special tokens;
- the corpora as the paper's code streams them: C4 English (--english) and Spanish C4
  (--spanish), field "text", and CodeParrot-clean train (--code), field "content"; files in
  reverse name order (the public code's "train_rev": the last file first; --no-reverse reads
  them in name order), lines in file order. Files may be .json.gz, .jsonl(.gz) or .json
  (one JSON object a line); a directory stands for the files in it. Only the first items are
  read: 1024 of CodeParrot and C4 for camel/colon/if/caps, 2^14 of C4 and Spanish C4 for
  english/icl/spanish, so the last train file of each corpus is enough (README:
  experiments/paper/README.md says which files to download);
- provenance: root attributes tokenizer_sha256, corpus files (name and size, in reading
  order), the recipe parameters; per group the corpus and item count it was counted on.

--items and --param exist for tests and studies (e.g. --items english=1000 --param hex.reps=8);
the defaults are the paper's. Exit 2 on bad input (message names the file), 1 on failure.
Needs numpy, h5py, tokenizers.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import recipes  # noqa: E402

CORPORA = ("code", "english", "spanish")
TEXT_FIELDS = ("text", "content")  # C4 / CodeParrot
SUFFIXES = (".json.gz", ".jsonl.gz", ".jsonl", ".json")


class InputError(Exception):
    pass


# ---- tokenizer ------------------------------------------------------------------------------

def clean_up_spaces(s: str) -> str:
    """transformers' clean_up_tokenization (its decode default in 4.x): drop the space before
    . ? ! , and before the English contractions."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        s = s.replace(a, b)
    return s


def load_tokenizer(path: str):
    try:
        from tokenizers import Tokenizer
    except ImportError as e:  # pragma: no cover
        raise SystemExit(f"export_paper_dists: needs the tokenizers package ({e}); run tools/setup.sh") from e
    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.exists():
        raise InputError(f"{p}: tokenizer file not found")
    try:
        return Tokenizer.from_file(str(p)), p
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{p}: not a tokenizers JSON file ({e})") from e


def paper_vocab(tok, bos: int, eos: int, clean: bool = True) -> recipes.Vocab:
    """The paper's token strings (its token_string_dict): decode([i]) for every id."""
    n = tok.get_vocab_size(with_added_tokens=True)
    for what, i in (("--bos", bos), ("--eos", eos)):
        if not 0 <= i < n:
            raise InputError(f"{what} {i}: outside the tokenizer's {n} tokens")
    strings = []
    for i in range(n):
        s = tok.decode([i], skip_special_tokens=False)
        strings.append(clean_up_spaces(s) if clean else s)
    return recipes.Vocab(strings, bos, eos, lambda t: tok.encode(t, add_special_tokens=False).ids)


# ---- corpora -----------------------------------------------------------------------------------

def corpus_files(paths: list, reverse: bool = True) -> list:
    """Files of the given files and directories, sorted by name (reversed: the paper's order)."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = [q for q in p.rglob("*") if q.is_file() and q.name.endswith(SUFFIXES)]
            if not found:
                raise InputError(f"{p}: no {', '.join(SUFFIXES)} files in this directory")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p}: not found")
    files = sorted(set(files), key=lambda q: (q.name, str(q)))
    return files[::-1] if reverse else files


def read_texts(files: list, field: str | None = None):
    """The text of every item, file by file, line by line."""
    for f in files:
        opener = gzip.open if f.name.endswith(".gz") else open
        try:
            with opener(f, "rt", encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except ValueError as e:
                        raise InputError(f"{f}:{n}: not a JSON object ({e})") from e
                    keys = (field,) if field else TEXT_FIELDS
                    for k in keys:
                        if isinstance(obj, dict) and isinstance(obj.get(k), str):
                            yield obj[k]
                            break
                    else:
                        raise InputError(f"{f}:{n}: no string field {' or '.join(keys)}")
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise InputError(f"{f}: cannot read ({e})") from e


def token_items(tok, texts, chunk: int = 256):
    """Token ids of each text (no special tokens), encoded in batches."""
    buf = []
    for t in texts:
        buf.append(t)
        if len(buf) == chunk:
            yield from (e.ids for e in tok.encode_batch(buf, add_special_tokens=False))
            buf = []
    if buf:
        yield from (e.ids for e in tok.encode_batch(buf, add_special_tokens=False))


# ---- main ----------------------------------------------------------------------------------------

def _parse_kv(items: list, what: str, value=int) -> dict:
    out = {}
    for s in items or ():
        if "=" not in s:
            raise InputError(f"{what} {s!r}: expected KEY=VALUE")
        k, v = s.split("=", 1)
        try:
            out[k.strip()] = value(v.strip())
        except ValueError as e:
            raise InputError(f"{what} {s!r}: {e}") from e
    return out


def _param_value(v: str):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export(tokenizer: str, corpora_paths: dict, out: str, names=recipes.FAMILIES, bos: int = 1,
           eos: int = 0, reverse: bool = True, clean: bool = True, items: dict | None = None,
           params: dict | None = None, force: bool = False, log=print) -> list:
    if os.path.exists(out) and not force:
        raise InputError(f"{out}: exists already (--force overwrites)")
    unknown = [n for n in names if n not in recipes.PAPER]
    if unknown:
        raise InputError(f"unknown families {unknown}; known: {', '.join(recipes.FAMILIES)}")
    tok, tok_path = load_tokenizer(tokenizer)
    vocab = paper_vocab(tok, bos, eos, clean)
    need = sorted({recipes.PAPER[n][0] for n in names} - {None})
    files = {}
    for c in need:
        if not corpora_paths.get(c):
            users = [n for n in names if recipes.PAPER[n][0] == c]
            raise InputError(f"--{c} is needed by {', '.join(users)}")
        files[c] = corpus_files(corpora_paths[c], reverse)
    corpora = {c: token_items(tok, read_texts(files[c])) for c in need}
    n_items = {n: (items or {}).get(n, recipes.PAPER[n][1]) for n in names}
    try:
        fams = recipes.build_families(vocab, corpora, names=list(names), n_items=n_items,
                                      params=params or {})
    except (ValueError, TypeError) as e:  # recipes: a bad parameter, a token missing, ...
        raise InputError(str(e)) from e
    d = os.path.dirname(os.path.abspath(out))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".h5.tmp")
    os.close(fd)
    os.remove(tmp)  # Family.write appends; start from no file
    try:
        for f in fams:
            f.write(tmp)
        import h5py
        with h5py.File(tmp, "a") as h:
            h.attrs["source"] = "tools/export_paper_dists.py with tools/recipes.py (docs/methods.md §7)"
            h.attrs["tokenizer_sha256"] = _sha256(tok_path)
            h.attrs["bos"], h.attrs["eos"] = np.int64(bos), np.int64(eos)
            h.attrs["clean_up_spaces"] = np.int64(clean)
            h.attrs["corpus_files"] = json.dumps(
                {c: [[p.name, p.stat().st_size] for p in fs] for c, fs in files.items()})
            h.attrs["file_order"] = "reverse name order (train_rev)" if reverse else "name order"
            for f in fams:
                g = h[f.name]
                corpus = recipes.PAPER[f.name][0]
                g.attrs["corpus"] = corpus or "none (hex: long-run frequencies of random hex text)"
                g.attrs["corpus_items"] = np.int64(-1 if n_items[f.name] is None else n_items[f.name])
                g.attrs["recipe_params"] = json.dumps((params or {}).get(f.name, {}))
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    for f in fams:
        sizes = sorted({int(f.factors[p].values.size) for p in f.positions})
        log(f"export_paper_dists: {f.name:8s} k {f.k:3d}  log2 inputs {f.log2_inputs():7.1f}  "
            f"support sizes {sizes}")
    return fams


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json or its directory")
    for c, what in (("code", "CodeParrot-clean train"), ("english", "C4 en train"),
                    ("spanish", "C4 es train")):
        ap.add_argument(f"--{c}", nargs="+", metavar="PATH", help=f"{what} files or directories")
    ap.add_argument("--out", required=True)
    ap.add_argument("--names", default=",".join(recipes.FAMILIES), help="families (default all eight)")
    ap.add_argument("--bos", type=int, default=1)
    ap.add_argument("--eos", type=int, default=0)
    ap.add_argument("--no-reverse", action="store_true", help="read files in name order")
    ap.add_argument("--no-clean-up-spaces", action="store_true", help="raw decoded token strings")
    ap.add_argument("--items", nargs="+", metavar="FAMILY=N", help="corpus items counted")
    ap.add_argument("--param", nargs="+", metavar="FAMILY.KEY=V", help="recipe parameters")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    try:
        names = [n.strip() for n in a.names.split(",") if n.strip()]
        params = {}
        for k, v in _parse_kv(a.param, "--param", _param_value).items():
            fam, _, key = k.partition(".")
            if not key:
                raise InputError(f"--param {k}: expected FAMILY.KEY=VALUE")
            params.setdefault(fam, {})[key] = v
        export(a.tokenizer, {"code": a.code, "english": a.english, "spanish": a.spanish}, a.out,
               names, a.bos, a.eos, not a.no_reverse, not a.no_clean_up_spaces,
               _parse_kv(a.items, "--items"), params, a.force,
               log=lambda s: print(s, file=sys.stderr))
    except InputError as e:
        print(f"export_paper_dists: {e}", file=sys.stderr)
        return 2
    print(f"export_paper_dists: wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
