"""Loss functions ``loss(pred, target, ..., reduction="mean")``, with PyTorch's semantics.

``reduction`` is ``"mean"`` (the default: the mean over the batch of the per-sample losses),
``"sum"``, or ``"none"`` (the unreduced loss: per element for elementwise losses such as ``mse``,
per sample for ``cross_entropy``, ``nll``, ``hinge``, ``hellinger`` and ``contrastive``). For the
elementwise losses the mean over the batch of per-sample means is the mean over all elements, as
in PyTorch; for ``kl_div`` it is PyTorch's ``"batchmean"`` (the sum divided by the batch size),
which is the actual KL divergence.

Predictions and targets must have the same shape: a (N, 1) prediction against a (N,) target is an
error, not a silent (N, N) broadcast. Raw array targets are converted to the prediction's dtype.
Class scores are batch-first with the classes on axis 1, (N, C) or (N, C, d1, ...).

``cross_entropy``, ``nll`` and ``bce_with_logits`` take logits (``nll`` log-probabilities): the model's
last layer must not apply a softmax or sigmoid (``Model.compile`` and ``fit`` warn when it does).
Keras's names (``sparse_categorical_crossentropy``, ``categorical_crossentropy``,
``binary_crossentropy``, ``kl_divergence``) keep Keras's meaning: they take probabilities, clipped to
[1e-7, 1 - 1e-7], unless ``from_logits=True``, and refuse values outside [0, 1] with an error that
says so. The classes at the end (``SparseCategoricalCrossentropy(from_logits=True)``,
``MeanSquaredError()``, NumpyDL's ``SoftmaxCategoricalCrossEntropy``, ...) bind options for
``Model.compile``.
"""

from __future__ import annotations

import difflib
import functools

import numpy as np

from ._names import Registry
from .autograd import Tensor, primitive
from .backend import array_namespace, as_array, is_array
from .ops import abs as _abs
from .ops import astype, clip, exp, log, log1p, logp, maximum, relu, softplus, sqrt, square, where
from .ops import max as _max
from .ops import mean as _mean
from .ops import sum as _sum
from .ops.nn import _check_labels, _nll

_REDUCTIONS = ("mean", "sum", "none")


# -- argument checks ---------------------------------------------------------------------------------------
def _raw(x):
    return x.value if isinstance(x, Tensor) else x


def _shape(x):
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def _on_host(x):
    """Whether the values of ``x`` may be checked here: NumPy data. Reading a device array's values back
    would stop the device at every step, so its values are not checked (its shapes and dtypes are)."""
    return not is_array(x) or type(x) is np.ndarray


def _check_reduction(reduction, name, extra=()):
    if reduction in _REDUCTIONS or reduction in extra:
        return
    options = _REDUCTIONS + tuple(extra)
    close = difflib.get_close_matches(str(reduction), options, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"{name}: reduction must be one of {', '.join(options)}, got {reduction!r}{hint}")


def _as_input(x, name, what="prediction"):
    """``x`` as a floating tensor or array (lists and Python numbers take the default dtype)."""
    if not isinstance(x, Tensor):
        x = as_array(x)
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: the {what} must be floating point, got dtype {x.dtype}")
    return x


def _as_target(target, pred, name, what="target", pred_what="prediction"):
    """``target`` in ``pred``'s dtype, with exactly ``pred``'s shape (Python numbers are allowed)."""
    if isinstance(target, (int, float)) and not isinstance(target, bool):
        return target
    dtype = pred.dtype
    if isinstance(target, Tensor):
        t = target if target.dtype == dtype else astype(target, dtype)
    else:
        t = as_array(target)
        if t.dtype != dtype:
            t = t.astype(dtype)
    if t.shape != pred.shape:
        hint = ""
        if len(t.shape) == len(pred.shape) - 1 or len(pred.shape) == len(t.shape) - 1:
            hint = " (reshape one of them: broadcasting them would pair every prediction with every target)"
        raise ValueError(
            f"{name}: {pred_what} of shape {tuple(pred.shape)} and {what} of shape {tuple(t.shape)} "
            f"differ{hint}"
        )
    return t


