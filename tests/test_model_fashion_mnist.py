"""End to end: an MLP trained with Model.fit on Fashion-MNIST (slow; run with ``pytest -m slow``)."""

import gzip
import os
import time

import numpy as np
import pytest

import knetpy as kp

FOLDER = "/usr/share/datasets/fashion-mnist"
FILES = {
    "xtrn": "train-images-idx3-ubyte.gz",
    "ytrn": "train-labels-idx1-ubyte.gz",
    "xtst": "t10k-images-idx3-ubyte.gz",
    "ytst": "t10k-labels-idx1-ubyte.gz",
}


def _read_idx(path):
    """An IDX file (big-endian header: magic with the rank in its last byte, then the dimensions) as uint8."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=rank, offset=4).astype(int)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


@pytest.fixture(scope="module")
def fashion():
    paths = {k: os.path.join(FOLDER, name) for k, name in FILES.items()}
    missing = [p for p in paths.values() if not os.path.exists(p)]
    if missing:
        pytest.skip(f"Fashion-MNIST files not found ({', '.join(missing)}); apt-get install dataset-fashion-mnist")
    arrays = {k: _read_idx(p) for k, p in paths.items()}
    xtrn = (arrays["xtrn"].reshape(-1, 784) / np.float32(255)).astype(np.float32)
    xtst = (arrays["xtst"].reshape(-1, 784) / np.float32(255)).astype(np.float32)
    return xtrn, arrays["ytrn"].astype(np.int64), xtst, arrays["ytst"].astype(np.int64)


@pytest.mark.slow
def test_mlp_784_64_10_reaches_85_percent_on_fashion_mnist(fashion):
    xtrn, ytrn, xtst, ytst = fashion
    assert xtrn.shape == (60000, 784) and xtst.shape == (10000, 784)
    kp.set_seed(1)
    model = kp.Sequential()
    model.add(kp.layers.Dense(64, n_in=784, activation="relu"))
    model.add(kp.layers.Dense(10))
    model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.5), metrics=["accuracy"])
    t0 = time.perf_counter()
    hist = model.fit(xtrn, ytrn, epochs=10, batch_size=100, shuffle=True, verbose=2)
    seconds = time.perf_counter() - t0
    result = model.evaluate(xtst, ytst)
    print(f"Fashion-MNIST MLP: test accuracy {result['accuracy']:.4f}, fit {seconds:.1f} s")
    assert hist["loss"][-1] < hist["loss"][0]
    assert result["accuracy"] >= 0.85
