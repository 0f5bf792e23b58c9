"""Layers: callable building blocks with their own parameters, ``y = layer(x)``.

Each module holds one family; every layer is also available here as ``kp.layers.<Name>``.
"""

from . import base, core, normalization
from .base import Layer
from .core import Activation, Dense, Dropout, Embedding, Flatten, Lambda, Maxout, PReLU, Reshape
from .normalization import BatchNorm, LayerNorm
