"""Character-level text corpora for language models, and tinyshakespeare.

A :class:`TextCorpus` holds a text, its vocabulary (the distinct characters, sorted) and the text
encoded as int64 indices. For truncated backpropagation through time the encoded text is cut into
``B`` parallel streams, and :meth:`TextCorpus.batches` walks them in windows of ``T`` characters:
row ``b`` of each window continues row ``b`` of the window before, so a recurrent state can be carried
from one window to the next.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..autograd import Tensor
from ._validate import check_int
from .download import Source, check_sha256, find_file, sha256_bytes
from .shipped import shipped_bytes

# Shipped with knetpy (knetpy/datasets/files/, source and licence in the README there): nothing to download.
TINYSHAKESPEARE_SOURCE = Source(name="tinyshakespeare", title="tinyshakespeare", mirrors=())
TINYSHAKESPEARE_FILE = "tinyshakespeare.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def _code_points(text: str) -> np.ndarray:
    """The Unicode code points of ``text`` as a uint32 array, without a Python-level loop."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


class TextCorpus:
    """A character-level corpus.

    ``TextCorpus(text)`` takes the text itself; ``TextCorpus(pathlib.Path(...))`` or
    :meth:`from_file` reads a UTF-8 file. ``vocab`` (distinct characters, in the order that defines
    their indices) defaults to the text's sorted distinct characters; pass another corpus's ``vocab``
    to encode held-out text with the same indices.

    Attributes: ``text``, ``vocab`` (tuple of characters), ``index`` (character -> index),
    ``data`` (the text encoded, int64 of shape (len(text),)), ``vocab_size``.
    """

    def __init__(self, text, vocab=None):
        if isinstance(text, os.PathLike):
            text = Path(text).read_text(encoding="utf-8")
        elif not isinstance(text, str):
            raise TypeError(f"TextCorpus: expected the text (str) or a pathlib.Path, got {type(text).__name__}")
        elif "\n" not in text and len(text) < 4096 and os.path.isfile(text):
            # A str that names a file is almost surely meant as the file, not as a one-line corpus.
            raise TypeError(f"TextCorpus: {text!r} is a file name; use TextCorpus.from_file({text!r}) or "
                            f"TextCorpus(pathlib.Path({text!r})) to read it (a str is taken as the text itself)")
        if vocab is None:
            vocab = sorted(set(text))
        vocab = tuple(vocab)
        if not all(isinstance(c, str) and len(c) == 1 for c in vocab):
            raise TypeError("TextCorpus: vocab must be a sequence of single characters")
        if len(set(vocab)) != len(vocab):
            raise ValueError("TextCorpus: vocab has repeated characters")
        if not vocab:
            raise ValueError("TextCorpus: the text is empty and no vocab was given")
        self.text = text
        self.vocab = vocab
        self.index = {c: i for i, c in enumerate(vocab)}
        self._codes = _code_points("".join(vocab))  # code point of each index, for decode
        self._order = np.argsort(self._codes, kind="stable")  # encode looks codes up in sorted order
        self._sorted_codes = self._codes[self._order]
        self.data = self.encode(text)

    @classmethod
    def from_file(cls, path, vocab=None, encoding="utf-8"):
        """The corpus of a text file."""
        return cls(Path(path).read_text(encoding=encoding), vocab=vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"TextCorpus({len(self)} characters, vocab_size={self.vocab_size})"

    def encode(self, text: str) -> np.ndarray:
        """``text`` as an int64 array of vocabulary indices; a ValueError names characters not in the vocab."""
        if not isinstance(text, str):
            raise TypeError(f"TextCorpus.encode: expected a str, got {type(text).__name__}")
        codes = _code_points(text)
        pos = np.searchsorted(self._sorted_codes, codes)
        pos_clipped = np.minimum(pos, len(self._sorted_codes) - 1)
        unknown = self._sorted_codes[pos_clipped] != codes
        if unknown.any():
            chars = sorted({chr(c) for c in codes[unknown]})
            shown = ", ".join(repr(c) for c in chars[:10]) + (", ..." if len(chars) > 10 else "")
            raise ValueError(f"TextCorpus.encode: {len(chars)} character(s) not in the vocabulary: {shown}")
        return self._order[pos_clipped].astype(np.int64)

    def decode(self, indices):
        """The text of vocabulary indices: a str for one sequence (or one index), a list of str for a (B, T) batch."""
        if isinstance(indices, Tensor):
            indices = indices.value
        ids = np.asarray(indices)
        if ids.ndim > 2:
            raise ValueError(f"TextCorpus.decode: expects one sequence (T,) or a batch (B, T), got shape {ids.shape}")
        if ids.size and ids.dtype.kind not in "iu":
            raise TypeError(f"TextCorpus.decode: indices must be integers, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"TextCorpus.decode: indices must lie in 0..{self.vocab_size - 1}, found "
                             f"{ids.min()}..{ids.max()}")
        ids = ids.astype(np.int64)
        if ids.ndim == 2:
            return [self._text_of(row) for row in ids]
        return self._text_of(np.atleast_1d(ids))

    def _text_of(self, ids: np.ndarray) -> str:
        return self._codes[ids].tobytes().decode("utf-32-le", "surrogatepass")

    def streams(self, batch_size: int):
        """The text cut into ``batch_size`` equal streams: ``(inputs, targets)``, each (B, L) int64.

        ``targets`` is ``inputs`` shifted one character ahead. L = (len - 1) // B; the few characters
        that do not fill a whole row are dropped. Both are views of ``data`` (no copy).
        """
        batch_size = check_int(batch_size, "batch_size", "TextCorpus.streams")
        length = (len(self.data) - 1) // batch_size
        if length < 1:
            raise ValueError(f"TextCorpus.streams: a text of {len(self.data)} characters is too short for "
                             f"{batch_size} streams (each needs at least 2 characters)")
        used = batch_size * length
        return (self.data[:used].reshape(batch_size, length), self.data[1:used + 1].reshape(batch_size, length))

    def batches(self, batch_size: int, seq_len: int, drop_last: bool = False) -> BPTTBatches:
        """Windows for truncated BPTT: iterate to get ``(x, y)``, each (batch_size, seq_len) int64.

        ``y`` holds the character after each one of ``x``. The last window is shorter when seq_len does
        not divide the stream length, unless ``drop_last``.
        """
        seq_len = check_int(seq_len, "seq_len", "TextCorpus.batches")
        inputs, targets = self.streams(batch_size)
        return BPTTBatches(inputs, targets, seq_len, drop_last)


class BPTTBatches:
    """The windows of :meth:`TextCorpus.batches`: iterable (any number of times), with ``len``."""

    def __init__(self, inputs, targets, seq_len, drop_last):
        self.inputs, self.targets, self.seq_len, self.drop_last = inputs, targets, seq_len, drop_last

    def __len__(self) -> int:
        length = self.inputs.shape[1]
        return length // self.seq_len if self.drop_last else math.ceil(length / self.seq_len)

    def __iter__(self):
        for k in range(len(self)):
            window = slice(k * self.seq_len, (k + 1) * self.seq_len)
            yield self.inputs[:, window], self.targets[:, window]


def tinyshakespeare(path=None, *, download=True) -> TextCorpus:
    """Karpathy's tinyshakespeare (1,115,394 characters, 65 distinct) as a :class:`TextCorpus`.

    ``path`` is the text file or a folder holding ``tinyshakespeare.txt``; without it the copy shipped
    with knetpy (public domain, compressed) is read; ``download`` is accepted for compatibility.
    Its SHA-256 is checked wherever it comes from. For any other text use :class:`TextCorpus`.
    """
    who = "kp.datasets.tinyshakespeare"
    if path is None:
        raw = shipped_bytes(TINYSHAKESPEARE_FILE, TINYSHAKESPEARE_SHA256, who)
    else:
        file = find_file(TINYSHAKESPEARE_SOURCE, (TINYSHAKESPEARE_FILE,), path, file_ok=True, who=who)
        raw = file.read_bytes()
        check_sha256(sha256_bytes(raw), TINYSHAKESPEARE_SHA256, file)
    return TextCorpus(raw.decode("utf-8"))
