"""Recurrent networks as functions: single cells, whole sequences (Knet's ``rnnforw``) and weights.

Layout and gate order
---------------------
Row vectors throughout, ``x @ w``. For hidden size H, input size F and G gate blocks
(G = 4 for ``"lstm"``, 3 for ``"gru"``, 1 for ``"tanh"`` / ``"relu"``) one layer in one direction
has the weights

    w_ih (F, G*H), w_hh (H, G*H), b_ih (G*H,), b_hh (G*H,)        (biases may be None)

so the gates of all blocks come out of one matmul each, as in Knet (which lumps all gate weights
into one array). Blocks are ordered as in cuDNN and PyTorch:

- LSTM (i, f, g, o): i, f, o = sigmoid, g = tanh of the blocks of x @ w_ih + b_ih + h @ w_hh + b_hh;
  c' = f * c + i * g; h' = o * tanh(c').
- GRU (r, z, n), PyTorch's formulation: r = sigmoid(xi_r + hh_r), z = sigmoid(xi_z + hh_z),
  n = tanh(xi_n + r * hh_n), h' = (1 - z) * n + z * h, where xi = x @ w_ih + b_ih and
  hh = h @ w_hh + b_hh (so b_hn stays inside the reset product).
- Elman RNN: h' = act(x @ w_ih + b_ih + h @ w_hh + b_hh), act = tanh or relu.

PyTorch stores ``weight_ih_l{k}`` as (G*H, F): knetpy's ``w_ih`` is its transpose, block for block;
``bias_ih`` / ``bias_hh`` are the same vectors.

Sequences are batch-first, x (N, T, F), y (N, T, D*H) with D = 2 when bidirectional (forward
outputs first). States stack layers and directions like PyTorch: h (L*D, N, H), index
``layer * D + direction``.
"""

from __future__ import annotations

import difflib
import math

import numpy as np

from ..autograd import Param, Tensor, replayable
from ..backend import array_namespace, get_dtype, is_array, rng
from ..init import reserve
from .elementwise import mul, tanh, where
from .index import getitem
from .linalg import matmul
from .lstm_fused import lstm_seq
from .nn import relu, sigm
from .rnn_common import unpack
from .rnn_fused import gru_seq, rnn_seq
from .shape import concatenate, reshape, stack

_MODES = {
    "lstm": "lstm",
    "gru": "gru",
    "tanh": "tanh",
    "relu": "relu",
    "rnn": "tanh",
    "rnn_tanh": "tanh",
    "rnn_relu": "relu",
}
_GATES = {"lstm": 4, "gru": 3, "tanh": 1, "relu": 1}


def _value(x):
    return x.value if isinstance(x, Tensor) else x


def _shape(x):
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def check_mode(mode):
    """The canonical mode name ('lstm', 'gru', 'tanh', 'relu') for ``mode``; clear error if unknown."""
    key = str(mode).lower()
    if key in _MODES:
        return _MODES[key]
    close = difflib.get_close_matches(key, _MODES, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"unknown recurrent mode '{mode}'{hint} (known: {', '.join(sorted(_MODES))})")


# -- single steps (the reference path: plain knetpy ops, differentiable to any order) ---------------
def _lstm_step(xi, h, c, w_hh, b_hh):
    H = _shape(h)[-1]
    gates = xi + matmul(h, w_hh)
    if b_hh is not None:
        gates = gates + b_hh
    i = sigm(gates[:, :H])
    f = sigm(gates[:, H : 2 * H])
    g = tanh(gates[:, 2 * H : 3 * H])
    o = sigm(gates[:, 3 * H :])
    c = f * c + i * g
    return o * tanh(c), c


def _gru_step(xi, h, w_hh, b_hh):
    H = _shape(h)[-1]
    hh = matmul(h, w_hh)
    if b_hh is not None:
        hh = hh + b_hh
    r = sigm(xi[:, :H] + hh[:, :H])
    z = sigm(xi[:, H : 2 * H] + hh[:, H : 2 * H])
    n = tanh(xi[:, 2 * H :] + r * hh[:, 2 * H :])
    return (1 - z) * n + z * h


