"""The repository's references to its own documentation hold.

Sources cite the mathematics as `docs/methods.md §N`. These tests read every text file under
src/, include/, tools/, tests/, experiments/ and README.md and check that
  - every `§N` names a top-level section of docs/methods.md (`## N. Title`),
  - every path `docs/...` they mention exists,
  - docs/methods.md keeps its sections 1..10 in order, and the links inside docs/ resolve,
  - nothing refers to a document a user of the repository does not have (`../shared/`,
    `SPEC.md`, `SPEC 4`, `SPEC-8`, "the SPEC").
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
METHODS = ROOT / "docs" / "methods.md"
SCANNED = ["src", "include", "tools", "tests", "experiments", "README.md"]
MAX_BYTES = 4 << 20  # larger files are data (HDF5, JSON dumps), not prose
SELF = Path(__file__).resolve()

SECTION_RE = re.compile(r"^## (\d+)\. ", re.M)
SECTION_REF_RE = re.compile(r"§+\s*(\d+)")
DOCS_PATH_RE = re.compile(r"(?<![\w./-])docs/[\w./-]*")
# "SPEC 4", "SPEC-8", "SPEC.md", "the SPEC", "../shared/": documents outside the repository
# (SPECIALS and LPE_P_SPEC are words of their own and do not match)
STALE_RE = re.compile(r"\.\./shared/|\bSPEC\b")

EXPECTED_SECTIONS = [
    "The problem", "The model", "Score and its gradient", "Methods", "Ground truth and targets",
    "Evaluation", "Input distributions of the paper", "Contracts",
    "The paper's tuned parameters", "Beyond the paper",
]


def text_files():
    """(relative path, text) of every scanned file that is text (not binary, not huge)."""
    out = []
    for name in SCANNED:
        top = ROOT / name
        paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for p in paths:
            if p.resolve() == SELF or "__pycache__" in p.parts or p.stat().st_size > MAX_BYTES:
                continue
            data = p.read_bytes()
            if b"\0" in data[:8192]:
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            out.append((p.relative_to(ROOT).as_posix(), text))
    return out


def hits(regex, files):
    """[(path:line, match)] of regex over the files' lines."""
    found = []
    for rel, text in files:
        for no, line in enumerate(text.splitlines(), 1):
            for m in regex.finditer(line):
                found.append((f"{rel}:{no}", m))
    return found


@pytest.fixture(scope="module")
def files():
    fs = text_files()
    assert len(fs) > 50, f"only {len(fs)} text files found under {SCANNED}: wrong root {ROOT}?"
    return fs


def methods_sections():
    assert METHODS.is_file(), f"{METHODS} is missing"
    return [int(n) for n in SECTION_RE.findall(METHODS.read_text(encoding="utf-8"))]


def test_methods_sections_stable():
    """Sources cite §1..§10 by number: the headings must stay `## N. Title`, N = 1..10 in order."""
    text = METHODS.read_text(encoding="utf-8")
    heads = re.findall(r"^## (\d+)\. (.+?)\s*$", text, re.M)
    assert [int(n) for n, _ in heads] == list(range(1, 11)), heads
    for (n, title), want in zip(heads, EXPECTED_SECTIONS):
        assert title.startswith(want), f"§{n} is titled {title!r}, expected {want!r}"


def test_section_refs_exist(files):
    """Every `§N` in the sources names an existing section of docs/methods.md."""
    have = set(methods_sections())
    bad = [f"{where}: §{m.group(1)}" for where, m in hits(SECTION_REF_RE, files)
           if int(m.group(1)) not in have]
    assert not bad, "references to sections docs/methods.md does not have:\n" + "\n".join(bad)


def test_docs_paths_exist(files):
    """Every `docs/...` path the sources mention exists (trailing punctuation ignored)."""
    bad = []
    for where, m in hits(DOCS_PATH_RE, files):
        path = m.group(0).rstrip(".,;:")
        if not (ROOT / path).exists():
            bad.append(f"{where}: {path}")
    assert not bad, "references to docs/ files that do not exist:\n" + "\n".join(bad)


def test_docs_links_resolve():
    """Relative Markdown links inside docs/ point at files that exist."""
    bad = []
    for md in sorted((ROOT / "docs").glob("*.md")):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", md.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # URLs
            if not (md.parent / target).exists():
                bad.append(f"{md.relative_to(ROOT)}: {target}")
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_no_references_outside_repository(files):
    """No file cites ../shared/SPEC.md or "SPEC n": a user of the repository does not have it."""
    bad = list(dict.fromkeys(f"{where}: {m.string.strip()[:100]}"  # one entry per line
                             for where, m in hits(STALE_RE, files)))
    assert not bad, (f"{len(bad)} references to documents outside the repository (cite "
                     "docs/methods.md §N instead):\n" + "\n".join(bad))