def _reduce(loss, reduction, count=None):
    """Mean (over ``count`` items when given), sum, or the loss itself."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return _sum(loss)
    if count is None:
        return _mean(loss)
    # the mean rescaled rather than sum / count: a float16 sum can overflow where the result does not
    with np.errstate(divide="ignore", invalid="ignore"):  # count 0 (all ignored): NaN, as in PyTorch
        if is_array(count):  # a count on a device stays there (a Python float would read it back)
            return _mean(loss) * (_raw(loss).size / count).astype(_raw(loss).dtype)
        scale = np.float64(_raw(loss).size) / count
    return _mean(loss) * float(scale)  # a Python float keeps the loss's dtype


def _check_class_scores(scores, name, axis):
    if scores.ndim < 2:
        raise ValueError(
            f"{name}: expects class scores of shape (N, C) or (N, C, d1, ...), got shape {tuple(scores.shape)}"
        )
    return axis % scores.ndim


def _labels(scores, labels, axis, name):
    """Integer class labels checked against ``scores`` (shape, dtype, range), as a raw array."""
    lab = _raw(labels)
    if not hasattr(lab, "dtype"):
        lab = np.asarray(lab)
    if lab.dtype.kind not in "iu":
        raise TypeError(f"{name}: class labels must be integers, got dtype {lab.dtype}")
    lab, _ = _check_labels(scores, lab, axis, name)
    return lab


def _one_hot(labels, scores, axis):
    """A (raw) one-hot array shaped like ``scores`` with ones at ``labels`` along ``axis``."""
    s = _raw(scores)
    xp = array_namespace(s)
    out = xp.zeros(s.shape, dtype=s.dtype)
    xp.put_along_axis(out, xp.expand_dims(labels, axis), 1, axis=axis)
    return out


# -- regression ---------------------------------------------------------------------------------------------
def mse(pred, target, reduction="mean"):
    """Mean squared error (pred - target)**2."""
    _check_reduction(reduction, "mse")
    pred = _as_input(pred, "mse")
    # (square, not diff * diff: one op forward and back, and under a mean a compiled step's gradient is one multiply)
    return _reduce(square(pred - _as_target(target, pred, "mse")), reduction)


def mae(pred, target, reduction="mean"):
    """Mean absolute error |pred - target|."""
    _check_reduction(reduction, "mae")
    pred = _as_input(pred, "mae")
    return _reduce(_abs(pred - _as_target(target, pred, "mae")), reduction)


def huber(pred, target, delta=1.0, reduction="mean"):
    """Huber loss: 0.5 d**2 where |d| < delta, delta * (|d| - 0.5 delta) elsewhere (d = pred - target)."""
    _check_reduction(reduction, "huber")
    if not delta > 0:
        raise ValueError(f"huber: delta must be positive, got {delta}")
    pred = _as_input(pred, "huber")
    diff = pred - _as_target(target, pred, "huber")
    size = _abs(diff)
    loss = where(_raw(size) < delta, diff * diff * 0.5, (size - 0.5 * delta) * delta)
    return _reduce(loss, reduction)


# -- binary classification -----------------------------------------------------------------------------------
_LOG_FLOOR = -100.0  # PyTorch clamps log(p) here so that p = 0 or 1 gives a finite loss


@primitive
def _bce_terms(p, t):
    xp = array_namespace(p)
    with np.errstate(divide="ignore"):
        log_p = xp.maximum(xp.log(p), _LOG_FLOOR)
        log_q = xp.maximum(xp.log1p(-p), _LOG_FLOOR)
    return -(t * log_p + (1 - t) * log_q)


def _bce_vjp_p(g, ans, p, t):
    # PyTorch's form: (p - t) / (p (1 - p)), the denominator kept away from 0.
    return g * (p - t) / maximum(p * (1 - p), 1e-12)


def _bce_vjp_t(g, ans, p, t):
    with np.errstate(divide="ignore"):
        return g * (maximum(log1p(-p), _LOG_FLOOR) - maximum(log(p), _LOG_FLOOR))


_bce_terms.defvjp(_bce_vjp_p, _bce_vjp_t)


def bce(pred, target, reduction="mean"):
    """Binary cross-entropy of probabilities: -(t log p + (1 - t) log(1 - p)), logs clamped at -100.

    ``pred`` must hold probabilities in [0, 1]; for raw scores use :func:`bce_with_logits`, which is
    also more accurate.
    """
    _check_reduction(reduction, "bce")
    pred = _as_input(pred, "bce")
    target = _as_target(target, pred, "bce")
    pred = _as_probabilities(pred, "bce", "", "for logits use kp.losses.bce_with_logits")
    return _reduce(_bce_terms(pred, target), reduction)


def bce_with_logits(logits, target, pos_weight=None, reduction="mean"):
    """Binary cross-entropy of sigmoid(logits), computed stably from the logits.

    ``pos_weight`` (a number, or one weight per class broadcast along the last axis) scales the loss
    of positive targets, as in PyTorch.
    """
    _check_reduction(reduction, "bce_with_logits")
    logits = _as_input(logits, "bce_with_logits", "logits")
    target = _as_target(target, logits, "bce_with_logits")
    # t * softplus(-x) + (1 - t) * softplus(x) equals softplus(x) - t x, but neither term cancels
    # against the other, so a confident correct logit keeps its tiny loss (1e-13, not 0) in float32.
    positive = target * softplus(-logits)
    if pos_weight is not None:
        if not isinstance(pos_weight, Tensor):
            pos_weight = array_namespace(_raw(logits)).asarray(as_array(pos_weight).astype(logits.dtype, copy=False))
        if pos_weight.ndim > 1 or (pos_weight.ndim == 1 and pos_weight.shape[0] not in (1, logits.shape[-1])):
            raise ValueError(
                f"bce_with_logits: pos_weight of shape {tuple(pos_weight.shape)} must be a number or have "
                f"one entry per class ({logits.shape[-1]}, the last axis of logits {tuple(logits.shape)})"
            )
        positive = positive * pos_weight
    loss = positive + (1 - target) * softplus(logits)
    return _reduce(loss, reduction)


# -- multiclass classification -------------------------------------------------------------------------------
def cross_entropy(logits, target, axis=1, label_smoothing=0.0, reduction="mean", weight=None, ignore_index=None):
    """Softmax cross-entropy of ``logits`` (classes on ``axis``, 1 by default, as in PyTorch).

    ``target`` is either integer class labels, shaped like ``logits`` without the class axis, or
    class probabilities (one-hot or soft) shaped like ``logits``. ``label_smoothing`` mixes the
    target with the uniform distribution: (1 - eps) * target + eps / C.

    ``weight`` (C,) rescales each class's term; with labels, the mean is then taken over the
    weights of the samples' classes (PyTorch's weighted mean). ``ignore_index``: samples with this
    label add nothing and do not count in the mean (labels only; e.g. padding in a sequence).
    """
    name = "cross_entropy"
    _check_reduction(reduction, name)
    logits = _as_input(logits, name, "logits")
    ax = _check_class_scores(logits, name, axis)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing must be in [0, 1], got {label_smoothing}")
    n_class = logits.shape[ax]
    w = None if weight is None else _class_weights(weight, logits, n_class, name)
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer))):
        raise TypeError(f"{name}: ignore_index must be an int (a label value), got {ignore_index!r}")
    t = _raw(target)
    t_dtype = t.dtype if hasattr(t, "dtype") else np.asarray(t).dtype
    if t_dtype.kind == "f" and _shape(t) == tuple(logits.shape):
        if ignore_index is not None:
            raise ValueError(f"{name}: ignore_index applies to integer class labels, not to probability targets")
        probs = _as_target(target, logits, name)
        if label_smoothing:
            probs = probs * (1 - label_smoothing) + label_smoothing / n_class
        if w is not None:
            probs = probs * w
        per_sample = -_sum(probs * logp(logits, ax), axis=ax)
        return _reduce(per_sample, reduction)
    if t_dtype.kind == "f":
        raise TypeError(
            f"{name}: float targets must be class probabilities with the logits' shape "
            f"{tuple(logits.shape)}, got shape {_shape(t)}; class labels must be integers, got dtype {t_dtype}"
        )
    if w is not None or ignore_index is not None:
        return _weighted_cross_entropy(logits, t, ax, label_smoothing, reduction, w, ignore_index, name)
    labels = _labels(logits, target, ax, name)
    eps = label_smoothing
    if reduction != "none":
        loss = _nll(logits, labels, axis=ax, average=reduction == "mean")
        if eps:
            lp = logp(logits, ax)
            uniform_term = -_mean(lp) if reduction == "mean" else -_sum(lp) / n_class
            loss = loss * (1 - eps) + uniform_term * eps
        return loss
    lp = logp(logits, ax)
    per_sample = -_sum(lp * _one_hot(labels, logits, ax), axis=ax)
    if eps:
        per_sample = per_sample * (1 - eps) - _mean(lp, axis=ax) * eps
    return per_sample


def _class_weights(weight, logits, n_class, name):
    """``weight`` as a raw (C,) array in the logits' dtype, shaped to broadcast along the class axis."""
    w = as_array(_raw(weight))
    if w.shape != (n_class,):
        raise ValueError(f"{name}: weight must have shape ({n_class},) (one per class), got {w.shape}")
    if w.dtype.kind not in "fiu":
        raise TypeError(f"{name}: weight must be numeric, got dtype {w.dtype}")
    if _on_host(w) and (not np.isfinite(w).all() or (w < 0).any()):
        raise ValueError(f"{name}: weight must be finite and non-negative, got {w}")
    # host weights (a list, a NumPy array) go to the logits' device: one small copy
    return array_namespace(_raw(logits)).asarray(w.astype(_raw(logits).dtype))


