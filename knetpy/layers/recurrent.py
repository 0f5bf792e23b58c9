"""Recurrent layers: single-step cells and whole-sequence SimpleRNN, LSTM and GRU.

Inputs are batch-first, (N, T, F); the input size F is inferred on the first call. Weights follow
the layout and gate order of :mod:`knetpy.ops.rnn` (LSTM i, f, g, o; GRU r, z, n; ``w_ih`` is the
transpose of PyTorch's ``weight_ih_l{k}``) and are named after PyTorch's: ``w_ih_l0``, ``w_hh_l0``,
``b_ih_l0``, ``b_hh_l0``, with a ``_reverse`` suffix for the backward direction.
"""

from __future__ import annotations

from ..autograd import Tensor
from ..backend import array_namespace
from ..ops.rnn import check_mode, gru_cell, lstm_cell, rnn_cell, rnn_init, rnnforw
from ..ops.shape import concatenate, reshape
from ._util import as_input, cast, positive_int
from .base import Layer

__all__ = ["GRU", "LSTM", "GRUCell", "LSTMCell", "RNNCell", "SimpleRNN"]


def _shape(x):
    return tuple(x.shape) if hasattr(x, "shape") else ()


def _zeros_state(x, units):
    v = x.value if isinstance(x, Tensor) else x
    return array_namespace(v).zeros((v.shape[0], units), dtype=v.dtype)


class _Recurrent(Layer):
    """Shared machinery of SimpleRNN, LSTM and GRU (``mode`` picks the cell)."""

    mode = None

    def __init__(
        self,
        units,
        num_layers=1,
        bidirectional=False,
        return_sequences=False,
        return_state=False,
        dropout=0.0,
        bias=True,
        fused=True,
        name=None,
    ):
        super().__init__(name)
        kind = type(self).__name__
        if not 0 <= dropout < 1:
            raise ValueError(f"{kind}: dropout must be in [0, 1), got {dropout}")
        self.units = positive_int(units, "units", kind)
        self.num_layers = positive_int(num_layers, "num_layers", kind)
        self.bidirectional = bool(bidirectional)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.dropout = float(dropout)
        self.bias = bool(bias)
        self.fused = bool(fused)
        self._groups = []  # attribute names of (w_ih, w_hh, b_ih, b_hh) per layer and direction

    @property
    def _directions(self):
        return 2 if self.bidirectional else 1

    def build(self, input_shape):
        if input_shape is None or len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects batch-first sequences (N, T, F), got shape {input_shape}"
            )
        weights = rnn_init(
            self.mode, input_shape[-1], self.units, self.num_layers, self.bidirectional, self.bias
        )
        for k, group in enumerate(weights):
            suffix = f"l{k // self._directions}" + ("_reverse" if k % self._directions else "")
            names = []
            for prefix, p in zip(("w_ih", "w_hh", "b_ih", "b_hh"), group):
                name = f"{prefix}_{suffix}"
                setattr(self, name, p)
                names.append(name)
            self._groups.append(names)

    def weights(self):
        """The weights as :func:`knetpy.rnnforw` takes them: one (w_ih, w_hh, b_ih, b_hh) per layer and direction."""
        return [tuple(getattr(self, n) for n in names) for names in self._groups]

    def _state(self, s, dtype):
        """An initial state as (L*D, N, H); a single-layer one-direction state may be given as (N, H)."""
        if s is None:
            return None
        s = cast(as_input(s), dtype)
        if len(_shape(s)) == 2 and self.num_layers * self._directions == 1:
            return reshape(s, (1, *_shape(s)))
        return s

    def forward(self, x, initial_state=None, lengths=None, mask=None):
        """Run over ``x`` (N, T, F). ``initial_state``: h0 (or (h0, c0) for LSTM), each (L*D, N, H).

        ``lengths`` (N,) or ``mask`` (N, T) mark padding: a sequence's state stops at its end and its
        outputs past it are zero. Returns the outputs (N, T, D*H) with ``return_sequences``, else the
        last output (N, D*H) (for the backward direction: its output at t = 0); with ``return_state``
        also the final states (L*D, N, H): ``(out, h)``, or ``(out, h, c)`` for LSTM.
        """
        dt = self.w_ih_l0.dtype
        x = cast(as_input(x), dt)  # a float64 or integer input would otherwise fail the dtype check
        h0 = c0 = None
        if initial_state is not None:
            if self.mode == "lstm":
                if not (isinstance(initial_state, (tuple, list)) and len(initial_state) == 2):
                    raise ValueError("LSTM: initial_state must be a pair (h0, c0)")
                h0, c0 = (self._state(s, dt) for s in initial_state)
            else:
                h0 = self._state(initial_state, dt)
        y, hy, cy = rnnforw(
            self.weights(),
            x,
            h0,
            c0,
            self.mode,
            bidirectional=self.bidirectional,
            lengths=lengths,
            mask=mask,
            dropout=self.dropout,
            training=self.training,
            fused=self.fused,
        )
        if self.return_sequences:
            out = y
        elif self.bidirectional:
            out = concatenate([hy[-2], hy[-1]], axis=1)
        else:
            out = hy[-1]
        if not self.return_state:
            return out
        return (out, hy, cy) if self.mode == "lstm" else (out, hy)

    def get_config(self):
        return {
            "units": self.units,
            "num_layers": self.num_layers,
            "bidirectional": self.bidirectional,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "dropout": self.dropout,
            "bias": self.bias,
            "fused": self.fused,
            "name": self.name,
        }

    def __repr__(self):
        extra = ""
        if self.num_layers > 1:
            extra += f", num_layers={self.num_layers}"
        if self.bidirectional:
            extra += ", bidirectional=True"
        return f"{type(self).__name__}({self.units}{extra})"


