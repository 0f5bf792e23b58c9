"""The Input layer: declares the shape of one sample, so a model is built before it sees data."""

from __future__ import annotations

from ._util import as_input, fmt_shape
from .base import Layer, sample_shape


class Input(Layer):
    """The first layer of a :class:`~knetpy.Sequential`, as Keras's ``Input``: ``Input((28, 28))``.

    ``shape`` is one sample's shape without the batch axis (``None`` for a size that varies). The
    layer passes its input through unchanged after checking that shape, and lets ``summary()``
    show the model's shapes before any data has been seen.
    """

    def __init__(self, shape, name=None):
        super().__init__(name)
        self.shape = sample_shape(shape, "Input")
        self.build_for(self.shape)

    def forward(self, x):
        x = as_input(x)
        got = tuple(x.shape[1:])
        if len(got) != len(self.shape) or any(w is not None and w != g for w, g in zip(self.shape, got)):
            raise ValueError(f"Input expects inputs of shape {fmt_shape((None, *self.shape))}, got {fmt_shape(x.shape)}")
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {"shape": list(self.shape), "name": self.name}

    def __repr__(self):
        return f"Input(shape={self.shape})"