def _weighted_cross_entropy(logits, labels, ax, eps, reduction, w, ignore_index, name):
    """cross_entropy over integer labels with class weights and/or an ignored label (PyTorch's
    definition): per sample (1 - eps) w[y] (-log p_y) + eps (-sum_c w_c log p_c) / C, zero for
    ignored samples; the mean divides by the summed w[y] of the samples that count."""
    xp = array_namespace(_raw(logits))
    lab = labels if hasattr(labels, "dtype") else np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise TypeError(f"{name}: class labels must be integers, got dtype {lab.dtype}")
    keep = xp.ones(lab.shape, dtype=bool) if ignore_index is None else lab != ignore_index
    lab = _labels(logits, xp.where(keep, lab, 0), ax, name)  # shape and range, ignored ones aside
    n_class = _raw(logits).shape[ax]
    dt = _raw(logits).dtype
    w = xp.ones(n_class, dtype=dt) if w is None else w
    w_y = w[lab] * keep.astype(dt)  # each sample's class weight, 0 when ignored
    lp = logp(logits, ax)
    per_sample = -_sum(lp * _one_hot(lab, logits, ax), axis=ax) * w_y
    if eps:
        w_axis = w.reshape([n_class if i == ax else 1 for i in range(_raw(logits).ndim)])
        smooth = -_sum(lp * w_axis, axis=ax) / n_class * keep.astype(dt)
        per_sample = per_sample * (1 - eps) + smooth * eps
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return _sum(per_sample)
    return _reduce(per_sample, "mean", count=w_y.sum(dtype=np.float64))