def _rnn_step(xi, h, w_hh, b_hh, activation):
    pre = xi + matmul(h, w_hh)
    if b_hh is not None:
        pre = pre + b_hh
    return relu(pre) if activation == "relu" else tanh(pre)


def _input_part(x, w_ih, b_ih):
    xi = matmul(x, w_ih)
    return xi if b_ih is None else xi + b_ih


def _check_cell(name, G, x, states, w_ih, w_hh, b_ih, b_hh):
    """Shapes of one step's operands, so that nothing broadcasts silently."""
    xs, ws = _shape(x), _shape(w_hh)
    if len(xs) != 2:
        raise ValueError(f"{name}: x must be one step (N, F), got shape {xs}")
    if len(ws) != 2 or ws[1] != G * ws[0]:
        raise ValueError(f"{name}: w_hh has shape {ws}, expected (H, {G}*H)")
    (N, F), H = xs, ws[0]
    for key, a, want in (("w_ih", w_ih, (F, G * H)), ("b_ih", b_ih, (G * H,)), ("b_hh", b_hh, (G * H,))):
        if a is not None and _shape(a) != want:
            raise ValueError(f"{name}: {key} has shape {_shape(a)}, expected {want}")
    for key, s in states.items():
        if _shape(s) != (N, H):
            raise ValueError(f"{name}: {key} has shape {_shape(s)}, expected {(N, H)}")


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step: ``(h', c')`` from x (N, F), h and c (N, H) (gate order i, f, g, o)."""
    _check_cell("lstm_cell", 4, x, {"h": h, "c": c}, w_ih, w_hh, b_ih, b_hh)
    return _lstm_step(_input_part(x, w_ih, b_ih), h, c, w_hh, b_hh)


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step (PyTorch's formulation, gate order r, z, n): ``h'`` from x (N, F), h (N, H)."""
    _check_cell("gru_cell", 3, x, {"h": h}, w_ih, w_hh, b_ih, b_hh)
    return _gru_step(_input_part(x, w_ih, b_ih), h, w_hh, b_hh)


def rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, activation="tanh"):
    """One Elman RNN step: ``h' = act(x @ w_ih + b_ih + h @ w_hh + b_hh)``, act 'tanh' or 'relu'."""
    if activation not in ("tanh", "relu"):
        raise ValueError(f"rnn_cell: activation must be 'tanh' or 'relu', got {activation!r}")
    _check_cell("rnn_cell", 1, x, {"h": h}, w_ih, w_hh, b_ih, b_hh)
    return _rnn_step(_input_part(x, w_ih, b_ih), h, w_hh, b_hh, activation)


def _reference_direction(mode, x, w_ih, w_hh, b_ih, b_hh, h0, c0, mask, reverse):
    """One layer, one direction, cell by cell. Returns (y (N, T, H), h_T, c_T or None)."""
    N, T, _ = _shape(x)
    H = _shape(w_hh)[0]
    xp = array_namespace(_value(x))
    dt = _value(x).dtype
    h = xp.zeros((N, H), dtype=dt) if h0 is None else h0
    c = xp.zeros((N, H), dtype=dt) if (c0 is None and mode == "lstm") else c0
    xi_all = _input_part(x, w_ih, b_ih)  # the input side of every step in one matmul
    ys = [None] * T
    for t in range(T - 1, -1, -1) if reverse else range(T):
        xi = xi_all[:, t]
        if mode == "lstm":
            h_new, c_new = _lstm_step(xi, h, c, w_hh, b_hh)
        elif mode == "gru":
            h_new = _gru_step(xi, h, w_hh, b_hh)
        else:
            h_new = _rnn_step(xi, h, w_hh, b_hh, mode)
        keep = None if mask is None else mask[:, t : t + 1]
        if keep is None or (type(keep) is np.ndarray and keep.all()):  # (a device mask is not read back)
            ys[t], h = h_new, h_new
            if mode == "lstm":
                c = c_new
        else:  # finished (or not yet started) sequences keep their state and output zeros
            ys[t] = where(keep, h_new, 0)
            h = where(keep, h_new, h)
            if mode == "lstm":
                c = where(keep, c_new, c)
    return stack(ys, axis=1), h, (c if mode == "lstm" else None)


