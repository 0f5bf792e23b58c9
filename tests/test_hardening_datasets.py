"""Dataset readers under attack and downloads under suspicion: resource limits, pinned digests, https only.

Small malicious files are built here (gzip bombs, headers declaring absurd sizes, pickles declaring
huge lengths); each must be refused with CorruptFileError while memory stays within a small multiple
of the file's own size. No test touches the network: urlopen is replaced.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import importlib
import io
import pickle
import re
import socket
import struct
import tarfile
import tracemalloc
import urllib.error
import urllib.request
import zlib

import numpy as np
import pytest

import knetpy as kp
from knetpy.datasets import CorruptFileError, DatasetNotFoundError, read_idx
from knetpy.datasets.download import Source, sha256_bytes
from knetpy.datasets.safe_pickle import restricted_loads

mnist_module = importlib.import_module("knetpy.datasets.mnist")
cifar_module = importlib.import_module("knetpy.datasets.cifar")
housing_module = importlib.import_module("knetpy.datasets.housing")
text_module = importlib.import_module("knetpy.datasets.text")

ALL_SOURCES = [mnist_module.MNIST_SOURCE, mnist_module.FASHION_MNIST_SOURCE, cifar_module.CIFAR10_SOURCE,
               housing_module.HOUSING_SOURCE, text_module.TINYSHAKESPEARE_SOURCE]
MB = 1 << 20


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    def no_connect(*args, **kwargs):
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", no_connect)
    monkeypatch.setenv("KNETPY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KNETPY_DATA", raising=False)


def peak_bytes(fn):
    """The peak memory (Python and NumPy allocations) while ``fn()`` runs, and the exception it raised."""
    tracemalloc.start()
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - returned for the caller to check
        raised = e
    else:
        raised = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, raised


def idx_header(code, dims):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def zeros_gzip(n):
    """gzip data of ``n`` zero bytes, compressed as a stream (never held whole)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as f:
        block = bytes(MB)
        for _ in range(n // MB):
            f.write(block)
        f.write(bytes(n % MB))
    return out.getvalue()


# --- 9: IDX / gzip -----------------------------------------------------------------------------------------

def test_gzip_bomb_after_a_small_header_is_refused_without_inflating_it(tmp_path):
    # A valid 10x10 header, then 200 MB of zeros: about 200 KB on disk.
    body = io.BytesIO()
    with gzip.GzipFile(fileobj=body, mode="wb", mtime=0) as f:
        f.write(idx_header(0x08, (10, 10)))
        block = bytes(MB)
        for _ in range(200):
            f.write(block)
    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    bomb.write_bytes(body.getvalue())
    size = bomb.stat().st_size
    peak, raised = peak_bytes(lambda: read_idx(bomb))
    assert isinstance(raised, CorruptFileError) and "longer than its header says" in str(raised)
    assert peak < 10 * size + 4 * MB  # never the 200 MB


@pytest.mark.parametrize("dims", [(60000, 28, 28), (2**32 - 1, 2**32 - 1, 2**32 - 1), (1 << 31, 1 << 20)])
def test_header_declaring_more_than_the_file_can_hold_is_refused_before_allocating(tmp_path, dims):
    file = tmp_path / "liar.gz"
    file.write_bytes(gzip.compress(idx_header(0x08, dims) + bytes(1000), mtime=0))
    peak, raised = peak_bytes(lambda: read_idx(file))
    assert isinstance(raised, CorruptFileError), raised
    assert re.search(r"declares dims .* more than 1032 times the \d+-byte compressed file", str(raised))
    assert peak < 1 * MB


def test_raw_idx_declaring_more_than_its_size_is_truncated_not_allocated(tmp_path):
    file = tmp_path / "raw-idx"
    file.write_bytes(idx_header(0x0E, (1 << 30, 1 << 30)) + bytes(64))
    peak, raised = peak_bytes(lambda: read_idx(file))
    assert isinstance(raised, CorruptFileError) and "truncated" in str(raised)
    assert peak < 1 * MB


def test_mnist_loader_refuses_a_bomb_in_place_of_its_files(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_module, "MNIST_SHA256", {})  # reach the reader, not the checksum
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(idx_header(0x08, (10**6, 28, 28)) + bytes(100), mtime=0))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_header(0x08, (1,)) + b"\x01")
    peak, raised = peak_bytes(lambda: kp.datasets.mnist("test", path=tmp_path))
    assert isinstance(raised, CorruptFileError), raised
    assert peak < 1 * MB


