"""BatchNorm and LayerNorm: PyTorch parity in train and eval mode, running statistics, gradients."""

import numpy as np
import pytest

import knetpy as kp
from knetpy import layers
from knetpy.layers.normalization import normalize

RTOL, ATOL = 1e-6, 1e-10


@pytest.fixture
def f64():
    kp.set_dtype("float64")
    yield
    kp.set_dtype("float32")


def _x(shape, seed=0, scale=1.0, shift=0.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale + shift


def _copy_affine(mine, ref, torch):
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(mine.gamma.value))
        ref.bias.copy_(torch.tensor(mine.beta.value))


def _compare_step(torch, mine, ref, x, seed):
    """One forward/backward through both; outputs and every gradient agree."""
    xp = kp.Param(x)
    y = mine(xp)
    tx = torch.tensor(x, requires_grad=True)
    ty = ref(tx)
    np.testing.assert_allclose(y.value, ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    cot = _x(x.shape, seed + 100)
    kp.sum(y * cot).backward()
    (ty * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(xp.grad, tx.grad.numpy(), rtol=RTOL, atol=ATOL)
    if getattr(mine, "gamma", None) is not None:
        np.testing.assert_allclose(mine.gamma.grad, ref.weight.grad.numpy(), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(mine.beta.grad, ref.bias.grad.numpy(), rtol=RTOL, atol=ATOL)
        mine.gamma.zero_grad()
        mine.beta.zero_grad()
        ref.weight.grad = ref.bias.grad = None


# -- BatchNorm -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape, torch_cls", [((16, 5), "BatchNorm1d"), ((8, 4, 7), "BatchNorm1d"), ((6, 3, 5, 4), "BatchNorm2d")]
)
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_train_then_eval_matches_torch(torch, f64, shape, torch_cls, affine):
    c = shape[1]
    mine = layers.BatchNorm(momentum=0.2, eps=1e-3, affine=affine)
    ref = getattr(torch.nn, torch_cls)(c, momentum=0.2, eps=1e-3, affine=affine)
    mine(np.zeros(shape))  # build
    mine.running_mean.value[:] = 0  # undo the build call's update so both start alike
    mine.running_var.value[:] = 1
    mine.batches_seen.value = mine.batches_seen.value * 0
    if affine:
        mine.gamma.value = np.linspace(0.5, 2.0, c)
        mine.beta.value = np.linspace(-1.0, 1.0, c)
        _copy_affine(mine, ref, torch)
    for step in range(3):  # training steps update the running statistics
        _compare_step(torch, mine, ref, _x(shape, step, scale=2.0, shift=3.0), step)
        np.testing.assert_allclose(mine.running_mean.value, ref.running_mean.numpy(), rtol=RTOL)
        np.testing.assert_allclose(mine.running_var.value, ref.running_var.numpy(), rtol=RTOL)
    mine.eval()
    ref.eval()
    _compare_step(torch, mine, ref, _x(shape, 9, scale=3.0), 9)


def test_batchnorm_running_statistics_worked_example():
    bn = layers.BatchNorm(momentum=0.1)
    x = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 16.0]], dtype=np.float32)
    y = bn(x)
    # batch mean (3, 12); biased variance (8/3, 8) for normalising, unbiased (4, 12) for the average
    np.testing.assert_allclose(y.value[:, 0], np.array([-2, 0, 2]) / np.sqrt(8 / 3 + 1e-5), rtol=1e-6)
    np.testing.assert_allclose(bn.running_mean.value, [0.9 * 0 + 0.1 * 3, 0.1 * 12], rtol=1e-6)
    np.testing.assert_allclose(bn.running_var.value, [0.9 + 0.1 * 4, 0.9 + 0.1 * 12], rtol=1e-6)
    assert bn.running_mean.dtype == np.float32 and y.dtype == np.float32
    assert list(bn.params) == ["gamma", "beta"]
    assert list(bn.state()) == ["running_mean", "running_var", "batches_seen"]


def test_batchnorm_cumulative_average_when_momentum_is_none(torch, f64):
    mine = layers.BatchNorm(momentum=None)
    ref = torch.nn.BatchNorm1d(3, momentum=None)
    for step in range(4):
        x = _x((10, 3), step, scale=step + 1.0, shift=step)
        mine(x)
        ref(torch.tensor(x))
    np.testing.assert_allclose(mine.running_mean.value, ref.running_mean.numpy(), rtol=RTOL)
    np.testing.assert_allclose(mine.running_var.value, ref.running_var.numpy(), rtol=RTOL)


def test_batchnorm_channels_last():
    bn = layers.BatchNorm(axis=-1)
    x = _x((4, 5, 3), scale=2.0, shift=1.0).astype(np.float32)
    y = bn(x).value
    np.testing.assert_allclose(y.mean(axis=(0, 1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 1)), 1.0, rtol=1e-3)
    assert bn.gamma.shape == (3,)


def test_batchnorm_eval_mode_does_not_update_statistics():
    bn = layers.BatchNorm()
    bn(_x((8, 3)))
    before = bn.running_mean.value.copy(), bn.running_var.value.copy()
    bn.eval()
    bn(_x((8, 3), 1, shift=5.0))
    np.testing.assert_array_equal(bn.running_mean.value, before[0])
    np.testing.assert_array_equal(bn.running_var.value, before[1])
    assert bn(_x((1, 3))).shape == (1, 3)  # a single sample is fine in eval mode


