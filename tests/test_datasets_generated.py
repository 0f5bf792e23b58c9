"""Datasets made on the spot: spirals, temporal order, echo, scikit-learn's digits, and TextCorpus."""

import sys

import numpy as np
import pytest

import knetpy as kp
from knetpy.datasets.sequences import TEMPORAL_ORDER_LEVELS, TEMPORAL_ORDER_SYMBOLS

# --- spirals --------------------------------------------------------------------------------------------


def test_spirals_shapes_labels_and_seed():
    x, y = kp.datasets.spirals(50, 4, seed=3)
    assert x.shape == (200, 2) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [50] * 4)
    np.testing.assert_array_equal(kp.datasets.spirals(50, 4, seed=3)[0], x)
    assert np.all(np.hypot(x[:, 0], x[:, 1]) <= 1 + 1e-6)  # radii run from 0 to 1
    x0, _ = kp.datasets.spirals(50, 4, noise=0.0, seed=3, shuffle=False)
    np.testing.assert_allclose(x0[49], [np.sin(4.0), np.cos(4.0)], rtol=1e-6)  # class 0 ends at angle 4


def test_spirals_follow_the_knetpy_seed():
    kp.set_seed(5)
    a = kp.datasets.spirals(10, 2)
    kp.set_seed(5)
    np.testing.assert_array_equal(kp.datasets.spirals(10, 2)[0], a[0])


@pytest.mark.parametrize("kwargs, error, message", [
    ({"n_per_class": 0}, ValueError, "n_per_class must be at least 1"),
    ({"n_classes": 2.5}, TypeError, "n_classes must be an integer"),
    ({"noise": -1.0}, ValueError, "noise must be a non-negative number"),
])
def test_spirals_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        kp.datasets.spirals(**kwargs)


# --- temporal order -------------------------------------------------------------------------------------

X, Y, B, E = (TEMPORAL_ORDER_SYMBOLS.index(s) for s in "XYBE")


def decode_sequences(x, lengths):
    """Per sequence: the symbol indices of its real (unpadded) part, checking the padding is all zeros."""
    pad = x.shape[1] - lengths
    out = []
    for seq, p in zip(x, pad):
        assert not seq[:p].any(), "padding must be all-zero rows at the front"
        np.testing.assert_array_equal(seq[p:].sum(axis=1), 1)  # one-hot
        out.append(seq[p:].argmax(axis=1))
    return out


@pytest.mark.parametrize("markers", [2, 3])
@pytest.mark.parametrize("level", list(TEMPORAL_ORDER_LEVELS[2]))
def test_temporal_order_follows_its_level(level, markers):
    (min_len, max_len), *ranges = TEMPORAL_ORDER_LEVELS[markers][level]
    x, y, lengths = kp.datasets.temporal_order(400, level, markers=markers, seed=1, return_lengths=True)
    assert x.shape == (400, max_len, 8) and x.dtype == np.float32
    assert y.dtype == lengths.dtype == np.int64
    assert lengths.min() >= min_len and lengths.max() <= max_len
    np.testing.assert_array_equal(np.bincount(y, minlength=2**markers) > 0, True)  # every class occurs
    for seq, label in zip(decode_sequences(x, lengths), y):
        assert seq[0] == E and seq[-1] == B
        where = np.flatnonzero(seq < 2)  # the X/Y markers
        assert len(where) == markers
        for position, (lo, hi) in zip(where, ranges):
            assert lo <= position <= hi
        bits = seq[where]  # X = 0, Y = 1, the first marker most significant
        assert label == int("".join(map(str, bits)), 2)
        assert np.all(seq[1:-1] < 6)  # nothing but markers and distractors inside


