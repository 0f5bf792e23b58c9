"""MC dropout (kp.mc_dropout_predict) and the mcdropout lab."""

import threading
import time

import numpy as np
import pytest

import knetpy as kp
from knetpy.examples.labs import mcdropout


def small_model(p=0.5):
    kp.set_seed(0)
    model = kp.Sequential([kp.layers.Dense(16, activation="relu"), kp.layers.BatchNorm(),
                           kp.layers.Dropout(p), kp.layers.Dense(2)])
    model.build_for((3,))
    return model


def test_passes_differ_and_mean_std_match_the_samples():
    model = small_model()
    x = np.random.default_rng(0).standard_normal((5, 3))
    mean, std, samples = kp.mc_dropout_predict(model, x, T=40, return_samples=True)
    assert samples.shape == (40, 5, 2) and mean.shape == std.shape == (5, 2)
    np.testing.assert_allclose(mean, samples.mean(axis=0))
    np.testing.assert_allclose(std, samples.std(axis=0))
    assert np.all(std > 0)  # dropout was on
    assert len({samples[t].tobytes() for t in range(40)}) == 40


def test_only_dropout_is_on_and_the_model_mode_is_untouched():
    model = small_model()
    bn = model.layers()[1]
    stats = {k: t.value.copy() for k, t in bn.state().items()}
    model.train()
    kp.mc_dropout_predict(model, np.ones((4, 3)), T=5)
    assert model.training and all(layer.training for layer in model.layers())
    for k, t in bn.state().items():  # batch norm ran on its running statistics, which did not move
        np.testing.assert_array_equal(t.value, stats[k])
    model.eval()
    kp.mc_dropout_predict(model, np.ones((4, 3)), T=5)
    assert not model.training
    # with dropout off the same model is deterministic: the MC std came from dropout alone
    out = [model.predict(np.ones((4, 3))) for _ in range(2)]
    np.testing.assert_array_equal(out[0], out[1])


def test_other_threads_keep_the_model_mode():
    model = small_model()
    model.eval()
    x = np.ones((3, 3))
    ref = model.predict(x)
    seen, stop = [], threading.Event()

    def other():
        while not stop.is_set():
            seen.append(np.array_equal(model(x).value, ref))

    t = threading.Thread(target=other)
    t.start()
    try:
        for _ in range(20):
            kp.mc_dropout_predict(model, x, T=10)
        deadline = time.monotonic() + 60  # keep going until the other thread has looked a few times
        while len(seen) < 3 and time.monotonic() < deadline:
            kp.mc_dropout_predict(model, x, T=10)
    finally:
        stop.set()
        t.join()
    assert seen and all(seen)


def test_seeded_and_batched_the_same():
    model = small_model()
    x = np.random.default_rng(1).standard_normal((7, 3))
    kp.set_seed(5)
    a = kp.mc_dropout_predict(model, x, T=6)
    kp.set_seed(5)
    b = kp.mc_dropout_predict(model, x, T=6, batch_size=4)  # another chunking, same mask draws order
    np.testing.assert_allclose(a[0], b[0], rtol=1e-12)


def test_errors():
    plain = kp.Sequential([kp.layers.Dense(2)])
    plain.build_for((3,))
    with pytest.raises(ValueError, match="no dropout layer"):
        kp.mc_dropout_predict(plain, np.ones((2, 3)), T=5)
    with pytest.raises(ValueError, match="T .* >= 2"):
        kp.mc_dropout_predict(small_model(), np.ones((2, 3)), T=1)
    with pytest.raises(TypeError, match="knetpy layer or model"):
        kp.mc_dropout_predict(lambda v: v, np.ones((2, 3)))


def test_lab_std_is_wider_outside_the_training_range(tmp_path):
    out = mcdropout.main(["--quick", "--out", str(tmp_path), "--no-plot"])
    assert out["rmse_inside"] < 0.15  # it fits where it has data
    assert out["std_outside"] > 1.5 * out["std_inside"]


def test_lab_draws_the_band(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra draws the picture")
    out = mcdropout.main(["--quick", "--out", str(tmp_path), "--samples", "10", "--epochs", "2"])
    assert out["plot"] is not None and (tmp_path / mcdropout.PLOT).stat().st_size > 1000
