"""Pooling layers: MaxPool1D/2D/3D, AvgPool1D/2D/3D, LPPool1D/2D and global average / max pooling.

Inputs are (N, C, *spatial); each layer calls :func:`knetpy.pool` (or the global pools) and has no
parameters.
"""

from __future__ import annotations

from .. import ops
from ..ops.conv import per_axis
from ._util import as_input, config_repr, fmt_shape
from .base import Layer


def _check_rank(layer, shape, rank):
    if shape is None or len(shape) != rank + 2:
        dims = ", ".join(["N", "C"] + ["XYZ"[i] for i in range(rank)])
        got = "an input without a shape" if shape is None else fmt_shape(shape)
        raise ValueError(f"{type(layer).__name__} expects inputs of shape ({dims}), got {got}")


class _Pool(Layer):
    rank = None
    mode = None

    def __init__(self, pool_size=2, strides=None, padding=0, name=None):
        super().__init__(name)
        layer = type(self).__name__
        self.pool_size = per_axis(pool_size, self.rank, "pool_size", layer, 1)
        self.strides = (
            self.pool_size if strides is None else per_axis(strides, self.rank, "strides", layer, 1)
        )
        if isinstance(padding, str):
            if padding.lower() != "valid":
                raise ValueError(
                    f"{layer}: padding must be 'valid' or an int / tuple of ints, got {padding!r}"
                )
            padding = 0
        self.padding = per_axis(padding, self.rank, "padding", layer, 0)

    def forward(self, x):
        x = as_input(x)
        _check_rank(self, x.shape, self.rank)
        return ops.pool(x, self.pool_size, self.padding, self.strides, mode=self._mode())

    def _mode(self):
        return self.mode

    def compute_output_shape(self, input_shape):
        _check_rank(self, input_shape, self.rank)
        spatial = tuple(
            1 + (s + 2 * p - w) // st
            for s, w, p, st in zip(input_shape[2:], self.pool_size, self.padding, self.strides)
        )
        return (*input_shape[:2], *spatial)

    def get_config(self):
        return {
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
            "padding": list(self.padding),
            "name": self.name,
        }

    __repr__ = config_repr


class _MaxPool(_Pool):
    mode = 0


class MaxPool1D(_MaxPool):
    """Max pooling over (N, C, X) inputs; ``strides`` defaults to ``pool_size``."""

    rank = 1


class MaxPool2D(_MaxPool):
    """Max pooling over (N, C, H, W) inputs; ``strides`` defaults to ``pool_size``, ``padding`` is
    'valid' or ints (padded positions never win)."""

    rank = 2


class MaxPool3D(_MaxPool):
    """Max pooling over (N, C, D, H, W) inputs; ``strides`` defaults to ``pool_size``."""

    rank = 3


class _AvgPool(_Pool):
    def __init__(self, pool_size=2, strides=None, padding=0, count_include_pad=True, name=None):
        super().__init__(pool_size, strides, padding, name)
        self.count_include_pad = bool(count_include_pad)

    def _mode(self):
        return 1 if self.count_include_pad else 2

    def get_config(self):
        return {**super().get_config(), "count_include_pad": self.count_include_pad}


class AvgPool1D(_AvgPool):
    """Average pooling over (N, C, X) inputs (see :class:`AvgPool2D`)."""

    rank = 1


class AvgPool2D(_AvgPool):
    """Average pooling over (N, C, H, W) inputs. With padding, ``count_include_pad`` chooses whether
    padded zeros count in the average (Knet's pool mode 1) or not (mode 2)."""

    rank = 2


class AvgPool3D(_AvgPool):
    """Average pooling over (N, C, D, H, W) inputs (see :class:`AvgPool2D`)."""

    rank = 3


class _LPPool(Layer):
    rank = None

    def __init__(self, p, pool_size=2, strides=None, name=None):
        super().__init__(name)
        layer = type(self).__name__
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < float("inf"):
            raise ValueError(f"{layer}: p must be a finite number > 0, got {p!r}")
        self.p = p
        self.pool_size = per_axis(pool_size, self.rank, "pool_size", layer, 1)
        self.strides = (
            self.pool_size if strides is None else per_axis(strides, self.rank, "strides", layer, 1)
        )

    def forward(self, x):
        x = as_input(x)
        _check_rank(self, x.shape, self.rank)
        return ops.lp_pool(x, self.p, self.pool_size, self.strides)

    def compute_output_shape(self, input_shape):
        _check_rank(self, input_shape, self.rank)
        spatial = tuple(1 + (s - w) // st for s, w, st in zip(input_shape[2:], self.pool_size, self.strides))
        return (*input_shape[:2], *spatial)

    def get_config(self):
        return {"p": self.p, "pool_size": list(self.pool_size), "strides": list(self.strides), "name": self.name}

    __repr__ = config_repr


class LPPool1D(_LPPool):
    """Power-average pooling ``(sum x^p)^(1/p)`` over windows of (N, C, X) inputs (see :func:`knetpy.lp_pool`):
    ``p = 1`` sums each window, large ``p`` approaches max pooling. ``strides`` defaults to ``pool_size``."""

    rank = 1


class LPPool2D(_LPPool):
    """Power-average pooling over (N, C, H, W) inputs (see :class:`LPPool1D`)."""

    rank = 2


class _GlobalPool(Layer):
    rank = None

    def __init__(self, keepdims=False, name=None):
        super().__init__(name)
        self.keepdims = bool(keepdims)

    def forward(self, x):
        x = as_input(x)
        _check_rank(self, x.shape, self.rank)
        return self._pool(x, keepdims=self.keepdims)

    def compute_output_shape(self, input_shape):
        _check_rank(self, input_shape, self.rank)
        return (*input_shape[:2], *((1,) * self.rank if self.keepdims else ()))

    def get_config(self):
        return {"keepdims": self.keepdims, "name": self.name}

    __repr__ = config_repr


class GlobalAvgPool1D(_GlobalPool):
    """Mean over the spatial axis: (N, C, X) -> (N, C)."""

    rank = 1
    _pool = staticmethod(ops.global_avg_pool)


class GlobalAvgPool2D(_GlobalPool):
    """Mean over all spatial positions: (N, C, H, W) -> (N, C) (or (N, C, 1, 1) with keepdims)."""

    rank = 2
    _pool = staticmethod(ops.global_avg_pool)


class GlobalAvgPool3D(_GlobalPool):
    """Mean over all spatial positions: (N, C, D, H, W) -> (N, C)."""

    rank = 3
    _pool = staticmethod(ops.global_avg_pool)


class GlobalMaxPool1D(_GlobalPool):
    """Maximum over the spatial axis: (N, C, X) -> (N, C)."""

    rank = 1
    _pool = staticmethod(ops.global_max_pool)


class GlobalMaxPool2D(_GlobalPool):
    """Maximum over all spatial positions: (N, C, H, W) -> (N, C) (or (N, C, 1, 1) with keepdims)."""

    rank = 2
    _pool = staticmethod(ops.global_max_pool)


class GlobalMaxPool3D(_GlobalPool):
    """Maximum over all spatial positions: (N, C, D, H, W) -> (N, C)."""

    rank = 3
    _pool = staticmethod(ops.global_max_pool)
