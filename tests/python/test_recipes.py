"""tools/recipes.py (methods.md §7): the eight families on a toy vocabulary and a tiny corpus whose
supports and counts are checked by hand; the hex long-run frequencies against a hand-solved
chain, a literal transcription of methods.md §7's definition, and the empirical token frequencies of
random hex text; corpus counting (BOS/EOS, truncation, prefixes); written files read back and
accepted by `lpe dist show`. numpy and h5py only: the toy tokenizer is a greedy longest match.
"""
import itertools
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import lpefiles  # noqa: E402
import recipes  # noqa: E402
from conftest import run_lpe  # noqa: E402


class Greedy:
    """Longest-match tokenizer over a list of strings; ids 0 and 1 are EOS and BOS."""

    def __init__(self, words):
        self.strings = ["<|eos|>", "<|bos|>"] + list(dict.fromkeys(words))
        self.ids = {s: i for i, s in enumerate(self.strings)}
        self.longest = max(len(s) for s in self.strings[2:])

    def encode(self, text):
        out, i = [], 0
        while i < len(text):
            for L in range(min(self.longest, len(text) - i), 0, -1):
                t = self.ids.get(text[i:i + L])
                if t is not None and t > 1:
                    out.append(t)
                    i += L
                    break
            else:
                raise ValueError(f"no token for {text[i]!r}")
        return out

    def vocab(self):
        return recipes.Vocab(self.strings, bos=1, eos=0, encode=self.encode)


CHARS = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;!?\"'()=\n_")
WORDS = CHARS + [" " + chr(ord("A") + i) for i in range(26)] + [
    " if", " else", " for", " return", "def", "Foo", "Bar", "None", "True", "ab", "de",
    "He", "She", " screamed", "HELLO", "OK", "OK!", "Ab c", " the", " cat", " sat",
    " Apple", " apple", " Rain", " Cat", "The", " el", " gato", "\n    ", " Ark"]


@pytest.fixture(scope="module")
def tok():
    return Greedy(WORDS)


@pytest.fixture(scope="module")
def vocab(tok):
    return tok.vocab()


def ids(tok, *strings):
    return sorted(tok.ids[s] for s in strings)


# No space before a capital where a word must stay whole: the toy tokenizer's " A".." Z" (the
# icl query letters) would otherwise win the longest match.
CODE = ["def f(x):\n    return(None) if x else x",
        "y=Foo(x) if x else(True)",
        "z=Foo;w=Bar;v=Foo"]
ENGLISH = ["The cat sat.HELLO,OK!He screamed",
           "The Apple apple Rain.OK Cat"]
SPANISH = ["el gato\n el gato el"]


def items(tok, texts):
    return [tok.encode(t) for t in texts]


# ---- corpus counts -------------------------------------------------------------------------

def test_corpus_counts_bos_eos_truncation_prefixes(tok):
    its = [[5, 6, 7], [5], [8, 8, 8, 8, 8]]
    c = recipes.corpus_counts(its, 10, bos=1, eos=0)
    want = np.zeros(10, int)
    for it in its:
        for t in [1] + it + [0]:
            want[t] += 1
    assert list(c) == list(want)
    # cut to 4 tokens per item: [1,5,6,7] [1,5,0] [1,8,8,8]
    c4 = recipes.corpus_counts(its, 10, 1, 0, truncate=4)
    assert c4[8] == 3 and c4[0] == 1 and c4[7] == 1 and c4[1] == 3
    multi = recipes.corpus_counts_multi(iter(its), 10, 1, 0, [1, 2, None])
    assert list(multi[1]) == list(recipes.corpus_counts(its[:1], 10, 1, 0))
    assert list(multi[2]) == list(recipes.corpus_counts(its[:2], 10, 1, 0))
    assert list(multi[None]) == list(c)
    with pytest.raises(ValueError, match="fewer than"):
        recipes.corpus_counts(its, 10, 1, 0, n_items=4)
    with pytest.raises(ValueError, match="outside"):
        recipes.corpus_counts([[12]], 10, 1, 0)


def test_top_k_ties_and_order():
    f = recipes.Factor([3, 5, 9, 11, 20], [2, 7, 2, 7, 1])
    t = recipes.top_k(f, 3)
    assert list(t.values) == [3, 5, 11]  # 5 and 11 (7 each), then 3 before 9 (tie: lower id)
    assert list(t.weights) == [2, 7, 7]
    assert recipes.top_k(f, None) is f and recipes.top_k(f, 5) is f


