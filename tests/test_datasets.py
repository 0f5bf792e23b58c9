"""Dataset loaders: IDX parsing, MNIST / Fashion-MNIST, CIFAR-10, housing, tinyshakespeare, lookup and download.

Every test runs offline: urllib and sockets are patched to fail, the cache is a fresh temporary
folder, $KNETPY_DATA is unset and the system folders are hidden (unless a test says otherwise).
Small files are written here in the real layouts; housing and tinyshakespeare are the copies shipped with knetpy.
"""

import dataclasses
import gzip
import importlib
import io
import os
import pickle
import socket
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import knetpy as kp
from knetpy.datasets.download import CorruptFileError, DatasetNotFoundError, sha256_bytes
from knetpy.datasets.idx import parse_idx, read_idx, write_idx
from knetpy.datasets.safe_pickle import UnsafePickleError, restricted_loads

# The loader functions share their modules' names, so the modules are fetched by their full names.
mnist_module = importlib.import_module("knetpy.datasets.mnist")
cifar_module = importlib.import_module("knetpy.datasets.cifar")

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, an empty cache, no $KNETPY_DATA, no system folders. Returns the URLs asked for."""
    asked = []

    def refuse(url, *args, **kwargs):
        asked.append(url)
        raise urllib.error.URLError("network disabled in tests")

    def no_connect(*args, **kwargs):
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", no_connect)
    monkeypatch.setenv("KNETPY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KNETPY_DATA", raising=False)
    monkeypatch.setattr(mnist_module, "FASHION_MNIST_SOURCE",
                        dataclasses.replace(mnist_module.FASHION_MNIST_SOURCE, system_dirs=()))
    # The small MNIST files written here stand in for the real ones: write_mnist pins their digests.
    monkeypatch.setattr(mnist_module, "MNIST_SHA256", {})
    return asked


def serve(monkeypatch, files):
    """Patch urlopen to answer from ``files`` (URL -> bytes); other URLs fail. Returns the URLs asked for."""
    asked = []

    def fake_urlopen(url, timeout=None):
        asked.append(url)
        if url not in files:
            raise urllib.error.URLError("unknown host")
        return io.BytesIO(files[url])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return asked


# --- IDX ------------------------------------------------------------------------------------------------

def idx_bytes(code, dims, payload):
    """An IDX file written by hand from the format description."""
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def test_parse_handwritten_idx_of_each_type():
    images = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    out = parse_idx(idx_bytes(0x08, (2, 3, 4), images.tobytes()))
    np.testing.assert_array_equal(out, images)
    shorts = np.array([-2, 300, 7], dtype=">i2")
    np.testing.assert_array_equal(parse_idx(idx_bytes(0x0B, (3,), shorts.tobytes())), [-2, 300, 7])
    floats = np.array([[1.5, -2.25]], dtype=">f4")
    np.testing.assert_array_equal(parse_idx(idx_bytes(0x0D, (1, 2), floats.tobytes())), [[1.5, -2.25]])
    doubles = np.array([np.pi], dtype=">f8")
    assert parse_idx(idx_bytes(0x0E, (1,), doubles.tobytes()))[0] == np.pi


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("name", ["a-idx", "a-idx.gz"])
def test_write_read_idx_round_trip(tmp_path, rng, dtype, name):
    array = (rng.standard_normal((3, 5, 2)) * 100).astype(dtype)
    path = write_idx(tmp_path / name, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative and back.flags.writeable
    np.testing.assert_array_equal(back, array)


def test_read_idx_decides_compression_by_content(tmp_path):
    labels = np.array([3, 1, 4], dtype=np.uint8)
    (tmp_path / "plain.gz").write_bytes(idx_bytes(0x08, (3,), labels.tobytes()))  # misleading name
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), labels)


@pytest.mark.parametrize("data, message", [
    (b"\x00\x00", "too short"),
    (b"\x01\x02\x08\x01" + b"\x00" * 8, "not an IDX file"),
    (bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 0]), "unknown IDX type code 0x0a"),
    (bytes([0, 0, 0x08, 0]), "0 dimensions"),
    (bytes([0, 0, 0x08, 3, 0, 0, 0, 1]), "truncated IDX header"),
    (idx_bytes(0x08, (2, 3), bytes(5)), "truncated"),
    (idx_bytes(0x08, (2, 3), bytes(7)), "longer than its header says"),
    (idx_bytes(0x0C, (2,), bytes(7)), "need 16 bytes, the file has 15"),
])
def test_parse_idx_rejects_malformed_data(data, message):
    with pytest.raises(CorruptFileError, match=message):
        parse_idx(data, "some-file")


def test_truncated_and_damaged_gzip_are_reported(tmp_path):
    good = gzip.compress(idx_bytes(0x08, (100, 28, 28), np.arange(78400, dtype=np.uint8).tobytes()), mtime=0)
    (tmp_path / "cut.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(CorruptFileError, match="cut.gz: the gzip stream is truncated"):
        read_idx(tmp_path / "cut.gz")
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0xFF
    (tmp_path / "bad.gz").write_bytes(bytes(damaged))
    with pytest.raises(CorruptFileError, match="bad.gz: the gzip stream is (damaged|truncated)"):
        read_idx(tmp_path / "bad.gz")


def test_write_idx_refuses_unsupported_dtype(tmp_path):
    with pytest.raises(TypeError, match="IDX cannot store dtype int64"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "x", np.uint8(3))


# --- MNIST and Fashion-MNIST ----------------------------------------------------------------------------

SPLIT_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def write_mnist(folder, split, images, labels, gz=False):
    """MNIST-layout IDX files for one split, written by hand (not with write_idx)."""
    folder.mkdir(parents=True, exist_ok=True)
    image_stem, label_stem = SPLIT_STEMS[split]
    files = {image_stem: idx_bytes(0x08, images.shape, images.astype(np.uint8).tobytes()),
             label_stem: idx_bytes(0x08, labels.shape, labels.astype(np.uint8).tobytes())}
    mnist_module.MNIST_SHA256.update({stem: sha256_bytes(data) for stem, data in files.items()})
    for stem, data in files.items():
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return files


def small_mnist(rng, n, label=None):
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.full(n, label, np.uint8) if label is not None else rng.integers(0, 10, n).astype(np.uint8)
    return images, labels


def test_mnist_from_explicit_folder(tmp_path, rng):
    images, labels = small_mnist(rng, 5)
    write_mnist(tmp_path / "d", "train", images, labels)
    x, y = kp.datasets.mnist("train", path=tmp_path / "d")
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_allclose(x[:, 0], images / np.float32(255), rtol=1e-7)
    assert x.min() >= 0 and x.max() <= 1
    xf, _ = kp.datasets.mnist("train", path=tmp_path / "d", flatten=True)
    assert xf.shape == (5, 784)
    np.testing.assert_array_equal(xf, x.reshape(5, -1))


def test_mnist_gzipped_in_subfolder_and_default_dtype(tmp_path, rng):
    images, labels = small_mnist(rng, 4)
    write_mnist(tmp_path / "root" / "mnist", "test", images, labels, gz=True)
    kp.set_dtype("float64")
    x, y = kp.datasets.mnist("test", path=tmp_path / "root")
    assert x.dtype == np.float64
    np.testing.assert_array_equal(x[:, 0] * 255, images)
    np.testing.assert_array_equal(y, labels)


def test_lookup_order_path_then_env_then_cache(tmp_path, rng, monkeypatch):
    explicit, env, cache = tmp_path / "explicit", tmp_path / "env", tmp_path / "cache"
    for folder, label in ((explicit, 1), (env / "mnist", 2), (cache / "mnist", 3)):
        write_mnist(folder, "test", *small_mnist(rng, 3, label=label))
    monkeypatch.setattr(mnist_module, "MNIST_SHA256", {})  # three different sets: only lookup is tested here
    monkeypatch.setenv("KNETPY_DATA", str(env))
    assert set(kp.datasets.mnist("test", path=explicit)[1]) == {1}
    assert set(kp.datasets.mnist("test")[1]) == {2}
    monkeypatch.setenv("KNETPY_DATA", os.pathsep.join([str(tmp_path / "empty"), str(env)]))
    assert set(kp.datasets.mnist("test")[1]) == {2}
    monkeypatch.delenv("KNETPY_DATA")
    assert set(kp.datasets.mnist("test")[1]) == {3}


def test_explicit_path_is_never_passed_over(tmp_path, rng, monkeypatch, offline):
    write_mnist(tmp_path / "env" / "mnist", "test", *small_mnist(rng, 3))
    monkeypatch.setenv("KNETPY_DATA", str(tmp_path / "env"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="none of t10k-images-idx3-ubyte, t10k-images-idx3-ubyte.gz"):
        kp.datasets.mnist("test", path=tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        kp.datasets.mnist("test", path=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="is a file; pass the folder"):
        kp.datasets.mnist("test", path=tmp_path / "env" / "mnist" / "t10k-images-idx3-ubyte")
    assert offline == []


def test_mnist_files_are_not_taken_from_a_flat_data_folder(tmp_path, rng, monkeypatch, offline):
    # MNIST and Fashion-MNIST share file names, so only the dataset's own subfolder counts.
    write_mnist(tmp_path / "env", "test", *small_mnist(rng, 3))
    monkeypatch.setenv("KNETPY_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError):
        kp.datasets.mnist("test", download=False)


@pytest.mark.parametrize("problem, message", [
    ("label", r"labels must lie in 0\.\.9, found 10"),
    ("shape", r"expected images of shape \(N, 28, 28\), got \(3, 28, 27\)"),
    ("count", "3 images but 2 labels"),
    ("dtype", "expected uint8 images, the IDX header says >i4"),
    ("truncated", "truncated"),
])
def test_mnist_structure_is_checked(tmp_path, rng, monkeypatch, problem, message):
    images, labels = small_mnist(rng, 3)
    files = write_mnist(tmp_path, "test", images, labels)
    monkeypatch.setattr(mnist_module, "MNIST_SHA256", {})  # the files are altered below: structure only
    image_file, label_file = tmp_path / SPLIT_STEMS["test"][0], tmp_path / SPLIT_STEMS["test"][1]
    if problem == "label":
        label_file.write_bytes(idx_bytes(0x08, (3,), bytes([1, 10, 2])))
    elif problem == "shape":
        image_file.write_bytes(idx_bytes(0x08, (3, 28, 27), bytes(3 * 28 * 27)))
    elif problem == "count":
        label_file.write_bytes(idx_bytes(0x08, (2,), bytes([1, 2])))
    elif problem == "dtype":
        image_file.write_bytes(idx_bytes(0x0C, (3, 28, 28), bytes(4 * 3 * 28 * 28)))
    else:
        image_file.write_bytes(files[SPLIT_STEMS["test"][0]][:-1])
    with pytest.raises(CorruptFileError, match=message):
        kp.datasets.mnist("test", path=tmp_path)


def test_mnist_bad_split_suggests_the_closest():
    with pytest.raises(ValueError, match="unknown split 'tset'; did you mean 'test'"):
        kp.datasets.mnist("tset")


def test_offline_error_says_where_to_put_the_files(tmp_path, offline):
    with pytest.raises(DatasetNotFoundError) as info:
        kp.datasets.mnist("test")
    message = str(info.value)
    assert "offline" in message and "network disabled in tests" in message
    assert str(tmp_path / "cache" / "mnist") in message and "$KNETPY_DATA/mnist" in message
    assert offline == [base + "t10k-images-idx3-ubyte.gz" for base in mnist_module.MNIST_SOURCE.mirrors]
    assert not any((tmp_path / "cache" / "mnist").iterdir())  # no partial download left behind


def test_download_false_never_touches_the_network(offline):
    with pytest.raises(DatasetNotFoundError, match="download=False"):
        kp.datasets.fashion_mnist("train", download=False)
    assert offline == []


def test_fashion_mnist_rejects_files_with_the_wrong_checksum(tmp_path, rng):
    write_mnist(tmp_path, "test", *small_mnist(rng, 3), gz=True)
    with pytest.raises(CorruptFileError, match="uncompressed content.*SHA-256 .* does not match the expected "
                                               + mnist_module.FASHION_MNIST_SHA256["t10k-images-idx3-ubyte"]):
        kp.datasets.fashion_mnist("test", path=tmp_path)


def test_fashion_mnist_checksum_covers_gz_and_raw_alike(tmp_path, rng, monkeypatch):
    images, labels = small_mnist(rng, 3)
    files = write_mnist(tmp_path / "gz", "test", images, labels, gz=True)
    write_mnist(tmp_path / "raw", "test", images, labels)
    monkeypatch.setattr(mnist_module, "FASHION_MNIST_SHA256", {s: sha256_bytes(d) for s, d in files.items()})
    for folder in ("gz", "raw"):
        x, y = kp.datasets.fashion_mnist("test", path=tmp_path / folder)
        np.testing.assert_array_equal(y, labels)


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_the_debian_location(monkeypatch):
    monkeypatch.setattr(mnist_module, "FASHION_MNIST_SOURCE",
                        dataclasses.replace(mnist_module.FASHION_MNIST_SOURCE, system_dirs=(str(DEBIAN_FASHION),)))
    x, y = kp.datasets.fashion_mnist("test", download=False)  # found there, checksums verified
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32
    assert x.min() == 0 and x.max() == 1
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)  # the test split is balanced
    np.testing.assert_array_equal(y[:5], [9, 2, 1, 1, 6])  # ankle boot, pullover, trouser, trouser, shirt
    assert kp.datasets.FASHION_MNIST_CLASSES[y[0]] == "Ankle boot"


# --- downloads ------------------------------------------------------------------------------------------

def test_download_is_verified_then_cached(tmp_path, rng, monkeypatch):
    images, labels = small_mnist(rng, 4)
    files = write_mnist(tmp_path / "served", "test", images, labels, gz=True)
    first, second = mnist_module.MNIST_SOURCE.mirrors
    served = {second + stem + ".gz": (tmp_path / "served" / (stem + ".gz")).read_bytes() for stem in files}
    pinned = {url.rsplit("/", 1)[1]: sha256_bytes(data) for url, data in served.items()}
    monkeypatch.setattr(mnist_module, "MNIST_SOURCE", dataclasses.replace(mnist_module.MNIST_SOURCE, sha256=pinned))
    asked = serve(monkeypatch, served)
    x, y = kp.datasets.mnist("test")
    np.testing.assert_array_equal(y, labels)
    cached = tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == sorted(stem + ".gz" for stem in files)
    assert asked == [first + "t10k-images-idx3-ubyte.gz", second + "t10k-images-idx3-ubyte.gz",
                     first + "t10k-labels-idx1-ubyte.gz", second + "t10k-labels-idx1-ubyte.gz"]
    kp.datasets.mnist("test")  # now from the cache
    assert len(asked) == 4


def test_truncated_download_is_rejected_and_not_kept(tmp_path, rng, monkeypatch):
    images, labels = small_mnist(rng, 4)
    write_mnist(tmp_path / "served", "test", images, labels, gz=True)
    good = (tmp_path / "served" / "t10k-images-idx3-ubyte.gz").read_bytes()
    mirrors = mnist_module.MNIST_SOURCE.mirrors
    serve(monkeypatch, {m + "t10k-images-idx3-ubyte.gz": good[:-20] for m in mirrors})
    with pytest.raises(CorruptFileError, match="could not get an intact t10k-images-idx3-ubyte.gz.*truncated"):
        kp.datasets.mnist("test")
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []


# --- housing and tinyshakespeare (shipped with the package) ---------------------------------------------

def shipped(name):
    """The content of a data file shipped with knetpy."""
    return gzip.decompress((Path(kp.datasets.__file__).parent / "files" / (name + ".gz")).read_bytes())


def test_housing_is_shipped_and_read_offline(tmp_path, offline):
    x, y = kp.datasets.housing()
    assert offline == []  # nothing downloaded
    assert x.shape == (506, 13) and y.shape == (506, 1) and x.dtype == y.dtype == np.float32
    np.testing.assert_allclose(x[0, :3], [0.00632, 18.0, 2.31], rtol=1e-6)  # first line of the file
    assert y[0, 0] == np.float32(24.0) and y[-1, 0] == np.float32(11.9)
    (tmp_path / "housing.data").write_bytes(shipped("housing.data"))  # a user's copy, by path
    x2, y2 = kp.datasets.housing(tmp_path / "housing.data")
    np.testing.assert_array_equal(x2, x)
    xs, ys = kp.datasets.housing(tmp_path, standardize=True)
    np.testing.assert_allclose(xs.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(xs.std(axis=0), 1, rtol=1e-5)
    np.testing.assert_array_equal(ys, y)


@pytest.mark.parametrize("damage", ["truncated", "edited"])
def test_damaged_housing_file_is_refused(tmp_path, damage):
    real = shipped("housing.data")
    bad = real[:-100] if damage == "truncated" else real.replace(b"0.00632", b"0.00633")
    (tmp_path / "housing.data").write_bytes(bad)
    with pytest.raises(CorruptFileError, match="housing.data: SHA-256"):
        kp.datasets.housing(tmp_path)


def test_tinyshakespeare_is_shipped_and_read_offline(tmp_path, offline):
    corpus = kp.datasets.tinyshakespeare()
    assert offline == []
    assert len(corpus) == 1115394 and corpus.vocab_size == 65
    assert corpus.text.startswith("First Citizen:\nBefore we proceed any further")
    assert corpus.decode(corpus.data[:14]) == "First Citizen:"
    (tmp_path / "tinyshakespeare.txt").write_text(corpus.text[:-1])
    with pytest.raises(CorruptFileError, match="SHA-256"):
        kp.datasets.tinyshakespeare(tmp_path)


# --- CIFAR-10 and the restricted unpickler --------------------------------------------------------------

def cifar_batch(rng, n, first_label=0):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [(first_label + i) % 10 for i in range(n)]
    return {b"batch_label": b"training batch", b"labels": labels, b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def write_cifar_folder(folder, rng, n=3):
    """A cifar-10-batches-py folder; batches pickled at protocol 2 with bytes keys. Returns the batches."""
    folder.mkdir(parents=True)
    batches = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        batches[name] = cifar_batch(rng, n, first_label=k)
        (folder / name).write_bytes(pickle.dumps(batches[name], protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"]}, protocol=2))
    return batches


def write_cifar_archive(archive, folder):
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")


def check_cifar(x, y, batches, names):
    data = np.concatenate([batches[n][b"data"] for n in names])
    labels = np.concatenate([batches[n][b"labels"] for n in names])
    assert x.shape == (len(data), 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(x * 255, data.reshape(-1, 3, 32, 32))
    # value (channel c, row r, column q) of image i sits at data[i, 1024 c + 32 r + q]
    assert x[1, 2, 5, 7] * 255 == data[1, 2 * 1024 + 5 * 32 + 7]


TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def test_cifar10_from_the_batches_folder(tmp_path, rng):
    batches = write_cifar_folder(tmp_path / "cifar-10-batches-py", rng)
    x, y = kp.datasets.cifar10("train", path=tmp_path / "cifar-10-batches-py")
    check_cifar(x, y, batches, TRAIN)
    x, y = kp.datasets.cifar10("test", path=tmp_path)  # the folder that holds it
    check_cifar(x, y, batches, ["test_batch"])


def test_cifar10_from_the_archive_via_env_and_path(tmp_path, rng, monkeypatch):
    batches = write_cifar_folder(tmp_path / "src" / "cifar-10-batches-py", rng)
    archive = tmp_path / "env" / "cifar10" / "cifar-10-python.tar.gz"
    archive.parent.mkdir(parents=True)
    write_cifar_archive(archive, tmp_path / "src" / "cifar-10-batches-py")
    check_cifar(*kp.datasets.cifar10("test", path=archive), batches, ["test_batch"])
    monkeypatch.setenv("KNETPY_DATA", str(tmp_path / "env"))
    check_cifar(*kp.datasets.cifar10("train", download=False), batches, TRAIN)


class Py2StrPickler(pickle._Pickler):
    """Pickles bytes and str as Python 2's cPickle pickled its str, like the official CIFAR batches."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def test_cifar10_reads_python2_style_batches(tmp_path, rng):
    batches = write_cifar_folder(tmp_path / "b", rng)
    buffer = io.BytesIO()
    Py2StrPickler(buffer, protocol=2).dump(batches["test_batch"])
    # NumPy 1.x, which wrote the official batches, named the module numpy.core.multiarray.
    payload = buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in payload and b"_codecs" not in payload
    (tmp_path / "b" / "test_batch").write_bytes(payload)
    check_cifar(*kp.datasets.cifar10("test", path=tmp_path / "b"), batches, ["test_batch"])


class RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_malicious_batch_is_refused_and_nothing_runs(tmp_path, rng):
    marker = tmp_path / "pwned"
    write_cifar_folder(tmp_path / "batches", rng)
    evil = pickle.dumps({b"data": RunsCommand(f"touch {marker}"), b"labels": [0]}, protocol=2)
    (tmp_path / "batches" / "test_batch").write_bytes(evil)
    with pytest.raises(UnsafePickleError, match=r"test_batch: refusing to load (posix|nt)\.system"):
        kp.datasets.cifar10("test", path=tmp_path / "batches")
    assert not marker.exists()
    assert isinstance(UnsafePickleError("x"), pickle.UnpicklingError)


class CallsEval:
    def __reduce__(self):
        return eval, ("1 + 1",)


@pytest.mark.parametrize("payload, message", [
    (pickle.dumps(CallsEval(), protocol=2), r"refusing to load __builtin__\.eval"),
    (pickle.dumps(CallsEval(), protocol=4), r"refusing to load builtins\.eval"),
    # Protocol 5 rebuilds arrays with another function, which official batches never need.
    (pickle.dumps(np.arange(3), protocol=5), r"refusing to load numpy\.(_core|core)\.numeric\._frombuffer"),
    (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x06\x00\x00\x00base64\x86R.", "only latin-1 text"),
    (pickle.dumps(np.array([1, None], dtype=object), protocol=2), "refusing numpy dtype object"),
])
def test_restricted_unpickler_refusals(payload, message):
    with pytest.raises(UnsafePickleError, match=message):
        restricted_loads(payload)


def test_restricted_unpickler_admits_numpy_arrays():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    for protocol in (2, 3, 4):
        np.testing.assert_array_equal(restricted_loads(pickle.dumps({b"a": array}, protocol=protocol))[b"a"], array)


@pytest.mark.parametrize("damage, message", [
    ("truncated pickle", "test_batch: not a readable CIFAR batch"),
    ("missing key", "needs the key b'labels'"),
    ("bad label", r"labels must lie in 0\.\.9, found 0\.\.12"),
    ("short labels", r"3 images but labels of shape \(2,\)"),
    ("bad data", r"uint8 array of shape \(n, 3072\), got float64 array of shape \(3, 3072\)"),
])
def test_damaged_cifar_batches_are_reported(tmp_path, rng, damage, message):
    batches = write_cifar_folder(tmp_path / "b", rng)
    batch, target = dict(batches["test_batch"]), tmp_path / "b" / "test_batch"
    if damage == "truncated pickle":
        target.write_bytes(target.read_bytes()[:-50])
    else:
        if damage == "missing key":
            del batch[b"labels"]
        elif damage == "bad label":
            batch[b"labels"] = [0, 1, 12]
        elif damage == "short labels":
            batch[b"labels"] = [0, 1]
        else:
            batch[b"data"] = batch[b"data"].astype(np.float64)
        target.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(CorruptFileError, match=message):
        kp.datasets.cifar10("test", path=tmp_path / "b")


def test_missing_cifar_batch_is_reported(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_folder(folder, rng)
    (folder / "data_batch_4").unlink()
    for path in (tmp_path, folder):
        with pytest.raises(CorruptFileError, match="cifar-10-batches-py: batch data_batch_4 is missing"):
            kp.datasets.cifar10("train", path=path)
    (folder / "data_batch_1").unlink()  # the folder is still recognised by its other batches
    with pytest.raises(CorruptFileError, match="batch data_batch_1 is missing"):
        kp.datasets.cifar10("train", path=folder)
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_cifar_archive(archive, folder)
    with pytest.raises(CorruptFileError, match="the archive lacks cifar-10-batches-py/data_batch_1, cifar-10-batches-py/data_batch_4"):
        kp.datasets.cifar10("train", path=archive)


def test_truncated_cifar_archive_is_reported(tmp_path, rng):
    write_cifar_folder(tmp_path / "src" / "cifar-10-batches-py", rng, n=50)
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_cifar_archive(archive, tmp_path / "src" / "cifar-10-batches-py")
    archive.write_bytes(archive.read_bytes()[:-400])
    with pytest.raises(CorruptFileError, match="archive is truncated or damaged|not a readable CIFAR batch"):
        kp.datasets.cifar10("test", path=archive)


def test_cifar10_download_is_checked_before_it_is_kept(tmp_path, rng, monkeypatch):
    write_cifar_folder(tmp_path / "src" / "cifar-10-batches-py", rng)
    write_cifar_archive(tmp_path / "small.tar.gz", tmp_path / "src" / "cifar-10-batches-py")
    url = cifar_module.CIFAR10_SOURCE.mirrors[0] + "cifar-10-python.tar.gz"
    served = (tmp_path / "small.tar.gz").read_bytes()
    serve(monkeypatch, {url: served})
    with pytest.raises(CorruptFileError, match="SHA-256"):  # not the pinned archive
        kp.datasets.cifar10("test")
    assert list((tmp_path / "cache" / "cifar10").iterdir()) == []
    pinned = dataclasses.replace(cifar_module.CIFAR10_SOURCE, sha256={"cifar-10-python.tar.gz": sha256_bytes(served)})
    monkeypatch.setattr(cifar_module, "CIFAR10_SOURCE", pinned)
    with pytest.raises(CorruptFileError, match="holds 10000 images, found 3"):  # not the official archive
        kp.datasets.cifar10("test")
    assert list((tmp_path / "cache" / "cifar10").iterdir()) == []
