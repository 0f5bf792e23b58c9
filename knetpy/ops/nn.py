"""Knet's function reference: activations, log-softmax family, nll, accuracy and logistic losses.

All are numerically stable for logits of magnitude 1e4 in float32: nothing overflows.
Class scores are laid out batch-first, (N, C) or (N, C, ...); ``axis`` names the class axis.
"""

from __future__ import annotations

import numpy as np

from .. import backend, parallel
from ..autograd import Tensor, primitive, replayable
from ..backend import array_namespace
from . import fast
from .elementwise import exp, where
from .reduce import mean
from .reduce import sum as _sum
from .shape import reshape


def _value(x):
    return x.value if isinstance(x, Tensor) else x


def _is_half(x):
    """float16 inputs: the exponentials and their sums are taken in float32, then rounded back."""
    return getattr(x, "dtype", None) == np.float16


@primitive
def relu(x):
    """max(x, 0)."""
    if parallel._threads > 1 and type(x) is np.ndarray:
        return parallel.elementwise(np.maximum, x, 0)
    return array_namespace(x).maximum(x, 0)


def _relu_slope(g, ans, out=None):
    """g where ans > 0, else 0: multiplying by the mask is several times faster than where()."""
    if out is not None and fast.enabled() and g.dtype == ans.dtype == out.dtype and g.dtype in fast.FLOATS:
        from .fast.conv import flat_views, relu_grad

        flat = flat_views(g, ans, out)
        if flat is not None:  # one compiled pass, no boolean temporary
            relu_grad(*flat)
            return out
    return np.multiply(g, ans > 0, out=out)


def _relu_vjp(g, ans, x):
    if parallel._threads > 1 and type(g) is np.ndarray and type(ans) is np.ndarray and g.shape == ans.shape:
        return parallel.elementwise(_relu_slope, g, ans)
    return g * (ans > 0)


relu.defvjp(_relu_vjp)


@primitive
def sigm(x):
    """The logistic sigmoid 1 / (1 + exp(-x)), computed without overflow."""
    xp = array_namespace(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


sigm.defvjp(lambda g, ans, x: g * ans * (1 - ans))
sigmoid = sigm


@primitive
def invx(x):
    """1 / x."""
    return 1 / x


invx.defvjp(lambda g, ans, x: -g * ans * ans)


def _stable_max(x, axis):
    xp = array_namespace(x)
    m = xp.max(x, axis=axis, keepdims=True)
    return xp.where(xp.isfinite(m), m, 0)


@primitive
def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x), axis)) without overflow."""
    if _is_half(x):
        return logsumexp.__wrapped__(x.astype(np.float32), axis, keepdims).astype(x.dtype)
    xp = array_namespace(x)
    m = _stable_max(x, axis)
    out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else xp.squeeze(out, axis=axis)


def _logsumexp_vjp(g, ans, x, axis=None, keepdims=False):
    if not keepdims:
        shape = list(x.shape)
        for a in range(len(shape)) if axis is None else np.atleast_1d(axis):
            shape[a] = 1
        g, ans = reshape(g, tuple(shape)), reshape(ans, tuple(shape))
    return g * exp(x - ans)


logsumexp.defvjp(_logsumexp_vjp)


@primitive
def logp(x, axis=-1):
    """Log-softmax along ``axis``: x - logsumexp(x, axis)."""
    if _is_half(x):
        return logp.__wrapped__(x.astype(np.float32), axis).astype(x.dtype)
    xp = array_namespace(x)
    shifted = x - _stable_max(x, axis)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


logp.defvjp(lambda g, ans, x, axis=-1: g - exp(ans) * _sum(g, axis=axis, keepdims=True))
log_softmax = logp


@primitive
def softmax(x, axis=-1):
    """exp(x) / sum(exp(x), axis), computed without overflow."""
    if _is_half(x):
        return softmax.__wrapped__(x.astype(np.float32), axis).astype(x.dtype)
    xp = array_namespace(x)
    e = xp.exp(x - _stable_max(x, axis))
    return e / xp.sum(e, axis=axis, keepdims=True)


softmax.defvjp(lambda g, ans, x, axis=-1: ans * (g - _sum(g * ans, axis=axis, keepdims=True)))


@replayable  # a fresh draw on every replay of a compiled step
def dropout_mask(xp, shape, p, dtype):
    """Inverted dropout's mask of ``shape`` in ``dtype``: 1 / (1 - p) where kept, 0 where dropped (with
    probability ``p`` < 1), drawn by knetpy's generator for the array library ``xp``, on its device."""
    draws = backend.rng(xp).random(shape, dtype=np.float32)
    t = np.dtype(dtype).type
    # one pass from the uniform draws to the scaled mask, in the input's dtype
    return xp.where(draws >= p, t(1.0 / (1.0 - p)), t(0.0))


