"""Input checks shared by the data utilities and the model: clear errors instead of deep tracebacks."""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Tensor
from ..backend import is_array


def as_data_array(x, name: str, who: str):
    """``x`` (array, Tensor or nested list) as an ndarray with a leading sample axis.

    Raises a TypeError naming ``who`` and ``name`` for strings, objects and scalars.
    """
    if isinstance(x, Tensor):
        x = x.value
    if not is_array(x):
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as e:  # ragged lists and the like
            raise TypeError(f"{who}: {name} could not be turned into an array ({e})") from None
    if x.dtype == object or x.dtype.kind in "USVO":
        raise TypeError(f"{who}: {name} must hold numbers, got an array of dtype {x.dtype}")
    if x.ndim == 0:
        raise ValueError(f"{who}: {name} must have a sample axis first, got a scalar")
    return x


def require_real(x, name: str, who: str):
    """A TypeError naming ``who``, ``name`` and the dtype unless ``x`` holds real numbers (bool, int, float).

    Casting complex data to a float dtype would silently drop the imaginary part, so it is refused.
    """
    dtype = getattr(x, "dtype", None)
    if dtype is None or dtype.kind in "biuf":
        return
    hint = " (a cast would drop the imaginary part; take .real or abs() explicitly)" if dtype.kind == "c" else ""
    raise TypeError(f"{who}: {name} must hold real numbers, got an array of dtype {dtype}{hint}")


def check_same_length(arrays: dict, who: str) -> int:
    """The common number of samples of the named arrays (``name -> array``); an error if they differ."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"{who}: every array needs the same number of samples (first axis); {listed}")
    return next(iter(lengths.values()))


def check_batch_size(batch_size, who: str) -> int:
    """``batch_size`` as a positive int, or a ValueError/TypeError naming the bad value."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"{who}: batch_size must be a positive integer, got {batch_size!r}")
    if batch_size <= 0:
        raise ValueError(f"{who}: batch_size must be a positive integer, got {batch_size}")
    return int(batch_size)
