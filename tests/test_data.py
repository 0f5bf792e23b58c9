"""kp.data: minibatch, DataLoader, one_hot/unhot, train_test_split, standardisation."""

import numpy as np
import pytest

import knetpy as kp
from knetpy.data import DataLoader, Standardizer, minibatch, one_hot, standardize, train_test_split, unhot


def _xy(n=10, f=3):
    x = np.arange(n * f, dtype=np.float32).reshape(n, f)
    y = np.arange(n) * 10
    return x, y


# -- minibatch ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, bs, drop_last, expected", [(10, 3, False, 4), (10, 3, True, 3), (9, 3, False, 3), (9, 3, True, 3), (2, 5, False, 1)])
def test_minibatch_len_matches_batches_yielded(n, bs, drop_last, expected):
    x, y = _xy(n)
    mb = minibatch(x, y, bs, drop_last=drop_last)
    batches = list(mb)
    assert len(mb) == expected == len(batches)
    sizes = [len(xb) for xb, _ in batches]
    assert all(s == bs for s in sizes[:-1])
    if drop_last:
        assert all(s == bs for s in sizes)


def test_minibatch_in_order_yields_views_of_consecutive_rows():
    x, y = _xy(10)
    batches = list(minibatch(x, y, batch_size=4))
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in batches]), x)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in batches]), y)
    assert np.shares_memory(batches[0][0], x)  # no copy without shuffling