def nll(log_probs, target, axis=1, reduction="mean"):
    """Negative log-likelihood -log_probs[label] of integer labels (PyTorch's ``nll_loss``).

    ``log_probs`` are taken as they are (no softmax is applied): pass ``kp.logp(scores)``. For raw
    scores :func:`cross_entropy` (or the fused ``kp.nll``) does both steps at once.
    """
    _check_reduction(reduction, "nll")
    log_probs = _as_input(log_probs, "nll", "log-probabilities")
    ax = _check_class_scores(log_probs, "nll", axis)
    labels = _labels(log_probs, target, ax, "nll")
    return _reduce(-_sum(log_probs * _one_hot(labels, log_probs, ax), axis=ax), reduction)


def hinge(scores, target, margin=1.0, squared=False, axis=1, reduction="mean"):
    """Multiclass SVM loss sum_{j != y} max(0, s_j - s_y + margin) (squared terms if ``squared``).

    This is the Weston-Watkins / CS231n form; it equals PyTorch's ``multi_margin_loss`` times C.
    """
    _check_reduction(reduction, "hinge")
    scores = _as_input(scores, "hinge", "scores")
    ax = _check_class_scores(scores, "hinge", axis)
    labels = _labels(scores, target, ax, "hinge")
    onehot = _one_hot(labels, scores, ax)
    correct = _sum(scores * onehot, axis=ax, keepdims=True)
    margins = relu(scores - correct + margin) * (1 - onehot)
    if squared:
        margins = margins * margins
    return _reduce(_sum(margins, axis=ax), reduction)


# -- distributions ----------------------------------------------------------------------------------------
def _safe_sqrt(x):
    """sqrt(x) with gradient 0 (not inf) where x == 0."""
    positive = _raw(x) > 0
    return where(positive, sqrt(where(positive, x, 1)), 0)


def hellinger(pred, target, axis=1, reduction="mean"):
    """Hellinger distance sqrt(0.5 * sum_c (sqrt(p_c) - sqrt(t_c))**2) between distributions on ``axis``.

    Values lie in [0, 1]. The gradient with respect to a probability that is exactly 0 is infinite,
    so predictions should be strictly positive (softmax outputs are).
    """
    _check_reduction(reduction, "hellinger")
    pred = _as_input(pred, "hellinger")
    ax = _check_class_scores(pred, "hellinger", axis)
    target = _as_target(target, pred, "hellinger")
    for what, v in (("predictions", _raw(pred)), ("targets", _raw(target))):
        if v.size and _on_host(v) and float(v.min()) < 0:
            raise ValueError(
                f"hellinger: {what} must be probabilities (>= 0), got a minimum of {float(v.min()):.4g}"
            )
    diff = sqrt(pred) - sqrt(target)
    return _reduce(_safe_sqrt(_sum(diff * diff, axis=ax) * 0.5), reduction)


