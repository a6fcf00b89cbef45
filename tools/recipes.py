"""recipes: the paper's eight input families (docs/methods.md §7) built from a tokenizer and corpus counts.

One module for every corpus: the testbed (tools/testbed/build_dists.py, Debian text and a small
BPE) and the paper's own setting (C4, Spanish C4, CodeParrot with the gpt-neox-tokenizer-digits)
call the same functions, so the two cannot drift. Needs numpy only (lpefiles/h5py to write).

Vocabulary: `Vocab(strings, bos, eos, encode)`:
    strings[i]  the decoded string of token i alone (the paper's code: tokenizer.decode([i]),
                special tokens included as their text); every filter below reads these strings
    bos, eos    ids of the begin / end tokens (a corpus item counts as [bos] + tokens + [eos])
    encode      text -> token ids, no special tokens added; used only for the fixed tokens
                (" if", ":", " for", "He", "She", ' screamed: "', the letters)
Vocab.from_tokenizers(tok, bos, eos) wraps a Hugging Face `tokenizers.Tokenizer`,
Vocab.from_transformers(tok) a `transformers` tokenizer (decode with its defaults, as the paper).

Corpus counts: `corpus_counts(items, vocab_size, bos, eos, n_items=..., truncate=2**14)` over an
iterable of token-id lists (one per corpus item, no special tokens): each item counts as
[bos] + tokens + [eos], cut to `truncate` tokens; the first n_items items (None: all).
`corpus_counts_multi` gives the counts at several n_items in one pass over a stream.

Families: one function each, returning a `Family` (factors, the factor of every position, a
description; `Family.write(path)` appends it to a docs/methods.md §8 distribution file):

    hex_family(vocab, reps=32)                              BOS, hex x reps
    camel_family(vocab, code_counts, reps=32)               BOS, camel x reps
    colon_family(vocab, code_counts, reps=32, top=1024)     BOS, code x reps, ":"
    if_family(vocab, code_counts, reps=32, top=1024)        BOS, " if", code x reps
    caps_family(vocab, english_counts, reps=16, top=1024)   BOS, He|She, ' screamed: "', caps x reps
    english_family(vocab, english_counts, reps=24, top=2**14)  BOS, start word, middle x reps
    spanish_family(vocab, spanish_counts, reps=24, top=1024)   BOS, word x reps
    icl_family(vocab, english_counts, letters="ARCTHEORY")  BOS, (letter, " for", word)..., query, " for"

`PAPER` records which corpus and how many items the paper's code counts for each family;
`build_families(vocab, corpora, ...)` counts each corpus once and builds the families from it.

How the paper's code builds them (read to understand, reimplemented here), and what we keep:
- a support filtered by string = the tokens passing the string test AND seen in the counted
  corpus (filter of the corpus distribution), weights = their counts, support ordered by id;
- top-k = the k largest counts (ties: the lower id first; the paper's argsort leaves ties
  unspecified), the result ordered by id;
- hex weights = the stationary law of the approximate tokenisation chain of docs/methods.md §7 (no corpus);
  tokens whose long-run frequency is exactly 0 are left out of the support (lpe files need no
  zero weights); the continuation list is a multiset as in the paper's code: a continuation reached through two
  different tokens (via next + u and via prev + next + u) is subtracted twice (`dedupe=True`
  takes the set instead, docs/methods.md §7's literal wording);
- the repeated factor is the last one of the repeatable slice (the paper's rep_range).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

HEX_CHARS = "0123456789abcdef"
FAMILIES = ("hex", "camel", "colon", "if", "caps", "english", "spanish", "icl")

# family -> (corpus, items counted); corpora: "code" (CodeParrot), "english" (C4 en),
# "spanish" (C4 es). The paper's repetition counts are the family functions' defaults.
PAPER = {
    "hex": (None, None),
    "camel": ("code", 1024),
    "colon": ("code", 1024),
    "if": ("code", 1024),
    "caps": ("english", 1024),
    "english": ("english", 2**14),
    "spanish": ("spanish", 2**14),
    "icl": ("english", 2**14),
}
TRUNCATE = 2**14  # tokens per corpus item, BOS and EOS included


# ---- vocabulary ----------------------------------------------------------------------------

@dataclass
class Vocab:
    strings: Sequence[str]
    bos: int
    eos: int
    encode: Callable[[str], list] | None = None

    @property
    def size(self) -> int:
        return len(self.strings)

    def token(self, text: str) -> int:
        """The one token that `text` encodes to (ValueError when it is not exactly one)."""
        if self.encode is None:
            raise ValueError(f"vocabulary has no encode function (needed for {text!r})")
        ids = list(self.encode(text))
        if len(ids) != 1:
            raise ValueError(f"{text!r} encodes to {len(ids)} tokens {ids}, expected exactly one")
        return int(ids[0])

    def tokens_where(self, test: Callable[[str], bool]) -> np.ndarray:
        """Ids whose string passes `test`, ascending."""
        return np.array([i for i, s in enumerate(self.strings) if test(s)], dtype=np.int64)

    @classmethod
    def from_tokenizers(cls, tok, bos: int, eos: int) -> "Vocab":
        """From a Hugging Face `tokenizers.Tokenizer` (special tokens decoded as their text)."""
        n = tok.get_vocab_size(with_added_tokens=True)
        strings = [tok.decode([i], skip_special_tokens=False) for i in range(n)]
        return cls(strings, bos, eos, lambda t: tok.encode(t, add_special_tokens=False).ids)

    @classmethod
    def from_transformers(cls, tok) -> "Vocab":
        """From a `transformers` tokenizer, decoding each id with the tokenizer's defaults as
        the paper's code does (its token_string_dict)."""
        n = max(tok.get_vocab().values()) + 1
        strings = [tok.decode([i]) for i in range(n)]
        return cls(strings, tok.bos_token_id, tok.eos_token_id,
                   lambda t: tok.encode(t, add_special_tokens=False))


