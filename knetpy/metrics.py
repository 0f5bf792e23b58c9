"""Metrics: ``metric(pred, target) -> float``, computed on values (no gradient), looked up by name.

For data on a device (CuPy) a metric is a 0-d array on that device instead of a float, so that a
training loop can add metrics up without stopping the device at every step.

Each metric is a mean over samples, so a mean over batches weighted by batch size gives the value
over a whole dataset. ``pred`` is what the model outputs (scores or logits for classification).
"""

from __future__ import annotations

import difflib
import functools

import numpy as np

from .autograd import Tensor
from .backend import array_namespace, is_array, to_numpy


def _values(pred, target, who):
    """Raw arrays of ``pred`` and ``target`` with the same number of samples."""
    pred = pred.value if isinstance(pred, Tensor) else pred
    target = target.value if isinstance(target, Tensor) else target
    xp = array_namespace(pred, target)
    pred = pred if is_array(pred) else xp.asarray(pred)
    target = target if is_array(target) else xp.asarray(target)
    if pred.ndim == 0 or target.ndim == 0 or pred.shape[0] != target.shape[0]:
        raise ValueError(f"{who}: pred of shape {pred.shape} and target of shape {target.shape} need the same number of samples")
    return xp, pred, target


def _result(xp, value):
    """A Python float for NumPy data; a device's 0-d array stays where it is (float() would wait for it)."""
    return float(value) if xp is np else value


def _class_labels(target, pred_shape, who):
    """Integer labels from ``target``: given as labels, or as one-hot / probability rows like ``pred``."""
    if target.shape == pred_shape:
        return target.argmax(axis=1)
    if target.dtype.kind not in "iu":
        raise TypeError(
            f"{who}: targets of shape {target.shape} must be integer class labels (dtype {target.dtype} given) "
            f"or one-hot rows of the prediction's shape {pred_shape}"
        )
    want = pred_shape[:1] + pred_shape[2:]
    if target.shape != want:
        raise ValueError(f"{who}: scores of shape {pred_shape} need labels of shape {want}, got {target.shape}")
    return target


def accuracy(pred, target, threshold=0.5):
    """Fraction of samples classified correctly.

    * Several outputs per sample, (N, C) or (N, C, ...): the class is the arg-max over axis 1;
      ``target`` holds integer labels (N,) / (N, ...) or one-hot rows shaped like ``pred``.
    * One output per sample, (N,) or (N, 1): binary; the prediction is ``pred > threshold`` and the
      target counts as positive when above 0.5 (so both {0, 1} and {-1, +1} labels work). Use
      ``threshold=0`` for logits, 0.5 for probabilities.
    """
    if (type(pred) is np.ndarray and type(target) is np.ndarray and pred.ndim == 2 and target.ndim == 1
            and pred.shape[1] > 1 and 0 < target.shape[0] == pred.shape[0] and target.dtype.kind in "iu"):
        # (the common case, a classifier's batch, without the checks' calls: the same result as below)
        return int(np.count_nonzero(pred.argmax(axis=1) == target)) / target.shape[0]
    who = "accuracy"
    xp, pred, target = _values(pred, target, who)
    if pred.ndim == 1 or (pred.ndim == 2 and pred.shape[1] == 1):
        n = pred.shape[0]
        if target.size != n:
            raise ValueError(f"{who}: binary predictions of shape {pred.shape} need one target per sample, got {target.shape}")
        hits = (pred.reshape(n) > threshold) == (target.reshape(n) > 0.5)
        return _result(xp, xp.mean(hits))
    labels = _class_labels(target, pred.shape, who)
    hits = pred.argmax(axis=1) == labels
    if xp is np and hits.size:
        # Exact count / size: the same correctly rounded quotient as np.mean, without its overhead.
        return int(np.count_nonzero(hits)) / hits.size
    return _result(xp, xp.mean(hits))


def _same_shape(pred, target, who):
    if pred.shape != target.shape:
        if pred.size == target.size and pred.ndim <= 2 and target.ndim <= 2:
            return target.reshape(pred.shape)  # (N,) against (N, 1): the same values
        raise ValueError(f"{who}: pred of shape {pred.shape} and target of shape {target.shape} differ")
    return target


def mse(pred, target):
    """Mean squared error over all elements."""
    xp, pred, target = _values(pred, target, "mse")
    d = pred - _same_shape(pred, target, "mse")
    return _result(xp, xp.mean(d * d))


def mae(pred, target):
    """Mean absolute error over all elements."""
    xp, pred, target = _values(pred, target, "mae")
    return _result(xp, xp.mean(xp.abs(pred - _same_shape(pred, target, "mae"))))