def test_minibatch_shuffle_covers_every_sample_once_per_epoch_and_reshuffles():
    x, y = _xy(23)
    mb = minibatch(x, y, batch_size=5, shuffle=True)
    orders = []
    for _ in range(3):
        ys = np.concatenate([yb for _, yb in mb])
        assert sorted(ys.tolist()) == sorted(y.tolist())  # each sample exactly once
        orders.append(ys)
        for xb, yb in mb:  # rows stay paired with their targets
            np.testing.assert_array_equal(xb[:, 0], x[yb // 10, 0])
    assert not np.array_equal(orders[0], orders[1]) or not np.array_equal(orders[1], orders[2])
    assert not np.array_equal(orders[0], y)


def test_minibatch_shuffle_with_drop_last_drops_a_different_remainder():
    x, y = _xy(10)
    mb = minibatch(x, y, batch_size=4, shuffle=True, drop_last=True)
    seen = set()
    for _ in range(10):
        ys = np.concatenate([yb for _, yb in mb])
        assert len(ys) == 8 and len(set(ys.tolist())) == 8
        seen |= set(ys.tolist())
    assert seen == set(y.tolist())  # over epochs every sample gets its turn


def test_minibatch_shuffle_is_reproducible_with_set_seed():
    x, y = _xy(17)
    kp.set_seed(5)
    a = np.concatenate([yb for _, yb in minibatch(x, y, 4, shuffle=True)])
    kp.set_seed(5)
    b = np.concatenate([yb for _, yb in minibatch(x, y, 4, shuffle=True)])
    np.testing.assert_array_equal(a, b)


def test_minibatch_without_targets_and_knet_positional_batch_size():
    x, _ = _xy(7)
    mb = minibatch(x, 3)
    assert len(mb) == 3
    first = next(iter(mb))
    assert isinstance(first, np.ndarray) and first.shape == (3, 3)


def test_minibatch_accepts_tensors():
    x, y = _xy(6)
    xb, yb = next(iter(minibatch(kp.tensor(x), y, 2)))
    np.testing.assert_array_equal(xb, x[:2])


@pytest.mark.parametrize("bs", [0, -3])
def test_minibatch_rejects_nonpositive_batch_size(bs):
    x, y = _xy()
    with pytest.raises(ValueError, match=f"batch_size must be a positive integer, got {bs}"):
        minibatch(x, y, batch_size=bs)


def test_minibatch_rejects_fractional_batch_size():
    x, y = _xy()
    with pytest.raises(TypeError, match="batch_size must be a positive integer, got 2.5"):
        minibatch(x, y, batch_size=2.5)


def test_minibatch_rejects_mismatched_lengths_naming_both():
    x, y = _xy(10)
    with pytest.raises(ValueError, match="x has 10, y has 9"):
        minibatch(x, y[:9], 2)


def test_minibatch_rejects_empty_and_string_data():
    with pytest.raises(ValueError, match="empty"):
        minibatch(np.zeros((0, 3)), None, 2)
    with pytest.raises(TypeError, match="x must hold numbers.*<U"):
        minibatch(np.array(["a", "b"]), None, 1)
    with pytest.raises(TypeError, match="y must hold numbers.*object"):
        minibatch(np.zeros((2, 1)), np.array([{}, {}], dtype=object), 1)


def test_minibatch_repr_mentions_sizes():
    x, y = _xy(10)
    assert "batches=4" in repr(minibatch(x, y, 3))


# -- DataLoader ---------------------------------------------------------------------------------------------
def test_dataloader_over_tuple_of_arrays():
    x, y = _xy(10)
    dl = DataLoader((x, y), batch_size=4)
    batches = list(dl)
    assert len(dl) == 3 and len(batches) == 3
    assert isinstance(batches[0], tuple) and batches[0][0].shape == (4, 3)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)


def test_dataloader_over_single_array_and_dict():
    x, y = _xy(5)
    assert [b.shape for b in DataLoader(x, batch_size=2)] == [(2, 3), (2, 3), (1, 3)]
    batches = list(DataLoader({"img": x, "label": y}, batch_size=5))
    assert set(batches[0]) == {"img", "label"}
    np.testing.assert_array_equal(batches[0]["label"], y)


def test_dataloader_shuffle_covers_every_sample_and_drop_last():
    x, y = _xy(11)
    dl = DataLoader((x, y), batch_size=3, shuffle=True, drop_last=True)
    assert len(dl) == 3
    for _ in range(3):
        ys = np.concatenate([b[1] for b in dl])
        assert len(ys) == 9 and len(set(ys.tolist())) == 9 and set(ys.tolist()) <= set(y.tolist())
    dl = DataLoader((x, y), batch_size=3, shuffle=True)
    assert sorted(np.concatenate([b[1] for b in dl]).tolist()) == sorted(y.tolist())


class _Squares:
    """A map-style dataset: sample i is (features, label)."""

    def __init__(self, n):
        self.n = n
        self.calls = 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.calls += 1
        return np.full(2, i, dtype=np.float32), i * i


def test_dataloader_over_dataset_object_collates_samples():
    ds = _Squares(7)
    dl = DataLoader(ds, batch_size=3)
    batches = list(dl)
    assert len(dl) == 3 and ds.calls == 7
    xb, yb = batches[0]
    np.testing.assert_array_equal(xb, [[0, 0], [1, 1], [2, 2]])
    assert xb.dtype == np.float32
    np.testing.assert_array_equal(yb, [0, 1, 4])
    shuffled = list(DataLoader(ds, batch_size=3, shuffle=True))
    labels = sorted(np.concatenate([b[1] for b in shuffled]).tolist())
    assert labels == [i * i for i in range(7)]


def test_dataloader_custom_collate_gets_list_of_samples():
    x, y = _xy(4)
    got = []

    def collate(samples):
        got.append(samples)
        return len(samples)

    assert list(DataLoader((x, y), batch_size=3, collate=collate)) == [3, 1]
    assert isinstance(got[0], list) and isinstance(got[0][0], tuple)
    np.testing.assert_array_equal(got[0][1][0], x[1])


def test_dataloader_python_floats_take_default_dtype():
    batches = list(DataLoader([1.5, 2.5, 3.5], batch_size=2))
    assert batches[0].dtype == np.float32
    np.testing.assert_array_equal(batches[1], [3.5])


def test_dataloader_errors():
    x, y = _xy(4)
    with pytest.raises(ValueError, match=r"data\[0\] has 4, data\[1\] has 3"):
        DataLoader((x, y[:3]))
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        DataLoader(x, batch_size=0)
    with pytest.raises(TypeError, match="dataset with __len__"):
        DataLoader(42)
    with pytest.raises(ValueError, match="empty"):
        DataLoader([])
    ragged = [np.zeros(2), np.zeros(3)]
    with pytest.raises(ValueError, match="different shapes"):
        list(DataLoader(ragged, batch_size=2))


# -- one_hot / unhot -------------------------------------------------------------------------------------------
def test_one_hot_known_values_and_roundtrip():
    oh = one_hot([0, 2, 1, 2], 3)
    np.testing.assert_array_equal(oh, [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]])
    assert oh.dtype == np.float32
    np.testing.assert_array_equal(unhot(oh), [0, 2, 1, 2])


def test_one_hot_infers_classes_keeps_shape_and_dtype():
    labels = np.array([[1, 0], [3, 2]])
    oh = one_hot(labels, dtype=np.float64)
    assert oh.shape == (2, 2, 4) and oh.dtype == np.float64
    np.testing.assert_array_equal(unhot(oh), labels)


def test_one_hot_errors():
    with pytest.raises(ValueError, match="label 3 is out of range for 3 classes"):
        one_hot([0, 3], 3)
    with pytest.raises(ValueError, match="label -1"):
        one_hot([0, -1], 3)
    with pytest.raises(TypeError, match="integers.*float"):
        one_hot(np.array([0.0, 1.0]), 2)
    with pytest.raises(ValueError, match="n_classes must be a positive integer"):
        one_hot([0], 0)


