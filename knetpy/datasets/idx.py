"""The IDX format of MNIST-like datasets: read (plain or gzip-compressed) with full validation, and write.

An IDX file is two zero bytes, a type code, the number of dimensions, each dimension as a big-endian
unsigned 32-bit integer, then the values in C order, big-endian. Reading checks every part of that and
that the file holds exactly the bytes its header promises, so a truncated or padded file is caught.

Resource limits. A gzip file is decompressed as a stream, never more than its header promises: a
header whose size is beyond what the compressed file could hold (``MAX_INFLATION`` times its size) is
refused before anything is allocated, and a stream that goes on past the size its header declares (a
gzip bomb) is refused as soon as it does. Both raise CorruptFileError. Memory grows only with the data
that actually arrives, so a lying file costs no more than its own honest part.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
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
#: A gzip file cannot decompress to more than about 1032 times its own size (deflate's limit, reached
#: by runs of one byte); a header declaring more is certainly lying. Real MNIST-like files inflate 2-10 times.
MAX_INFLATION = 1032
_CHUNK = 1 << 20


_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def _gzip_error(path, e):
    """The CorruptFileError for a gzip error ``e`` while reading ``path``."""
    kind = "truncated" if isinstance(e, EOFError) else "damaged"
    return CorruptFileError(f"{path}: the gzip stream is {kind} ({e}); delete the file and fetch it again")


@contextlib.contextmanager
def _open(path):
    """``(stream, compressed, size)``: the file opened for reading (decompressing when it is gzip data,
    recognised by content, not by name), whether it is, and the file's size on disk."""
    with open(path, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not compressed:
            yield raw, False, size
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            try:
                yield stream, True, size
            except _GZIP_ERRORS as e:
                raise _gzip_error(path, e) from None


def _read_rest(stream, head, total, path):
    """``head`` and the rest of ``stream`` as a uint8 array of ``total`` bytes; nothing may follow."""
    out = np.empty(total, dtype=np.uint8)  # untouched pages cost nothing until the data arrives
    out[:len(head)] = np.frombuffer(head, dtype=np.uint8)
    view, got = memoryview(out), len(head)
    while got < total:
        k = stream.readinto(view[got:got + _CHUNK])
        if not k:
            raise CorruptFileError(f"{path}: IDX file is truncated: the header declares {total} bytes, "
                                   f"the file has {got}")
        got += k
    if stream.read(1):
        raise CorruptFileError(f"{path}: IDX file is longer than its header says ({total} bytes)")
    return out


def read_bytes(path, limit=None) -> bytes:
    """The bytes of ``path``, decompressed when it is gzip data (recognised by content, not by name).

    At most ``limit`` bytes (default: ``MAX_INFLATION`` times the file's size) are decompressed; more, or
    a truncated or damaged gzip stream, raises CorruptFileError naming the file.
    """
    with _open(path) as (stream, compressed, size):
        if not compressed:
            return stream.read()
        limit = MAX_INFLATION * size if limit is None else limit
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise CorruptFileError(f"{path}: the gzip stream decompresses to more than {limit} bytes; refused")
    return data


def read_idx_bytes(path) -> np.ndarray:
    """The whole IDX content of ``path`` (plain or gzip) as a uint8 array, read within the header's size.

    The header is read first; the number of bytes it declares is checked against the file's size
    (``MAX_INFLATION`` times it for gzip data, exactly it otherwise) before anything is allocated, and
    the stream must end exactly there. Any failure raises CorruptFileError naming the file.
    """
    with _open(path) as (stream, compressed, size):
        head = stream.read(4)
        if len(head) == 4 and head[0] == head[1] == 0 and head[2] in IDX_TYPES and head[3] > 0:
            head += stream.read(4 * head[3])
        header = _idx_header(head)
        if header is None:  # no valid IDX header: parse_idx names the problem from these bytes
            return np.frombuffer(head + stream.read(64), dtype=np.uint8)
        dims, dtype, total = header
        if not compressed and total > size:
            raise CorruptFileError(f"{path}: IDX file is truncated: dims {dims} of {dtype.name} need {total} "
                                   f"bytes, the file has {size}")
        if compressed and total > MAX_INFLATION * size:
            raise CorruptFileError(f"{path}: the IDX header declares dims {dims} of {dtype.name} ({total} bytes), "
                                   f"more than {MAX_INFLATION} times the {size}-byte compressed file; the file "
                                   f"is damaged or malicious")
        return _read_rest(stream, head, total, path)


def _idx_header(data):
    """``(dims, dtype, total bytes)`` of a valid, complete IDX header at the start of ``data``, else None."""
    data = memoryview(data).cast("B")
    if len(data) < 4:
        return None
    code, ndim = data[2], data[3]
    if data[0] != 0 or data[1] != 0 or code not in IDX_TYPES or ndim == 0 or len(data) < 4 + 4 * ndim:
        return None
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype = IDX_TYPES[code]
    return dims, dtype, 4 + 4 * ndim + math.prod(dims) * dtype.itemsize


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
    stored = parse_idx(read_idx_bytes(path), path)
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