def _xlogy(x, y):
    """x * log(y), taken as 0 where x == 0 (so 0 * log 0 = 0)."""
    nonzero = _raw(x) != 0
    return where(nonzero, x * log(where(nonzero, y, 1)), 0)


def kl_div(log_pred, target, log_target=False, reduction="mean"):
    """KL(target || pred) in PyTorch's convention: ``log_pred`` holds log-probabilities, ``target``
    probabilities (log-probabilities when ``log_target``). Elementwise t * (log t - log_pred).

    ``"mean"`` (or ``"batchmean"``) divides the sum by the batch size, giving the mean KL divergence
    per sample; ``"none"`` is elementwise.
    """
    _check_reduction(reduction, "kl_div", extra=("batchmean",))
    log_pred = _as_input(log_pred, "kl_div", "log-probabilities")
    target = _as_target(target, log_pred, "kl_div")
    if log_target:
        loss = exp(target) * (target - log_pred)
    else:
        loss = _xlogy(target, target) - target * log_pred
    if reduction in ("mean", "batchmean"):
        return _reduce(loss, "mean", count=log_pred.shape[0] if log_pred.ndim else 1)
    return _reduce(loss, reduction)


def kl_normal(mu, logvar, reduction="mean"):
    """KL(N(mu, diag(exp(logvar))) || N(0, I)): a VAE encoder's Gaussian against the standard normal prior.

    In closed form, per sample: 0.5 * sum(mu**2 + exp(logvar) - 1 - logvar) over every axis but the
    first (the batch). ``mu`` and ``logvar`` have the same shape (N, latent...). ``reduction``:
    ``"mean"`` over the batch (the default), ``"sum"``, or ``"none"`` (one value per sample).
    """
    name = "kl_normal"
    _check_reduction(reduction, name)
    mu = _as_input(mu, name, "mean")
    logvar = _as_target(logvar, mu, name, "log-variance", "mean")
    if mu.ndim < 1:
        raise ValueError(f"{name}: mu needs a batch axis, got shape {tuple(mu.shape)}")
    terms = mu * mu + exp(logvar) - logvar - 1.0
    axes = tuple(range(1, mu.ndim))
    per_sample = (_sum(terms, axis=axes) if axes else terms) * 0.5
    return _reduce(per_sample, reduction)


# -- metric learning ----------------------------------------------------------------------------------------
def contrastive(x1, x2, same, margin=1.0, reduction="mean"):
    """Contrastive loss for siamese pairs (Hadsell, Chopra & LeCun, 2006).

    With d the Euclidean distance between the embeddings ``x1[i]`` and ``x2[i]`` (all non-batch
    axes), the loss of a pair is 0.5 * d**2 when ``same[i]`` is 1 (pull together) and
    0.5 * max(0, margin - d)**2 when it is 0 (push apart to at least ``margin``).
    """
    name = "contrastive"
    _check_reduction(reduction, name)
    if not margin > 0:
        raise ValueError(f"{name}: margin must be positive, got {margin}")
    x1 = _as_input(x1, name, "first embedding")
    x2 = _as_target(x2, x1, name, "second embedding", "first embedding")
    if x1.ndim < 1:
        raise ValueError(f"{name}: embeddings need a batch axis, got shape {tuple(x1.shape)}")
    s = as_array(_raw(same))
    if s.shape != x1.shape[:1]:
        raise ValueError(
            f"{name}: 'same' must have shape ({x1.shape[0]},) (one flag per pair), got {s.shape}"
        )
    if s.size and _on_host(s) and not bool(((s == 0) | (s == 1)).all()):
        raise ValueError(f"{name}: 'same' must hold 1 (similar pair) or 0 (dissimilar pair)")
    s = s.astype(x1.dtype)
    diff = x1 - x2
    axes = tuple(range(1, x1.ndim))
    dist2 = _sum(diff * diff, axis=axes) if axes else diff * diff
    gap = relu(margin - _safe_sqrt(dist2))
    loss = (dist2 * s + gap * gap * (1 - s)) * 0.5
    return _reduce(loss, reduction)


