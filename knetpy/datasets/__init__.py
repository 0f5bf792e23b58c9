"""Datasets: generators for the course toy problems, and loaders for the classic benchmarks.

Generated on the spot: :func:`spirals`, :func:`temporal_order`, :func:`echo`, :func:`blobs`,
:func:`linearly_separable`, :func:`xor`.
Offline with scikit-learn (``pip install 'knetpy[data]'``): :func:`digits`.
Shipped with the package (no download): :func:`housing`, :func:`tinyshakespeare`, :func:`dialogue`.
Loaded from files: :func:`mnist`, :func:`fashion_mnist`, :func:`cifar10`, and any text via
:class:`TextCorpus`.

Loaders look for their files in ``path=``, then ``$KNETPY_DATA``, then the cache
(``$KNETPY_CACHE`` or ``~/.cache/knetpy``), then system folders, and download what is missing into the
cache over https, checked against a pinned SHA-256 before use (see :mod:`knetpy.datasets.download`).
Images come batch-first in the default dtype scaled to [0, 1], labels as int64.
"""

from .blobs import blobs, linearly_separable, xor
from .cifar import CIFAR10_CLASSES, cifar10
from .dialogue import Vocabulary, detokenize, dialogue, tokenize
from .digits import digits
from .download import CorruptFileError, DatasetNotFoundError, cache_dir
from .housing import HOUSING_FEATURES, housing
from .idx import read_idx, write_idx
from .mnist import FASHION_MNIST_CLASSES, fashion_mnist, mnist
from .safe_pickle import UnsafePickleError
from .sequences import TEMPORAL_ORDER_SYMBOLS, echo, temporal_order
from .text import BPTTBatches, TextCorpus, tinyshakespeare
from .toy import spirals
from .words import WordCorpus, tinyshakespeare_words