def test_legitimate_gzip_idx_still_reads(tmp_path, rng):
    images = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    kp.datasets.write_idx(tmp_path / "ok.gz", images)
    np.testing.assert_array_equal(read_idx(tmp_path / "ok.gz"), images)
    zeros = np.zeros((200, 28, 28), np.uint8)  # compresses ~750x: still accepted
    kp.datasets.write_idx(tmp_path / "zeros.gz", zeros)
    np.testing.assert_array_equal(read_idx(tmp_path / "zeros.gz"), zeros)


# --- 9: CIFAR (pickles in a tar.gz) ------------------------------------------------------------------------

def batch_pickle(n=3):
    data = np.arange(n * 3072, dtype=np.uint64).astype(np.uint8).reshape(n, 3072)
    return pickle.dumps({b"data": data, b"labels": list(range(n))}, protocol=2)


def test_pickle_declaring_a_huge_bytes_object_is_refused_before_allocating():
    bomb = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc."  # BINBYTES8 of 1 TB, 3 bytes present
    peak, raised = peak_bytes(lambda: restricted_loads(bomb))
    assert isinstance(raised, CorruptFileError) and "not a readable pickle" in str(raised)
    assert peak < 1 * MB


def test_pickle_frame_longer_than_the_data_is_refused():
    bomb = b"\x80\x04\x95" + struct.pack("<Q", 1 << 40) + b"N."
    peak, raised = peak_bytes(lambda: restricted_loads(bomb))
    assert isinstance(raised, CorruptFileError) and "frame declares" in str(raised)
    assert peak < 1 * MB


def test_pickled_array_declaring_a_huge_shape_is_refused():
    good = pickle.dumps(np.zeros(3, np.uint8), protocol=2)
    # The shape tuple (3,) is pickled as BININT1 3 followed by TUPLE1; make it (2**62, 2**62).
    bad = good.replace(b"K\x03\x85", b"\x8a\x08" + (1 << 62).to_bytes(8, "little") + b"\x8a\x08"
                       + (1 << 62).to_bytes(8, "little") + b"\x86", 1)
    assert bad != good
    peak, raised = peak_bytes(lambda: restricted_loads(bad))
    assert isinstance(raised, CorruptFileError) and "needs" in str(raised) and "holds 3" in str(raised)
    assert peak < 1 * MB


def test_pickle_with_too_many_opcodes_is_refused(monkeypatch):
    safe_pickle = importlib.import_module("knetpy.datasets.safe_pickle")
    monkeypatch.setattr(safe_pickle, "MAX_OPCODES", 1000)
    with pytest.raises(CorruptFileError, match="more than 1000 opcodes"):
        restricted_loads(pickle.dumps(list(range(2000)), protocol=2))
    assert restricted_loads(pickle.dumps(list(range(100)), protocol=2)) == list(range(100))


def test_cifar_batch_bomb_in_a_folder_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(b"\x80\x02\x8e" + struct.pack("<Q", 1 << 40) + b"x")
    peak, raised = peak_bytes(lambda: kp.datasets.cifar10("test", path=folder))
    assert isinstance(raised, CorruptFileError) and "test_batch: not a readable CIFAR batch" in str(raised)
    assert peak < 4 * MB  # the file is read in chunks of 1 MB


