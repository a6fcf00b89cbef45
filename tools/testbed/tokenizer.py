#!/usr/bin/env python3
"""tokenizer.py: the testbed's byte-level BPE (Hugging Face `tokenizers`), trained on the train
split of the corpus (corpus.py).

Like the paper's tokenizer (gpt-neox-tokenizer-digits): byte level, every digit its own token,
EOS = 0 ("<|endoftext|>"), BOS = 1 ("<|bos|>"), PAD = 2 ("<|pad|>"). The families of docs/methods.md §7
need some fixed words to be single tokens (" if", " else", " for", ":", "He", "She", the capital
letters alone and after a space); those the training leaves out are appended as extra merges of
lowest priority (they apply only where nothing else does), so the vocabulary keeps its size.

Usage: tokenizer.py --corpus DIR --out tokenizer.json [--vocab 4096]
Library: load(path) -> tokenizers.Tokenizer; token_bytes(tok) -> [bytes] per id;
         vocab(tok) -> recipes.Vocab
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import corpus as corpus_mod  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|bos|>", "<|pad|>"]
EOS, BOS, PAD = 0, 1, 2
REQUIRED = ([" if", " else", " for", ":", "He", "She"] + [chr(c) for c in range(65, 91)]
            + [" " + chr(c) for c in range(65, 91)])


def byte_alphabet() -> dict[int, str]:
    """The byte-level alphabet: byte -> the printable character that stands for it (printable
    Latin-1 bytes stand for themselves, the others take the code points from 256 on, in order)."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


CHAR_TO_BYTE = {c: b for b, c in byte_alphabet().items()}


def new_tokenizer(model) -> Tokenizer:
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    return tok


def texts(corpus_dir: Path, split: str = "train"):
    for name in ("code", "english", "spanish"):
        for it in corpus_mod.read(corpus_dir / f"{name}.jsonl", split):
            yield it["text"]


def train(corpus_dir: Path, vocab_size: int) -> Tokenizer:
    tok = new_tokenizer(models.BPE())
    tr = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                             show_progress=False)
    tok.train_from_iterator(texts(corpus_dir), trainer=tr)
    return tok


def append_merges(tok: Tokenizer) -> tuple[Tokenizer, int]:
    """Append merges (lowest priority) that make every REQUIRED word one token; (tokenizer,
    number of tokens added)."""
    spec = json.loads(tok.to_str())
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    added = 0
    for w in REQUIRED:
        pieces = [tok.id_to_token(i) for i in tok.encode(w, add_special_tokens=False).ids]
        while len(pieces) > 1:  # merge left to right
            a, b = pieces[0], pieces[1]
            if a + b not in vocab:
                vocab[a + b] = len(vocab)
                merges.append([a, b] if not merges or isinstance(merges[0], list) else f"{a} {b}")
                added += 1
            pieces = [a + b] + pieces[2:]
    return Tokenizer.from_str(json.dumps(spec)), added


def with_required(corpus_dir: Path, vocab_size: int) -> Tokenizer:
    """Train, leaving room for the merges that the REQUIRED words need, so that the final
    vocabulary has exactly vocab_size tokens (a few retrainings at most)."""
    room = 0
    for _ in range(4):
        tok, added = append_merges(train(corpus_dir, vocab_size - room))
        if added == room:
            break
        room = added
    still = [w for w in REQUIRED if len(tok.encode(w, add_special_tokens=False).ids) != 1]
    if still:
        raise RuntimeError(f"tokenizer: could not make single tokens of {still}")
    return tok


def load(path: str | Path) -> Tokenizer:
    return Tokenizer.from_file(str(path))


def token_bytes(tok: Tokenizer) -> list[bytes]:
    """The bytes of every token id (special tokens: their text in UTF-8)."""
    n = tok.get_vocab_size(with_added_tokens=True)
    specials = {t.content for t in tok.get_added_tokens_decoder().values()}
    out = []
    for i in range(n):
        s = tok.id_to_token(i)
        out.append(s.encode() if s in specials else bytes(CHAR_TO_BYTE[c] for c in s))
    return out


def vocab(tok: Tokenizer):
    import recipes
    return recipes.Vocab.from_tokenizers(tok, bos=BOS, eos=EOS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", type=int, default=4096)
    a = ap.parse_args()
    tok = with_required(Path(a.corpus), a.vocab)
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    # digits one per token, bytes round trip
    assert all(sum(c.isdigit() for c in bytes(b).decode("latin-1")) <= 1 for b in token_bytes(tok))
    sample = "x = 12345 if ñandú else 'héllo'\n"
    assert b"".join(token_bytes(tok)[i] for i in tok.encode(sample).ids) == sample.encode()
    tmp = a.out + ".tmp"
    tok.save(tmp)
    Path(tmp).replace(a.out)
    n = tok.get_vocab_size(with_added_tokens=True)
    print(f"tokenizer: {n} tokens -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