def test_batchnorm_errors_are_clear():
    bn = layers.BatchNorm()
    bn(np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm expects 3 features on axis 1, got inputs of shape \(N, 5\)"):
        bn(np.zeros((4, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="more than one value per feature"):
        layers.BatchNorm()(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"shape \(N, C, \.\.\.\)"):
        layers.BatchNorm()(np.zeros(3))
    with pytest.raises(ValueError, match="not a feature axis"):
        layers.BatchNorm(axis=0)(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="momentum"):
        layers.BatchNorm(momentum=1.5)
    with pytest.raises(ValueError, match="eps"):
        layers.BatchNorm(eps=0)


# -- LayerNorm -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "normalized_shape, shape", [(6, (4, 6)), (5, (3, 4, 5)), ((4, 5), (3, 4, 5)), ((2, 3, 4), (2, 2, 3, 4))]
)
@pytest.mark.parametrize("affine", [True, False])
def test_layernorm_matches_torch(torch, f64, normalized_shape, shape, affine):
    mine = layers.LayerNorm(normalized_shape, eps=1e-4, affine=affine)
    ref = torch.nn.LayerNorm(normalized_shape, eps=1e-4, elementwise_affine=affine)
    if affine:
        mine.gamma.value = np.linspace(0.5, 1.5, mine.gamma.size).reshape(mine.gamma.shape)
        mine.beta.value = np.linspace(-0.3, 0.3, mine.beta.size).reshape(mine.beta.shape)
        _copy_affine(mine, ref, torch)
    for step in range(2):
        _compare_step(torch, mine, ref, _x(shape, step, scale=3.0, shift=-2.0), step)


def test_layernorm_infers_its_shape_from_axis(torch, f64):
    ln = layers.LayerNorm()  # axis=-1
    assert ln.params == {}
    ln(_x((3, 7)))
    assert ln.gamma.shape == (7,) and ln.normalized_shape == (7,)
    # a non-trailing axis: normalise (N, C, L) over C for each position
    per_channel = layers.LayerNorm(axis=1)
    x = _x((2, 4, 5), scale=2.0)
    y = per_channel(x).value
    np.testing.assert_allclose(y.mean(axis=1), 0.0, atol=1e-12)
    ref = torch.nn.functional.layer_norm(torch.tensor(np.moveaxis(x, 1, -1)), (4,))
    np.testing.assert_allclose(y, np.moveaxis(ref.numpy(), -1, 1), rtol=RTOL, atol=ATOL)


def test_layernorm_errors_are_clear():
    ln = layers.LayerNorm(8)
    with pytest.raises(ValueError, match=r"LayerNorm expects inputs of shape \(N, \.\.\., 8\), got \(N, 5\)"):
        ln(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="normalized_shape"):
        layers.LayerNorm((3, 0))
    with pytest.raises(ValueError, match="non-batch axes"):
        layers.LayerNorm(axis=0)(np.zeros((2, 3)))


def test_layernorm_keeps_float32():
    y = layers.LayerNorm()(np.ones((2, 3), dtype=np.float32) * np.arange(3, dtype=np.float32))
    assert y.dtype == np.float32


# -- the fused op: gradcheck and higher order -----------------------------------------------------------------
def _bn_fn(axes, pshape, eps=1e-3):
    def f(x, gamma, beta):
        xv = x.value if isinstance(x, kp.Tensor) else x
        mean = xv.mean(axis=axes, keepdims=True)
        inv_std = 1 / np.sqrt(xv.var(axis=axes, keepdims=True) + eps)
        return normalize(x, gamma, beta, mean=mean, inv_std=inv_std, axes=axes, pshape=pshape, eps=eps)

    return f


def test_normalize_gradcheck_batch_and_layer_layouts():
    x = _x((5, 3, 2), scale=2.0)
    bn = _bn_fn((0, 2), (1, 3, 1))
    assert kp.gradcheck(bn, x, _x(3, 1), _x(3, 2))
    ln = _bn_fn((1, 2), (1, 3, 2))
    assert kp.gradcheck(ln, x, _x((3, 2), 3), _x((3, 2), 4))


def test_normalize_second_derivatives():
    x = _x((6, 3), scale=1.5)
    gamma, beta = _x(3, 1), _x(3, 2)
    f = _bn_fn((0,), (1, 3))
    cot = _x((6, 3), 5)

    def grad_norm(x, gamma):
        gx, gg = kp.grad(lambda a, b: kp.sum(f(a, b, beta) ** 3 * cot), argnums=(0, 1))(x, gamma)
        return kp.sum(gx * gx) + kp.sum(gg * gg)

    assert kp.gradcheck(grad_norm, x, gamma)


def test_batchnorm_layer_in_kp_grad(f64):
    bn = layers.BatchNorm()
    x = _x((8, 3), scale=2.0)
    bn(x)

    def loss(params, x):
        bn.gamma, bn.beta = params
        return kp.sum(bn(x) ** 2 * np.arange(3.0))

    params = [bn.gamma.value.copy(), bn.beta.value.copy()]
    assert kp.gradcheck(lambda g, b, x: loss([g, b], x), params[0], params[1], x)