def _lookup(x):
    """(table, ids) when ``x`` is an embedding lookup ``table[ids]`` of ids (N, T) on the host, in a
    table small enough that projecting it costs less than projecting x; else None."""
    if not isinstance(x, Tensor) or getattr(x, "_prim", None) is not getitem.prim or not x._args:
        return None
    table, ids = x._args[0], (x._kw or {}).get("index")
    if not isinstance(table, Tensor) or len(_shape(table)) != 2 or type(ids) is not np.ndarray:
        return None
    if ids.ndim != 2 or ids.dtype.kind not in "iu" or ids.size == 0:
        return None
    (V, F), (N, T) = _shape(table), ids.shape
    # The table's gradient is then a one-hot GEMM, V x N*T x 4H, in place of three N*T x F x 4H ones
    # (the input projection, its weight gradient, the input gradient): a win while V is under 3F.
    if V > 2 * F or 4 * V > N * T or V * N * T > 1 << 24 or int(ids.min()) < 0:
        return None
    return table, ids


def _fused_direction(mode, x, w_ih, w_hh, b_ih, b_hh, h0, c0, mask, reverse):
    """One layer, one direction through the fused kernel. Returns (y, h_T, c_T or None)."""
    N, T, _ = _shape(x)
    H = _shape(w_hh)[0]
    # A raw or constant input needs no gradient: the kernel then skips one GEMM.
    need_dx = isinstance(x, Tensor) and x.requires_grad
    lookup = _lookup(x) if mode == "lstm" else None
    if lookup is not None:
        # x @ w_ih = (table @ w_ih)[ids]: project the V table rows once instead of all N*T inputs,
        # and the step kernel gathers them by id (the table's gradient then needs no input gradient)
        table, ids = lookup
        flat = lstm_seq(
            ids, matmul(table, w_ih), w_hh, b_ih, b_hh, h0, c0, mask=mask, reverse=reverse, need_dx=False
        )
        n_states = 2
    elif mode == "lstm":
        flat = lstm_seq(x, w_ih, w_hh, b_ih, b_hh, h0, c0, mask=mask, reverse=reverse, need_dx=need_dx)
        n_states = 2
    elif mode == "gru":
        flat = gru_seq(x, w_ih, w_hh, b_ih, b_hh, h0, mask=mask, reverse=reverse, need_dx=need_dx)
        n_states = 1
    else:
        flat = rnn_seq(
            x, w_ih, w_hh, b_ih, b_hh, h0, mask=mask, reverse=reverse, activation=mode, need_dx=need_dx
        )
        n_states = 1
    parts = unpack(flat, N, T, H, n_states)
    return parts[0], parts[1], (parts[2] if n_states == 2 else None)


# -- validation at the API boundary ----------------------------------------------------------------
def _check_array(name, a, shape, dtype):
    if a is None:
        return
    s = _shape(a)
    if s != shape:
        raise ValueError(f"rnnforw: {name} has shape {s}, expected {shape}")
    d = getattr(_value(a), "dtype", None)
    if d is None:
        raise TypeError(f"rnnforw: {name} must be an array or a tensor, got {type(a).__name__}")
    if d != dtype:
        raise TypeError(f"rnnforw: {name} has dtype {d} but the input x has dtype {dtype}; use one dtype")


def _layer_weights(weights, D):
    """weights as a list of (w_ih, w_hh, b_ih, b_hh) tuples; its length must be a multiple of D."""
    if isinstance(weights, (tuple, list)) and len(weights) == 4 and not isinstance(weights[0], (tuple, list)):
        weights = [weights]  # one layer, one direction given bare
    weights = list(weights)
    if not weights or len(weights) % D:
        raise ValueError(
            f"rnnforw: got {len(weights)} weight groups; a {'bi' if D == 2 else 'uni'}directional "
            f"network needs a positive multiple of {D} (one (w_ih, w_hh, b_ih, b_hh) per layer and direction)"
        )
    out = []
    for k, w in enumerate(weights):
        if not isinstance(w, (tuple, list)) or len(w) != 4:
            raise ValueError(
                f"rnnforw: weight group {k} must be (w_ih, w_hh, b_ih, b_hh), got {type(w).__name__}"
            )
        out.append(tuple(w))
    return out


