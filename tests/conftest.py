import numpy as np
import pytest

import knetpy as kp


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same knetpy seed and default dtype."""
    kp.set_seed(0)
    kp.set_dtype("float32")
    yield
    kp.set_dtype("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def torch():
    """PyTorch as a test oracle, in float64."""
    t = pytest.importorskip("torch")
    t.set_default_dtype(t.float64)
    return t
