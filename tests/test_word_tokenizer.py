"""Word-level tokenizer, vocabulary and corpus (shipped Shakespeare), next to the character-level one."""

import numpy as np
import pytest

import knetpy as kp
from knetpy.datasets import Vocabulary, WordCorpus, tinyshakespeare_words, tokenize


def test_tokenizer_words_and_punctuation():
    assert tokenize("Don't stop, Horatio!  2 ghosts?") == ["don't", "stop", ",", "horatio", "!", "2", "ghosts", "?"]


def test_vocabulary_max_size_keeps_the_most_frequent():
    v = Vocabulary.build(["a b b c c c", "c d"], max_size=6)
    assert v.tokens == ("<pad>", "<bos>", "<eos>", "<unk>", "c", "b")
    assert v.encode("c a b") == [4, 3, 5]
    with pytest.raises(ValueError, match="max_size must be an int > 4"):
        Vocabulary.build(["a"], max_size=4)


def test_word_corpus_round_trip_and_unknown_words():
    text = "The cat sat. The dog sat, too."
    c = WordCorpus(text)
    assert len(c) == 10 and c.data.dtype == np.int64
    assert c.decode(c.data) == text
    held_out = WordCorpus("The bird sat.", vocab=c.vocab)
    assert held_out.data[1] == 3 and held_out.vocab is c.vocab  # <unk>
    assert c.decode(np.stack([c.data[:3], c.data[4:7]])) == ["The cat sat", "The dog sat"]
    with pytest.raises(TypeError, match="WordCorpus: expected the text"):
        WordCorpus(b"bytes")
    with pytest.raises(ValueError, match="no words"):
        WordCorpus("   ")


def test_word_batches_are_bptt_windows():
    c = WordCorpus("one two three four five six seven eight nine ten eleven twelve thirteen")
    windows = list(c.batches(2, 3))
    x, y = windows[0]
    assert x.shape == (2, 3) and np.all(c.data[1:][: x.shape[1]] == y[0])
    inputs, targets = c.streams(2)
    np.testing.assert_array_equal(targets[:, :-1], inputs[:, 1:])  # y is x one word ahead
    assert sum(w[0].shape[1] for w in windows) == inputs.shape[1]


def test_shipped_shakespeare_words():
    c = tinyshakespeare_words(max_size=2000)
    chars = kp.datasets.tinyshakespeare()
    assert c.vocab_size == 2000 and 200_000 < len(c) < len(chars) / 3
    assert c.vocab.tokens[4:8] == (",", ".", "the", "i") or set(c.vocab.tokens[4:10]) >= {",", "the"}
    assert (c.data == 3).mean() < 0.15  # 2,000 words cover most of the text
    assert c.decode(c.data[:4]) == "First citizen: before"