def _check_labels(scores, labels, axis, name, check_range=True):
    """Labels as an int array matching ``scores`` without the class axis; clear errors otherwise.

    ``check_range=False`` for an op whose primitive checks the range itself (nll: so do its replays).
    """
    lab = np.asarray(_value(labels)) if not hasattr(_value(labels), "dtype") else _value(labels)
    s = _value(scores)
    if lab.dtype.kind not in "iu":
        raise TypeError(
            f"{name}: labels must be integers (class indices), got dtype {lab.dtype}; "
            "for one-hot or probability targets use kp.losses.cross_entropy"
        )
    if s.ndim == 1:  # unbatched scores: their only axis holds the classes
        ax = 0
    elif not -s.ndim <= axis < s.ndim:
        raise ValueError(f"{name}: class axis {axis} is out of range for scores of shape {s.shape}")
    else:
        ax = axis % s.ndim
    want = s.shape[:ax] + s.shape[ax + 1 :]
    if lab.shape != want:
        raise ValueError(
            f"{name}: scores of shape {s.shape} (classes on axis {ax}) need labels of shape {want}, "
            f"got {lab.shape}"
        )
    if check_range:
        check_label_range(lab, s.shape[ax], name)
    return lab, ax


def check_label_range(labels, n_class, name):
    """Refuse NumPy labels outside 0..n_class-1 (a negative one would silently index from the end).

    Labels on a device are not range-checked: reading their min and max would stop the device every
    step (check them on the host before moving them).
    """
    if labels.size and type(labels) is np.ndarray:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= n_class:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name}: label {bad} is out of range for {n_class} classes (0..{n_class - 1})")


# Softmax cross-entropy of (N, C) NumPy scores runs as two compiled passes (fast.nll) up to this many
# elements; beyond it NumPy's vectorised exp outruns the kernels' scalar one (LinReg-sized to CharLM-sized
# batches measured: 100 x 10 about 3x faster, 12800 x 65 about 1.3x slower).
FAST_NLL_MAX = 1 << 16


def _nll_fast_ok(scores, labels, axis):
    """Whether nll of these arrays runs on the compiled kernels (see :data:`FAST_NLL_MAX`)."""
    return (axis == 1 and fast.enabled() and type(scores) is np.ndarray and scores.ndim == 2
            and scores.dtype in fast.FLOATS and 0 < scores.size <= FAST_NLL_MAX
            and type(labels) is np.ndarray and labels.dtype.kind in "iu")


_fast_nll = None  # knetpy.ops.fast.nll, imported at its first use (it loads numba)


def _nll_kernels():
    global _fast_nll
    if _fast_nll is None:  # (once: an import statement on every call costs about a microsecond)
        from .fast import nll

        _fast_nll = nll
    return _fast_nll


def _nll_rows_fast(scores, labels, average):
    """(loss, log-probabilities) of :func:`_nll` by the compiled kernel (:func:`_nll_fast_ok` arrays)."""
    lp = np.empty_like(scores)
    total, bad = _nll_kernels().nll_rows(scores, labels, lp, scores.dtype.type(0))
    if bad >= 0:
        check_label_range(labels, scores.shape[1], "nll")  # raises, naming the label out of range
    return scores.dtype.type(-total / labels.size if average else -total), lp


def _nll_grad_fast(lp, labels, scale):
    """:func:`_nll_vjp` by the compiled kernel: (softmax - one-hot) * scale."""
    grad = np.empty_like(lp)
    _nll_kernels().nll_grad(lp, labels, lp.dtype.type(scale), grad)
    return grad


