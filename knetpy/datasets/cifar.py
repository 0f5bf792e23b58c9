"""CIFAR-10: 32x32 colour images in 10 classes, 50,000 to train on and 10,000 to test on.

The official distribution is ``cifar-10-python.tar.gz``, holding the folder ``cifar-10-batches-py``
with pickled batches ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``: dicts with bytes keys,
``b'data'`` a (n, 3072) uint8 array (1024 red, then green, then blue values, rows of 32) and
``b'labels'`` a list of ints. Both the folder and the archive are read as they are (nothing is
extracted), and only with the restricted unpickler of :mod:`knetpy.datasets.safe_pickle`, so a
tampered batch cannot run code.

A downloaded archive must match the SHA-256 widely published for it (Keras, torchvision's
prototype datasets). Batches are also checked by structure wherever they come from (every batch
present, uint8 data of 3072 values per image, one label 0-9 per image); a truncated or damaged
archive fails to decompress and is reported.

Resource limits: the archive is decompressed as a stream, in constant memory and never more than
``MAX_INFLATION`` (1032, deflate's own limit) times its own size, which stops bzip2 and xz bombs
(those formats can inflate far more); each batch is unpickled within the limits of
:mod:`knetpy.datasets.safe_pickle`. A file that asks for more raises CorruptFileError.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from ..backend import get_dtype
from ._validate import check_choice
from .download import CorruptFileError, Source, obtain
from .idx import MAX_INFLATION
from .safe_pickle import MAX_PICKLE_BYTES, UnsafePickleError, restricted_load

CIFAR10_SOURCE = Source(
    name="cifar10", title="CIFAR-10", mirrors=("https://www.cs.toronto.edu/~kriz/",),
    sha256={"cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"},
)
_DECOMPRESSORS = ((b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f, mode="rb")), (b"BZh", bz2.BZ2File),
                  (b"\xfd7zXZ\x00", lzma.LZMAFile))
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_SPLIT_BATCHES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_IMAGE_SHAPE = (3, 32, 32)
_N_CLASSES = 10


def cifar10(split="train", *, path=None, download=True):
    """CIFAR-10 images of one split, ``'train'`` (50,000) or ``'test'`` (10,000).

    Returns ``(x, y)``: x of shape (N, 3, 32, 32) in the default dtype (float32) scaled to [0, 1],
    y int64 labels 0..9 (names in ``CIFAR10_CLASSES``). ``path`` may be the ``cifar-10-batches-py``
    folder, the ``.tar.gz`` archive, or a folder holding either; without it they are looked up
    (``$KNETPY_DATA``, the cache) and, if ``download``, the archive is downloaded into the cache.
    """
    who = "kp.datasets.cifar10"
    check_choice(split, tuple(_SPLIT_BATCHES), "split", who)
    names = _SPLIT_BATCHES[split]
    if path is not None and _is_batches_folder(Path(path).expanduser()):
        location = Path(path).expanduser()
    else:
        location = obtain(CIFAR10_SOURCE, (FOLDER, ARCHIVE), ARCHIVE, _verify_archive, path=path,
                          download=download, file_ok=True, dir_ok=True, who=who)
    batches = _read_batches(location, names)
    dtype = get_dtype()
    x = np.concatenate([data for data, _ in batches]).astype(dtype)
    x /= dtype.type(255)
    y = np.concatenate([labels for _, labels in batches])
    return x.reshape(len(x), *_IMAGE_SHAPE), y


def load_batch(file, source="<batch>", limit=MAX_PICKLE_BYTES):
    """One CIFAR-10 batch from a binary file object: ``(data, labels)``, (n, 3072) uint8 and (n,) int64.

    Unpickled with the restricted unpickler (at most ``limit`` bytes); anything but a well-formed batch
    raises CorruptFileError (or UnsafePickleError for a pickle that asks to run code), naming ``source``.
    """
    try:
        batch = restricted_load(file, limit=limit)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{source}: {e}") from None
    except CorruptFileError as e:
        raise CorruptFileError(f"{source}: not a readable CIFAR batch: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            RecursionError, MemoryError) as e:
        raise CorruptFileError(f"{source}: not a readable CIFAR batch ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict):
        raise CorruptFileError(f"{source}: a CIFAR batch is a dict, got {type(batch).__name__}")
    data, labels = _entry(batch, "data", source), _entry(batch, "labels", source)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CorruptFileError(f"{source}: batch data must be a uint8 array of shape (n, 3072), got {got}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, RecursionError) as e:
        raise CorruptFileError(f"{source}: batch labels are not a list of integers ({e})") from None
    if labels.shape != (len(data),):
        raise CorruptFileError(f"{source}: {len(data)} images but labels of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= _N_CLASSES):
        raise CorruptFileError(f"{source}: labels must lie in 0..{_N_CLASSES - 1}, "
                               f"found {labels.min()}..{labels.max()}")
    return data, labels


def _entry(batch, key, source):
    """``batch[b'key']`` (the official bytes keys), or ``batch['key']`` for re-saved batches."""
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    keys = ", ".join(repr(k) for k in batch)
    raise CorruptFileError(f"{source}: a CIFAR batch needs the key b'{key}', found {keys}")


def _is_batches_folder(folder: Path) -> bool:
    """True for a folder holding CIFAR batches itself (so a missing batch is reported as such)."""
    names = (*_SPLIT_BATCHES["train"], *_SPLIT_BATCHES["test"], "batches.meta")
    return folder.is_dir() and any((folder / name).is_file() for name in names)


def _read_batches(location: Path, names):
    """The batches ``names`` from the batches folder or the archive at ``location``, in that order."""
    if location.is_dir():
        out = []
        for name in names:
            file = location / name
            if not file.is_file():
                raise CorruptFileError(f"{location}: batch {name} is missing")
            with open(file, "rb") as f:
                out.append(load_batch(f, file))
        return out
    wanted = {f"{FOLDER}/{name}": name for name in names}
    found = {}
    try:
        with _archive_stream(location) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:  # one pass, as a stream: seeking back would decompress it again
                if member.name in wanted and member.isfile():
                    found[wanted[member.name]] = load_batch(tar.extractfile(member), f"{location}:{member.name}",
                                                            limit=min(member.size, MAX_PICKLE_BYTES))
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError, lzma.LZMAError) as e:
        raise CorruptFileError(f"{location}: the archive is truncated or damaged ({e}); delete it and fetch "
                               f"it again") from None
    missing = [name for name in names if name not in found]
    if missing:
        raise CorruptFileError(f"{location}: the archive lacks {', '.join(f'{FOLDER}/{m}' for m in missing)}")
    return [found[name] for name in names]


class _Capped(io.RawIOBase):
    """A readable stream that refuses to deliver more than ``limit`` bytes of ``stream``."""

    def __init__(self, stream, limit, source):
        self.stream, self.limit, self.source, self.total = stream, limit, source, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        n = self.stream.readinto(buffer)
        self.total += n
        if self.total > self.limit:
            raise CorruptFileError(f"{self.source}: the archive decompresses to more than {self.limit} bytes "
                                   f"({MAX_INFLATION} times its size); the file is damaged or malicious")
        return n


@contextlib.contextmanager
def _archive_stream(location: Path):
    """The tar stream of the archive at ``location`` (plain, gzip, bzip2 or xz, by content), capped."""
    with open(location, "rb") as raw:
        magic = raw.read(6)
        raw.seek(0)
        opener = next((o for m, o in _DECOMPRESSORS if magic.startswith(m)), None)
        with contextlib.ExitStack() as stack:
            inner = stack.enter_context(opener(raw)) if opener else raw
            size = location.stat().st_size
            yield io.BufferedReader(_Capped(inner, MAX_INFLATION * size, location), 1 << 20)


def _verify_archive(path: Path) -> None:
    """Check a downloaded archive: every batch present and well formed, 10,000 images in each."""
    for data, _ in _read_batches(path, _SPLIT_BATCHES["train"] + _SPLIT_BATCHES["test"]):
        if len(data) != 10000:
            raise CorruptFileError(f"{path}: an official CIFAR-10 batch holds 10000 images, found {len(data)}")