def test_restrict_drops_unseen(vocab, tok):
    counts = np.zeros(vocab.size)
    counts[tok.ids["Foo"]] = 3
    f = recipes.restrict(counts, [tok.ids["Bar"], tok.ids["Foo"]])
    assert list(f.values) == [tok.ids["Foo"]] and list(f.weights) == [3]


# ---- the families on the tiny corpus (supports and counts checked by hand) ------------------

def code_counts(tok, vocab):
    return recipes.corpus_counts(items(tok, CODE), vocab.size, 1, 0)


def eng_counts(tok, vocab):
    return recipes.corpus_counts(items(tok, ENGLISH), vocab.size, 1, 0)


def test_camel(tok, vocab):
    fam = recipes.camel_family(vocab, code_counts(tok, vocab), reps=3)
    f = fam.factors[1]
    # Foo 3x, Bar 1x; None and True are excluded by name, "Ab c" has a space, "He"/"She" unseen
    assert list(f.values) == ids(tok, "Foo", "Bar")
    assert dict(zip(f.values, f.weights)) == {tok.ids["Foo"]: 3, tok.ids["Bar"]: 1}
    assert fam.positions == [0, 1, 1, 1] and list(fam.factors[0].values) == [1]
    assert recipes.is_camel("Abc") and not recipes.is_camel("ABc") and not recipes.is_camel("A")
    assert not recipes.is_camel("Ab c") and not recipes.is_camel("None")


def counter_reference(tok, texts):
    """Counts by string over [BOS] + tokens + [EOS], independently of recipes."""
    from collections import Counter
    c = Counter()
    for t in texts:
        c.update(["<|bos|>"] + [tok.strings[i] for i in tok.encode(t)] + ["<|eos|>"])
    return c


def test_colon_and_if(tok, vocab):
    cc = code_counts(tok, vocab)
    ref = counter_reference(tok, CODE)
    assert {tok.strings[i]: n for i, n in enumerate(cc) if n} == dict(ref)
    fam = recipes.colon_family(vocab, cc, reps=4, top=3)
    top3 = sorted(ref, key=lambda s: (-ref[s], tok.ids[s]))[:3]
    assert list(fam.factors[1].values) == ids(tok, *top3)
    # by hand: x 5; then " ", "(", ")", "=" 4 each: the tie goes to the lower ids " " and "("
    assert top3 == ["x", " ", "("]
    assert fam.positions == [0, 1, 1, 1, 1, 2]
    assert list(fam.factors[2].values) == [tok.ids[":"]]
    assert list(fam.outputs) == [tok.ids["\n    "]]
    fam = recipes.if_family(vocab, cc, reps=2, top=None)
    assert fam.positions == [0, 1, 2, 2] and list(fam.factors[1].values) == [tok.ids[" if"]]
    assert fam.factors[2].values.size == len(ref)  # every seen token, BOS and EOS too


def test_caps(tok, vocab):
    fam = recipes.caps_family(vocab, eng_counts(tok, vocab), reps=2)
    # item 1 "...HELLO,OK!He screamed" -> HELLO, OK! (one token); item 2 "...OK Cat" -> OK
    f = fam.factors[-1]
    assert dict(zip(f.values, f.weights)) == {tok.ids["HELLO"]: 1, tok.ids["OK"]: 1,
                                              tok.ids["OK!"]: 1}
    heshe = fam.factors[1]
    assert list(heshe.values) == [tok.ids["He"], tok.ids["She"]] and list(heshe.probs) == [.5, .5]
    middle = [tok.strings[fam.factors[p].values[0]] for p in fam.positions[2:-2]]
    assert "".join(middle) == ' screamed: "'
    assert fam.positions[-2:] == [len(fam.factors) - 1] * 2


def test_english_and_spanish(tok, vocab):
    ec = eng_counts(tok, vocab)
    fam = recipes.english_family(vocab, ec, reps=3)
    start = {tok.strings[v]: w for v, w in zip(fam.factors[1].values, fam.factors[1].weights)}
    middle = {tok.strings[v]: w for v, w in zip(fam.factors[2].values, fam.factors[2].weights)}
    # start: alphabetic, no space: The 2, He 1, and the single letters seen
    assert start["The"] == 2 and start["He"] == 1 and " cat" not in start
    assert all(s.isalpha() for s in start)
    # middle: a space then letters, or , . ! ? ;
    assert middle == {" cat": 1, " sat": 1, " screamed": 1, " Apple": 1, " apple": 1,
                      " Rain": 1, " Cat": 1, ".": 2, ",": 1}
    assert fam.positions == [0, 1, 2, 2, 2]
    fam = recipes.spanish_family(vocab, recipes.corpus_counts(items(tok, SPANISH), vocab.size,
                                                              1, 0), reps=2, top=2)
    sp = {tok.strings[v]: w for v, w in zip(fam.factors[1].values, fam.factors[1].weights)}
    assert sp == {" el": 2, " gato": 2}  # "e", "l", "\n" (1 each) cut by the top 2
    assert recipes.is_alpha_or_space("\n ") and not recipes.is_alpha_or_space("a1")