def _lengths_to_mask(lengths, N, T):
    lengths = _value(lengths)
    if not is_array(lengths):
        lengths = np.asarray(lengths)
    if lengths.dtype.kind not in "iu":
        raise TypeError(f"rnnforw: lengths must be integers, got dtype {lengths.dtype}")
    if lengths.shape != (N,):
        raise ValueError(f"rnnforw: lengths has shape {lengths.shape}, expected ({N},) (one per sequence)")
    if type(lengths) is not np.ndarray:  # on a device: the mask is made there, unchecked (a check reads back)
        return array_namespace(lengths).arange(T)[None, :] < lengths[:, None]
    if lengths.size and (lengths.min() < 0 or lengths.max() > T):
        raise ValueError(
            f"rnnforw: lengths must lie in 0..{T} (the padded length), got {lengths.min()}..{lengths.max()}"
        )
    return np.arange(T)[None, :] < lengths[:, None]


def _check_mask(mask, N, T):
    mask = _value(mask)
    if not hasattr(mask, "dtype"):
        mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"rnnforw: mask must be boolean (True at real steps), got dtype {mask.dtype}")
    if tuple(mask.shape) != (N, T):
        raise ValueError(f"rnnforw: mask has shape {tuple(mask.shape)}, expected (N, T) = {(N, T)}")
    return mask


def _dropout(x, p):
    v = _value(x)
    return mul(x, _scaled_keep(array_namespace(v), _shape(x), p, v.dtype))


@replayable  # a fresh draw on every replay of a compiled step
def _scaled_keep(xp, shape, p, dtype):
    # (not ops.nn.dropout_mask: these draws are float64, and seeded RNN runs keep their numbers)
    keep = rng(xp).random(shape) >= p  # drawn where x lives: no copy per step
    return (keep / (1 - p)).astype(dtype)