# ---- corpus counts ---------------------------------------------------------------------------

def corpus_counts_multi(items: Iterable[Sequence[int]], vocab_size: int, bos: int, eos: int,
                        n_items: Sequence[int | None], truncate: int = TRUNCATE) -> dict:
    """{n: counts [vocab_size] int64 over the first n items (None: all)} in one pass."""
    marks = sorted({n for n in n_items if n is not None})
    out = {}
    counts = np.zeros(vocab_size, dtype=np.int64)
    seen = 0
    want_all = None in n_items
    for tokens in items:
        if marks and seen >= marks[-1] and not want_all:
            break
        seq = np.concatenate(([bos], np.asarray(tokens, dtype=np.int64), [eos]))[:truncate]
        if seq.size and (seq.min() < 0 or seq.max() >= vocab_size):
            raise ValueError(f"corpus item {seen}: token id outside [0, {vocab_size})")
        counts += np.bincount(seq, minlength=vocab_size)
        seen += 1
        if seen in marks:
            out[seen] = counts.copy()
    for n in marks:
        if n not in out:
            raise ValueError(f"corpus has {seen} items, fewer than the {n} asked for")
    if want_all:
        out[None] = counts
    return out


def corpus_counts(items: Iterable[Sequence[int]], vocab_size: int, bos: int, eos: int,
                  n_items: int | None = None, truncate: int = TRUNCATE) -> np.ndarray:
    """Token counts [vocab_size] of the first n_items items, each as [bos]+tokens+[eos] cut to
    `truncate` tokens."""
    return corpus_counts_multi(items, vocab_size, bos, eos, [n_items], truncate)[n_items]


# ---- factors and families ------------------------------------------------------------------

@dataclass
class Factor:
    values: np.ndarray   # [n] int64 token ids, ascending
    weights: np.ndarray  # [n] float64 > 0, unnormalised (counts)

    def __post_init__(self):
        self.values = np.asarray(self.values, dtype=np.int64)
        self.weights = np.asarray(self.weights, dtype=np.float64)
        if self.values.shape != self.weights.shape or self.values.ndim != 1:
            raise ValueError("factor: values and weights must be 1-d of one length")

    @property
    def probs(self) -> np.ndarray:
        return self.weights / self.weights.sum()


def constant(token: int) -> Factor:
    return Factor([token], [1.0])


def restrict(counts: np.ndarray, tokens: np.ndarray) -> Factor:
    """The corpus distribution restricted to `tokens`: those with a positive count, weighted by
    it (the paper's filter_dist of a dataset_dist)."""
    tokens = np.unique(np.asarray(tokens, dtype=np.int64))
    tokens = tokens[counts[tokens] > 0]
    return Factor(tokens, counts[tokens].astype(np.float64))


def top_k(f: Factor, k: int | None) -> Factor:
    """The k heaviest entries (ties: lower id first), ordered by id; None or k >= n: all."""
    if k is None or k >= f.values.size:
        return f
    order = np.lexsort((f.values, -f.weights))[:k]
    keep = np.sort(order)
    return Factor(f.values[keep], f.weights[keep])