# -- probabilities (Keras's names) ----------------------------------------------------------------------------
# Keras's ``*_crossentropy`` losses take probabilities (a softmax or sigmoid output) unless
# ``from_logits=True``; knetpy's ``cross_entropy``, ``nll`` and ``bce_with_logits`` take logits.
def _prob_bounds(dtype, epsilon):
    """Where probabilities are clipped: [eps, 1 - eps] with Keras's eps = 1e-7, the upper bound kept
    at least one step of ``dtype`` below 1 (float16 would round 1 - 1e-7 up to 1, and log(1 - p) to -inf)."""
    if epsilon is None:
        epsilon = 1e-7
    elif not 0 < epsilon < 0.5:
        raise ValueError(f"epsilon must be in (0, 0.5), got {epsilon!r}")
    return float(epsilon), 1.0 - max(float(epsilon), float(np.finfo(dtype).epsneg))


def _as_probabilities(pred, name, what=" (a softmax or sigmoid output)",
                      hint="for raw scores (logits) pass from_logits=True"):
    """``pred`` as an input tensor, after checking that it holds probabilities; the error says ``hint``."""
    pred = _as_input(pred, name)
    p = _raw(pred)
    if p.size and _on_host(p) and (float(p.min()) < 0 or float(p.max()) > 1):
        raise ValueError(
            f"{name}: predictions must be probabilities in [0, 1]{what}, got values "
            f"from {float(p.min()):.4g} to {float(p.max()):.4g}; {hint}"
        )
    return pred


def _clipped_log(p, epsilon):
    """log(p) with p clipped to [eps, 1 - eps], so that a 0 or 1 gives a finite loss (no gradient outside)."""
    return log(clip(p, *_prob_bounds(_raw(p).dtype, epsilon)))


def _check_target_kind(target, name, sparse):
    """Sparse losses take integer labels, the others one-hot or probability vectors: say which to use."""
    t = _raw(target)
    dtype = t.dtype if hasattr(t, "dtype") else np.asarray(t).dtype
    kind = dtype.kind
    if kind in "iu" and not sparse:
        raise TypeError(
            f"{name}: targets must be one-hot or probability vectors shaped like the predictions, got "
            f"integer class labels; use sparse_categorical_crossentropy for those"
        )
    if kind not in "iu" and sparse:
        raise TypeError(
            f"{name}: targets must be integer class labels, got dtype {dtype}; "
            "for one-hot or probability targets use categorical_crossentropy"
        )


def sparse_categorical_crossentropy(pred, target, from_logits=False, axis=1, epsilon=None, reduction="mean"):
    """Cross-entropy -log p[label] of integer ``target`` labels (Keras's loss of that name).

    ``pred`` holds class probabilities (a softmax output, classes on ``axis``), clipped to
    [eps, 1 - eps] (eps = 1e-7, 1 - eps at least one float step below 1); with ``from_logits=True`` it
    holds logits and this is :func:`cross_entropy`.
    """
    name = "sparse_categorical_crossentropy"
    _check_reduction(reduction, name)
    _check_target_kind(target, name, sparse=True)
    if from_logits:
        return cross_entropy(pred, target, axis=axis, reduction=reduction)
    pred = _as_probabilities(pred, name)
    ax = _check_class_scores(pred, name, axis)
    labels = _labels(pred, target, ax, name)
    picked = _sum(pred * _one_hot(labels, pred, ax), axis=ax)
    return _reduce(-_clipped_log(picked, epsilon), reduction)