def test_icl(tok, vocab):
    fam = recipes.icl_family(vocab, eng_counts(tok, vocab), letters="AR")
    s = lambda p: [tok.strings[v] for v in fam.factors[fam.positions[p]].values]  # noqa: E731
    # BOS, A, for, word(A), R, for, word(R), query, for
    assert fam.k == 9
    assert s(1) == ["A"] and s(2) == [" for"] and s(3) == [" Apple", " apple"]
    assert s(4) == [" R"] and s(6) == [" Rain"] and s(8) == [" for"]
    q = fam.factors[fam.positions[7]]
    assert [tok.strings[v] for v in q.values] == [" " + chr(65 + i) for i in range(26)]
    assert np.allclose(q.probs, 1 / 26)
    assert fam.positions[2] == fam.positions[5] == fam.positions[8]  # one shared " for" factor
    with pytest.raises(ValueError, match="starting with 'C'"):
        recipes.icl_family(vocab, eng_counts(tok, vocab), letters="AC")  # " Cat" has 3 letters


def test_fixed_tokens_must_be_single(vocab):
    with pytest.raises(ValueError, match="exactly one"):
        vocab.token(" screamed:")


# ---- hex ------------------------------------------------------------------------------------

def spec_weights(strings, alphabet=16, dedupe=False):
    """methods.md §7's definition, literally, with exact fractions (an independent transcription)."""
    n = len(strings)
    W = [[Fraction(0)] * n for _ in range(n)]
    for a, prev in enumerate(strings):
        for b, nxt in enumerate(strings):
            cont = []
            for other in strings:
                if other == nxt:
                    continue
                for head in (nxt, prev + nxt):
                    if other.startswith(head):
                        cont.append(other[len(head):])
            if dedupe:
                cont = list(set(cont))
            keep = [u for u in cont if not any(u != v and u.startswith(v) for v in cont)]
            W[a][b] = Fraction(1, alphabet ** len(nxt)) * (
                1 - sum(Fraction(1, alphabet ** len(u)) for u in keep))
    return W


def test_hex_hand_solved():
    # 16 single characters and "ab": solved by hand, pi_a = pi_b = 1/17, pi_ab = 1/255, others 16/255
    strings = list(recipes.HEX_CHARS) + ["ab"]
    pi = recipes.hex_weights(strings)
    want = [Fraction(16, 255)] * 17
    want[10], want[11], want[16] = Fraction(1, 17), Fraction(1, 17), Fraction(1, 255)
    assert sum(want) == 1
    assert np.allclose(pi, [float(w) for w in want], rtol=1e-12, atol=0)
    # single characters only: uniform
    assert np.allclose(recipes.hex_weights(list(recipes.HEX_CHARS)), 1 / 16, rtol=1e-12)


@pytest.mark.parametrize("dedupe", [False, True])
def test_hex_weights_match_spec_transcription(dedupe):
    rng = np.random.default_rng(5)
    for trial in range(4):
        extra = {"".join(rng.choice(list("abcdef0"), rng.integers(2, 4))) for _ in range(12)}
        strings = list(recipes.HEX_CHARS) + sorted(extra) + ["cab", "ca"]
        strings = list(dict.fromkeys(strings))
        W = recipes.hex_transition_weights(strings, 16, dedupe)
        ref = spec_weights(strings, 16, dedupe)
        assert np.allclose(W, [[float(x) for x in row] for row in ref], rtol=1e-13, atol=1e-16)
    # the multiset case: after "c", the next token "a" is blocked by "ab" (via next + u) and by
    # "cab" (via prev + next + u), both with u = "b": subtracted twice unless dedupe
    strings = list(recipes.HEX_CHARS) + ["ab", "cab"]
    a, c = strings.index("a"), strings.index("c")
    multi = recipes.hex_transition_weights(strings)[c, a]
    single = recipes.hex_transition_weights(strings, dedupe=True)[c, a]
    assert np.isclose(multi, (1 - 2 / 16) / 16) and np.isclose(single, (1 - 1 / 16) / 16)


