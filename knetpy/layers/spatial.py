"""Layers that resize feature maps without parameters: UpSampling2D and ZeroPadding2D."""

from __future__ import annotations

import math

from .. import ops
from ..ops.resize import check_options
from ._util import as_input, config_repr, fmt_shape
from .base import Layer


def _check_4d(layer, shape):
    if shape is None or len(shape) != 4:
        got = "an input without a shape" if shape is None else fmt_shape(shape)
        raise ValueError(f"{type(layer).__name__} expects inputs of shape (N, C, H, W), got {got}")


class UpSampling2D(Layer):
    """Enlarge (N, C, H, W) maps by ``size`` (a number or (sh, sw)) with ``interpolation``
    'nearest' (repeat) or 'bilinear' (as ``torch.nn.Upsample``, align_corners=False)."""

    def __init__(self, size=2, interpolation="nearest", name=None):
        super().__init__(name)
        self.size = check_options(type(self).__name__, size, interpolation, 2)
        self.interpolation = interpolation

    def forward(self, x):
        x = as_input(x)
        _check_4d(self, x.shape)
        return ops.upsample(x, self.size, self.interpolation)

    def compute_output_shape(self, input_shape):
        _check_4d(self, input_shape)
        return (*input_shape[:2], *(math.floor(s * f) for s, f in zip(input_shape[2:], self.size)))

    def get_config(self):
        return {"size": list(self.size), "interpolation": self.interpolation, "name": self.name}

    __repr__ = config_repr


def _pairs(padding, layer):
    """int | (ph, pw) | ((top, bottom), (left, right)) -> ((top, bottom), (left, right))."""
    if isinstance(padding, int) and not isinstance(padding, bool):
        pairs = ((padding, padding), (padding, padding))
    elif isinstance(padding, (list, tuple)) and len(padding) == 2:
        pairs = tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)
    else:
        pairs = None
    if pairs is None or any(len(p) != 2 or not all(isinstance(v, int) and v >= 0 for v in p) for p in pairs):
        raise ValueError(
            f"{layer}: padding must be an int, (pad_h, pad_w) or ((top, bottom), (left, right)) of "
            f"non-negative ints, got {padding!r}"
        )
    return pairs


class ZeroPadding2D(Layer):
    """Add rows and columns of zeros around (N, C, H, W) maps.

    ``padding``: an int (all sides), (pad_h, pad_w), or ((top, bottom), (left, right)).
    """

    def __init__(self, padding=1, name=None):
        super().__init__(name)
        self.padding = _pairs(padding, type(self).__name__)

    def forward(self, x):
        x = as_input(x)
        _check_4d(self, x.shape)
        return ops.pad(x, ((0, 0), (0, 0), *self.padding))

    def compute_output_shape(self, input_shape):
        _check_4d(self, input_shape)
        (t, b), (l, r) = self.padding
        return (*input_shape[:2], input_shape[2] + t + b, input_shape[3] + l + r)

    def get_config(self):
        return {"padding": [list(p) for p in self.padding], "name": self.name}

    __repr__ = config_repr
