"""scikit-learn's handwritten digits: 1,797 8x8 images, shipped with scikit-learn, so always offline."""

from __future__ import annotations

import numpy as np

from ..backend import get_dtype

_MAX_INTENSITY = 16  # the digits' pixels are counts 0..16 (4x4 blocks of a 32x32 bitmap)


def digits(*, flatten=False):
    """The digits as ``(x, y)``: x (1797, 1, 8, 8), or (1797, 64) with ``flatten=True``, in the default
    dtype scaled to [0, 1]; y int64 labels 0..9.

    Needs scikit-learn, the optional extra ``data``: ``pip install 'knetpy[data]'``.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("kp.datasets.digits needs scikit-learn, which is not installed; install the "
                          "optional extra with: pip install 'knetpy[data]'") from e
    bunch = load_digits()
    dtype = get_dtype()
    x = bunch.images.astype(dtype)
    x /= dtype.type(_MAX_INTENSITY)
    x = x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, 8, 8)
    return x, bunch.target.astype(np.int64)
