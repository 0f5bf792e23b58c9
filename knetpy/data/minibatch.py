"""Knet's ``minibatch``: iterate over arrays in batches along the first (sample) axis."""

from __future__ import annotations

import numbers

import numpy as np

from ..backend import array_namespace, rng, to_device
from ._checks import as_data_array, check_batch_size, check_same_length


def batch_indices(n_samples, batch_size, shuffle, drop_last, like=None):
    """Yield one epoch of batch selectors over ``n_samples``: slices in order, index arrays shuffled.

    The shuffled order comes from :func:`knetpy.backend.rng`; index arrays live on the same device
    as ``like`` (an array) so gathering needs no transfer.
    """
    end = n_samples - n_samples % batch_size if drop_last else n_samples
    if not shuffle:
        for start in range(0, end, batch_size):
            yield slice(start, start + batch_size)
        return
    order = rng().permutation(n_samples)
    xp = array_namespace(like) if like is not None else np
    if xp is not np:  # CuPy gathers with its own index arrays
        order = xp.asarray(order)
    for start in range(0, end, batch_size):
        yield order[start : start + batch_size]


def count_batches(n_samples, batch_size, drop_last):
    """How many batches :func:`batch_indices` yields."""
    full, rest = divmod(n_samples, batch_size)
    return full + (1 if rest and not drop_last else 0)


def gather(a, selector):
    """Rows of ``a`` picked by a slice (a view) or an index array (a copy)."""
    if isinstance(selector, slice):
        return a[selector]
    if type(a) is np.ndarray:
        return a.take(selector, axis=0)
    return array_namespace(a).take(a, selector, axis=0)


class Minibatch:
    """An iterable of batches ``(xb, yb)`` (or ``xb`` alone when there are no targets).

    Every pass over it is one epoch. With ``shuffle`` each pass draws a fresh order from
    :func:`knetpy.backend.rng` (so :func:`knetpy.set_seed` makes it reproducible) and the batches are
    gathered copies; without it they are views (slices) of the original arrays. With ``drop_last`` a
    final batch smaller than ``batch_size`` is left out. With ``device`` each batch is gathered where
    the arrays are, then put on ``device`` (one copy per batch).
    """

    def __init__(self, x, y=None, batch_size=32, shuffle=False, drop_last=False, device=None):
        who = "minibatch"
        if device is not None:
            from ..devices import check_device

            device = check_device(device)
        self.device = device
        self.x = as_data_array(x, "x", who)
        self.y = None if y is None else as_data_array(y, "y", who)
        arrays = {"x": self.x} if self.y is None else {"x": self.x, "y": self.y}
        self.n_samples = check_same_length(arrays, who)
        if self.n_samples == 0:
            raise ValueError(f"{who}: x is empty (0 samples); there is nothing to iterate over")
        self.batch_size = check_batch_size(batch_size, who)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)

    def __len__(self):
        return count_batches(self.n_samples, self.batch_size, self.drop_last)

    def __iter__(self):
        x, y = self.x, self.y
        dev = self.device
        for idx in batch_indices(self.n_samples, self.batch_size, self.shuffle, self.drop_last, x):
            xb = gather(x, idx)
            yb = None if y is None else gather(y, idx)
            if dev is not None:
                xb = to_device(xb, dev)
                yb = None if yb is None else to_device(yb, dev)
            yield xb if y is None else (xb, yb)

    def __repr__(self):
        targets = "" if self.y is None else f", y{tuple(self.y.shape)}"
        return (
            f"Minibatch(x{tuple(self.x.shape)}{targets}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, batches={len(self)}"
            + ("" if self.device is None else f", device={self.device!r}") + ")"
        )


def minibatch(x, y=None, batch_size=32, shuffle=False, drop_last=False, device=None):
    """Batches of ``x`` (and ``y``) along the first axis, as in Knet.

    >>> for xb, yb in kp.data.minibatch(x, y, 100, shuffle=True):
    ...     ...

    ``minibatch(x, 100)`` (no targets, batch size second, Knet's spelling) also works.
    Returns a :class:`Minibatch`: iterable (one epoch per pass, re-shuffled each time) with ``len()``.
    ``device='cuda'`` puts each batch on the GPU as it is taken (the arrays may stay on the host).
    """
    if isinstance(y, numbers.Integral) and not isinstance(y, bool):
        if batch_size != 32:
            raise TypeError(f"minibatch: got a batch size twice ({y} in place of y, and batch_size={batch_size})")
        y, batch_size = None, y
    return Minibatch(x, y, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, device=device)
