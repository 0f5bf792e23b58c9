"""The UCI Boston housing data: 506 suburbs, 13 features, the median house value (in $1000s) to predict.

The file ``housing.data`` holds 506 lines of 14 whitespace-separated numbers; the last column is the
target. A copy ships with knetpy (``knetpy/datasets/files/``, with its source in the README there), so
nothing is downloaded. Its SHA-256 is checked wherever the file comes from.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_dtype
from .download import Source, check_sha256, find_file, sha256_bytes
from .shipped import shipped_bytes

HOUSING_SOURCE = Source(name="housing", title="UCI housing", mirrors=())  # shipped: nothing to download
FILENAME = "housing.data"
HOUSING_SHA256 = "4a8425d42eb99b76feb7ee7cf0fb1d897a6cd19b72c437e4855d767cabb7e24e"
HOUSING_FEATURES = ("CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO", "B",
                    "LSTAT")
_ROWS, _COLUMNS = 506, 14


def housing(path=None, *, standardize=False, download=True):
    """The housing data as ``(x, y)``: x (506, 13) features, y (506, 1) median values, default dtype.

    ``path`` is a ``housing.data`` file or a folder holding it; without it the copy shipped with
    knetpy is read (``download`` is accepted for compatibility: nothing needs downloading).
    ``standardize=True`` rescales each feature to mean 0 and standard deviation 1 over all 506 rows
    (for a held-out evaluation, compute the statistics on the training rows yourself instead).
    """
    who = "kp.datasets.housing"
    if path is None:
        raw = shipped_bytes(FILENAME, HOUSING_SHA256, who)
    else:
        file = find_file(HOUSING_SOURCE, (FILENAME,), path, file_ok=True, who=who)
        raw = file.read_bytes()
        check_sha256(sha256_bytes(raw), HOUSING_SHA256, file)  # after this, the layout below is certain
    table = np.array(raw.split(), dtype=np.float64).reshape(_ROWS, _COLUMNS)
    x, y = table[:, :-1], table[:, -1:]
    if standardize:
        x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x.astype(get_dtype()), y.astype(get_dtype())