@dataclass
class Family:
    name: str
    factors: list          # [n_factors] Factor
    positions: list        # [k] factor index of each position
    description: str = ""
    outputs: np.ndarray | None = field(default=None)  # the paper's output_tokens (information)

    def __post_init__(self):
        for i, f in enumerate(self.factors):
            if f.values.size == 0:
                raise ValueError(f"family {self.name}: factor {i} has an empty support")

    @property
    def k(self) -> int:
        return len(self.positions)

    def log2_inputs(self) -> float:
        """log2 of the number of inputs (product of the position supports)."""
        return float(sum(np.log2(self.factors[f].values.size) for f in self.positions))

    def write(self, path: str, mode: str = "a") -> None:
        """Append /{name} to a docs/methods.md §8 distribution file (tools/lpefiles.py)."""
        import lpefiles
        lpefiles.write_dist(path, self.name, [(f.values, f.weights) for f in self.factors],
                            list(self.positions), description=self.description, mode=mode)


def _repeat(head: list, rep: Factor, reps: int, tail: list = ()) -> tuple[list, list]:
    """Factors head..., rep, tail... and positions with rep repeated `reps` times."""
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    factors = list(head) + [rep] + list(tail)
    h = len(head)
    positions = list(range(h)) + [h] * reps + list(range(h + 1, h + 1 + len(tail)))
    return factors, positions


# ---- string tests (the paper's filters) --------------------------------------------------------

def is_hex(s: str) -> bool:
    return len(s) > 0 and all(c in HEX_CHARS for c in s)


def is_camel(s: str) -> bool:
    return (len(s) > 1 and s[0].isupper() and s[1:].islower() and " " not in s
            and s not in ("None", "True", "False"))


def is_caps(s: str) -> bool:
    return len(s) > 1 and all(c.isupper() or c in ",.?!:;" for c in s)


def is_start_word(s: str) -> bool:
    return all(c.isalpha() for c in s)  # as the paper: the empty string passes too


def is_middle_word(s: str) -> bool:
    return ((len(s) > 1 and s[0] == " " and all(c.isalpha() or c in ",.?!:;" for c in s[1:]))
            or s in (",", ".", "!", "?", ";"))


def is_alpha_or_space(s: str) -> bool:
    return all(c.isalpha() or c.isspace() for c in s)


def is_icl_word(s: str, letter: str) -> bool:
    return len(s) >= 5 and s[0] == " " and s[1].upper() == letter and s[1:].isalpha()


# ---- hex: long-run token frequencies of uniformly random hex text ---------------------------

def hex_transition_weights(strings: Sequence[str], alphabet: int = 16,
                           dedupe: bool = False) -> np.ndarray:
    """W [n, n]: W[prev, next] = alphabet^-len(next) * (1 - sum_u alphabet^-len(u)), u over the
    minimal continuations by which another string equals next + u or prev + next + u (docs/methods.md §7).
    Minimal: u is dropped when it starts with a different continuation of the list. The list is
    a multiset unless `dedupe` (see the module docstring)."""
    n = len(strings)
    by_prefix: dict[str, list[int]] = {}
    for j, s in enumerate(strings):
        for L in range(1, len(s) + 1):
            by_prefix.setdefault(s[:L], []).append(j)
    W = np.zeros((n, n))
    for b, nxt in enumerate(strings):
        own = [strings[o][len(nxt):] for o in by_prefix.get(nxt, ()) if strings[o] != nxt]
        for a, prev in enumerate(strings):
            pn = prev + nxt
            matches = own + [strings[o][len(pn):] for o in by_prefix.get(pn, ())
                             if strings[o] != nxt]
            if dedupe:
                matches = sorted(set(matches))
            minimal = [m for m in matches if not any(m.startswith(o) for o in matches if o != m)]
            W[a, b] = alphabet ** (-len(nxt)) * (1.0 - sum(alphabet ** (-len(m)) for m in minimal))
    return W


def stationary(W: np.ndarray) -> np.ndarray:
    """Stationary law of the chain whose rows are W normalised."""
    P = W / W.sum(axis=1, keepdims=True)
    n = P.shape[0]
    A = np.eye(n) - P.T
    A[-1, :] = 1.0
    b = np.zeros(n)
    b[-1] = 1.0
    return np.linalg.solve(A, b)