def categorical_crossentropy(
    pred, target, from_logits=False, axis=1, label_smoothing=0.0, epsilon=None, reduction="mean"
):
    """Cross-entropy -sum_c t_c log p_c of one-hot or probability targets (Keras's loss of that name).

    ``pred`` holds class probabilities (a softmax output, classes on ``axis``), clipped to
    [eps, 1 - eps]; with ``from_logits=True`` it holds logits and this is :func:`cross_entropy`.
    ``label_smoothing`` mixes the target with the uniform distribution. For integer labels use
    :func:`sparse_categorical_crossentropy`.
    """
    name = "categorical_crossentropy"
    _check_reduction(reduction, name)
    _check_target_kind(target, name, sparse=False)
    if from_logits:
        return cross_entropy(pred, target, axis=axis, label_smoothing=label_smoothing, reduction=reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing must be in [0, 1], got {label_smoothing}")
    pred = _as_probabilities(pred, name)
    ax = _check_class_scores(pred, name, axis)
    t = _as_target(target, pred, name)
    if label_smoothing:
        t = t * (1 - label_smoothing) + label_smoothing / pred.shape[ax]
    return _reduce(-_sum(t * _clipped_log(pred, epsilon), axis=ax), reduction)


def binary_crossentropy(pred, target, from_logits=False, label_smoothing=0.0, epsilon=None, reduction="mean"):
    """Binary cross-entropy -(t log p + (1 - t) log(1 - p)) (Keras's loss of that name), elementwise.

    ``pred`` holds probabilities (a sigmoid output), clipped to [eps, 1 - eps]; with
    ``from_logits=True`` it holds logits and this is :func:`bce_with_logits`. ``label_smoothing``
    moves the targets towards 0.5: t (1 - s) + s / 2.
    """
    name = "binary_crossentropy"
    _check_reduction(reduction, name)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing must be in [0, 1], got {label_smoothing}")
    if from_logits:
        pred = _as_input(pred, name, "logits")
    else:
        pred = _as_probabilities(pred, name)
    t = _as_target(target, pred, name)
    if label_smoothing:
        t = t * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        return bce_with_logits(pred, t, reduction=reduction)
    p = clip(pred, *_prob_bounds(_raw(pred).dtype, epsilon))
    return _reduce(-(t * log(p) + (1 - t) * log(1 - p)), reduction)


def kl_divergence(pred, target, axis=1, epsilon=None, reduction="mean"):
    """KL(target || pred) = sum_c t_c log(t_c / p_c) of two probability vectors (Keras's ``kl_divergence``).

    Both are clipped to [eps, 1]. Per sample (summed over ``axis``), then the mean over the batch.
    :func:`kl_div` is PyTorch's form, which takes log-probabilities as ``pred``.
    """
    name = "kl_divergence"
    _check_reduction(reduction, name)
    pred = _as_probabilities(pred, name)
    ax = _check_class_scores(pred, name, axis)
    t = _as_target(target, pred, name)
    eps = _prob_bounds(_raw(pred).dtype, epsilon)[0]
    t = clip(t, eps, 1)
    return _reduce(_sum(t * (log(t) - log(clip(pred, eps, 1))), axis=ax), reduction)


def categorical_hinge(pred, target, axis=1, reduction="mean"):
    """Keras's categorical hinge max(0, 1 + max_{c != y} s_c - s_y) with one-hot ``target``."""
    name = "categorical_hinge"
    _check_reduction(reduction, name)
    _check_target_kind(target, name, sparse=False)
    pred = _as_input(pred, name, "scores")
    ax = _check_class_scores(pred, name, axis)
    t = _as_target(target, pred, name)
    pos = _sum(t * pred, axis=ax)
    neg = _max((1 - t) * pred, axis=ax)
    return _reduce(relu(neg - pos + 1), reduction)


# -- lookup by name -------------------------------------------------------------------------------------------
_REGISTRY = Registry(
    "loss",
    "kp.losses",
    {
        "mse": mse,
        "mean_squared_error": mse,
        "mae": mae,
        "mean_absolute_error": mae,
        "l1": mae,
        "huber": huber,
        "bce": bce,
        "binary_cross_entropy": bce,
        "bce_with_logits": bce_with_logits,
        "cross_entropy": cross_entropy,
        "nll": nll,
        "hinge": hinge,
        "multiclass_hinge": hinge,
        "hellinger": hellinger,
        "kl_div": kl_div,
        "contrastive": contrastive,
        # Keras's names, with Keras's meaning: probabilities in unless from_logits=True
        "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
        "sparse_categorical_cross_entropy": sparse_categorical_crossentropy,
        "categorical_crossentropy": categorical_crossentropy,
        "categorical_cross_entropy": categorical_crossentropy,
        "binary_crossentropy": binary_crossentropy,
        "kl_divergence": kl_divergence,
        "kld": kl_divergence,
        "kullback_leibler_divergence": kl_divergence,
        "categorical_hinge": categorical_hinge,
        "huber_loss": huber,
    },
)


def names():
    """All names :func:`get` accepts."""
    return _REGISTRY.names()


def get(identifier, **params):
    """A loss function from a name, a ``{"name": ..., **params}`` dict or a callable.

    ``get("huber", delta=2.0)`` binds parameters; an unknown name raises ValueError suggesting the
    closest known one.
    """
    return _REGISTRY.get(identifier, params)


def serialize(fn):
    """A JSON-serialisable spec (a name or a dict) that :func:`get` turns back into ``fn``."""
    if isinstance(fn, Loss):
        return fn.get_config()
    return _REGISTRY.serialize(fn)


# -- losses as objects (Keras's and NumpyDL's class names) ----------------------------------------------------
class Loss:
    """A loss function with its options bound: ``Loss(**options)(pred, target)``, usable in ``compile``.

    Each subclass calls one function of this module (``loss_name``), e.g.
    ``SparseCategoricalCrossentropy(from_logits=True)`` is ``sparse_categorical_crossentropy(...,
    from_logits=True)``. An unknown option is a TypeError listing the valid ones.
    """

    loss_name = None

    def __init__(self, **options):
        self.options = options
        self._fn = get(self.loss_name, **options)

    def __call__(self, pred, target):
        return self._fn(pred, target)

    def get_config(self):
        """``{"name": ..., **options}``: what :func:`get` turns back into this loss."""
        opts = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in self.options.items()}
        return {"name": self.loss_name, **opts}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"


