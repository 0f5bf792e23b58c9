"""What every zoo network shares: built from shapes in its constructor, rebuilt from its config by ``kp.load``."""

from __future__ import annotations

import numbers

from ..layers.base import sample_shape
from ..model import Model
from .blocks import build_through


def channels(c, width):
    """``c`` channels scaled by the width multiplier ``width`` (at least 1)."""
    return max(1, int(round(c * width)))


def image_shape(input_shape, who):
    """``input_shape`` as (C, H, W); an int ``s`` means (3, s, s)."""
    if isinstance(input_shape, numbers.Integral) and not isinstance(input_shape, bool):
        input_shape = (3, int(input_shape), int(input_shape))
    shape = sample_shape(input_shape, who)
    if len(shape) != 3 or None in shape:
        raise ValueError(f"{who}: input_shape is one image's (channels, height, width), e.g. (3, 224, 224); got {input_shape!r}")
    return shape


def small_stem(stem, shape, who):
    """True for the stem of small images (CIFAR-style: no early downsampling); 'auto' picks it below 64 pixels."""
    if stem not in ("auto", "imagenet", "small"):
        raise ValueError(f"{who}: stem must be 'auto', 'imagenet' or 'small', got {stem!r}")
    return stem == "small" or (stem == "auto" and min(shape[1:]) < 64)


class ZooModel(Model):
    """A network of the zoo. Subclasses create their layers, then call :meth:`_finish`, which builds
    them for ``input_shape`` from shapes alone (no data runs through, so counting the parameters of
    a large network costs only their initialization). ``get_config`` returns the constructor's
    arguments, so ``kp.save`` / ``kp.load`` rebuild the network."""

    def _finish(self, config, parts, shape):
        self._config = dict(config)
        full = (None, *shape)
        out = full
        for part in parts:
            out = build_through(part, out)
        self.built, self.input_shape = True, full
        self.output_shape = out

    def get_config(self):
        return dict(self._config)
