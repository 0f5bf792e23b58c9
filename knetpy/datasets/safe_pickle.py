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

Resource limits. The pickle machine allocates what a length field declares before reading the data,
and builds an object for almost every opcode, so a small file could ask for gigabytes. Before
anything is built, the whole pickle (at most ``MAX_PICKLE_BYTES``) is read and its opcodes are walked
without building anything: every declared length must fit in the data, and there may be at most
``MAX_OPCODES`` of them. An array's declared shape must match the bytes it holds. Each violation
raises CorruptFileError, so memory stays within a small multiple of the pickle's own size.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools

import numpy as np

from .download import CorruptFileError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import _reconstruct


#: The largest pickle read (a CIFAR batch is about 31 MB).
MAX_PICKLE_BYTES = 256 << 20
#: The most opcodes a pickle may have (a CIFAR batch has about 30,000); most of them build an object.
MAX_OPCODES = 1_000_000
_CHUNK = 1 << 20


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something outside the admitted globals; nothing it named was run."""


class _CheckedArray(np.ndarray):
    """An ndarray whose unpickling checks the declared shape against the bytes before NumPy allocates."""

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise CorruptFileError(f"a pickled array has a malformed state ({type(state).__name__})")
        _, shape, dtype, _, data = state
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise CorruptFileError(f"a pickled array declares the shape {shape!r}")
        if not isinstance(dtype, np.dtype) or not isinstance(data, bytes | bytearray):
            raise CorruptFileError("a pickled array holds no plain numeric data")
        need = math.prod(shape) * dtype.itemsize
        if need != len(data):
            raise CorruptFileError(f"a pickled array of shape {shape} and dtype {dtype} needs {need} bytes, "
                                   f"it holds {len(data)}")
        super().__setstate__(state)


def _checked_reconstruct(cls, shape, typecode):
    """``numpy.core.multiarray._reconstruct`` for plain ndarrays only, building a :class:`_CheckedArray`."""
    if cls is not np.ndarray:
        raise UnsafePickleError(f"refusing to reconstruct {cls!r}: only numpy.ndarray is admitted")
    return _reconstruct(_CheckedArray, shape, typecode)


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
    ("numpy.core.multiarray", "_reconstruct"): _checked_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _checked_reconstruct,
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


def check_opcodes(data) -> None:
    """Walk the opcodes of the pickle ``data`` without building anything (see the module docstring).

    Raises CorruptFileError for more than ``MAX_OPCODES`` opcodes, a frame longer than the data left,
    or a length field beyond the end of the data.
    """
    stream = io.BytesIO(data)
    try:
        for count, (op, arg, _) in enumerate(pickletools.genops(stream), 1):
            if count > MAX_OPCODES:
                raise CorruptFileError(f"the pickle has more than {MAX_OPCODES} opcodes; refused")
            if op.name == "FRAME" and arg > len(data) - stream.tell():
                raise CorruptFileError(f"a pickle frame declares {arg} bytes, only {len(data) - stream.tell()} "
                                       f"remain")
    except CorruptFileError:
        raise
    except (ValueError, OverflowError) as e:  # pickletools: a length beyond the data, an unknown opcode
        raise CorruptFileError(f"not a readable pickle ({e})") from None


def _read_limited(file, limit):
    chunks, total = [], 0
    while chunk := file.read(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise CorruptFileError(f"the pickle is larger than {limit} bytes; refused")
        chunks.append(chunk)
    return b"".join(chunks)


def restricted_load(file, encoding="bytes", limit=MAX_PICKLE_BYTES):
    """Unpickle from a binary file object with :class:`RestrictedUnpickler`, within the resource limits.

    At most ``limit`` bytes are read. ``encoding='bytes'`` keeps Python 2 strings as bytes, as the
    official CIFAR batches expect. Arrays come back as plain ``numpy.ndarray``.
    """
    data = _read_limited(file, limit)
    check_opcodes(data)
    return _plain_arrays(RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load())


def restricted_loads(data, encoding="bytes", limit=MAX_PICKLE_BYTES):
    """Unpickle from bytes with :class:`RestrictedUnpickler`."""
    return restricted_load(io.BytesIO(data), encoding=encoding, limit=limit)


def _plain_arrays(obj):
    """``obj``, or the values of a dict ``obj``, with checked arrays viewed as plain ndarrays (one level:
    deeper ones stay a harmless ndarray subclass, and no recursion can be made to overflow)."""
    plain = lambda v: v.view(np.ndarray) if isinstance(v, _CheckedArray) else v  # noqa: E731
    return {k: plain(v) for k, v in obj.items()} if isinstance(obj, dict) else plain(obj)
