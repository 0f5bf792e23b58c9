"""Label encoding, train/test splitting and standardisation of arrays."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..autograd import Tensor
from ..backend import array_namespace, get_dtype, is_array, rng
from ._checks import as_data_array, check_same_length


def _integer_labels(labels, who):
    if isinstance(labels, Tensor):
        labels = labels.value
    lab = labels if is_array(labels) else np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise TypeError(f"{who}: labels must be integers (class indices), got dtype {lab.dtype}")
    return lab


def one_hot(labels, n_classes=None, dtype=None):
    """Integer ``labels`` of any shape as one-hot vectors on a new last axis.

    ``n_classes`` defaults to ``max(labels) + 1``; ``dtype`` to the default float dtype.

    >>> one_hot([0, 2], 3)
    array([[1., 0., 0.],
           [0., 0., 1.]], dtype=float32)
    """
    who = "one_hot"
    lab = _integer_labels(labels, who)
    xp = array_namespace(lab)
    lo = int(lab.min()) if lab.size else 0
    hi = int(lab.max()) if lab.size else -1
    if n_classes is None:
        n_classes = hi + 1
    elif isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes <= 0:
        raise ValueError(f"{who}: n_classes must be a positive integer, got {n_classes!r}")
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{who}: label {bad} is out of range for {n_classes} classes (0..{n_classes - 1})")
    flat = lab.reshape(-1)
    out = xp.zeros((flat.size, n_classes), dtype=dtype or get_dtype())
    out[xp.arange(flat.size), flat] = 1
    return out.reshape(lab.shape + (n_classes,))


def unhot(onehot, axis=-1):
    """Class indices (int64) of one-hot or score arrays: the position of the largest entry on ``axis``."""
    a = as_data_array(onehot, "onehot", "unhot")
    return array_namespace(a).argmax(a, axis=axis)


def _generator(seed, who):
    if seed is None:
        return rng()
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.default_rng(int(seed))
    raise TypeError(f"{who}: seed must be None, an int or a numpy Generator, got {type(seed).__name__}")


def _test_count(test_size, n, who):
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"{who}: test_size must be a fraction in (0, 1) or a sample count, got {test_size!r}")
    if isinstance(test_size, numbers.Integral):
        n_test = int(test_size)
    elif 0 < test_size < 1:
        n_test = math.ceil(test_size * n)
    else:
        raise ValueError(f"{who}: a fractional test_size must lie in (0, 1), got {test_size}")
    if not 0 < n_test < n:
        raise ValueError(
            f"{who}: test_size={test_size} leaves {n_test} test and {n - n_test} training samples out of {n}; "
            "both parts need at least one"
        )
    return n_test


def _stratified_test_indices(strata, n_test, gen):
    """Test indices drawn per class, in proportion to class sizes (largest remainders get the rest)."""
    classes, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
    ideal = counts * (n_test / strata.shape[0])
    take = np.floor(ideal).astype(np.int64)
    short = n_test - int(take.sum())
    if short:
        # The classes whose ideal share lost most to rounding down get one more test sample each.
        order = np.argsort(-(ideal - take), kind="stable")
        take[order[:short]] += 1
    picked = []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        picked.append(gen.permutation(members)[: take[c]])
    return gen.permutation(np.concatenate(picked))


def train_test_split(x, y=None, test_size=0.25, shuffle=True, seed=None, stratify=None):
    """Split samples into training and test parts: ``(x_train, x_test, y_train, y_test)``.

    Without ``y`` it returns ``(x_train, x_test)``. ``test_size`` is a fraction (the test part gets
    ``ceil(test_size * n)`` samples) or a count. With ``shuffle=False`` the test part is the last
    samples. ``seed`` (int or Generator) fixes the draw; by default it comes from
    :func:`knetpy.backend.rng`. ``stratify`` (class labels per sample, or True to use ``y``) keeps
    each class's share the same in both parts.
    """
    who = "train_test_split"
    x = as_data_array(x, "x", who)
    arrays = {"x": x}
    if y is not None:
        y = as_data_array(y, "y", who)
        arrays["y"] = y
    n = check_same_length(arrays, who)
    n_test = _test_count(test_size, n, who)
    if stratify is not None and stratify is not False:
        if not shuffle:
            raise ValueError(f"{who}: stratify needs shuffle=True (a stratified split is a random draw)")
        if stratify is True:
            if y is None:
                raise ValueError(f"{who}: stratify=True uses y as the class labels, but y was not given")
            stratify = y
        strata = np.asarray(as_data_array(stratify, "stratify", who))
        if strata.shape[0] != n:
            raise ValueError(f"{who}: stratify has {strata.shape[0]} labels for {n} samples")
        if strata.ndim > 1:  # one-hot rows: stratify by their class
            strata = strata.reshape(n, -1).argmax(axis=1)
        gen = _generator(seed, who)
        test = _stratified_test_indices(strata, n_test, gen)
        is_test = np.zeros(n, dtype=bool)
        is_test[test] = True
        train = gen.permutation(np.flatnonzero(~is_test))
    elif shuffle:
        order = _generator(seed, who).permutation(n)
        train, test = order[: n - n_test], order[n - n_test :]
    else:
        train, test = slice(0, n - n_test), slice(n - n_test, n)
    out = []
    for a in arrays.values():
        xp = array_namespace(a)
        if isinstance(train, slice):
            out += [a[train], a[test]]
        else:
            out += [xp.take(a, xp.asarray(train), axis=0), xp.take(a, xp.asarray(test), axis=0)]
    return tuple(out)


def _float_view(x, who):
    x = as_data_array(x, "x", who)
    return x if x.dtype.kind == "f" else x.astype(get_dtype())


def _check_stat(stat, name, x, who):
    xp = array_namespace(x)
    stat = xp.asarray(stat, dtype=x.dtype)
    try:
        shape = np.broadcast_shapes(x.shape, stat.shape)
    except ValueError:
        shape = None
    if shape != x.shape:
        raise ValueError(f"{who}: {name} of shape {stat.shape} does not broadcast to x of shape {x.shape}")
    return stat


def _stats(x, axis):
    """Mean and standard deviation over ``axis`` (kept as size-1 axes), in float64 for accuracy."""
    xp = array_namespace(x)
    mean = xp.mean(x, axis=axis, keepdims=True, dtype=np.float64)
    std = xp.std(x, axis=axis, keepdims=True, dtype=np.float64)
    std = xp.where(std > 0, std, 1.0)  # constant features map to 0 instead of dividing by zero
    return mean.astype(x.dtype), std.astype(x.dtype)


def standardize(x, mean=None, std=None, axis=0):
    """``(x - mean) / std`` and the statistics used: ``(x_standardized, mean, std)``.

    Statistics not given are computed from ``x`` over ``axis`` (the sample axis by default; pass
    e.g. ``axis=(0, 2, 3)`` for per-channel image statistics); they keep size-1 axes so they
    broadcast back. Features with zero spread get std 1. Pass the training set's ``mean`` and
    ``std`` to standardize test data the same way. Integer data becomes the default float dtype.
    """
    who = "standardize"
    x = _float_view(x, who)
    if mean is None or std is None:
        m, s = _stats(x, axis)
        mean = m if mean is None else mean
        std = s if std is None else std
    mean = _check_stat(mean, "mean", x, who)
    std = _check_stat(std, "std", x, who)
    if bool((std <= 0).any()):
        raise ValueError(f"{who}: std must be positive everywhere, got a minimum of {float(std.min())}")
    return (x - mean) / std, mean, std


class Standardizer:
    """Learn per-feature mean and std on training data, then apply them to any data.

    >>> scaler = Standardizer().fit(x_train)
    >>> x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    """

    def __init__(self, axis=0):
        self.axis = axis
        self.mean_ = None
        self.std_ = None

    def fit(self, x):
        """Compute the statistics of ``x``; returns self."""
        self.mean_, self.std_ = _stats(_float_view(x, "Standardizer.fit"), self.axis)
        return self

    def _require_fit(self, who):
        if self.mean_ is None:
            raise RuntimeError(f"Standardizer.{who}: call fit(x) first")

    def transform(self, x):
        """``(x - mean_) / std_``."""
        self._require_fit("transform")
        return standardize(x, self.mean_, self.std_)[0]

    def fit_transform(self, x):
        return self.fit(x).transform(x)

    def inverse_transform(self, z):
        """``z * std_ + mean_``: back to the original scale."""
        self._require_fit("inverse_transform")
        z = _float_view(z, "Standardizer.inverse_transform")
        return z * _check_stat(self.std_, "std_", z, "Standardizer") + _check_stat(
            self.mean_, "mean_", z, "Standardizer"
        )

    def __repr__(self):
        fitted = "fitted" if self.mean_ is not None else "not fitted"
        return f"Standardizer(axis={self.axis}, {fitted})"