def test_hex_empirical_agrees_where_the_chain_is_exact():
    # For greedy longest match over the singles and "ab" the chain of methods.md §7 is exact (see
    # test_hex_hand_solved); the token frequencies of random text must agree within binomial
    # error: 2^17 characters give ~1.2e5 tokens; bound 5 standard errors per token.
    g = Greedy(list(recipes.HEX_CHARS) + ["ab", "z"])
    v = g.vocab()
    ids_, freq = recipes.hex_empirical(v, n_chars=2**17, seed=3)
    assert [g.strings[i] for i in ids_] == list(recipes.HEX_CHARS) + ["ab"]
    pi = recipes.hex_weights([g.strings[i] for i in ids_])
    n = 2**17 / (1 + pi[-1])  # tokens: characters / mean token length ("ab" has 2)
    se = np.sqrt(pi * (1 - pi) / n)
    assert np.all(np.abs(freq - pi) < 5 * se), (freq, pi)
    # and it can fail: the uniform law is rejected
    assert np.any(np.abs(freq - np.full(17, 1 / 17)) > 5 * se)


def test_hex_family(tok, vocab):
    fam = recipes.hex_family(vocab, reps=5)
    strings = [tok.strings[i] for i in fam.factors[1].values]
    # the hex tokens of the toy vocabulary: digits, a-f, "ab", "de", "def"
    assert sorted(strings) == sorted(list("0123456789abcdef") + ["ab", "de", "def"])
    assert fam.positions == [0] + [1] * 5
    assert np.isclose(fam.factors[1].probs.sum(), 1)
    pi = recipes.hex_weights([tok.strings[i] for i in fam.factors[1].values])
    assert np.allclose(fam.factors[1].probs, pi)


# ---- all families, files -------------------------------------------------------------------

def test_build_families_write_and_lpe_accepts(tok, vocab, tmp_path):
    corpora = {"code": items(tok, CODE), "english": iter(items(tok, ENGLISH)),
               "spanish": items(tok, SPANISH)}
    n_items = {f: None for f in recipes.FAMILIES if f != "hex"}
    params = {"hex": {"reps": 3}, "camel": {"reps": 3}, "colon": {"reps": 3}, "if": {"reps": 3},
              "caps": {"reps": 2}, "english": {"reps": 2}, "spanish": {"reps": 2},
              "icl": {"letters": "AR"}}
    fams = recipes.build_families(vocab, corpora, n_items=n_items, params=params)
    assert [f.name for f in fams] == list(recipes.FAMILIES)
    # the english stream was read once and shared by caps, english and icl
    assert fams[5].factors[1].values.size > 0 and fams[7].k == 9
    path = tmp_path / "d.h5"
    for f in fams:
        f.write(str(path))
    for f in fams:
        factors, positions = lpefiles.read_dist(str(path), f.name)
        assert list(positions) == f.positions
        for (v, p), g in zip(factors, f.factors):
            assert list(v) == list(g.values) and np.allclose(p, g.probs, rtol=1e-15)
        r = run_lpe("dist", "show", path, f.name, "--vocab", vocab.size, check=0)
        assert f.name in r.stdout
    # the paper's defaults: counts of the first 1024 / 2^14 items are required
    with pytest.raises(ValueError, match="fewer than the 1024"):
        recipes.build_families(vocab, corpora, names=["camel"])
    with pytest.raises(ValueError, match="unknown families"):
        recipes.build_families(vocab, corpora, names=["nope"])
    with pytest.raises(ValueError, match="missing"):
        recipes.build_families(vocab, {}, names=["camel"], n_items={"camel": None})


def test_paper_repetitions_are_the_defaults(vocab, tok):
    cc, ec = code_counts(tok, vocab), eng_counts(tok, vocab)
    ks = {"hex": recipes.hex_family(vocab).k, "camel": recipes.camel_family(vocab, cc).k,
          "colon": recipes.colon_family(vocab, cc).k, "if": recipes.if_family(vocab, cc).k,
          "caps": recipes.caps_family(vocab, ec).k, "english": recipes.english_family(vocab, ec).k,
          "spanish": recipes.spanish_family(vocab, ec).k}
    n_scream = len(tok.encode(' screamed: "'))
    assert ks == {"hex": 33, "camel": 33, "colon": 34, "if": 34, "caps": 2 + n_scream + 16,
                  "english": 26, "spanish": 25}
    assert recipes.icl_family(vocab, ec, letters="AR").k == 9  # 1 + 3 per letter + 2