def test_cifar_archive_that_inflates_beyond_the_limit_is_refused(tmp_path):
    # A tar.bz2 whose first member is 200 MB of zeros (a few KB compressed), ahead of the batches.
    raw = io.BytesIO()
    with bz2.BZ2File(raw, mode="wb") as packed, tarfile.open(fileobj=packed, mode="w|") as tar:
        filler = tarfile.TarInfo("cifar-10-batches-py/filler")
        filler.size = 200 * MB

        class Zeros(io.RawIOBase):
            left = filler.size

            def readable(self):
                return True

            def readinto(self, b):
                n = min(len(b), self.left)
                b[:n] = bytes(n)
                self.left -= n
                return n

        tar.addfile(filler, io.BufferedReader(Zeros()))
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        data = batch_pickle()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "cifar-10-python.tar.bz2"
    archive.write_bytes(raw.getvalue())
    assert archive.stat().st_size * 1032 < filler.size
    peak, raised = peak_bytes(lambda: kp.datasets.cifar10("test", path=archive))
    assert isinstance(raised, CorruptFileError) and "decompresses to more than" in str(raised), raised
    assert peak < 10 * archive.stat().st_size + 4 * MB


def test_small_cifar_archive_still_reads(tmp_path):
    folder = tmp_path / "src" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "test_batch").write_bytes(batch_pickle(4))
    with tarfile.open(tmp_path / "a.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    x, y = kp.datasets.cifar10("test", path=tmp_path / "a.tar.gz")
    assert x.shape == (4, 3, 32, 32) and list(y) == [0, 1, 2, 3]
    assert type(x) is np.ndarray


# --- 11: pinned SHA-256, https only --------------------------------------------------------------------------

def test_every_source_uses_https_and_pins_a_sha256_for_every_downloadable_file():
    expected = {
        "mnist": {f"{s}.gz" for s in mnist_module.MNIST_SHA256},
        "fashion-mnist": {f"{s}.gz" for s in mnist_module.FASHION_MNIST_SHA256},
        "cifar10": {"cifar-10-python.tar.gz"},
    }
    for source in ALL_SOURCES:
        assert all(url.startswith("https://") for url in source.mirrors), source
        if source.mirrors:
            assert set(source.sha256) == expected[source.name]
        assert all(re.fullmatch(r"[0-9a-f]{64}", d) for d in source.sha256.values())
    for table in (mnist_module.MNIST_SHA256, mnist_module.FASHION_MNIST_SHA256):
        assert len(table) == 4 and all(re.fullmatch(r"[0-9a-f]{64}", d) for d in table.values())


def test_a_plain_http_mirror_is_refused():
    with pytest.raises(ValueError, match="only https:// URLs"):
        Source(name="x", title="X", mirrors=("http://example.org/",))
    with pytest.raises(ValueError, match="64 lowercase hex"):
        Source(name="x", title="X", mirrors=("https://example.org/",), sha256={"f": "abc"})


def fake_urlopen(monkeypatch, payload, final_url=None):
    asked = []

    class Response(io.BytesIO):
        def __init__(self, url):
            super().__init__(payload)
            self.url = final_url or url

    def urlopen(url, timeout=None):
        asked.append(url)
        return Response(url)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return asked


def small_mnist_gz(stem, rng):
    if "images" in stem:
        return gzip.compress(idx_header(0x08, (2, 28, 28)) + rng.integers(0, 256, 2 * 784, dtype=np.uint8).tobytes())
    return gzip.compress(idx_header(0x08, (2,)) + bytes([3, 4]))


def test_download_whose_bytes_do_not_match_the_pinned_sha256_is_refused_and_not_kept(tmp_path, monkeypatch, rng):
    payload = small_mnist_gz("t10k-images-idx3-ubyte", rng)  # well formed, but not the real file
    asked = fake_urlopen(monkeypatch, payload)
    with pytest.raises(CorruptFileError, match="could not get an intact t10k-images-idx3-ubyte.gz.*SHA-256 "
                       + sha256_bytes(payload) + " does not match the expected "
                       + mnist_module.MNIST_SOURCE.sha256["t10k-images-idx3-ubyte.gz"]):
        kp.datasets.mnist("test")
    assert len(asked) == len(mnist_module.MNIST_SOURCE.mirrors)  # every mirror tried
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []  # nothing left behind, not even a .part


def test_download_matching_its_pin_is_kept(tmp_path, monkeypatch, rng):
    files = {stem + ".gz": small_mnist_gz(stem, rng) for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
    pinned = {name: sha256_bytes(data) for name, data in files.items()}
    monkeypatch.setattr(mnist_module, "MNIST_SOURCE", dataclasses.replace(mnist_module.MNIST_SOURCE, sha256=pinned))
    monkeypatch.setattr(mnist_module, "MNIST_SHA256",
                        {name[:-3]: sha256_bytes(gzip.decompress(data)) for name, data in files.items()})

    def urlopen(url, timeout=None):
        response = io.BytesIO(files[url.rsplit("/", 1)[1]])
        response.url = url
        return response

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    x, y = kp.datasets.mnist("test")
    assert list(y) == [3, 4]
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(files)


def test_redirect_to_plain_http_is_refused(tmp_path, monkeypatch, rng):
    payload = small_mnist_gz("t10k-images-idx3-ubyte", rng)
    pinned = dataclasses.replace(mnist_module.MNIST_SOURCE, sha256={"t10k-images-idx3-ubyte.gz": sha256_bytes(payload)})
    monkeypatch.setattr(mnist_module, "MNIST_SOURCE", pinned)
    fake_urlopen(monkeypatch, payload, final_url="http://evil.example/t10k-images-idx3-ubyte.gz")
    with pytest.raises(CorruptFileError, match="redirected to the plain-http URL"):
        kp.datasets.mnist("test")
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []


def test_a_file_without_a_pinned_digest_is_never_downloaded(monkeypatch):
    monkeypatch.setattr(mnist_module, "MNIST_SOURCE", dataclasses.replace(mnist_module.MNIST_SOURCE, sha256={}))
    asked = fake_urlopen(monkeypatch, b"anything")
    with pytest.raises(DatasetNotFoundError, match="no SHA-256 is pinned"):
        kp.datasets.mnist("test")
    assert asked == []


def test_local_mnist_files_are_checked_against_the_pinned_content_digest(tmp_path, rng):
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / (stem + ".gz")).write_bytes(small_mnist_gz(stem, rng))
    with pytest.raises(CorruptFileError, match="uncompressed content.*does not match the expected "
                       + mnist_module.MNIST_SHA256["t10k-images-idx3-ubyte"]):
        kp.datasets.mnist("test", path=tmp_path)


# --- 14: small data shipped in the package -------------------------------------------------------------------

def test_housing_and_tinyshakespeare_come_from_the_package_without_network(monkeypatch):
    def no_fetch(*args, **kwargs):
        raise AssertionError("a shipped dataset tried to download")

    download = importlib.import_module("knetpy.datasets.download")
    monkeypatch.setattr(download, "fetch", no_fetch)
    x, y = kp.datasets.housing()
    assert x.shape == (506, 13) and float(y.sum()) == pytest.approx(11401.6, rel=1e-5)
    corpus = kp.datasets.tinyshakespeare()
    assert len(corpus) == 1115394 and corpus.vocab_size == 65


def test_a_damaged_shipped_copy_is_refused(tmp_path, monkeypatch):
    shipped = importlib.import_module("knetpy.datasets.shipped")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "housing.data.gz").write_bytes(gzip.compress(b"1 2 3\n"))

    class Fake:
        def __truediv__(self, name):
            return tmp_path / name

    monkeypatch.setattr(shipped.resources, "files", lambda package: Fake())
    with pytest.raises(CorruptFileError, match=r"housing.data.gz \(uncompressed content\): SHA-256"):
        kp.datasets.housing()
    (tmp_path / "files" / "housing.data.gz").write_bytes(zlib.compress(b"not gzip"))
    with pytest.raises(CorruptFileError, match="shipped copy is damaged"):
        kp.datasets.housing()
