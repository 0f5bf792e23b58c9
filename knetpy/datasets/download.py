"""Where dataset files are looked for, and how a missing one is downloaded and verified.

Every loader looks for its files in this order and takes the first it finds:

1. ``path=`` when given (a folder; for single-file datasets also the file itself). A file missing
   there is an error: an explicit path is never silently passed over.
2. Each folder listed in ``$KNETPY_DATA`` (several may be joined with ``os.pathsep``).
3. The cache, ``$KNETPY_CACHE`` or else ``~/.cache/knetpy``.
4. Folders where a system package installs the data (Debian's ``/usr/share/datasets/fashion-mnist``).
5. A download from the dataset's mirrors into the cache (unless ``download=False``).

In the folders of 2 and 3 a dataset's files sit in a subfolder named after it (``mnist/``,
``fashion-mnist/``, ...); datasets whose file names are their own (``housing.data``) are also found
directly in the folder. A download goes to a temporary file next to its destination, is verified
(its SHA-256 against the digest pinned in its :class:`Source`, then the file's structure) and only
then renamed into place, so a damaged, tampered or half-finished download is never used. Only
``https://`` mirrors are used: a plain-http URL is refused, and so is a redirect to one.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ENV_DATA = "KNETPY_DATA"
ENV_CACHE = "KNETPY_CACHE"
DOWNLOAD_TIMEOUT_S = 60


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not on this machine and could not be downloaded."""


class CorruptFileError(ValueError):
    """A dataset file is truncated, damaged or not the expected file (it is never used)."""


@dataclass(frozen=True)
class Source:
    """Where one dataset's files live.

    ``name`` is its subfolder under the data folders and the cache; ``title`` names it in messages;
    ``mirrors`` are base URLs tried in turn; ``system_dirs`` are folders a system package fills;
    ``flat_ok`` also accepts the files directly in a data folder (only for file names no other dataset uses);
    ``sha256`` maps each file that may be downloaded (its name in the cache) to the SHA-256 of the file
    as the mirrors serve it: nothing without a pinned digest is ever downloaded.
    """

    name: str
    title: str
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()
    flat_ok: bool = True
    sha256: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self):
        for url in self.mirrors:
            require_https(url, f"Source {self.name!r}")
        for filename, digest in self.sha256.items():
            if not (isinstance(digest, str) and _HEX64.fullmatch(digest)):
                raise ValueError(f"Source {self.name!r}: the SHA-256 of {filename} must be 64 lowercase hex "
                                 f"digits, got {digest!r}")


_HEX64 = re.compile(r"[0-9a-f]{64}")


def require_https(url: str, who: str) -> None:
    """Raise ValueError unless ``url`` is an https URL (a plain-http download could be altered on the way)."""
    if not (isinstance(url, str) and url.lower().startswith("https://")):
        raise ValueError(f"{who}: refusing {url!r}: only https:// URLs are downloaded from")


