"""Synthetic sequence tasks for recurrent networks: Hochreiter & Schmidhuber's temporal order, and echo."""

from __future__ import annotations

import numpy as np

from ..backend import get_dtype, rng
from ._validate import check_choice, check_int

#: One-hot index of each temporal-order symbol: markers X, Y; distractors a-d; trigger B; start E.
TEMPORAL_ORDER_SYMBOLS = ("X", "Y", "a", "b", "c", "d", "B", "E")
_DISTRACTORS = (2, 6)  # half-open index range of a..d
_TRIGGER, _START, _PAD = 6, 7, 8

#: Per number of markers and level: inclusive ranges of the sequence length, then of each marker's
#: position (0 is the start symbol E; the trigger B is the last element). Two markers follow the
#: LSTM paper's experiment 6a on "hard" and the widely used easy..nightmare scaling of it; three
#: markers follow experiment 6b on "hard", and on the other levels put the middle marker between the
#: two-marker positions (knetpy's choice: the paper defines 6b at one difficulty only).
TEMPORAL_ORDER_LEVELS = {
    2: {
        "easy": ((7, 8), (1, 2), (4, 5)),
        "normal": ((30, 40), (2, 5), (20, 27)),
        "moderate": ((60, 80), (10, 20), (45, 54)),
        "hard": ((100, 110), (10, 20), (50, 60)),
        "nightmare": ((300, 500), (10, 80), (250, 290)),
    },
    3: {
        "easy": ((10, 12), (1, 2), (4, 5), (7, 8)),
        "normal": ((30, 40), (2, 5), (11, 17), (20, 27)),
        "moderate": ((60, 80), (10, 20), (30, 40), (45, 54)),
        "hard": ((100, 110), (10, 20), (33, 43), (66, 76)),
        "nightmare": ((300, 500), (10, 80), (130, 200), (250, 290)),
    },
}


def _generator(seed):
    return np.random.default_rng(seed) if seed is not None else rng()


def temporal_order(n, level="hard", *, markers=2, seed=None, return_lengths=False):
    """``n`` sequences of the temporal-order task (Hochreiter & Schmidhuber 1997, experiments 6a/6b).

    Each sequence starts with E, ends with the trigger B and is otherwise random distractors a-d,
    except for ``markers`` (2 or 3) positions holding X or Y; the class is the order of those X/Y:
    with 2 markers XX, XY, YX, YY are classes 0..3 (the paper's Q, R, S, U), with 3 markers XXX..YYY
    are 0..7 (X as bit 0, the first marker most significant). ``level`` picks the length and marker
    ranges from ``TEMPORAL_ORDER_LEVELS``: 'easy', 'normal', 'moderate', 'hard' (the paper's
    setting) or 'nightmare'.

    Returns ``(x, y)``: x (n, T, 8) one-hot in the default dtype, symbols indexed as in
    ``TEMPORAL_ORDER_SYMBOLS``, with T the level's longest length; shorter sequences are padded with
    all-zero rows at the front, so every sequence ends at the last step. y (n,) int64 classes. With
    ``return_lengths`` also the (n,) int64 true lengths.
    """
    who = "kp.datasets.temporal_order"
    n = check_int(n, "n", who)
    if markers not in TEMPORAL_ORDER_LEVELS:
        raise ValueError(f"{who}: markers must be 2 or 3, got {markers!r}")
    check_choice(level, tuple(TEMPORAL_ORDER_LEVELS[markers]), "level", who)
    (min_len, max_len), *marker_ranges = TEMPORAL_ORDER_LEVELS[markers][level]
    g = _generator(seed)
    lengths = g.integers(min_len, max_len + 1, size=n)
    rows = np.arange(n)
    start = max_len - lengths  # column of each sequence's first element
    symbols = g.integers(*_DISTRACTORS, size=(n, max_len))
    symbols[rows, start] = _START
    symbols[:, -1] = _TRIGGER
    bits = g.integers(0, 2, size=(n, markers))  # 0 = X, 1 = Y, which are also their symbol indices
    for k, (lo, hi) in enumerate(marker_ranges):
        symbols[rows, start + g.integers(lo, hi + 1, size=n)] = bits[:, k]
    symbols[np.arange(max_len) < start[:, None]] = _PAD
    one_hot = np.eye(_PAD + 1, len(TEMPORAL_ORDER_SYMBOLS), dtype=get_dtype())  # the pad row is all zeros
    x = one_hot[symbols]
    y = (bits @ (1 << np.arange(markers - 1, -1, -1))).astype(np.int64)
    return (x, y, lengths.astype(np.int64)) if return_lengths else (x, y)


def echo(n, length, *, delay=3, n_symbols=2, one_hot=True, seed=None):
    """``n`` sequences of the echo task: the target at step t is the input at step t - ``delay``.

    Inputs are ``n_symbols`` random symbols per step. Returns ``(x, y)``: x (n, length, n_symbols)
    one-hot, or (n, length, 1) holding the symbol values with ``one_hot=False``, in the default
    dtype; y (n, length) int64 target symbols, 0 for the first ``delay`` steps (nothing to echo yet).
    """
    who = "kp.datasets.echo"
    n = check_int(n, "n", who)
    length = check_int(length, "length", who)
    delay = check_int(delay, "delay", who, minimum=0)
    n_symbols = check_int(n_symbols, "n_symbols", who, minimum=2)
    if delay >= length:
        raise ValueError(f"{who}: delay ({delay}) must be smaller than length ({length})")
    symbols = _generator(seed).integers(0, n_symbols, size=(n, length))
    y = np.zeros((n, length), dtype=np.int64)
    y[:, delay:] = symbols[:, :length - delay]
    dtype = get_dtype()
    x = np.eye(n_symbols, dtype=dtype)[symbols] if one_hot else symbols[..., None].astype(dtype)
    return x, y
