"""MNIST and Fashion-MNIST: 28x28 grey images (digits, clothing), 60,000 to train on and 10,000 to test on.

Both come as four IDX files, plain or gzip-compressed, found by the lookup order of
:mod:`knetpy.datasets.download` in the subfolder ``mnist/`` or ``fashion-mnist/``.

Checks. Every file must match the SHA-256 of its uncompressed content (one digest serves the ``.gz``
and the raw file alike, whoever compressed it); a download must also match the SHA-256 of the
``.gz`` file as the mirrors serve it. The Fashion-MNIST content digests were computed from the files
of Debian's ``dataset-fashion-mnist`` package, whose uncompressed content matches the MD5 sums
published for the upstream files; the ``.gz`` digests and the MNIST digests are the ones widely
published for the upstream files (TensorFlow Datasets and others). Then the structure is checked:
the IDX header and exact length, 28x28 uint8 images, uint8 labels 0-9, as many labels as images.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_dtype
from ._validate import check_choice
from .download import CorruptFileError, Source, check_sha256, obtain, sha256_bytes
from .idx import parse_idx, read_idx_bytes

MNIST_SOURCE = Source(
    name="mnist",
    title="MNIST",
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    flat_ok=False,  # MNIST and Fashion-MNIST use the same file names
    sha256={  # the .gz files as served
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
)
FASHION_MNIST_SOURCE = Source(
    name="fashion-mnist",
    title="Fashion-MNIST",
    mirrors=("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",),
    system_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian: apt-get install dataset-fashion-mnist
    flat_ok=False,
    sha256={  # the .gz files as served
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
)

#: SHA-256 of each MNIST file's uncompressed IDX content.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: SHA-256 of each Fashion-MNIST file's uncompressed IDX content.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IMAGE_SIZE = (28, 28)
_N_CLASSES = 10


def mnist(split="train", *, path=None, flatten=False, download=True):
    """The MNIST handwritten digits of one split, ``'train'`` (60,000) or ``'test'`` (10,000).

    Returns ``(x, y)``: images x of shape (N, 1, 28, 28), or (N, 784) with ``flatten=True``, in the
    default dtype (float32) scaled to [0, 1]; labels y, int64 in 0..9. ``path`` is a folder holding
    the IDX files; without it they are looked up (``$KNETPY_DATA``, the cache) and, if
    ``download``, downloaded into the cache.
    """
    return _load(MNIST_SOURCE, MNIST_SHA256, split, path, flatten, download, who="kp.datasets.mnist")


def fashion_mnist(split="train", *, path=None, flatten=False, download=True):
    """Zalando's Fashion-MNIST of one split, ``'train'`` (60,000) or ``'test'`` (10,000).

    Same layout and options as :func:`mnist`; the label names are ``FASHION_MNIST_CLASSES``.
    Besides ``$KNETPY_DATA`` and the cache, Debian's ``/usr/share/datasets/fashion-mnist`` is searched.
    Every file must match its known SHA-256 (so must MNIST's).
    """
    return _load(FASHION_MNIST_SOURCE, FASHION_MNIST_SHA256, split, path, flatten, download,
                 who="kp.datasets.fashion_mnist")


def _load(source, digests, split, path, flatten, download, who):
    check_choice(split, tuple(_SPLIT_FILES), "split", who)
    image_stem, label_stem = _SPLIT_FILES[split]
    images = _load_file(source, digests, image_stem, "images", path, download, who)
    labels = _load_file(source, digests, label_stem, "labels", path, download, who)
    if len(images) != len(labels):
        raise CorruptFileError(f"{who}: {split} split has {len(images)} images but {len(labels)} labels; "
                               f"the files do not belong together")
    dtype = get_dtype()
    x = images.astype(dtype)
    x /= dtype.type(255)  # in place: no second full-size array
    x = x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, *_IMAGE_SIZE)
    return x, labels.astype(np.int64)


def _load_file(source, digests, stem, kind, path, download, who):
    """One IDX file, found or downloaded, checked; a read-only uint8 array."""
    def verify(p):
        _read_checked(p, stem, kind, digests)

    found = obtain(source, (stem, stem + ".gz"), stem + ".gz", verify, path=path, download=download, who=who)
    return _read_checked(found, stem, kind, digests)


def _read_checked(path, stem, kind, digests):
    """The array in one IDX file after its checksum (when known) and its structure are checked."""
    data = read_idx_bytes(path)
    if stem in digests:
        check_sha256(sha256_bytes(data), digests[stem], f"{path} (uncompressed content)")
    array = parse_idx(data, path)
    if array.dtype != np.uint8:
        raise CorruptFileError(f"{path}: expected uint8 {kind}, the IDX header says {array.dtype}")
    if kind == "images" and (array.ndim != 3 or array.shape[1:] != _IMAGE_SIZE):
        raise CorruptFileError(f"{path}: expected images of shape (N, 28, 28), got {array.shape}")
    if kind == "labels":
        if array.ndim != 1:
            raise CorruptFileError(f"{path}: expected labels of shape (N,), got {array.shape}")
        if array.size and array.max() >= _N_CLASSES:
            raise CorruptFileError(f"{path}: labels must lie in 0..{_N_CLASSES - 1}, found {array.max()}")
    return array