# -- train_test_split ----------------------------------------------------------------------------------------
def test_train_test_split_sizes_and_disjoint_cover():
    x, y = _xy(20)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, seed=0)
    assert len(xtr) == 15 and len(xte) == 5
    assert sorted(np.concatenate([ytr, yte]).tolist()) == y.tolist()
    np.testing.assert_array_equal(xtr[:, 0], x[ytr // 10, 0])  # rows stay with their labels
    xtr2, *_ = train_test_split(x, y, test_size=0.25, seed=0)
    np.testing.assert_array_equal(xtr, xtr2)  # the seed fixes the draw


def test_train_test_split_fraction_rounds_test_part_up_and_counts():
    x, y = _xy(10)
    assert len(train_test_split(x, y, test_size=0.33)[1]) == 4
    assert len(train_test_split(x, y, test_size=3)[1]) == 3


def test_train_test_split_without_shuffle_takes_last_samples():
    x, y = _xy(10)
    xtr, xte = train_test_split(x, test_size=0.3, shuffle=False)
    np.testing.assert_array_equal(xte, x[7:])
    np.testing.assert_array_equal(xtr, x[:7])


def test_train_test_split_stratify_keeps_class_shares():
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    x = np.arange(100, dtype=np.float32)[:, None]
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, seed=3, stratify=True)
    assert np.bincount(yte).tolist() == [12, 6, 2]
    assert np.bincount(ytr).tolist() == [48, 24, 8]
    np.testing.assert_array_equal(y[xte[:, 0].astype(int)], yte)


def test_train_test_split_stratify_with_rounding_keeps_total():
    y = np.array([0] * 5 + [1] * 5 + [2] * 5)
    _, xte, _, yte = train_test_split(np.zeros((15, 1)), y, test_size=4, seed=1, stratify=y)
    assert len(yte) == 4 and max(np.bincount(yte, minlength=3)) == 2


def test_train_test_split_errors():
    x, y = _xy(10)
    with pytest.raises(ValueError, match=r"test_size must lie in \(0, 1\), got 1.5"):
        train_test_split(x, y, test_size=1.5)
    with pytest.raises(ValueError, match="both parts need at least one"):
        train_test_split(x, y, test_size=10)
    with pytest.raises(ValueError, match="x has 10, y has 9"):
        train_test_split(x, y[:9])
    with pytest.raises(ValueError, match="stratify needs shuffle=True"):
        train_test_split(x, y, shuffle=False, stratify=y)


# -- standardisation ------------------------------------------------------------------------------------------
def test_standardize_zero_mean_unit_std_and_reuses_stats():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((200, 4)) * [1, 2, 3, 4] + [5, -1, 0, 2]).astype(np.float32)
    z, mean, std = standardize(x)
    assert z.dtype == np.float32 and mean.shape == (1, 4)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-5)
    np.testing.assert_allclose(mean[0], x.astype(np.float64).mean(axis=0), rtol=1e-6)
    x2 = x[:10] * 2
    z2, m2, s2 = standardize(x2, mean, std)
    np.testing.assert_allclose(z2, (x2 - mean) / std, rtol=1e-6)
    assert m2 is not None and np.array_equal(s2, std)


def test_standardize_constant_feature_and_integer_data():
    x = np.array([[1, 5], [3, 5], [5, 5]])
    z, _, std = standardize(x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z[:, 1], 0)
    assert std[0, 1] == 1
    np.testing.assert_allclose(z[:, 0], [-1.2247449, 0, 1.2247449], rtol=1e-6)


def test_standardize_per_channel_axis():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 3, 4, 4)) + np.array([1.0, 2.0, 3.0])[None, :, None, None]
    z, mean, _ = standardize(x, axis=(0, 2, 3))
    assert mean.shape == (1, 3, 1, 1)
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-12)


def test_standardize_rejects_bad_stats():
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"mean of shape \(2,\) does not broadcast to x of shape \(4, 3\)"):
        standardize(x, mean=np.zeros(2), std=np.ones(3))
    with pytest.raises(ValueError, match="std must be positive"):
        standardize(x, mean=np.zeros(3), std=np.zeros(3))


def test_standardizer_fit_transform_inverse():
    rng = np.random.default_rng(2)
    xtr = rng.standard_normal((50, 3)) * 3 + 1
    xte = rng.standard_normal((10, 3))
    sc = Standardizer()
    with pytest.raises(RuntimeError, match="call fit"):
        sc.transform(xte)
    ztr = sc.fit_transform(xtr)
    np.testing.assert_allclose(ztr.mean(axis=0), 0, atol=1e-12)
    zte = sc.transform(xte)
    np.testing.assert_allclose(zte, (xte - xtr.mean(0)) / xtr.std(0), rtol=1e-10)
    np.testing.assert_allclose(sc.inverse_transform(zte), xte, rtol=1e-10, atol=1e-12)
    assert "fitted" in repr(sc)