def top_k_accuracy(pred, target, k=5):
    """Fraction of samples whose label is among the ``k`` highest scores (classes on axis 1)."""
    who = "top_k_accuracy"
    xp, pred, target = _values(pred, target, who)
    if pred.ndim < 2:
        raise ValueError(f"{who}: needs class scores of shape (N, C), got {pred.shape}")
    n_classes = pred.shape[1]
    if not 1 <= k <= n_classes:
        raise ValueError(f"{who}: k must be between 1 and the number of classes {n_classes}, got {k}")
    labels = _class_labels(target, pred.shape, who)
    # A label is in the top k when fewer than k classes score strictly higher (ties count in its favour).
    label_score = xp.take_along_axis(pred, xp.expand_dims(labels, 1), axis=1)
    higher = (pred > label_score).sum(axis=1)
    return _result(xp, xp.mean(higher < k))


def predicted_labels(pred, threshold=0.5, who="predicted_labels"):
    """The predicted class per sample as int64 (N,): arg-max of scores (N, C), or for one output per
    sample, (N,) or (N, 1) floats, ``pred > threshold``; integer labels (N,) are returned as they are."""
    pred = to_numpy(pred.value if isinstance(pred, Tensor) else pred)
    if pred.ndim == 2 and pred.shape[1] > 1:
        return pred.argmax(axis=1).astype(np.int64)
    if pred.ndim == 1 and pred.dtype.kind in "iub":
        return pred.astype(np.int64)
    if pred.ndim == 1 or (pred.ndim == 2 and pred.shape[1] == 1):
        return (pred.reshape(-1) > threshold).astype(np.int64)
    raise ValueError(f"{who}: predictions must be class scores (N, C) or labels (N,), got shape {pred.shape}")


def confusion_matrix(pred, target, num_classes=None, normalize=None, threshold=0.5):
    """The confusion matrix as a NumPy array (C, C): row ``i``, column ``j`` counts the samples of true
    class ``i`` predicted as class ``j`` (scikit-learn's layout), so correct ones lie on the diagonal.

    ``pred`` is class scores (N, C) (the arg-max is the prediction), integer labels (N,), or one
    binary output per sample compared with ``threshold``; ``target`` is integer labels (N,) or one-hot
    rows (N, C). ``num_classes`` defaults to the number of score columns, else the largest label + 1.
    ``normalize``: None (counts, int64), ``'true'`` (each row sums to 1: the recall of each class on
    the diagonal), ``'pred'`` (each column sums to 1: the precision) or ``'all'`` (the whole matrix
    sums to 1). A row or column without samples stays 0 instead of dividing by zero.
    """
    who = "confusion_matrix"
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"{who}: normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    scores = to_numpy(pred.value if isinstance(pred, Tensor) else pred)
    target = to_numpy(target.value if isinstance(target, Tensor) else target)
    if scores.ndim == 0 or target.ndim == 0 or scores.shape[0] != target.shape[0]:
        raise ValueError(f"{who}: pred of shape {scores.shape} and target of shape {target.shape} need the same "
                         "number of samples")
    guess = predicted_labels(scores, threshold, who)
    if target.ndim == 2 and target.shape[1] > 1:
        truth = target.argmax(axis=1)  # one-hot rows
    elif target.dtype.kind in "iub" and target.size == len(target):
        truth = target.reshape(-1).astype(np.int64)
    else:
        raise TypeError(f"{who}: target must be integer labels (N,) or one-hot rows (N, C), got shape "
                        f"{target.shape} of dtype {target.dtype}")
    if num_classes is None:
        scored = scores.shape[1] if scores.ndim == 2 and scores.shape[1] > 1 else 0
        num_classes = max(scored, int(truth.max(initial=0)) + 1, int(guess.max(initial=0)) + 1)
    num_classes = int(num_classes)
    for name, labels in (("target", truth), ("pred", guess)):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.size:
            raise ValueError(f"{who}: {name} holds label {int(bad[0])}, outside 0..{num_classes - 1} "
                             f"for num_classes={num_classes}")
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (truth, guess), 1)
    if normalize is None:
        return counts
    axis = {"true": 1, "pred": 0, "all": None}[normalize]
    total = counts.sum(axis=axis, keepdims=axis is not None)
    return np.divide(counts, total, out=np.zeros(counts.shape), where=total > 0)


_REGISTRY = {
    "accuracy": accuracy,
    "acc": accuracy,
    "mse": mse,
    "mean_squared_error": mse,
    "mae": mae,
    "mean_absolute_error": mae,
    "top_k_accuracy": top_k_accuracy,
    "top5_accuracy": functools.partial(top_k_accuracy, k=5),
}


def get(metric):
    """The metric function for a name (e.g. ``'accuracy'``, ``'mse'``), or ``metric`` itself if callable."""
    if callable(metric):
        return metric
    if not isinstance(metric, str):
        raise TypeError(f"metrics.get: expected a metric name or a function, got {type(metric).__name__}")
    try:
        return _REGISTRY[metric.lower()]
    except KeyError:
        close = difflib.get_close_matches(metric.lower(), _REGISTRY, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown metric '{metric}'{hint} (known: {', '.join(sorted(_REGISTRY))})") from None


def names():
    """The metric names :func:`get` knows."""
    return sorted(_REGISTRY)