@primitive(saves=True)
def _nll(scores, labels, axis=1, average=True):
    if _nll_fast_ok(scores, labels, axis):
        return _nll_rows_fast(scores, labels, average)
    check_label_range(labels, scores.shape[axis], "nll")  # again here: a compiled step replays only this
    xp = array_namespace(scores)
    half = _is_half(scores)
    lp = logp.__wrapped__(scores.astype(np.float32) if half else scores, axis)
    picked = xp.take_along_axis(lp, xp.expand_dims(labels, axis), axis=axis)
    total = -xp.sum(picked)
    n = labels.size
    loss = total / n if average else total
    if half:  # computed in float32, rounded once; the saved log-probabilities keep the input's dtype
        return loss.astype(scores.dtype), lp.astype(scores.dtype)
    return loss, lp


def _nll_vjp(g, ans, lp, scores, labels, axis=1, average=True):
    xp = array_namespace(lp)
    at = xp.expand_dims(labels, axis)
    scale = g / labels.size if average else g
    if isinstance(scores, Tensor) or isinstance(g, Tensor):  # second order: stay differentiable
        onehot = xp.zeros(lp.shape, dtype=lp.dtype)
        xp.put_along_axis(onehot, at, 1, axis=axis)
        return (exp(logp(scores, axis)) - onehot) * scale
    if _nll_fast_ok(lp, labels, axis) and np.ndim(scale) == 0:
        return _nll_grad_fast(lp, labels, scale)
    # softmax - onehot, written into the one array exp allocates (no one-hot matrix, no extra pass)
    grad = xp.exp(lp)
    xp.put_along_axis(grad, at, xp.take_along_axis(grad, at, axis=axis) - 1, axis=axis)
    grad *= scale
    return grad


_nll.defvjp(_nll_vjp, None)


def nll(scores, labels, axis=1, average=True):
    """Negative log-likelihood of integer ``labels`` under softmax(``scores``) along ``axis``.

    ``scores`` may be raw logits or log-probabilities (log-softmax leaves those unchanged).
    Mean over the batch when ``average`` (Knet's default), sum otherwise.
    """
    lab, ax = _check_labels(scores, labels, axis, "nll", check_range=False)  # _nll checks it
    return _nll(scores, lab, axis=ax, average=average)


def accuracy(scores, labels, axis=1, average=True):
    """Fraction (or count) of rows whose highest score is at the label (a 0-d array for device data)."""
    lab, ax = _check_labels(scores, labels, axis, "accuracy")
    s = _value(scores)
    hits = (s.argmax(axis=ax) == lab).sum()
    if array_namespace(s) is not np:  # a device's 0-d count stays there (int() would wait for it)
        return hits / lab.size if average else hits
    return float(hits) / lab.size if average else int(hits)


@primitive
def softplus(x):
    """log(1 + exp(x)) without overflow."""
    xp = array_namespace(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


# The slope is sigm(x) everywhere; differentiating the two-branch formula instead would give 0 at
# x = 0 (the kinks of max(x, 0) and |x|), where it should be 1/2.
softplus.defvjp(lambda g, ans, x: g * sigm(x))


def _shape(x):
    return x.shape if hasattr(x, "shape") else np.shape(x)


def _check_targets(scores, targets, name):
    """One target per score (or one for all): a mismatch would otherwise broadcast silently."""
    ss, ts = _shape(_value(scores)), _shape(_value(targets))
    if ts not in (ss, ()):
        raise ValueError(f"{name}: scores of shape {ss} need targets of the same shape, got {ts}")


def bce(scores, targets, average=True):
    """Binary cross-entropy from logits: -(t log p + (1-t) log(1-p)), p = sigm(scores), t in [0, 1]."""
    _check_targets(scores, targets, "bce")
    loss = softplus(scores) - scores * targets
    return mean(loss) if average else _sum(loss)


def logistic(scores, targets, average=True):
    """Logistic loss log(1 + exp(-t * scores)) for labels t in {-1, +1}."""
    _check_targets(scores, targets, "logistic")
    loss = softplus(-(scores * targets))
    return mean(loss) if average else _sum(loss)


def elu(x, alpha=1.0):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""
    from .elementwise import expm1

    positive = x > 0
    return where(positive, x, alpha * expm1(where(positive, 0, x)))


_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def selu(x):
    """Scaled ELU with the self-normalising constants of Klambauer et al."""
    return _SELU_SCALE * elu(x, _SELU_ALPHA)


Tensor.relu = relu
Tensor.sigmoid = sigm
Tensor.softmax = lambda self, axis=-1: softmax(self, axis)
Tensor.logsumexp = lambda self, axis=None, keepdims=False: logsumexp(self, axis, keepdims)
