"""``knetpy train resnet``: a ResNet-20-style network on CIFAR-10, or on a synthetic CIFAR-format set when
CIFAR-10 is not on the machine (and the output says so)."""

import numpy as np

from knetpy.examples import EXAMPLES, resnet


def test_resnet_example_trains_on_the_synthetic_set_when_cifar_is_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KNETPY_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "no-cache"))
    result = resnet.main(["--quick", "--dataset", "cifar10", "--path", str(tmp_path / "missing"),
                          "--out", str(tmp_path), "--no-plot"])
    out = capsys.readouterr().out
    assert "CIFAR-10 not found" in out and "SYNTHETIC" in out
    assert result["dataset"] == "synthetic CIFAR-format set"
    assert "Total params:" in out and "s per epoch" in out
    assert len(result["epoch_seconds"]) == 2 and all(s > 0 for s in result["epoch_seconds"])
    # it learns: the training loss falls well below log(10) = 2.30 within the two quick epochs
    assert result["loss"][-1] < result["loss"][0] - 0.3 and result["loss"][-1] < 2.0
    assert result["checkpoint"].exists()
    assert "resnet" in EXAMPLES


def test_synthetic_cifar_has_the_cifar_format():
    x, y = resnet.synthetic_cifar(50, seed=3)
    assert x.shape == (50, 3, 32, 32) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.dtype == np.int64 and set(np.unique(y)) <= set(range(10))
    x2, _ = resnet.synthetic_cifar(50, seed=3)
    np.testing.assert_array_equal(x, x2)
