#!/usr/bin/env python3
"""corpus.py: the testbed's text corpus from offline Debian packages.

Three sub-corpora, each a list of items (documents), written as JSON lines {"src", "text"}:

  code     the Python 3.11 standard library sources (libpython3.11-minimal/-stdlib), one item
           per .py file
  english  fortunes (fortunes, fortunes-min) in items of ~4 KB of whole fortunes; the Linux
           man pages (manpages, manpages-dev) rendered by groff, one item per page; GCIDE, the
           1913 Webster dictionary (dict-gcide), markup removed, in items of ~4 KB of entries
  spanish  fortunes-es in ~4 KB items; manpages-es rendered, one item per page; the Debian
           reference in Spanish (debian-reference-es), one item per HTML chapter, tags removed

Every item has a split: "heldout" for ~3% of the items (chosen by a hash of its src, so that it
does not depend on the other items), "train" otherwise. Byte caps per source keep the corpus
small enough for CPU training (see CAPS); sources are read in sorted order and a capped source
keeps every k-th item. manifest.json records packages and versions, item and byte counts.

Usage: corpus.py --out DIR [--install]   (--install: apt-get the packages first)
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import html.parser
import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

PACKAGES = ["libpython3.11-minimal", "libpython3.11-stdlib", "fortunes", "fortunes-min",
            "fortunes-es", "manpages", "manpages-dev", "manpages-es", "dict-gcide",
            "debian-reference-es", "groff-base"]
CAPS = {  # bytes of text kept per source (None: all)
    "python": 7_000_000,
    "fortunes": None,
    "man-en": 4_000_000,
    "gcide": 3_000_000,
    "fortunes-es": None,
    "man-es": None,
    "debref-es": None,
}
HELDOUT_PERCENT = 3
CHUNK = 4096


def sh(*cmd, **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def versions() -> dict:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = sh("dpkg-query", "-W", "-f=${Version}", p)
        except subprocess.CalledProcessError:
            out[p] = None
    return out


def install() -> None:
    missing = [p for p, v in versions().items() if v is None]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
                       + missing, check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def files_of(*packages: str) -> list[str]:
    out = []
    for p in packages:
        out += [f for f in sh("dpkg", "-L", p).splitlines() if os.path.isfile(f)]
    return sorted(set(out))


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean(text: str) -> str:
    text = re.sub(r".\x08", "", text)  # overstrike (bold / underline in fortunes)
    text = CONTROL.sub("", text.replace("\r\n", "\n").replace("\t", "    "))
    text = re.sub(r"[ ]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def chunks(pieces, src: str, size: int = CHUNK):
    """Whole pieces grouped into items of about `size` characters."""
    buf, n, i = [], 0, 0
    for p in pieces:
        buf.append(p)
        n += len(p)
        if n >= size:
            yield f"{src}#{i}", "\n\n".join(buf)
            buf, n, i = [], 0, i + 1
    if buf:
        yield f"{src}#{i}", "\n\n".join(buf)


# ---- sources -------------------------------------------------------------------------------

def python_items():
    for f in files_of("libpython3.11-minimal", "libpython3.11-stdlib"):
        if f.endswith(".py") and "-packages/" not in f:
            yield f, Path(f).read_text(encoding="utf-8", errors="replace")


def fortune_pieces(path: str):
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for piece in re.split(r"\n%\n", text):
        piece = clean(piece)
        if piece:
            yield piece


def fortunes_items(packages, skip=("ascii-art", "art")):
    for f in files_of(*packages):
        if "/games/fortunes/" not in f or f.endswith((".dat", ".u8")) or "/off/" in f:
            continue
        if os.path.basename(f).split(".")[0] in skip or os.path.islink(f):
            continue
        yield from chunks(fortune_pieces(f), f)


def render_man(path: str) -> str:
    """A man page as plain text: long lines (one per paragraph), no hyphenation, no
    adjustment, no page headers."""
    raw = gzip.open(path).read() if path.endswith(".gz") else Path(path).read_bytes()
    if raw.startswith(b".so "):
        return ""  # a link to another page
    r = subprocess.run(["groff", "-k", "-Kutf-8", "-mandoc", "-Tutf8", "-P", "-cbou",
                        "-rLL=1000n", "-rHY=0", "-dAD=l", "-rcR=1"],
                       input=raw, capture_output=True, timeout=60)
    text = r.stdout.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if len(lines) > 2:  # drop the header and footer lines (NAME(1) ... NAME(1))
        lines = lines[1:-1]
    text = "\n".join(re.sub(r"^ {7}", "", l).replace("\u2010", "-") for l in lines)
    return clean(text)


def man_items(packages):
    for f in files_of(*packages):
        if "/man/" in f and re.search(r"/man\d/", f) and not os.path.islink(f):
            text = render_man(f)
            if len(text) > 200:
                yield f, text


def gcide_items():
    raw = gzip.open("/usr/share/dictd/gcide.dict.dz").read().decode("utf-8", errors="replace")
    start = raw.find("\nA \\")  # the first entry after the database headers
    entries = re.split(r"\n\n(?=\S)", raw[start + 1:])

    def tidy(e):
        e = re.sub(r"^\s*\[[^\]\n]*\]\s*$", "", e, flags=re.M)  # [1913 Webster], [PJC], ...
        e = re.sub(r"\\([^\\\n]*)\\", "", e)  # pronunciation \Af*fect"\
        e = re.sub(r"\s*\([^()\n]*\[[^\]\n]{1,4}\][^()\n]*\)", "", e)  # (t[i^]l"l[o^]t)
        e = re.sub(r"[{}]", "", e)
        e = re.sub(r"\s*\n\s*", " ", e.strip())  # one line per entry
        return re.sub(r" {2,}", " ", e)

    yield from chunks((t for t in map(tidy, entries) if len(t) > 20), "gcide")


class _Text(html.parser.HTMLParser):
    SKIP = {"script", "style", "head"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "pre", "dt", "dd", "table"}

    def __init__(self):
        super().__init__()
        self.out, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        self.skip += tag in self.SKIP
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag):
        self.skip -= tag in self.SKIP and self.skip > 0
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.out.append(data)


def debref_items():
    for f in files_of("debian-reference-es"):
        if f.endswith(".es.html"):
            p = _Text()
            p.feed(Path(f).read_text(encoding="utf-8", errors="replace"))
            text = "\n".join(re.sub(r"\s+", " ", l).strip() for l in "".join(p.out).split("\n"))
            yield f, clean(text)


SOURCES = {
    "code": [("python", python_items)],
    "english": [("fortunes", lambda: fortunes_items(["fortunes", "fortunes-min"])),
                ("man-en", lambda: man_items(["manpages", "manpages-dev"])),
                ("gcide", gcide_items)],
    "spanish": [("fortunes-es", lambda: fortunes_items(["fortunes-es"])),
                ("man-es", lambda: man_items(["manpages-es"])),
                ("debref-es", debref_items)],
}


def capped(items, cap):
    """A fraction cap/total of the items, evenly spread, so that about `cap` characters remain
    (all when cap is None or larger)."""
    items = list(items)
    total = sum(len(t) for _, t in items)
    if cap is None or total <= cap:
        return items
    r = cap / total
    return [it for i, it in enumerate(items) if int((i + 1) * r) > int(i * r)]


def split_of(src: str) -> str:
    h = int(hashlib.sha256(src.encode()).hexdigest()[:8], 16)
    return "heldout" if h % 100 < HELDOUT_PERCENT else "train"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--install", action="store_true")
    a = ap.parse_args()
    if a.install:
        install()
    vers = versions()
    missing = [p for p, v in vers.items() if v is None]
    if missing:
        sys.exit(f"corpus.py: Debian packages missing: {' '.join(missing)} (use --install)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"packages": vers, "caps": CAPS, "heldout_percent": HELDOUT_PERCENT, "corpora": {}}
    for corpus, sources in SOURCES.items():
        stats = {}
        tmp = out / f"{corpus}.jsonl.tmp"
        h = hashlib.sha256()
        with open(tmp, "w", encoding="utf-8") as fh:
            for name, fn in sources:
                its = capped(fn(), CAPS[name])
                s = stats[name] = {"items": 0, "chars": 0, "heldout_items": 0}
                for src, text in its:
                    line = json.dumps({"src": src, "split": split_of(src), "text": text},
                                      ensure_ascii=False)
                    fh.write(line + "\n")
                    h.update(line.encode() + b"\n")
                    s["items"] += 1
                    s["chars"] += len(text)
                    s["heldout_items"] += split_of(src) == "heldout"
                print(f"corpus: {corpus}/{name}: {s['items']} items, {s['chars']} chars",
                      file=sys.stderr)
        os.replace(tmp, out / f"{corpus}.jsonl")
        manifest["corpora"][corpus] = {"sources": stats, "sha256": h.hexdigest()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def read(path: str | Path, split: str | None = None):
    """Items {"src", "split", "text"} of a corpus file, optionally of one split."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            it = json.loads(line)
            if split is None or it["split"] == split:
                yield it


if __name__ == "__main__":
    main()
