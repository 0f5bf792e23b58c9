"""Word-level corpora for language models, next to the character-level :class:`~knetpy.datasets.TextCorpus`.

Words come from the same tokenizer and :class:`~knetpy.datasets.Vocabulary` as the dialogue corpus
(lower-case words, punctuation marks as tokens, ``<pad> <bos> <eos> <unk>`` as ids 0-3), so a
word-level language model, a seq2seq chatbot and their data all speak one vocabulary format.

    corpus = kp.datasets.tinyshakespeare_words(max_size=5000)
    for x, y in corpus.batches(32, 35):   # truncated-BPTT windows of word ids
        ...
"""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor
from .dialogue import Vocabulary, tokenize
from .text import TextCorpus, tinyshakespeare


class WordCorpus:
    """A word-level corpus: ``data`` holds the text's token ids (int64), ``vocab`` the :class:`Vocabulary`.

    ``vocab`` defaults to the text's own tokens seen at least ``min_count`` times, the ``max_size``
    most frequent; pass another corpus's ``vocab`` to encode held-out text with the same ids (words
    it lacks become ``<unk>``). :meth:`streams` and :meth:`batches` cut ``data`` for truncated BPTT
    exactly as :class:`TextCorpus` does.
    """

    def __init__(self, text, vocab=None, *, min_count=1, max_size=None):
        if not isinstance(text, str):
            raise TypeError(f"WordCorpus: expected the text (str), got {type(text).__name__}")
        if vocab is None:
            vocab = Vocabulary.build([text], min_count=min_count, max_size=max_size)
        elif not isinstance(vocab, Vocabulary):
            raise TypeError(f"WordCorpus: vocab must be a kp.datasets.Vocabulary, got {type(vocab).__name__}")
        self.vocab = vocab
        self.data = self.encode(text)
        if not len(self.data):
            raise ValueError("WordCorpus: the text has no words")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"WordCorpus({len(self)} tokens, vocab_size={self.vocab_size})"

    def tokens(self, text):
        """The tokens of ``text`` (lower-case words and punctuation)."""
        return tokenize(text)

    def encode(self, text) -> np.ndarray:
        """``text`` as an int64 array of token ids (unknown words as ``<unk>``, id 3)."""
        return np.asarray(self.vocab.encode(text), dtype=np.int64)

    def decode(self, ids):
        """The text of token ids: a str for one sequence (T,), a list of str for a batch (B, T)."""
        ids = np.asarray(ids.value if isinstance(ids, Tensor) else ids)
        if ids.ndim > 2 or (ids.size and ids.dtype.kind not in "iu"):
            raise ValueError(f"WordCorpus.decode: expects integer ids of shape (T,) or (B, T), got "
                             f"shape {ids.shape} dtype {ids.dtype}")
        if ids.ndim == 2:
            return [self.vocab.decode(row) for row in ids]
        return self.vocab.decode(np.atleast_1d(ids))

    # The same windows as the character-level corpus: only ``data`` differs.
    streams = TextCorpus.streams
    batches = TextCorpus.batches


def tinyshakespeare_words(*, min_count=1, max_size=None) -> WordCorpus:
    """The shipped tinyshakespeare as words: 253,599 tokens, 12,388 distinct with the specials (see :class:`WordCorpus`)."""
    return WordCorpus(tinyshakespeare().text, min_count=min_count, max_size=max_size)
