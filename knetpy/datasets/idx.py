"""The IDX format of MNIST-like datasets: read (plain or gzip-compressed) with full validation, and write.

An IDX file is two zero bytes, a type code, the number of dimensions, each dimension as a big-endian
unsigned 32-bit integer, then the values in C order, big-endian. Reading checks every part of that and
that the file holds exactly the bytes its header promises, so a truncated or padded file is caught.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from .download import CorruptFileError

#: IDX type code -> element dtype (big-endian, as stored).
IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TYPE_CODE = {dt.newbyteorder("="): code for code, dt in IDX_TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path) -> bytes:
    """The bytes of ``path``, decompressed when it is gzip data (recognised by content, not by name).

    A truncated or damaged gzip stream raises CorruptFileError naming the file.
    """
    raw = Path(path).read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as e:
        raise CorruptFileError(f"{path}: the gzip stream is truncated ({e}); delete the file and fetch it again"
                               ) from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise CorruptFileError(f"{path}: the gzip stream is damaged ({e}); delete the file and fetch it again"
                               ) from None


def parse_idx(data, source="<bytes>") -> np.ndarray:
    """The array stored in IDX bytes ``data`` (a read-only view in the stored big-endian dtype).

    Raises CorruptFileError naming ``source`` for a wrong magic number, an unknown type code, a
    zero-dimensional header, or a length that differs from what the header declares.
    """
    data = memoryview(data).cast("B")
    if len(data) < 4:
        raise CorruptFileError(f"{source}: {len(data)} bytes is too short for an IDX header (4 bytes or more)")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    magic = int.from_bytes(data[:4], "big")
    if zero0 != 0 or zero1 != 0:
        raise CorruptFileError(f"{source}: not an IDX file (magic number 0x{magic:08x}; IDX files start with two "
                               f"zero bytes, e.g. 0x00000803 for images, 0x00000801 for labels)")
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02x} ({dt.name})" for c, dt in IDX_TYPES.items())
        raise CorruptFileError(f"{source}: unknown IDX type code 0x{code:02x} in magic number 0x{magic:08x} "
                               f"(known: {known})")
    if ndim == 0:
        raise CorruptFileError(f"{source}: the IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptFileError(f"{source}: truncated IDX header: {ndim} dimensions need {header} bytes, "
                               f"the file has {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_TYPES[code]
    expected = header + math.prod(dims) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise CorruptFileError(f"{source}: IDX file is {problem}: dims {dims} of {dtype.name} need "
                               f"{expected} bytes, the file has {len(data)}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def read_idx(path) -> np.ndarray:
    """The array in the IDX file ``path`` (``.gz`` or raw), native byte order, writable."""
    stored = parse_idx(read_bytes(path), path)
    return stored.astype(stored.dtype.newbyteorder("="), copy=True)


def write_idx(path, array) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``); the path.

    Supported dtypes: uint8, int8, int16, int32, float32, float64.
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _TYPE_CODE:
        names = ", ".join(dt.name for dt in _TYPE_CODE)
        raise TypeError(f"write_idx: IDX cannot store dtype {array.dtype}; use one of {names}")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"write_idx: IDX stores 1 to 255 dimensions, got an array of shape {array.shape}")
    if max(array.shape) >= 2**32:
        raise ValueError(f"write_idx: IDX dimensions must be below 2**32, got shape {array.shape}")
    code = _TYPE_CODE[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()
    path = Path(path)
    if path.name.endswith(".gz"):
        with gzip.GzipFile(path, "wb", mtime=0) as f:  # mtime=0: the same array gives the same bytes
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path