def rnnforw(
    weights,
    x,
    h0=None,
    c0=None,
    mode="lstm",
    *,
    bidirectional=False,
    lengths=None,
    mask=None,
    dropout=0.0,
    training=True,
    fused=True,
):
    """Run a (multi-layer, optionally bidirectional) recurrent network over whole sequences.

    ``weights``: one ``(w_ih, w_hh, b_ih, b_hh)`` per layer and direction, in the order
    ``layer * D + direction`` (see :func:`rnn_init`); biases may be None. ``x`` (N, T, F).
    ``h0`` / ``c0``: initial states (L*D, N, H), zeros when None (``c0`` only for 'lstm').
    ``mode``: 'lstm', 'gru', 'tanh' or 'relu'. ``lengths`` (N,) or ``mask`` (N, T) describe padded
    batches: past its length a sequence's state stops changing and its outputs are zero (the
    backward direction starts at each sequence's own last step). ``dropout`` applies between layers
    when ``training``. ``fused=False`` runs the cell-by-cell reference path (differentiable twice).
    An LSTM whose input is an embedding lookup ``table[ids]`` of a small vocabulary projects the
    table once, ``(table @ w_ih)[ids]``, instead of every input vector (same values, far fewer FLOPs).

    Returns ``(y, hy, cy)``: y (N, T, D*H), hy (L*D, N, H), cy likewise for 'lstm', else None.
    """
    mode = check_mode(mode)
    xs = _shape(x)
    if len(xs) != 3:
        raise ValueError(f"rnnforw: x must be (batch, time, features), got shape {xs}")
    N, T, F = xs
    if T < 1:
        raise ValueError("rnnforw: x has no time steps (T = 0)")
    dt = _value(x).dtype
    if dt.kind != "f":
        raise TypeError(f"rnnforw: x must be floating, got dtype {dt}")
    D = 2 if bidirectional else 1
    groups = _layer_weights(weights, D)
    L = len(groups) // D
    G = _GATES[mode]
    H = _shape(groups[0][1])[0]
    for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(groups):
        f_in = F if k < D else D * H
        where_ = f"layer {k // D}" + (f" direction {k % D}" if D == 2 else "")
        _check_array(f"w_ih of {where_}", w_ih, (f_in, G * H), dt)
        _check_array(f"w_hh of {where_}", w_hh, (H, G * H), dt)
        _check_array(f"b_ih of {where_}", b_ih, (G * H,), dt)
        _check_array(f"b_hh of {where_}", b_hh, (G * H,), dt)
    _check_array("h0", h0, (L * D, N, H), dt)
    if mode == "lstm":
        _check_array("c0", c0, (L * D, N, H), dt)
    elif c0 is not None:
        raise ValueError(f"rnnforw: c0 is only used by 'lstm', not by mode '{mode}'")
    if lengths is not None and mask is not None:
        raise ValueError("rnnforw: give either lengths or mask, not both")
    if lengths is not None:
        mask = _lengths_to_mask(lengths, N, T)
    elif mask is not None:
        mask = _check_mask(mask, N, T)
    if mask is not None:
        mask = array_namespace(_value(x)).asarray(mask)  # on the device that holds x
    if not 0 <= dropout < 1:
        raise ValueError(f"rnnforw: dropout must be in [0, 1), got {dropout}")

    run = _fused_direction if fused else _reference_direction
    inp = x
    hs, cs = [], []
    for layer in range(L):
        ys = []
        for d in range(D):
            k = layer * D + d
            y, h, c = run(
                mode,
                inp,
                *groups[k],
                None if h0 is None else h0[k],
                None if c0 is None else c0[k],
                mask,
                d == 1,
            )
            ys.append(y)
            hs.append(h)
            cs.append(c)
        inp = ys[0] if D == 1 else concatenate(ys, axis=2)
        if dropout and training and layer < L - 1:
            inp = _dropout(inp, dropout)
    if len(hs) == 1:
        hy = reshape(hs[0], (1, N, H))
        cy = reshape(cs[0], (1, N, H)) if mode == "lstm" else None
    else:
        hy = stack(hs, axis=0)
        cy = stack(cs, axis=0) if mode == "lstm" else None
    return inp, hy, cy


def rnn_init(mode, input_size, hidden_size, num_layers=1, bidirectional=False, bias=True, dtype=None):
    """Fresh weights for :func:`rnnforw`: a list of ``(w_ih, w_hh, b_ih, b_hh)`` Params.

    Weights and both biases are uniform in (-1/sqrt(H), 1/sqrt(H)), PyTorch's scheme (random
    biases matter for relu cells: with zero biases more units start dead for some inputs); the LSTM
    forget gate's b_ih block is shifted by +1 on top (so the cell remembers by default, as in Knet and
    Keras). With ``bias=False`` the biases are None.
    """
    mode = check_mode(mode)
    dt = np.dtype(get_dtype() if dtype is None else dtype)
    G, H = _GATES[mode], int(hidden_size)
    if H < 1 or input_size < 1 or num_layers < 1:
        raise ValueError(
            f"rnn_init: sizes must be positive, got input_size={input_size}, hidden_size={hidden_size}, "
            f"num_layers={num_layers}"
        )
    D = 2 if bidirectional else 1
    bound = 1 / math.sqrt(H)
    weights = []
    for layer in range(num_layers):
        f_in = input_size if layer == 0 else D * H
        reserve((D, f_in + H + 2, G * H))  # a loader's size limit (knetpy.init.allocation_budget)
        for _ in range(D):
            w_ih = Param(rng().uniform(-bound, bound, (f_in, G * H)).astype(dt))
            w_hh = Param(rng().uniform(-bound, bound, (H, G * H)).astype(dt))
            if bias:
                b_ih = rng().uniform(-bound, bound, G * H).astype(dt)
                if mode == "lstm":
                    b_ih[H : 2 * H] += 1
                b_ih, b_hh = Param(b_ih), Param(rng().uniform(-bound, bound, G * H).astype(dt))
            else:
                b_ih = b_hh = None
            weights.append((w_ih, w_hh, b_ih, b_hh))
    return weights
