"""Every op on CuPy against NumPy, and training on the GPU. Skipped, with the reason, without CuPy or a GPU.

The inputs come from the tables the CPU tests use (autodiff_cases.py, and the strict backend's tables in
test_strict_ops.py, which cover the ops outside it, the losses and the activations). Each op runs forward
and backward on NumPy and on CuPy; the GPU results must be CuPy arrays equal to NumPy's within float32
rounding (GPU libraries sum in other orders and fuse multiply-adds).
"""

from __future__ import annotations

import numpy as np
import pytest

import knetpy as kp

cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install 'knetpy[gpu]')")
if kp.gpu() is None:
    pytest.skip("CuPy is installed but no GPU is usable (no device or no driver)", allow_module_level=True)

from autodiff_cases import CASE_IDS, CASES  # noqa: E402
from backend_cases import assert_runs_match, default_diff, moved, run_op  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_conv import KERNEL, OPTIONS, SPATIAL  # noqa: E402
from test_pool import GEOMETRIES  # noqa: E402
from test_rnn_ops import MODES, SHAPES, random_weights  # noqa: E402
from test_strict_ops import ACTIVATION_INPUT, EXTRA, LOSS_CASES  # noqa: E402

from knetpy import activations, losses  # noqa: E402

FAST = settings(max_examples=8, deadline=None, derandomize=True)


def to_gpu(x):
    return moved(x, cupy.asarray)


def _close(name, got, want):
    assert isinstance(got, cupy.ndarray), f"{name}: a {type(got).__name__} came back, not a CuPy array"
    got, want = cupy.asnumpy(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, f"{name}: {got.dtype}{got.shape} vs {want.dtype}{want.shape}"
    rtol = 1e-4 if want.dtype == np.float32 else 1e-6
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(np.max(np.abs(want), initial=1.0)), err_msg=name)


def assert_same_on_gpu(fn, *args, diff=None, **kw):
    if diff is None:
        diff = default_diff(args)
    want = run_op(fn, args, kw, lambda a: a, diff)
    assert_runs_match(run_op(fn, args, kw, to_gpu, diff), want, diff, _close)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@FAST
@given(data=st.data())
def test_primitive_on_cupy(case, data):
    args, kw = data.draw(case.inputs)
    assert_same_on_gpu(case.kp_fn, *args, **kw)


@pytest.mark.parametrize("name", list(EXTRA))
def test_other_op_on_cupy(name):
    fn, args = EXTRA[name]
    assert_same_on_gpu(fn, *args)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("padding, stride, dilation, groups", OPTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv4_on_cupy(rng, nd, padding, stride, dilation, groups, dtype):
    x = rng.standard_normal((2, 6, *SPATIAL[nd])).astype(dtype)
    w = rng.standard_normal((3 * groups, 6 // groups, *KERNEL[nd])).astype(dtype)
    opts = dict(padding=padding, stride=stride, dilation=dilation, groups=groups)
    assert_same_on_gpu(lambda w, x: kp.conv4(w, x, **opts), w, x)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("window, padding, stride", GEOMETRIES)
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_pool_on_cupy(rng, nd, window, padding, stride, mode):
    x = rng.standard_normal((2, 3, *{1: (9,), 2: (7, 8), 3: (5, 6, 7)}[nd])).astype(np.float32)
    assert_same_on_gpu(lambda x: kp.pool(x, window, padding, stride, mode), x)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("L,bi", SHAPES, ids=["1layer", "2layers", "bidir", "2layers-bidir"])
@pytest.mark.parametrize("mode", MODES)
def test_rnnforw_on_cupy(mode, L, bi, fused):
    rng = np.random.default_rng(3)
    N, T, F, H, D = 3, 5, 4, 3, 2 if bi else 1
    flat = [p.value for group in random_weights(mode, F, H, L, bi, rng) for p in group]
    x, h0, c0 = (rng.standard_normal(s) for s in [(N, T, F), (L * D, N, H), (L * D, N, H)])

    def fn(x, h0, c0, *ws):
        weights = [ws[i : i + 4] for i in range(0, len(ws), 4)]
        return kp.rnnforw(weights, x, h0, c0 if mode == "lstm" else None, mode, bidirectional=bi, fused=fused)

    diff = [0, 1, 2, *range(3, 3 + len(flat))] if mode == "lstm" else [0, 1, *range(3, 3 + len(flat))]
    assert_same_on_gpu(fn, x, h0, c0, *flat, diff=diff)


@pytest.mark.parametrize("name", activations.names())
def test_activation_on_cupy(name):
    assert_same_on_gpu(activations.get(name), ACTIVATION_INPUT.astype(np.float32))


@pytest.mark.parametrize(
    "name, args, options",
    [(name, a, o) for name, cases in LOSS_CASES.items() for a, o in cases],
    ids=[f"{name}-{i}" for name, cases in LOSS_CASES.items() for i in range(len(cases))],
)
def test_loss_on_cupy(name, args, options):
    fn = losses.get(name)
    args32 = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in args]
    assert_same_on_gpu(lambda *a, **kw: fn(*a, **kw, **options), *args32, diff=[0])


def test_tensor_and_model_move_to_the_gpu_and_back(tmp_path):
    t = kp.tensor([1.0, 2.0], device="cuda")
    assert isinstance(t.value, cupy.ndarray) and t.device.startswith("cuda")
    np.testing.assert_array_equal(t.to("cpu").value, [1.0, 2.0])
    shared = cupy.from_dlpack(t)
    shared[0] = 5.0
    assert float(t[0]) == 5.0
    model = kp.Sequential(kp.layers.Dense(4, input_shape=(3,)), kp.layers.BatchNorm()).to("cuda")
    assert all(isinstance(v, cupy.ndarray) for v in model.state_dict().values())
    kp.save(tmp_path / "m.kp", model)
    assert kp.load(tmp_path / "m.kp").device == "cpu"
    assert kp.load(tmp_path / "m.kp", device="cuda").device.startswith("cuda")


def test_fit_an_mlp_on_cuda_matches_the_cpu():
    r = np.random.default_rng(0)
    x = r.normal(size=(256, 10)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    results = {}
    for device in ("cpu", "cuda"):
        kp.set_seed(1)
        model = kp.Sequential(kp.layers.Dense(32, activation="relu"), kp.layers.Dense(2))
        model.compile("cross_entropy", "adam", metrics=["accuracy"])
        model.build_for((10,))
        model.to(device)
        hist = model.fit(kp.data.DataLoader((x, y), batch_size=32, device=device), epochs=3, verbose=0)
        results[device] = hist.history["loss"], model.evaluate(x, y)["accuracy"]
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], rtol=1e-4)
    assert results["cuda"][1] > 0.85