class SimpleRNN(_Recurrent):
    """Elman RNN, h' = act(x @ w_ih + b_ih + h @ w_hh + b_hh), ``activation`` 'tanh' or 'relu'."""

    def __init__(self, units, activation="tanh", **kwargs):
        mode = check_mode(activation)
        if mode not in ("tanh", "relu"):
            raise ValueError(f"SimpleRNN: activation must be 'tanh' or 'relu', got {activation!r}")
        self.mode = mode
        super().__init__(units, **kwargs)

    def get_config(self):
        return {**super().get_config(), "activation": self.mode}


class LSTM(_Recurrent):
    """Long short-term memory (gate order i, f, g, o; forget-gate bias starts at 1)."""

    mode = "lstm"


class GRU(_Recurrent):
    """Gated recurrent unit in PyTorch's formulation (gate order r, z, n)."""

    mode = "gru"


class _Cell(Layer):
    mode = None

    def __init__(self, units, bias=True, name=None):
        super().__init__(name)
        self.units = positive_int(units, "units", type(self).__name__)
        self.bias = bool(bias)

    def build(self, input_shape):
        if input_shape is None or len(input_shape) != 2:
            raise ValueError(f"{type(self).__name__} expects one step (N, F), got shape {input_shape}")
        self.w_ih, self.w_hh, self.b_ih, self.b_hh = rnn_init(
            self.mode, input_shape[-1], self.units, bias=self.bias
        )[0]

    def get_config(self):
        return {"units": self.units, "bias": self.bias, "name": self.name}

    def _inputs(self, x, *states):
        """x and the states in the cell's dtype; zeros for a state not given."""
        dt = self.w_ih.dtype
        x = cast(as_input(x), dt)
        return [x] + [_zeros_state(x, self.units) if s is None else cast(as_input(s), dt) for s in states]

    def __repr__(self):
        return f"{type(self).__name__}({self.units})"


class RNNCell(_Cell):
    """One Elman RNN step: ``h' = cell(x, h)`` (h defaults to zeros)."""

    def __init__(self, units, activation="tanh", bias=True, name=None):
        if activation not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: activation must be 'tanh' or 'relu', got {activation!r}")
        self.mode = activation
        self.activation = activation
        super().__init__(units, bias, name)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}

    def forward(self, x, h=None):
        x, h = self._inputs(x, h)
        return rnn_cell(x, h, self.w_ih, self.w_hh, self.b_ih, self.b_hh, self.activation)


class LSTMCell(_Cell):
    """One LSTM step: ``(h', c') = cell(x, (h, c))`` (the state defaults to zeros)."""

    mode = "lstm"

    def forward(self, x, state=None):
        if state is not None and not (isinstance(state, (tuple, list)) and len(state) == 2):
            raise ValueError("LSTMCell: state must be a pair (h, c)")
        x, h, c = self._inputs(x, *(state or (None, None)))
        return lstm_cell(x, h, c, self.w_ih, self.w_hh, self.b_ih, self.b_hh)


class GRUCell(_Cell):
    """One GRU step: ``h' = cell(x, h)`` (h defaults to zeros)."""

    mode = "gru"

    def forward(self, x, h=None):
        x, h = self._inputs(x, h)
        return gru_cell(x, h, self.w_ih, self.w_hh, self.b_ih, self.b_hh)
