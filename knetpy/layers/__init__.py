"""Layers: callable building blocks with their own parameters, ``y = layer(x)``.

Each module holds one family; every layer is also available here as ``kp.layers.<Name>``.
"""

from . import base, core, normalization
from .attention import (
    MultiHeadAttention,
    PositionalEmbedding,
    PositionalEncoding,
    TransformerEncoderLayer,
    sinusoidal_encoding,
)
from .base import Layer
from .conv import Conv1D, Conv2D, Conv2DTranspose, Conv3D
from .core import (
    Activation,
    AlphaDropout,
    Dense,
    Dropout,
    Dropout2D,
    Embedding,
    Flatten,
    Lambda,
    Maxout,
    PReLU,
    Reshape,
)
from .inputs import Input
from .normalization import BatchNorm, LayerNorm
from .pooling import (
    AvgPool1D,
    AvgPool2D,
    AvgPool3D,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalAvgPool3D,
    GlobalMaxPool1D,
    GlobalMaxPool2D,
    GlobalMaxPool3D,
    LPPool1D,
    LPPool2D,
    MaxPool1D,
    MaxPool2D,
    MaxPool3D,
)
from .recurrent import GRU, LSTM, GRUCell, LSTMCell, RNNCell, SimpleRNN
from .spatial import UpSampling2D, ZeroPadding2D