def hex_weights(strings: Sequence[str], dedupe: bool = False) -> np.ndarray:
    """The paper's approximate long-run frequencies of the hex tokens `strings`."""
    pi = stationary(hex_transition_weights(strings, 16, dedupe))
    if not np.all(np.isfinite(pi)) or pi.min() < -1e-12:
        raise ValueError("hex weights: the chain has no proper stationary law "
                         f"(min {pi.min():.3g}); check the hex token strings")
    return np.maximum(pi, 0.0)


def hex_empirical(vocab: Vocab, n_chars: int = 2**20, seed: int = 0,
                  chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(hex ids, frequency of each among the tokens) of uniformly random hex text, tokenised in
    chunks of `chunk` characters (each chunk's first and last token dropped: edge effects).
    Tokens of the text that are not hex tokens are not counted. A check of hex_weights."""
    ids = vocab.tokens_where(is_hex)
    where = {int(t): i for i, t in enumerate(ids)}
    counts = np.zeros(ids.size)
    rng = np.random.default_rng(seed)
    for start in range(0, n_chars, chunk):
        text = "".join(HEX_CHARS[c] for c in rng.integers(0, 16, chunk))
        for t in list(vocab.encode(text))[1:-1]:
            i = where.get(int(t))
            if i is not None:
                counts[i] += 1
    return ids, counts / counts.sum()


# ---- the eight families --------------------------------------------------------------------

def hex_family(vocab: Vocab, reps: int = 32, dedupe: bool = False) -> Family:
    ids = vocab.tokens_where(is_hex)
    if ids.size == 0:
        raise ValueError("hex: the vocabulary has no token made only of 0-9a-f")
    w = hex_weights([vocab.strings[i] for i in ids], dedupe)
    keep = w > 0
    f = Factor(ids[keep], w[keep])
    factors, positions = _repeat([constant(vocab.bos)], f, reps)
    return Family("hex", factors, positions,
                  f"BOS, hex x{reps}: {f.values.size} tokens of 0-9a-f weighted by their long-run "
                  "frequency in uniformly random hex text", outputs=f.values)


def camel_family(vocab: Vocab, code_counts: np.ndarray, reps: int = 32) -> Family:
    f = restrict(code_counts, vocab.tokens_where(is_camel))
    factors, positions = _repeat([constant(vocab.bos)], f, reps)
    return Family("camel", factors, positions,
                  f"BOS, camel x{reps}: {f.values.size} CamelCase tokens weighted by code counts",
                  outputs=f.values)


def colon_family(vocab: Vocab, code_counts: np.ndarray, reps: int = 32,
                 top: int | None = 1024) -> Family:
    f = top_k(restrict(code_counts, np.arange(vocab.size)), top)
    factors, positions = _repeat([constant(vocab.bos)], f, reps, [constant(vocab.token(":"))])
    indent = vocab.tokens_where(lambda s: len(s) > 1 and s[0] == "\n" and set(s[1:]) == {" "})
    return Family("colon", factors, positions,
                  f"BOS, code x{reps}, ':': the {f.values.size} most frequent code tokens",
                  outputs=indent)


def if_family(vocab: Vocab, code_counts: np.ndarray, reps: int = 32,
              top: int | None = 1024) -> Family:
    f = top_k(restrict(code_counts, np.arange(vocab.size)), top)
    factors, positions = _repeat([constant(vocab.bos), constant(vocab.token(" if"))], f, reps)
    return Family("if", factors, positions,
                  f"BOS, ' if', code x{reps}: the {f.values.size} most frequent code tokens",
                  outputs=np.array([vocab.token(" else")]) if _single(vocab, " else") else None)


def caps_family(vocab: Vocab, english_counts: np.ndarray, reps: int = 16,
                top: int | None = 1024) -> Family:
    caps = vocab.tokens_where(is_caps)
    f = top_k(restrict(english_counts, caps), top)
    heshe = Factor([vocab.token("He"), vocab.token("She")], [0.5, 0.5])
    middle = [constant(t) for t in vocab.encode(' screamed: "')]
    factors, positions = _repeat([constant(vocab.bos), heshe] + middle, f, reps)
    return Family("caps", factors, positions,
                  f"BOS, He|She, ' screamed: \"' ({len(middle)} tokens), caps x{reps}: "
                  f"{f.values.size} all-caps tokens weighted by English counts", outputs=caps)


def english_family(vocab: Vocab, english_counts: np.ndarray, reps: int = 24,
                   top: int | None = 2**14) -> Family:
    start = top_k(restrict(english_counts, vocab.tokens_where(is_start_word)), top)
    middle_ids = vocab.tokens_where(is_middle_word)
    middle = top_k(restrict(english_counts, middle_ids), top)
    factors, positions = _repeat([constant(vocab.bos), start], middle, reps)
    return Family("english", factors, positions,
                  f"BOS, start word ({start.values.size} tokens), middle x{reps} "
                  f"({middle.values.size} words and punctuation), English counts",
                  outputs=middle_ids)


def spanish_family(vocab: Vocab, spanish_counts: np.ndarray, reps: int = 24,
                   top: int | None = 1024) -> Family:
    alpha = vocab.tokens_where(is_alpha_or_space)
    f = top_k(restrict(spanish_counts, alpha), top)
    factors, positions = _repeat([constant(vocab.bos)], f, reps)
    return Family("spanish", factors, positions,
                  f"BOS, word x{reps}: the {f.values.size} most frequent alphabetic/space tokens "
                  "of Spanish text", outputs=alpha)


def icl_family(vocab: Vocab, english_counts: np.ndarray, letters: str = "ARCTHEORY") -> Family:
    if not letters or not all("A" <= c <= "Z" for c in letters):
        raise ValueError(f"icl: letters must be upper-case A-Z, got {letters!r}")
    for_t = constant(vocab.token(" for"))
    factors, positions = [constant(vocab.bos)], [0]

    def add(f):  # a factor object used at several positions is stored once
        for i, g in enumerate(factors):
            if g is f:
                positions.append(i)
                return
        factors.append(f)
        positions.append(len(factors) - 1)

    for i, c in enumerate(letters):
        add(constant(vocab.token(c if i == 0 else " " + c)))
        add(for_t)
        words = restrict(english_counts, vocab.tokens_where(lambda s, c=c: is_icl_word(s, c)))
        if words.values.size == 0:
            raise ValueError(f"icl: no word of >= 4 letters starting with {c!r} in the corpus")
        add(words)
    query = np.array([vocab.token(" " + chr(ord("A") + i)) for i in range(26)])
    add(Factor(query, np.ones(26)))
    add(for_t)
    return Family("icl", factors, positions,
                  f"BOS, then per letter of {letters}: letter, ' for', a word with that initial "
                  "(English counts); a query letter ' A'..' Z' (uniform), ' for'", outputs=None)


def _single(vocab: Vocab, text: str) -> bool:
    try:
        vocab.token(text)
        return True
    except ValueError:
        return False


# ---- all at once ---------------------------------------------------------------------------

def build_families(vocab: Vocab, corpora: dict, names: Sequence[str] = FAMILIES,
                   n_items: dict | None = None, params: dict | None = None,
                   truncate: int = TRUNCATE) -> list:
    """Families `names` (in that order) from corpora = {"code": items, "english": items,
    "spanish": items}, each an iterable of token-id lists, read once. n_items overrides the
    items counted per family ({family: n or None for all}; default PAPER); params passes extra
    arguments per family ({"hex": {"reps": 16}, "icl": {"letters": "ARC"}, ...})."""
    n_items = n_items or {}
    params = params or {}
    unknown = [n for n in list(names) + list(n_items) + list(params) if n not in PAPER]
    if unknown:
        raise ValueError(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    need: dict[str, set] = {}
    for name in names:
        corpus, n = PAPER[name]
        if corpus is not None:
            need.setdefault(corpus, set()).add(n_items.get(name, n))
    counts = {}
    for corpus, ns in need.items():
        if corpus not in corpora:
            raise ValueError(f"corpus {corpus!r} needed by {sorted(ns)} is missing")
        counts[corpus] = corpus_counts_multi(corpora[corpus], vocab.size, vocab.bos, vocab.eos,
                                             sorted(ns, key=lambda x: (x is None, x or 0)),
                                             truncate)
    fns = {"hex": hex_family, "camel": camel_family, "colon": colon_family, "if": if_family,
           "caps": caps_family, "english": english_family, "spanish": spanish_family,
           "icl": icl_family}
    out = []
    for name in names:
        corpus, n = PAPER[name]
        kw = dict(params.get(name, {}))
        if corpus is None:
            out.append(fns[name](vocab, **kw))
        else:
            out.append(fns[name](vocab, counts[corpus][n_items.get(name, n)], **kw))
    return out