def test_temporal_order_hard_is_the_lstm_paper_setting():
    # Experiment 6a: length 100-110, t1 in 10-20, t2 in 50-60; 6b: t1 10-20, t2 33-43, t3 66-76.
    assert TEMPORAL_ORDER_LEVELS[2]["hard"] == ((100, 110), (10, 20), (50, 60))
    assert TEMPORAL_ORDER_LEVELS[3]["hard"] == ((100, 110), (10, 20), (33, 43), (66, 76))
    x, y = kp.datasets.temporal_order(8, seed=0)  # hard by default
    assert x.shape == (8, 110, 8) and set(y) <= {0, 1, 2, 3}


def test_temporal_order_worked_example():
    x, y = kp.datasets.temporal_order(1, "easy", seed=0)
    (seq,) = decode_sequences(x, np.array([x[0].any(axis=1).sum()]))
    text = "".join(TEMPORAL_ORDER_SYMBOLS[s] for s in seq)
    assert text[0] == "E" and text[-1] == "B"
    classes = {"XX": 0, "XY": 1, "YX": 2, "YY": 3}
    assert y[0] == classes["".join(c for c in text if c in "XY")]


def test_temporal_order_seed_and_dtype():
    a = kp.datasets.temporal_order(5, "normal", seed=7)
    b = kp.datasets.temporal_order(5, "normal", seed=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    kp.set_dtype("float64")
    assert kp.datasets.temporal_order(2, "easy")[0].dtype == np.float64


@pytest.mark.parametrize("args, kwargs, error, message", [
    ((3, "nightmar"), {}, ValueError, "unknown level 'nightmar'; did you mean 'nightmare'"),
    ((3, "hard"), {"markers": 4}, ValueError, "markers must be 2 or 3"),
    ((0,), {}, ValueError, "n must be at least 1"),
    ((3, 2), {}, ValueError, "unknown level 2"),
])
def test_temporal_order_bad_arguments(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        kp.datasets.temporal_order(*args, **kwargs)


# --- echo -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("delay", [0, 1, 3])
def test_echo_targets_are_delayed_inputs(delay):
    x, y = kp.datasets.echo(6, 20, delay=delay, n_symbols=3, seed=2)
    assert x.shape == (6, 20, 3) and x.dtype == np.float32 and y.shape == (6, 20) and y.dtype == np.int64
    np.testing.assert_array_equal(x.sum(axis=2), 1)
    symbols = x.argmax(axis=2)
    np.testing.assert_array_equal(y[:, delay:], symbols[:, :20 - delay])
    np.testing.assert_array_equal(y[:, :delay], 0)


def test_echo_worked_example_and_scalar_inputs():
    x, y = kp.datasets.echo(1, 6, delay=2, one_hot=False, seed=4)
    assert x.shape == (1, 6, 1)
    s = x[0, :, 0].astype(int).tolist()
    assert y[0].tolist() == [0, 0, *s[:4]]
    assert set(s) <= {0, 1}


@pytest.mark.parametrize("kwargs, message", [
    ({"delay": 5}, r"delay \(5\) must be smaller than length \(5\)"),
    ({"delay": -1}, "delay must be at least 0"),
    ({"n_symbols": 1}, "n_symbols must be at least 2"),
])
def test_echo_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kp.datasets.echo(2, 5, **kwargs)


# --- digits ---------------------------------------------------------------------------------------------

def test_digits_layout_and_scaling():
    pytest.importorskip("sklearn", reason="the optional extra [data] (scikit-learn) is not installed")
    from sklearn.datasets import load_digits

    x, y = kp.datasets.digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0 and x.max() == 1
    raw = load_digits()
    np.testing.assert_allclose(x[:, 0] * 16, raw.images, rtol=1e-6)
    np.testing.assert_array_equal(y, raw.target)
    assert kp.datasets.digits(flatten=True)[0].shape == (1797, 64)


def test_digits_without_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'knetpy\[data\]'"):
        kp.datasets.digits()


# --- TextCorpus -----------------------------------------------------------------------------------------

def test_corpus_vocab_encode_decode():
    corpus = kp.datasets.TextCorpus("hello world")
    assert corpus.vocab == (" ", "d", "e", "h", "l", "o", "r", "w") and corpus.vocab_size == 8
    np.testing.assert_array_equal(corpus.data, [3, 2, 4, 4, 5, 0, 7, 5, 6, 4, 1])
    assert corpus.data.dtype == np.int64 and len(corpus) == 11
    assert corpus.decode(corpus.data) == "hello world"
    assert corpus.decode(corpus.encode("old")) == "old"
    assert corpus.decode(np.array([[3, 2], [7, 5]])) == ["he", "wo"]
    assert corpus.decode(kp.tensor(np.array([4, 4]))) == "ll"
    assert corpus.decode(5) == "o"


def test_corpus_with_a_given_vocab_and_unicode():
    corpus = kp.datasets.TextCorpus("añb€", vocab="€bña")
    np.testing.assert_array_equal(corpus.data, [3, 2, 1, 0])
    assert corpus.decode([0, 3]) == "€a"
    other = kp.datasets.TextCorpus("ba", vocab=corpus.vocab)
    np.testing.assert_array_equal(other.data, [1, 3])


@pytest.mark.parametrize("call, error, message", [
    (lambda c: c.encode("hex!"), ValueError, r"2 character\(s\) not in the vocabulary: '!', 'x'"),
    (lambda c: c.decode([0, 8]), ValueError, r"indices must lie in 0\.\.7, found 0\.\.8"),
    (lambda c: c.decode([0.5]), TypeError, "indices must be integers"),
    (lambda c: c.decode(np.zeros((1, 1, 1), int)), ValueError, "one sequence"),
    (lambda c: c.streams(11), ValueError, "11 characters is too short for 11 streams"),
    (lambda c: c.batches(2, 0), ValueError, "seq_len must be at least 1"),
])
def test_corpus_bad_use(call, error, message):
    with pytest.raises(error, match=message):
        call(kp.datasets.TextCorpus("hello world"))


def test_corpus_bad_construction(tmp_path):
    with pytest.raises(ValueError, match="repeated characters"):
        kp.datasets.TextCorpus("ab", vocab="aba")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        kp.datasets.TextCorpus("abc", vocab="ab")
    with pytest.raises(TypeError, match="expected the text"):
        kp.datasets.TextCorpus(b"bytes")
    file = tmp_path / "t.txt"
    file.write_text("from a file\n")
    with pytest.raises(TypeError, match="is a file name; use TextCorpus.from_file"):
        kp.datasets.TextCorpus(str(file))
    assert kp.datasets.TextCorpus(file).text == "from a file\n"
    assert kp.datasets.TextCorpus.from_file(str(file)).text == "from a file\n"


def test_streams_and_bptt_windows_worked_example():
    text = "abcdefghijklmnopqrstuvwxyz"  # 26 characters: 25 input/target pairs, 3 streams of 8
    corpus = kp.datasets.TextCorpus(text)
    inputs, targets = corpus.streams(3)
    assert corpus.decode(inputs) == ["abcdefgh", "ijklmnop", "qrstuvwx"]
    assert corpus.decode(targets) == ["bcdefghi", "jklmnopq", "rstuvwxy"]
    windows = corpus.batches(3, 3)
    assert len(windows) == 3
    got = [(corpus.decode(x), corpus.decode(y)) for x, y in windows]
    assert got == [(["abc", "ijk", "qrs"], ["bcd", "jkl", "rst"]),
                   (["def", "lmn", "tuv"], ["efg", "mno", "uvw"]),
                   (["gh", "op", "wx"], ["hi", "pq", "xy"])]
    assert [x.shape for x, _ in corpus.batches(3, 3, drop_last=True)] == [(3, 3), (3, 3)]
    assert len(list(windows)) == 3  # iterable again
    x, y = next(iter(windows))
    assert x.dtype == y.dtype == np.int64