def _loss_class(cls_name, loss_name, doc):
    return type(cls_name, (Loss,), {"loss_name": loss_name, "__doc__": doc, "__module__": __name__})


# Keras's classes.
SparseCategoricalCrossentropy = _loss_class(
    "SparseCategoricalCrossentropy", "sparse_categorical_crossentropy",
    "Keras's class: :func:`sparse_categorical_crossentropy` (probabilities in unless from_logits=True).",
)
CategoricalCrossentropy = _loss_class(
    "CategoricalCrossentropy", "categorical_crossentropy",
    "Keras's class: :func:`categorical_crossentropy` (probabilities in unless from_logits=True).",
)
BinaryCrossentropy = _loss_class(
    "BinaryCrossentropy", "binary_crossentropy",
    "Keras's class: :func:`binary_crossentropy` (probabilities in unless from_logits=True).",
)
MeanSquaredError = _loss_class("MeanSquaredError", "mse", ":func:`mse`, the mean over all elements.")
MeanAbsoluteError = _loss_class("MeanAbsoluteError", "mae", ":func:`mae`, the mean over all elements.")
Huber = _loss_class("Huber", "huber", ":func:`huber` (option ``delta``).")
KLDivergence = _loss_class("KLDivergence", "kl_divergence", ":func:`kl_divergence` of probability vectors.")
CategoricalHinge = _loss_class("CategoricalHinge", "categorical_hinge", ":func:`categorical_hinge`.")
# NumpyDL's classes. They follow this module's scaling (the mean over the batch, and over elements for
# elementwise losses) rather than NumpyDL's 0.5 * sum over the outputs of a sample for MeanSquaredError
# and 1/sqrt(2) * sum of squared root differences for HellingerDistance.
BinaryCrossEntropy = _loss_class(
    "BinaryCrossEntropy", "binary_crossentropy", "NumpyDL's name for :class:`BinaryCrossentropy` (probabilities in)."
)
SoftmaxCategoricalCrossEntropy = _loss_class(
    "SoftmaxCategoricalCrossEntropy", "categorical_crossentropy",
    "NumpyDL's name: :func:`categorical_crossentropy` of softmax outputs and one-hot targets.",
)
SCCE = SoftmaxCategoricalCrossEntropy
HellingerDistance = _loss_class("HellingerDistance", "hellinger", "NumpyDL's name for :func:`hellinger`.")


# -- what a loss expects -------------------------------------------------------------------------------------
def _unwrap(loss):
    """The function behind a loss object or a functools.partial, and the options bound to it."""
    params = {}
    while True:
        if isinstance(loss, Loss):
            params = {**loss.options, **params}
            loss = loss._fn
        elif isinstance(loss, functools.partial):
            params = {**loss.keywords, **params}
            loss = loss.func
        else:
            return loss, params


def takes_logits(loss):
    """True when ``loss`` takes raw scores, so that a softmax or sigmoid before it would be applied twice."""
    from . import ops

    fn, params = _unwrap(loss)
    if fn in (sparse_categorical_crossentropy, categorical_crossentropy, binary_crossentropy):
        return bool(params.get("from_logits", False))
    # kp.losses.nll takes log-probabilities: a softmax output is just as wrong there
    return any(fn is f for f in (cross_entropy, nll, bce_with_logits, ops.nll, ops.bce, ops.logistic))


def takes_binary_logits(loss):
    """True for the losses of one logit per output (accuracy then thresholds at 0, not 0.5)."""
    from . import ops

    fn, params = _unwrap(loss)
    if fn is binary_crossentropy:
        return bool(params.get("from_logits", False))
    return any(fn is f for f in (bce_with_logits, ops.bce, ops.logistic))


from . import ebm as energy  # noqa: E402, F401  (kp.losses.energy; ebm needs the helpers above)
