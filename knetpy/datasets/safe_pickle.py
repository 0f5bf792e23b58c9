"""Unpickling data files without running code from them.

A pickle can name any importable callable and have it called while loading (``os.system`` is the
classic example), so loading an untrusted pickle with :func:`pickle.load` runs whatever it says. The
unpickler here admits only the few globals that a pickled NumPy array needs, and nothing else:

- the array reconstruction function (``numpy.core.multiarray._reconstruct``, or ``numpy._core...``
  as NumPy 2 writes it), the ``numpy.ndarray`` class and ``numpy.dtype`` (object dtypes refused, since
  object arrays could smuggle in arbitrary objects);
- ``_codecs.encode`` restricted to latin-1 text, which Python 3 uses to write ``bytes`` at pickle
  protocol 2 (Python 2's batches store them directly; re-saved batches need this).

Everything else (dicts, lists, bytes, numbers) is built by the pickle machine itself with no global.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import _reconstruct


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something outside the admitted globals; nothing it named was run."""


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as protocol 2 uses it for ``bytes``: latin-1 text to bytes, nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r}): only latin-1 "
                                f"text (how protocol 2 stores bytes) is admitted")
    return text.encode("latin-1")


def _plain_dtype(*args, **kwargs):
    """``numpy.dtype`` for plain numeric and byte dtypes; object dtypes are refused."""
    dtype = np.dtype(*args, **kwargs)
    if dtype.hasobject:
        raise UnsafePickleError(f"refusing numpy dtype {dtype}: object arrays could hold arbitrary objects")
    return dtype


_ADMITTED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` that resolves only NumPy-array globals (see the module docstring)."""

    def find_class(self, module, name):
        admitted = _ADMITTED.get((module, name))
        if admitted is None:
            raise UnsafePickleError(f"refusing to load {module}.{name}: this data file asks to run code, and "
                                    f"only NumPy array data is admitted (the file is damaged or malicious)")
        return admitted


def restricted_load(file, encoding="bytes"):
    """Unpickle from a binary file object with :class:`RestrictedUnpickler`.

    ``encoding='bytes'`` keeps Python 2 strings as bytes, as the official CIFAR batches expect.
    """
    return RestrictedUnpickler(file, encoding=encoding).load()


def restricted_loads(data, encoding="bytes"):
    """Unpickle from bytes with :class:`RestrictedUnpickler`."""
    return restricted_load(io.BytesIO(data), encoding=encoding)
