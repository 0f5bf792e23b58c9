"""Data augmentation on batches of images (N, C, H, W): composable, seeded, vectorised over the batch.

Every transform is a callable on a batch. Given an array it returns the transformed array; given a
tuple or list ``(x, y, ...)`` (a :class:`~knetpy.data.DataLoader` batch) it transforms ``x`` and passes
the rest through (:class:`MixUp` mixes ``y`` too)::

    augment = kp.data.augment.Compose([
        kp.data.augment.RandomCrop(32, padding=4),
        kp.data.augment.RandomHorizontalFlip(),
        kp.data.augment.Normalize(mean, std),
    ], seed=0)
    loader = kp.data.DataLoader((x, y), batch_size=64, shuffle=True, transform=augment)

Randomness: a transform (or a Compose) made with ``seed`` draws from its own generator, so the same
seed gives the same sequence of outputs; without one it draws from :func:`knetpy.backend.rng`, which
:func:`knetpy.set_seed` seeds. Inside a Compose the Compose's generator is used. Images are floats
(ColorJitter clips to ``[0, 1]``, the range it assumes); the output has the input's dtype.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..backend import rng as _global_rng

__all__ = [
    "Transform",
    "Compose",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomAffine",
    "ColorJitter",
    "Cutout",
    "MixUp",
    "Normalize",
    "affine_sample",
]


def _images(x, who):
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{who}: expected a batch of images of shape (N, C, H, W), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"{who}: expected floating images, got dtype {x.dtype} (convert with x.astype(np.float32))")
    return x


def _probability(who, name, p):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{who}: {name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def _non_negative(who, name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{who}: {name} must be a finite number >= 0, got {v!r}")
    return float(v)


def _size_pair(who, size):
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size, size)
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ValueError(f"{who}: size must be a positive integer or a pair (height, width), got {size!r}")
    return int(size[0]), int(size[1])


class Transform:
    """Base class: subclasses define ``apply(x, rng)`` on an image batch (N, C, H, W)."""

    def __init__(self, seed=None):
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def __call__(self, batch):
        return self.call(batch, self._rng or _global_rng())

    def call(self, batch, rng):
        """Transform ``batch`` (an array, or a tuple/list whose first item is the images) drawing from ``rng``."""
        if isinstance(batch, (tuple, list)):
            if not batch:
                raise ValueError(f"{type(self).__name__}: got an empty batch tuple")
            out = [self.apply(_images(batch[0], type(self).__name__), rng), *batch[1:]]
            return tuple(out) if isinstance(batch, tuple) else out
        return self.apply(_images(batch, type(self).__name__), rng)

    def apply(self, x, rng):
        raise NotImplementedError

    def __repr__(self):
        body = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({body})"


class Compose(Transform):
    """Apply ``transforms`` in order; with ``seed``, all of them draw from one generator of that seed."""

    def __init__(self, transforms, seed=None):
        super().__init__(seed)
        transforms = list(transforms)
        for i, t in enumerate(transforms):
            if not isinstance(t, Transform):
                raise TypeError(f"Compose: transforms[{i}] is a {type(t).__name__}, not a kp.data.augment transform")
        self.transforms = transforms

    def call(self, batch, rng):
        for t in self.transforms:
            batch = t.call(batch, rng)
        return batch


class RandomCrop(Transform):
    """Pad each side by ``padding`` (zeros, or the edge pixels with ``pad_mode="edge"``), then cut a
    ``size`` window at a random position, drawn for each image."""

    def __init__(self, size, padding=0, pad_mode="constant", seed=None):
        super().__init__(seed)
        self.size = _size_pair("RandomCrop", size)
        if isinstance(padding, bool) or not isinstance(padding, numbers.Integral) or padding < 0:
            raise ValueError(f"RandomCrop: padding must be an integer >= 0, got {padding!r}")
        if pad_mode not in ("constant", "edge", "reflect"):
            raise ValueError(f"RandomCrop: pad_mode must be 'constant', 'edge' or 'reflect', got {pad_mode!r}")
        self.padding, self.pad_mode = int(padding), pad_mode

    def apply(self, x, rng):
        p = self.padding
        if p:
            x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode=self.pad_mode)
        n, _, h, w = x.shape
        ch, cw = self.size
        if ch > h or cw > w:
            raise ValueError(f"RandomCrop: crop size {self.size} is larger than the padded images ({h}, {w})")
        top = rng.integers(0, h - ch + 1, size=n)
        left = rng.integers(0, w - cw + 1, size=n)
        rows = (top[:, None] + np.arange(ch))[:, None, :, None]  # (N, 1, ch, 1)
        cols = (left[:, None] + np.arange(cw))[:, None, None, :]  # (N, 1, 1, cw)
        return x[np.arange(n)[:, None, None, None], np.arange(x.shape[1])[None, :, None, None], rows, cols]


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p=0.5, seed=None):
        super().__init__(seed)
        self.p = _probability("RandomHorizontalFlip", "p", p)

    def apply(self, x, rng):
        flip = rng.random(len(x)) < self.p
        return np.where(flip[:, None, None, None], x[..., ::-1], x)


def affine_sample(x, matrices, fill=0.0):
    """Warp each image by its 2x3 affine map with bilinear interpolation (inverse mapping).

    ``matrices`` (N, 2, 3) map an output pixel's (row, col), measured from the image centre, to where it
    is read in the input (also from the centre): ``src = A @ dst + t``. Points outside read ``fill``.
    """
    x = _images(x, "affine_sample")
    n, c, h, w = x.shape
    m = np.asarray(matrices, dtype=np.float64)
    if m.shape != (n, 2, 3):
        raise ValueError(f"affine_sample: matrices must have shape ({n}, 2, 3), got {m.shape}")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    rr, cc = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    grid = np.stack([rr.ravel(), cc.ravel(), np.ones(h * w)])  # (3, H*W)
    src = m @ grid  # (N, 2, H*W)
    sr, sc = src[:, 0] + cy, src[:, 1] + cx
    r0, c0 = np.floor(sr).astype(np.int64), np.floor(sc).astype(np.int64)
    fr, fc = (sr - r0).astype(x.dtype), (sc - c0).astype(x.dtype)
    flat = x.reshape(n, c, h * w)
    out = np.zeros((n, c, h * w), dtype=x.dtype)
    weight_in = np.zeros((n, h * w), dtype=x.dtype)  # how much of each output pixel came from inside
    batch = np.arange(n)[:, None]
    for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):
        r, col = r0 + dr, c0 + dc
        wgt = (fr if dr else 1 - fr) * (fc if dc else 1 - fc)
        inside = (r >= 0) & (r < h) & (col >= 0) & (col < w)
        wgt = np.where(inside, wgt, 0)
        idx = np.where(inside, r * w + col, 0)
        out += flat[batch, :, idx].transpose(0, 2, 1) * wgt[:, None, :]
        weight_in += wgt
    if fill:
        out += (1 - weight_in)[:, None, :] * x.dtype.type(fill)
    return out.reshape(n, c, h, w)


class RandomAffine(Transform):
    """Rotate by up to ``degrees``, translate by up to ``translate`` (fractions of height and width) and
    scale by a factor in ``scale``, drawn for each image; bilinear sampling, ``fill`` outside."""

    def __init__(self, degrees=0.0, translate=(0.0, 0.0), scale=(1.0, 1.0), fill=0.0, seed=None):
        super().__init__(seed)
        who = "RandomAffine"
        self.degrees = _non_negative(who, "degrees", degrees)
        if isinstance(translate, numbers.Real):
            translate = (translate, translate)
        if not isinstance(translate, (tuple, list)) or len(translate) != 2:
            raise ValueError(f"{who}: translate must be a pair of fractions (height, width), got {translate!r}")
        self.translate = tuple(_non_negative(who, "translate", t) for t in translate)
        if (not isinstance(scale, (tuple, list)) or len(scale) != 2
                or not 0 < _non_negative(who, "scale", scale[0]) <= _non_negative(who, "scale", scale[1])):
            raise ValueError(f"{who}: scale must be a range (low, high) with 0 < low <= high, got {scale!r}")
        self.scale = (float(scale[0]), float(scale[1]))
        self.fill = float(fill)

    def apply(self, x, rng):
        n, _, h, w = x.shape
        angle = np.deg2rad(rng.uniform(-self.degrees, self.degrees, n))
        s = rng.uniform(self.scale[0], self.scale[1], n)
        ty = rng.uniform(-1, 1, n) * self.translate[0] * h
        tx = rng.uniform(-1, 1, n) * self.translate[1] * w
        cos, sin = np.cos(angle), np.sin(angle)
        # dst = s R src + t, so src = R^T (dst - t) / s: the inverse map, which sampling needs
        inv = np.stack([np.stack([cos, sin], 1), np.stack([-sin, cos], 1)], 1) / s[:, None, None]
        shift = -np.einsum("nij,nj->ni", inv, np.stack([ty, tx], 1))
        return affine_sample(x, np.concatenate([inv, shift[:, :, None]], axis=2), self.fill)


class ColorJitter(Transform):
    """Random brightness, contrast and saturation, each a factor drawn in ``[1 - v, 1 + v]`` per image.

    brightness multiplies the pixels; contrast scales them about the image's mean grey level; saturation
    (3-channel images only) mixes each pixel with its grey level. The result is clipped to [0, 1].
    """

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, seed=None):
        super().__init__(seed)
        who = "ColorJitter"
        self.brightness = _non_negative(who, "brightness", brightness)
        self.contrast = _non_negative(who, "contrast", contrast)
        self.saturation = _non_negative(who, "saturation", saturation)

    @staticmethod
    def _grey(x):
        if x.shape[1] == 3:
            wts = np.array([0.299, 0.587, 0.114], dtype=x.dtype)[None, :, None, None]
            return (x * wts).sum(axis=1, keepdims=True)
        return x.mean(axis=1, keepdims=True)

    def apply(self, x, rng):
        n = len(x)

        def factor(v):
            return rng.uniform(max(0.0, 1 - v), 1 + v, n).astype(x.dtype)[:, None, None, None]

        out = x
        if self.brightness:
            out = out * factor(self.brightness)
        if self.contrast:
            mean = self._grey(out).mean(axis=(1, 2, 3), keepdims=True)
            out = (out - mean) * factor(self.contrast) + mean
        if self.saturation and x.shape[1] == 3:
            grey = self._grey(out)
            out = (out - grey) * factor(self.saturation) + grey
        return np.clip(out, 0, 1).astype(x.dtype, copy=False)


class Cutout(Transform):
    """Zero (or ``fill``) a ``size`` square centred at a random pixel of each image, cut at the borders
    (DeVries & Taylor, 2017); applied to each image with probability ``p``."""

    def __init__(self, size, p=1.0, fill=0.0, seed=None):
        super().__init__(seed)
        self.size = _size_pair("Cutout", size)
        self.p = _probability("Cutout", "p", p)
        self.fill = float(fill)

    def apply(self, x, rng):
        n, _, h, w = x.shape
        cy, cx = rng.integers(0, h, n), rng.integers(0, w, n)
        on = rng.random(n) < self.p
        top, left = cy - self.size[0] // 2, cx - self.size[1] // 2
        rows, cols = np.arange(h)[None, :], np.arange(w)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < top[:, None] + self.size[0])  # (N, H)
        in_cols = (cols >= left[:, None]) & (cols < left[:, None] + self.size[1])  # (N, W)
        mask = in_rows[:, :, None] & in_cols[:, None, :] & on[:, None, None]
        return np.where(mask[:, None], x.dtype.type(self.fill), x)


class MixUp(Transform):
    """mixup (Zhang et al., 2018): each pair (x, y) becomes ``lam * (x, y) + (1 - lam) * (x', y')``.

    ``(x', y')`` is the batch in a random order and ``lam ~ Beta(alpha, alpha)``, one per image. Takes
    and returns ``(x, y)``; integer labels become one-hot rows of ``num_classes`` (needed then), so the
    mixed labels are probabilities for a loss that takes them (e.g. ``categorical_crossentropy``).
    """

    def __init__(self, alpha=0.2, num_classes=None, seed=None):
        super().__init__(seed)
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha > 0:
            raise ValueError(f"MixUp: alpha must be > 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.num_classes = num_classes

    def call(self, batch, rng):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("MixUp: needs a batch (x, y) with the labels, since it mixes them too")
        x = _images(batch[0], "MixUp")
        y = np.asarray(batch[1])
        if len(y) != len(x):
            raise ValueError(f"MixUp: {len(x)} images but {len(y)} labels")
        if y.dtype.kind in "iu":
            if self.num_classes is None:
                raise ValueError("MixUp: integer labels need num_classes to become one-hot rows")
            if y.ndim != 1 or (y.size and (y.min() < 0 or y.max() >= self.num_classes)):
                raise ValueError(f"MixUp: integer labels must be a vector in [0, {self.num_classes})")
            y = np.eye(self.num_classes, dtype=x.dtype)[y]
        n = len(x)
        lam = rng.beta(self.alpha, self.alpha, n)
        perm = rng.permutation(n)
        lx = lam.astype(x.dtype).reshape((n,) + (1,) * (x.ndim - 1))
        ly = lam.astype(y.dtype if y.dtype.kind == "f" else x.dtype).reshape((n,) + (1,) * (y.ndim - 1))
        mixed = (lx * x + (1 - lx) * x[perm], ly * y + (1 - ly) * y[perm])
        out = (*mixed, *batch[2:])
        return out if isinstance(batch, tuple) else list(out)


class Normalize(Transform):
    """``(x - mean) / std`` per channel; :meth:`fit` computes both from a training set."""

    def __init__(self, mean, std):
        super().__init__()
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(std, dtype=np.float64).reshape(-1)
        if self.mean.shape != self.std.shape or not np.all(self.std > 0):
            raise ValueError(f"Normalize: mean and std need one value per channel and std > 0, got "
                             f"mean {self.mean.tolist()}, std {self.std.tolist()}")

    @classmethod
    def fit(cls, x):
        """The per-channel mean and standard deviation of a batch of images (N, C, H, W)."""
        x = _images(x, "Normalize.fit")
        std = x.std(axis=(0, 2, 3), dtype=np.float64)
        return cls(x.mean(axis=(0, 2, 3), dtype=np.float64), np.where(std > 0, std, 1.0))

    def apply(self, x, rng):
        if x.shape[1] != len(self.mean):
            raise ValueError(f"Normalize: images have {x.shape[1]} channels, mean/std have {len(self.mean)}")
        mean = self.mean.astype(x.dtype)[None, :, None, None]
        std = self.std.astype(x.dtype)[None, :, None, None]
        return (x - mean) / std
