"""A small question/answer corpus for chatbots, and a word-level tokenizer and vocabulary.

:func:`dialogue` returns the pairs shipped in ``files/dialogue.tsv.gz`` (made from templates by
``files/make_dialogue.py``; public domain, CC0). :func:`tokenize` splits text into lower-case words
and punctuation; :class:`Vocabulary` maps tokens to ids with ``<pad>``, ``<bos>``, ``<eos>`` and
``<unk>`` first (ids 0-3), as :class:`knetpy.seq2seq.Seq2Seq` expects by default.
"""

from __future__ import annotations

import re
from collections import Counter

from .shipped import shipped_bytes

DIALOGUE_FILE = "dialogue.tsv"
DIALOGUE_SHA256 = "77173317395fadba7a8fd665e50061dd0d044a8b858c9a6f18e664dbd4a44a98"
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(4)

_TOKEN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")
_NO_SPACE_BEFORE = set(".,!?:;)'")


def dialogue():
    """The shipped (question, answer) pairs: greetings, small talk, arithmetic, days, facts, copying."""
    text = shipped_bytes(DIALOGUE_FILE, DIALOGUE_SHA256, "dialogue").decode("utf-8")
    return [tuple(line.split("\t")) for line in text.splitlines()]


def tokenize(text):
    """Lower-case words (with an apostrophe inside: "don't") and single punctuation marks."""
    if not isinstance(text, str):
        raise TypeError(f"tokenize: expected a str, got {type(text).__name__}")
    return _TOKEN.findall(text.lower())


def detokenize(tokens):
    """Tokens back into a sentence: no space before punctuation, sentences and "i" capitalised."""
    out = ""
    for tok in tokens:
        out += tok if (not out or tok in _NO_SPACE_BEFORE) else " " + tok
    out = re.sub(r"(^|[.!?] )(\w)", lambda m: m.group(1) + m.group(2).upper(), out)
    return re.sub(r"\bi\b", "I", out)


class Vocabulary:
    """Tokens <-> ids. ``Vocabulary(tokens)`` takes the list (the special tokens first, added if missing);
    :meth:`build` counts the tokens of some texts."""

    def __init__(self, tokens):
        tokens = [t for t in tokens if t not in SPECIALS]
        if not all(isinstance(t, str) and t for t in tokens):
            raise TypeError("Vocabulary: tokens must be non-empty strings")
        self.tokens = SPECIALS + tuple(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("Vocabulary: tokens must be distinct")

    @classmethod
    def build(cls, texts, min_count=1, max_size=None):
        """The tokens of ``texts`` seen at least ``min_count`` times, most frequent first (ties
        alphabetically); ``max_size`` caps the vocabulary, the special tokens included."""
        if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int)
                                     or max_size <= len(SPECIALS)):
            raise ValueError(f"Vocabulary.build: max_size must be an int > {len(SPECIALS)} (the special "
                             f"tokens count), got {max_size!r}")
        counts = Counter(tok for text in texts for tok in tokenize(text))
        tokens = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls(tokens if max_size is None else tokens[: max_size - len(SPECIALS)])

    def __len__(self):
        return len(self.tokens)

    def encode(self, text):
        """Token ids of ``text`` (unknown words as ``<unk>``), without bos/eos."""
        return [self.index.get(tok, UNK) for tok in tokenize(text)]

    def decode(self, ids):
        """The sentence of ``ids``, stopping at ``<eos>`` and leaving out padding and ``<bos>``."""
        return detokenize(self.words(ids))

    def words(self, ids):
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.tokens[i] if 0 <= i < len(self.tokens) else SPECIALS[UNK])
        return out
