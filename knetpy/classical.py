"""Classical baselines: k-nearest neighbours, linear classifiers, the perceptron and image features.

Everything works on NumPy arrays of samples, batch first; images may be (N, H, W), (N, C, H, W) or
flat rows (N, D) (flattened where a method needs vectors).

- :func:`pairwise_distances`: L2 (``|a|^2 + |b|^2 - 2 a.b``, one matrix product) and L1 (broadcast
  in chunks, so memory stays bounded), with no Python loop over pairs.
- :class:`KNearestNeighbors` and :func:`cross_validate_k` (choose k by k-fold cross-validation).
- :class:`LinearClassifier`: the multiclass SVM (``kp.losses.hinge``, the CS231n form with margin
  ``delta``) or softmax (``kp.losses.cross_entropy``) loss plus L2 weight decay, trained by minibatch
  SGD with ``kp.value_and_grad``; ``W`` (D, C) holds one template per class
  (draw them with ``kp.plot.filter_grid(clf.W, path, image_shape=...)``).
- :class:`Perceptron`: Rosenblatt's learning rule for two classes.
- :func:`hog` and :func:`color_histogram`: the classic hand-made image features.
"""

from __future__ import annotations

import numpy as np

from .backend import get_dtype

__all__ = [
    "KNearestNeighbors",
    "LinearClassifier",
    "Perceptron",
    "color_histogram",
    "cross_validate_k",
    "hog",
    "pairwise_distances",
]

METRICS = ("l2", "l1")
#: L1 distances are computed in chunks of test rows, each chunk's (rows, n_train, D) difference at most this big.
L1_CHUNK_BYTES = 64 * 2**20


# -- argument checks -------------------------------------------------------------------------------------
def _samples(x, name, who, *, flatten=True):
    """``x`` as a float array with a sample axis, flattened to (N, D) when ``flatten``."""
    from .data._checks import as_data_array, require_real

    x = as_data_array(x, name, who)
    require_real(x, name, who)
    if x.dtype.kind != "f":
        x = x.astype(get_dtype())
    if flatten:
        x = x.reshape(len(x), -1)
    return x