def cache_dir() -> Path:
    """The download cache: ``$KNETPY_CACHE`` if set, else ``~/.cache/knetpy``."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "knetpy"


def data_dirs() -> list[Path]:
    """The folders listed in ``$KNETPY_DATA``, in order (empty when unset)."""
    env = os.environ.get(ENV_DATA, "")
    return [Path(p).expanduser() for p in env.split(os.pathsep) if p]


def _first_existing(folders: Sequence[Path], names: Sequence[str], dir_ok: bool) -> Path | None:
    for folder in folders:
        for name in names:
            candidate = folder / name
            if candidate.is_file() or (dir_ok and candidate.is_dir()):
                return candidate
    return None


def find_file(source: Source, names: Sequence[str], path=None, *, file_ok: bool = False, dir_ok: bool = False,
              who: str = "") -> Path | None:
    """The first file called one of ``names`` in the lookup order, or None when there is none.

    With ``path`` the search is confined to it: a FileNotFoundError (DatasetNotFoundError) when the
    file is not there, and ``path`` may be the file itself when ``file_ok``. With ``dir_ok`` a folder
    called one of ``names`` counts too.
    """
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            if file_ok:
                return p
            raise DatasetNotFoundError(f"{who}: path {str(p)!r} is a file; pass the folder that holds "
                                       f"{' / '.join(names)}")
        if not p.is_dir():
            raise DatasetNotFoundError(f"{who}: path {str(p)!r} does not exist")
        found = _first_existing([p, p / source.name], names, dir_ok)
        if found is None:
            raise DatasetNotFoundError(f"{who}: none of {', '.join(names)} found in {p} or {p / source.name}")
        return found
    folders = []
    for root in [*data_dirs(), cache_dir()]:
        folders.append(root / source.name)
        if source.flat_ok:
            folders.append(root)
    folders.extend(Path(d) for d in source.system_dirs)
    return _first_existing(folders, names, dir_ok)


def where_to_put(source: Source, filenames: Sequence[str]) -> str:
    """A sentence telling the user where the files can be placed by hand."""
    return (f"put {', '.join(filenames)} in {cache_dir() / source.name} or in ${ENV_DATA}/{source.name}, "
            f"or pass path= the folder that holds them")


def obtain(source: Source, names: Sequence[str], remote: str, verify: Callable[[Path], object], *,
           path=None, download: bool = True, file_ok: bool = False, dir_ok: bool = False,
           remote_name: str | None = None, who: str = "") -> Path:
    """The local file for one of ``names``: found by :func:`find_file`, or downloaded as ``remote``.

    The download is saved in the cache as ``remote``; ``remote_name`` is its name on the mirrors
    when that differs.

    ``verify(path)`` must raise CorruptFileError for a damaged download; it runs before the file is
    moved into the cache.
    """
    found = find_file(source, names, path, file_ok=file_ok, dir_ok=dir_ok, who=who)
    if found is not None:
        return found
    if not download:
        raise DatasetNotFoundError(f"{who}: {source.title} file {remote} not found and download=False; "
                                   f"{where_to_put(source, [remote])}")
    return fetch(source, remote, verify, remote_name=remote_name, who=who)


def fetch(source: Source, filename: str, verify: Callable[[Path], object], *, remote_name: str | None = None,
          who: str = "") -> Path:
    """Download ``filename`` from the first mirror that serves it into the cache, verified; its path.

    Every mirror is tried in turn. The bytes must match ``source.sha256[filename]`` and then pass
    ``verify``; a download that fails either is deleted and reported with a CorruptFileError; when no
    mirror answers, a DatasetNotFoundError says where to put the file by hand.
    """
    import http.client  # here, not at the top: importing them costs ~20 ms that only a download needs
    import urllib.request

    expected = source.sha256.get(filename)
    if expected is None:
        raise DatasetNotFoundError(f"{who}: no SHA-256 is pinned for {source.title} file {filename}, so it is not "
                                   f"downloaded; {where_to_put(source, [filename])}")
    dest_dir = cache_dir() / source.name
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetNotFoundError(f"{who}: cannot create the cache folder {dest_dir} ({e}); set "
                                   f"${ENV_CACHE} to a writable folder, or {where_to_put(source, [filename])}"
                                   ) from e
    dest = dest_dir / filename
    failures, damaged = [], False
    for base in source.mirrors:
        url = base + (remote_name or filename)
        require_https(url, who)
        print(f"knetpy: downloading {url}", file=sys.stderr)
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{filename}.", suffix=".part")
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                final = getattr(response, "url", None) or url
                if not final.lower().startswith("https://"):  # urllib follows redirects to http too
                    raise CorruptFileError(f"the mirror redirected to the plain-http URL {final}")
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
            check_sha256(digest.hexdigest(), expected, url)
            verify(Path(tmp))
            os.replace(tmp, dest)  # atomic: readers see the old state or the whole verified file
            return dest
        except CorruptFileError as e:
            damaged = True
            failures.append(f"{url}: the downloaded file is damaged ({e})")
        except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, refused connections
            failures.append(f"{url}: {getattr(e, 'reason', None) or e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    report = "; ".join(failures)
    if damaged:
        raise CorruptFileError(f"{who}: could not get an intact {filename} ({report}); nothing was saved")
    raise DatasetNotFoundError(f"{who}: could not download {source.title} file {filename} (offline?) "
                               f"[{report}]; {where_to_put(source, [filename])}")


def sha256_bytes(data) -> str:
    """Hex SHA-256 of a bytes-like object."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(actual: str, expected: str, what) -> None:
    """Raise CorruptFileError naming ``what`` unless the digests agree."""
    if actual != expected:
        raise CorruptFileError(f"{what}: SHA-256 {actual} does not match the expected {expected}; the file is "
                               f"truncated, damaged or not the expected one (delete it and fetch it again)")


def sha256_verifier(expected: str) -> Callable[[Path], None]:
    """A ``verify`` function for :func:`obtain` that checks a whole file's SHA-256."""
    return lambda path: check_sha256(sha256_file(path), expected, path)
