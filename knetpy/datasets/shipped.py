"""The small datasets shipped inside the package (``knetpy/datasets/files/``), so they need no download.

Each is stored gzip-compressed and checked, every time it is read, against the SHA-256 of its
uncompressed content. Where they come from and their licences: ``files/README.md``.
"""

from __future__ import annotations

import gzip
import io
from importlib import resources

from .download import CorruptFileError, DatasetNotFoundError, check_sha256, sha256_bytes

_MAX_INFLATION = 20  # text inflates 2-4 times; anything beyond this is not one of our files


def shipped_bytes(filename: str, sha256: str, who: str) -> bytes:
    """The content of the shipped ``files/<filename>.gz``, checked against ``sha256``."""
    resource = resources.files(__package__) / "files" / (filename + ".gz")
    try:
        compressed = resource.read_bytes()
    except OSError as e:
        raise DatasetNotFoundError(f"{who}: the copy of {filename} shipped with knetpy is missing ({e}); "
                                   f"reinstall knetpy, or pass path= a copy of the file") from None
    limit = _MAX_INFLATION * len(compressed)
    try:
        data = gzip.GzipFile(fileobj=io.BytesIO(compressed), mode="rb").read(limit + 1)
    except (OSError, EOFError) as e:
        raise CorruptFileError(f"{resource}: the shipped copy is damaged ({e}); reinstall knetpy") from None
    if len(data) > limit:
        raise CorruptFileError(f"{resource}: the shipped copy decompresses to more than {limit} bytes; reinstall knetpy")
    check_sha256(sha256_bytes(data), sha256, f"{resource} (uncompressed content)")
    return data