def _int_labels(y, n, who, name="y"):
    y = np.asarray(getattr(y, "value", y))
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise TypeError(f"{who}: {name} must be a 1-D array of integer labels, got dtype {y.dtype} and shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"{who}: {n} samples but {len(y)} labels in {name}")
    return y


def _positive_int(value, name, who):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{who}: {name} must be a positive integer, got {value!r}")
    return int(value)


def _check_metric(metric, who):
    if metric not in METRICS:
        raise ValueError(f"{who}: metric must be one of {', '.join(METRICS)}, got {metric!r}")
    return metric


# -- distances -------------------------------------------------------------------------------------------
def pairwise_distances(a, b, metric="l2", squared=False):
    """The (len(a), len(b)) matrix of distances between the rows of ``a`` and ``b`` (flattened to (N, D)).

    ``l2``: Euclidean, from ``|a_i|^2 + |b_j|^2 - 2 a_i.b_j`` (one matrix product; rounding can make
    the squared value slightly negative, so it is clipped at 0). ``squared=True`` skips the square root.
    ``l1``: the sum of absolute differences, broadcast over chunks of rows of ``a`` so that no
    intermediate exceeds :data:`L1_CHUNK_BYTES`.
    """
    who = "pairwise_distances"
    _check_metric(metric, who)
    a, b = _samples(a, "a", who), _samples(b, "b", who)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{who}: a has {a.shape[1]} features per row and b has {b.shape[1]}; they must match")
    dtype = np.result_type(a.dtype, b.dtype)
    if metric == "l2":
        d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
        np.maximum(d, 0, out=d)
        return (d if squared else np.sqrt(d)).astype(dtype, copy=False)
    out = np.empty((len(a), len(b)), dtype)
    rows = max(1, L1_CHUNK_BYTES // max(1, len(b) * a.shape[1] * dtype.itemsize))
    for start in range(0, len(a), rows):  # a loop over chunks of rows, not over pairs
        out[start:start + rows] = np.abs(a[start:start + rows, None, :] - b[None, :, :]).sum(-1)
    return out


# -- k-nearest neighbours --------------------------------------------------------------------------------
class KNearestNeighbors:
    """Classify by a majority vote of the ``k`` nearest training samples (``metric`` l2 or l1).

    A tie in the vote goes to the tied class whose nearest member is closest. ``fit`` only stores the
    data; all the work is in :meth:`kneighbors`, one distance matrix per chunk of queries.
    """

    def __init__(self, k=1, metric="l2"):
        self.k = _positive_int(k, "k", "KNearestNeighbors")
        self.metric = _check_metric(metric, "KNearestNeighbors")
        self.x_ = self.y_ = self.classes_ = None

    def fit(self, x, y):
        who = "KNearestNeighbors.fit"
        self.x_ = _samples(x, "x", who)
        y = _int_labels(y, len(self.x_), who)
        self.classes_, self.y_ = np.unique(y, return_inverse=True)
        return self

    def _require_fit(self, who):
        if self.x_ is None:
            raise RuntimeError(f"KNearestNeighbors.{who}: call fit(x, y) first")

    def kneighbors(self, x, k=None):
        """``(distances, indices)``, each (len(x), k): the k nearest training samples, nearest first."""
        self._require_fit("kneighbors")
        who = "KNearestNeighbors.kneighbors"
        k = self.k if k is None else _positive_int(k, "k", who)
        if k > len(self.x_):
            raise ValueError(f"{who}: k={k} is more than the {len(self.x_)} training samples")
        x = _samples(x, "x", who)
        if x.shape[1] != self.x_.shape[1]:
            raise ValueError(f"{who}: x has {x.shape[1]} features per sample, the training data {self.x_.shape[1]}")
        d = pairwise_distances(x, self.x_, self.metric, squared=True)
        if k < d.shape[1]:
            idx = np.argpartition(d, k - 1, axis=1)[:, :k]
        else:
            idx = np.broadcast_to(np.arange(d.shape[1]), d.shape).copy()
        dk = np.take_along_axis(d, idx, axis=1)
        order = np.lexsort((idx, dk), axis=1)  # by distance, then by index: deterministic ties
        idx, dk = np.take_along_axis(idx, order, 1), np.take_along_axis(dk, order, 1)
        return (dk if self.metric == "l1" else np.sqrt(dk)), idx

    def _vote(self, neighbour_classes):
        """The winning class index per row of (n, k) neighbour classes, nearest first."""
        n, k = neighbour_classes.shape
        n_classes = len(self.classes_)
        counts = np.zeros((n, n_classes), np.int64)
        rows = np.repeat(np.arange(n), k)
        np.add.at(counts, (rows, neighbour_classes.ravel()), 1)
        first = np.full((n, n_classes), k, np.int64)  # rank of each class's nearest neighbour
        np.minimum.at(first, (rows, neighbour_classes.ravel()), np.tile(np.arange(k), n))
        return np.argmax(counts * (k + 1) + (k - first), axis=1)

    def predict(self, x, k=None):
        """Predicted labels of ``x`` (the labels given to fit)."""
        _, idx = self.kneighbors(x, k)
        return self.classes_[self._vote(self.y_[idx])]

    def predict_ks(self, x, ks):
        """``{k: predicted labels}`` for every k in ``ks``, from one search for the largest k."""
        ks = [_positive_int(k, "k", "KNearestNeighbors.predict_ks") for k in ks]
        _, idx = self.kneighbors(x, max(ks))
        classes = self.y_[idx]
        return {k: self.classes_[self._vote(classes[:, :k])] for k in ks}

    def score(self, x, y):
        """Accuracy on ``(x, y)``."""
        return float(np.mean(self.predict(x) == np.asarray(y)))


def cross_validate_k(x, y, ks=(1, 3, 5, 8, 10, 12, 15, 20), folds=5, metric="l2", seed=0):
    """Choose k for :class:`KNearestNeighbors` by ``folds``-fold cross-validation on ``(x, y)``.

    The samples are shuffled (from ``seed``) and cut into ``folds`` parts; each part in turn is
    classified by the others. Returns ``{"k": best, "accuracy": {k: [per-fold accuracies]},
    "mean": {k: mean}}``; the best k has the highest mean accuracy, the smallest such k on a tie.
    """
    who = "cross_validate_k"
    x = _samples(x, "x", who)
    y = _int_labels(y, len(x), who)
    folds = _positive_int(folds, "folds", who)
    if not 2 <= folds <= len(x):
        raise ValueError(f"{who}: folds must be between 2 and the {len(x)} samples, got {folds}")
    ks = sorted({_positive_int(k, "k", who) for k in ks})
    if not ks:
        raise ValueError(f"{who}: ks is empty")
    parts = np.array_split(np.random.default_rng(seed).permutation(len(x)), folds)
    smallest_train = len(x) - max(len(p) for p in parts)
    if ks[-1] > smallest_train:
        raise ValueError(f"{who}: k={ks[-1]} is more than the {smallest_train} samples of a training fold")
    acc = {k: [] for k in ks}
    for i, held in enumerate(parts):
        train = np.concatenate([p for j, p in enumerate(parts) if j != i])
        knn = KNearestNeighbors(1, metric).fit(x[train], y[train])
        for k, pred in knn.predict_ks(x[held], ks).items():
            acc[k].append(float(np.mean(pred == y[held])))
    mean = {k: float(np.mean(v)) for k, v in acc.items()}
    best = max(ks, key=lambda k: (mean[k], -k))
    return {"k": best, "accuracy": acc, "mean": mean}


# -- linear classifiers ----------------------------------------------------------------------------------
LINEAR_LOSSES = ("svm", "softmax")


class LinearClassifier:
    """Scores ``x @ W + b`` trained by minibatch SGD on the multiclass SVM or the softmax loss.

    ``loss="svm"``: ``kp.losses.hinge`` (sum over wrong classes of max(0, s_j - s_y + delta), the
    CS231n / Weston-Watkins form); ``loss="softmax"``: ``kp.losses.cross_entropy``. Both are averaged
    over the batch and get ``reg * sum(W**2)`` added (the bias is not decayed). ``lr`` is multiplied
    by ``lr_decay`` after every epoch. ``W`` (D, C) starts as small Gaussian noise drawn from ``seed``.
    After :meth:`fit`, ``loss_history_`` holds the loss of every step.
    """

    def __init__(self, loss="softmax", *, reg=1e-4, lr=0.1, epochs=20, batch_size=200, lr_decay=0.95,
                 delta=1.0, seed=0):
        who = "LinearClassifier"
        if loss not in LINEAR_LOSSES:
            raise ValueError(f"{who}: loss must be one of {', '.join(LINEAR_LOSSES)}, got {loss!r}")
        for name, v in (("reg", reg), ("lr", lr), ("lr_decay", lr_decay), ("delta", delta)):
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{who}: {name} must be a finite number >= 0, got {v!r}")
        self.loss_name, self.reg, self.lr, self.lr_decay, self.delta = loss, reg, lr, lr_decay, delta
        self.epochs = _positive_int(epochs, "epochs", who)
        self.batch_size = _positive_int(batch_size, "batch_size", who)
        self.seed = seed
        self.W = self.b = None
        self.loss_history_ = []

    def loss(self, params, x, y):
        """The training objective at ``params = [W, b]`` on a batch: data loss plus ``reg * sum(W**2)``."""
        from . import losses, ops

        w, b = params
        scores = x @ w + b
        if self.loss_name == "svm":
            data = losses.hinge(scores, y, margin=self.delta)
        else:
            data = losses.cross_entropy(scores, y)
        return data + self.reg * ops.sum(w * w)

    def fit(self, x, y, n_classes=None):
        """Train on ``(x, y)`` (labels 0..C-1; C is ``n_classes`` or the largest label + 1); returns self."""
        from .functional import value_and_grad
        from .parallel import auto_blas_threads

        who = "LinearClassifier.fit"
        x = _samples(x, "x", who)
        y = _int_labels(y, len(x), who)
        if len(y) and y.min() < 0:
            raise ValueError(f"{who}: labels must be 0..C-1, got {y.min()}")
        n_classes = int(y.max()) + 1 if n_classes is None else _positive_int(n_classes, "n_classes", who)
        g = np.random.default_rng(self.seed)
        self.W = (0.001 * g.standard_normal((x.shape[1], n_classes))).astype(x.dtype)
        self.b = np.zeros(n_classes, x.dtype)
        step = value_and_grad(self.loss)
        lr, params, self.loss_history_ = self.lr, [self.W, self.b], []
        # these GEMMs are small: BLAS's threads would cost more than they save
        with auto_blas_threads(2 * min(self.batch_size, len(x)) * self.W.size):
            for _ in range(self.epochs):
                order = g.permutation(len(x))
                for start in range(0, len(x), self.batch_size):
                    batch = order[start:start + self.batch_size]
                    value, grads = step(params, x[batch], y[batch])
                    for p, dp in zip(params, grads):
                        p -= x.dtype.type(lr) * dp  # in place: self.W and self.b are these arrays
                    self.loss_history_.append(float(value))
                lr *= self.lr_decay
        return self

    def decision_function(self, x):
        """The class scores ``x @ W + b``, (N, C)."""
        if self.W is None:
            raise RuntimeError("LinearClassifier: call fit(x, y) first")
        x = _samples(x, "x", "LinearClassifier.predict")
        if x.shape[1] != self.W.shape[0]:
            raise ValueError(f"LinearClassifier: x has {x.shape[1]} features per sample, W expects {self.W.shape[0]}")
        return x @ self.W + self.b

    def predict(self, x):
        return np.argmax(self.decision_function(x), axis=1)

    def score(self, x, y):
        return float(np.mean(self.predict(x) == np.asarray(y)))


# -- the perceptron --------------------------------------------------------------------------------------
class Perceptron:
    """Rosenblatt's perceptron for two classes: ``sign(x.w + b)``.

    The learning rule visits the samples one at a time (in a fresh random order each epoch, from
    ``seed``) and, on a mistake (``t (x.w + b) <= 0`` with targets t = +-1), moves the boundary:
    ``w += lr t x``, ``b += lr t``. On linearly separable data it stops after an epoch with no
    mistakes (the perceptron convergence theorem); otherwise (XOR) it runs ``max_epochs`` and keeps
    cycling. ``errors_`` lists the mistakes of each epoch; ``converged_`` says whether it stopped.
    Labels may be any two values; ``classes_`` keeps them (the second one is the positive class).
    """

    def __init__(self, lr=1.0, max_epochs=100, seed=0):
        if not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"Perceptron: lr must be a finite number > 0, got {lr!r}")
        self.lr = lr
        self.max_epochs = _positive_int(max_epochs, "max_epochs", "Perceptron")
        self.seed = seed
        self.w = self.b = self.classes_ = None
        self.errors_, self.converged_ = [], False

    def fit(self, x, y):
        who = "Perceptron.fit"
        x = _samples(x, "x", who).astype(np.float64)
        y = np.asarray(getattr(y, "value", y))
        if y.shape != (len(x),):
            raise ValueError(f"{who}: y must hold one label per sample, shape ({len(x)},), got {y.shape}")
        self.classes_, t = np.unique(y, return_inverse=True)
        if len(self.classes_) != 2:
            raise ValueError(f"{who}: the perceptron separates two classes, got {len(self.classes_)}: {self.classes_}")
        t = 2.0 * t - 1.0
        g = np.random.default_rng(self.seed)
        w, b = np.zeros(x.shape[1]), 0.0
        self.errors_, self.converged_ = [], False
        for _ in range(self.max_epochs):
            mistakes = 0
            for i in g.permutation(len(x)):  # the rule is online: one sample at a time
                if t[i] * (x[i] @ w + b) <= 0:
                    w += self.lr * t[i] * x[i]
                    b += self.lr * t[i]
                    mistakes += 1
            self.errors_.append(mistakes)
            if mistakes == 0:
                self.converged_ = True
                break
        self.w, self.b = w, b
        return self

    def decision_function(self, x):
        if self.w is None:
            raise RuntimeError("Perceptron: call fit(x, y) first")
        return _samples(x, "x", "Perceptron.predict") @ self.w + self.b

    def predict(self, x):
        return self.classes_[(self.decision_function(x) > 0).astype(np.int64)]

    def score(self, x, y):
        return float(np.mean(self.predict(x) == np.asarray(y)))


# -- image features --------------------------------------------------------------------------------------
def _images(images, who, *, colour=False):
    """(N, H, W) grey images, or (N, 3, H, W) colour ones with ``colour``, from the usual layouts."""
    x = _samples(images, "images", who, flatten=False)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{who}: expected images (N, H, W) or (N, 1 or 3, H, W), got shape {x.shape}")
    if colour:
        if x.shape[1] != 3:
            raise ValueError(f"{who}: needs colour images (N, 3, H, W), got shape {x.shape}")
        return x
    if x.shape[1] == 3:  # luminance, ITU-R 601
        return np.tensordot(x, np.array([0.299, 0.587, 0.114], x.dtype), axes=([1], [0]))
    return x[:, 0]


def hog(images, cell=8, bins=9, block=2, eps=1e-6):
    """Histograms of oriented gradients (Dalal and Triggs), vectorised over the whole batch.

    1. Gradients by central differences ([-1, 0, 1], one-sided at the borders) of grey images
       (colour ones are turned to luminance first); magnitude and unsigned orientation in [0, 180).
    2. Each ``cell`` x ``cell`` cell gets a histogram of ``bins`` orientations, every pixel voting
       its magnitude split linearly between the two nearest bin centres (rows and columns past the
       last whole cell are left out).
    3. Blocks of ``block`` x ``block`` cells, one per cell position (stride one cell), are
       L2-Hys normalised: scaled to unit norm, clipped at 0.2, scaled to unit norm again.

    Returns (N, blocks_y * blocks_x * block**2 * bins) features in the images' dtype.
    """
    who = "hog"
    x = _images(images, who)
    cell, bins, block = (_positive_int(v, n, who) for v, n in ((cell, "cell"), (bins, "bins"), (block, "block")))
    n, h, w = x.shape
    cy, cx = h // cell, w // cell
    if cy < block or cx < block:
        raise ValueError(f"{who}: images of {h}x{w} hold {cy}x{cx} cells of {cell} pixels, fewer than one "
                         f"block of {block}x{block}; use a smaller cell or block")
    xf = x.astype(np.float64)
    gy, gx = np.gradient(xf, axis=(1, 2))
    mag = np.hypot(gx, gy)[:, :cy * cell, :cx * cell]
    ang = (np.degrees(np.arctan2(gy, gx)) % 180.0)[:, :cy * cell, :cx * cell]
    pos = ang / (180.0 / bins) - 0.5  # position among the bin centres
    lo = np.floor(pos)
    frac = pos - lo
    lo = lo.astype(np.int64) % bins
    hi = (lo + 1) % bins
    # the flat index of (image, cell row, cell column) for every pixel, then of its bin
    rows = np.arange(cy * cell) // cell
    cols = np.arange(cx * cell) // cell
    cell_id = (np.arange(n)[:, None, None] * cy + rows[None, :, None]) * cx + cols[None, None, :]
    size = n * cy * cx * bins
    hist = (np.bincount((cell_id * bins + lo).ravel(), (mag * (1 - frac)).ravel(), minlength=size)
            + np.bincount((cell_id * bins + hi).ravel(), (mag * frac).ravel(), minlength=size))
    hist = hist.reshape(n, cy, cx, bins)
    blocks = np.lib.stride_tricks.sliding_window_view(hist, (block, block), axis=(1, 2))  # (n, by, bx, bins, b, b)
    blocks = blocks.reshape(n, cy - block + 1, cx - block + 1, -1)
    blocks = blocks / np.sqrt((blocks ** 2).sum(-1, keepdims=True) + eps ** 2)
    blocks = np.minimum(blocks, 0.2)
    blocks = blocks / np.sqrt((blocks ** 2).sum(-1, keepdims=True) + eps ** 2)
    return blocks.reshape(n, -1).astype(x.dtype)


def _hue(x):
    """The HSV hue in [0, 1) of (N, 3, H, W) RGB images (grey pixels get hue 0)."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    mx, mn = x.max(1), x.min(1)
    delta = mx - mn
    safe = np.where(delta > 0, delta, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    return np.where(delta > 0, h / 6.0, 0.0)


def color_histogram(images, bins=10, space="hsv", value_range=(0.0, 1.0)):
    """Colour histograms of (N, 3, H, W) images, each normalised to sum to 1 per channel histogram.

    ``space="hsv"``: one histogram of the hue (the CS231n feature: colour regardless of brightness
    and position); ``"rgb"``: one per channel over ``value_range``, concatenated. Returns
    (N, bins) or (N, 3 * bins).
    """
    who = "color_histogram"
    if space not in ("hsv", "rgb"):
        raise ValueError(f"{who}: space must be 'hsv' or 'rgb', got {space!r}")
    bins = _positive_int(bins, "bins", who)
    x = _images(images, who, colour=True)
    dtype, x, n = x.dtype, x.astype(np.float64), len(x)
    if space == "hsv":
        values, lo, hi = _hue(x)[:, None], 0.0, 1.0
    else:
        values, (lo, hi) = x, value_range
        if not hi > lo:
            raise ValueError(f"{who}: value_range must be (low, high) with high > low, got {value_range}")
    channels = values.shape[1]
    idx = np.clip(((values - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)
    flat = (np.arange(n * channels).reshape(n, channels, 1, 1) * bins + idx).ravel()
    hist = np.bincount(flat, minlength=n * channels * bins).reshape(n, channels * bins).astype(np.float64)
    hist /= values[0, 0].size  # pixels per image: each channel's histogram sums to 1
    return hist.astype(dtype)
