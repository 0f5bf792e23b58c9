"""pool, max_unpool, unpool, upsample, global pooling and lrn: examples, PyTorch parity, gradchecks."""

import numpy as np
import pytest

import knetpy as kp
from knetpy.ops.conv_reference import pool_reference
from knetpy.ops.pool import PoolGeometry, _max_windows


def torch_pool(torch, nd, mode):
    F = torch.nn.functional
    if mode == 0:
        return {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
    avg = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
    return lambda x, w, s, p: avg(x, w, s, p, count_include_pad=mode == 1)


def flat(x):
    return np.asarray(x).ravel().tolist()


# -- Knet's worked examples ------------------------------------------------------------------------------
def test_pool_examples():
    x6 = np.arange(1.0, 7.0).reshape(1, 1, 6)
    assert flat(kp.pool(x6)) == [2, 4, 6]
    assert flat(kp.pool(x6, window=3)) == [3, 6]
    assert flat(kp.pool(np.arange(1.0, 11.0).reshape(1, 1, 10), stride=4)) == [2, 6, 10]
    assert flat(kp.pool(x6, window=2, stride=2, padding=1, mode=0)) == [1, 3, 5, 6]
    assert flat(kp.pool(x6, window=2, stride=2, padding=1, mode=1)) == [0.5, 2.5, 4.5, 3.0]
    assert flat(kp.pool(x6, window=2, stride=2, padding=1, mode=2)) == [1.0, 2.5, 4.5, 6.0]


def test_padding_never_wins_a_max():
    x = -np.arange(1.0, 7.0).reshape(1, 1, 6)  # all negative: a zero border would win
    assert flat(kp.pool(x, window=2, padding=1)) == [-1, -2, -4, -6]
    x2 = -np.ones((1, 1, 3, 3))
    assert np.all(kp.pool(x2, window=3, padding=1, stride=1) == -1)


# -- PyTorch parity ---------------------------------------------------------------------------------------
GEOMETRIES = [  # window, padding, stride: tiling, overlapping, padded, uncovered remainder
    (2, 0, 2),
    (3, 0, 3),
    (2, 0, 1),
    (3, 1, 2),
    (2, 1, 2),
    (3, 1, 1),
    (3, 0, 2),
]


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("window, padding, stride", GEOMETRIES)
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_pool_matches_torch(torch, rng, nd, window, padding, stride, mode):
    x = rng.standard_normal((2, 3, *{1: (9,), 2: (7, 8), 3: (5, 6, 7)}[nd]))
    y = kp.pool(x, window, padding, stride, mode)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_pool(torch, nd, mode)(xt, window, stride, padding)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(y, pool_reference(x, (window,) * nd, (padding,) * nd, (stride,) * nd, mode))

    cot = rng.standard_normal(y.shape)
    gx = kp.grad(lambda x: kp.sum(kp.pool(x, window, padding, stride, mode) * cot))(x)
    (yt * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-6, atol=1e-12)


def test_pool_per_axis_options_match_torch(torch, rng):
    x = rng.standard_normal((2, 3, 9, 8))
    y = kp.pool(x, window=(3, 2), padding=(1, 0), stride=(2, 1), mode=2)
    t = torch.nn.functional.avg_pool2d(torch.tensor(x), (3, 2), (2, 1), (1, 0), count_include_pad=False)
    np.testing.assert_allclose(y, t.numpy(), rtol=1e-6)


@pytest.mark.parametrize("window, padding, stride", [(2, 0, 2), (3, 1, 2)])
def test_max_pool_ties_go_to_the_first_maximum(torch, window, padding, stride):
    x = np.zeros((1, 2, 5, 6))  # channel 0 all ties; channel 1 a plateau of ones
    x[0, 1, 1:3, 2:5] = 1.0
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(xt, window, stride, padding).sum().backward()
    gx = kp.grad(lambda x: kp.sum(kp.pool(x, window, padding, stride)))(x)
    np.testing.assert_array_equal(gx, xt.grad.numpy())


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_pool_gradcheck(rng, mode):
    x = rng.standard_normal((2, 2, 5, 6))
    assert kp.gradcheck(lambda x: kp.pool(x, window=3, padding=1, stride=2, mode=mode), x)
    assert kp.gradcheck(lambda x: kp.pool(x, window=2, mode=mode), x)


@pytest.mark.parametrize("window, padding, stride", [(2, 0, 2), (3, 1, 2)])
@pytest.mark.parametrize("mode", [0, 1])
def test_pool_second_order_matches_torch(torch, rng, window, padding, stride, mode):
    x = rng.standard_normal((2, 3, 6, 6))
    r = rng.standard_normal(x.shape)

    def outer(x):
        gx = kp.grad(lambda x: kp.sum(kp.square(kp.pool(x, window, padding, stride, mode))))(x)
        return kp.sum(kp.square(gx) * r)

    h = kp.grad(outer)(x)
    xt = torch.tensor(x, requires_grad=True)
    pooled = torch_pool(torch, 2, mode)(xt, window, stride, padding)
    (gxt,) = torch.autograd.grad((pooled**2).sum(), xt, create_graph=True)
    ((gxt**2) * torch.tensor(r)).sum().backward()
    np.testing.assert_allclose(h, xt.grad.numpy(), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(
    "window, padding, stride",
    [((2, 3), (0, 0), (2, 3)), ((3, 3), (1, 1), (2, 2)), ((2, 2), (0, 0), (1, 1)), ((3, 2), (1, 0), (3, 2))],
)
def test_max_switches_scatter_is_the_adjoint_of_gather(rng, window, padding, stride):
    # Tiling windows write gradients directly, others accumulate: both are the adjoint of gather.
    x = rng.standard_normal((2, 3, 7, 9))
    x[0, 0, :4, :4] = 0.5  # ties
    geom = PoolGeometry(window, padding, stride)
    y, switches = _max_windows(x, geom, geom.output_size(x.shape[2:]))
    np.testing.assert_array_equal(switches.gather(x), y)  # the winners are the maxima
    g, v = rng.standard_normal(y.shape), rng.standard_normal(x.shape)
    np.testing.assert_allclose(np.sum(switches.scatter(g) * v), np.sum(g * switches.gather(v)), rtol=1e-12)


def test_pool_keeps_layout_and_dtype(rng):
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    channels_last = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
    for mode in (0, 1, 2):
        y = kp.pool(channels_last, mode=mode, padding=1 if mode else 0)
        assert y.dtype == np.float32
        np.testing.assert_array_equal(y, kp.pool(x, mode=mode, padding=1 if mode else 0))
    _, switches = _max_windows(channels_last, PoolGeometry((2, 2), (0, 0), (2, 2)), (3, 3))
    grad = switches.scatter(np.ones((2, 4, 3, 3), np.float32))
    assert grad.dtype == np.float32 and grad.strides[1] == 4  # the gradient is laid out like x


def test_pool_errors():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="mode must be 0 \\(max\\), 1"):
        kp.pool(x, mode=3)
    with pytest.raises(ValueError, match="padding 2 along spatial axis 0 must be smaller than the window 2"):
        kp.pool(x, padding=2)
    with pytest.raises(ValueError, match="window 5 along spatial axis 1 is larger than the padded input"):
        kp.pool(x, window=(2, 5))
    with pytest.raises(ValueError, match=r"x must be \(N, C, \*spatial\)"):
        kp.pool(np.zeros((4, 4)))
    with pytest.raises(TypeError, match="floating"):
        kp.pool(np.zeros((1, 1, 4, 4), np.int32))
    with pytest.raises(ValueError, match="return_indices needs max pooling"):
        kp.pool(x, mode=1, return_indices=True)
    with pytest.raises(ValueError, match="window has 3 entries for 2 spatial dimensions"):
        kp.pool(x, window=(2, 2, 2))


# -- indices and max_unpool -----------------------------------------------------------------------------------
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("window, padding, stride", [(2, 0, 2), (3, 1, 2), (2, 0, 1)])
def test_indices_and_max_unpool_match_torch(torch, rng, nd, window, padding, stride):
    F = torch.nn.functional
    shape = (2, 3, *{1: (8,), 2: (6, 7), 3: (4, 5, 4)}[nd])
    x = rng.standard_normal(shape)
    y, idx = kp.pool(x, window, padding, stride, return_indices=True)
    yt, it = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd](
        torch.tensor(x), window, stride, padding, return_indices=True
    )
    np.testing.assert_array_equal(idx, it.numpy())
    np.testing.assert_allclose(y, yt.numpy())

    unpool_t = {1: F.max_unpool1d, 2: F.max_unpool2d, 3: F.max_unpool3d}[nd]
    v = rng.standard_normal(y.shape)
    vt = torch.tensor(v, requires_grad=True)
    ut = unpool_t(vt, it, window, stride, padding, output_size=shape[2:])
    u = kp.max_unpool(v, idx, window, stride, padding, output_size=shape[2:])
    np.testing.assert_allclose(u, ut.detach().numpy())
    cot = rng.standard_normal(u.shape)
    gv = kp.grad(lambda v: kp.sum(kp.max_unpool(v, idx, window, stride, padding, output_size=shape) * cot))(v)
    (ut * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(gv, vt.grad.numpy())


def test_max_unpool_inverts_pool_on_the_winners(rng):
    x = np.abs(rng.standard_normal((2, 3, 6, 6))) + 0.1  # positive, so the zeros never win
    y, idx = kp.pool(kp.tensor(x), return_indices=True)
    u = kp.max_unpool(y, idx)
    assert u.shape == x.shape
    winners = u.value != 0
    np.testing.assert_array_equal(u.value[winners], x[winners])
    np.testing.assert_array_equal(kp.pool(u), y.value)


def test_max_unpool_gradcheck_and_second_order(rng):
    x = rng.standard_normal((1, 2, 6, 6))
    _, idx = kp.pool(x, window=2, padding=1, stride=2, return_indices=True)
    planes = idx.reshape(2, -1)  # (a plane's repeated index keeps one value: not differentiable there)
    assert all(len(np.unique(p)) == p.size for p in planes)
    v = rng.standard_normal(idx.shape)
    assert kp.gradcheck(lambda v: kp.max_unpool(v, idx, 2, 2, 1, output_size=(6, 6)), v)
    r = rng.standard_normal((1, 2, 6, 6))

    def grad_of_square(v):
        return kp.grad(lambda v: kp.sum(kp.square(kp.max_unpool(v, idx, 2, 2, 1, (6, 6))) * r))(v)

    assert kp.gradcheck(grad_of_square, v)


def test_max_unpool_gradient_with_repeated_indices_reads_every_copy(torch, rng):
    # Overlapping windows can pick one input twice; like PyTorch, each copy gets the gradient there.
    x = rng.standard_normal((1, 1, 5, 5))
    _, idx = kp.pool(x, window=3, stride=1, return_indices=True)
    assert len(np.unique(idx)) < idx.size
    v = rng.standard_normal(idx.shape)
    vt = torch.tensor(v, requires_grad=True)
    torch.nn.functional.max_unpool2d(vt, torch.tensor(idx), 3, 1).sum().backward()
    np.testing.assert_array_equal(kp.grad(lambda v: kp.sum(kp.max_unpool(v, idx, 3, 1)))(v), vt.grad.numpy())


def test_indices_with_a_tracked_input(rng):
    x = kp.Param(rng.standard_normal((1, 2, 4, 4)))
    y, idx = kp.pool(x, return_indices=True)
    kp.sum(y).backward()
    assert x.grad.sum() == 8 and idx.dtype == np.int64


def test_max_unpool_errors(rng):
    y, idx = kp.pool(rng.standard_normal((1, 1, 4, 4)), return_indices=True)
    with pytest.raises(ValueError, match="do not match x"):
        kp.max_unpool(y, idx[:, :, :1])
    with pytest.raises(ValueError, match="outside an output plane"):
        kp.max_unpool(y, idx, output_size=(2, 2))
    with pytest.raises(TypeError, match="integers"):
        kp.max_unpool(y, idx.astype(np.float64))


# -- unpool and upsample ------------------------------------------------------------------------------------------
def test_unpool_repeats_and_inverts_average_pooling(torch, rng):
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    expected = [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    assert np.array_equal(kp.unpool(x)[0, 0], expected)
    x = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_allclose(kp.pool(kp.unpool(x, (2, 3)), (2, 3), mode=1), x, rtol=1e-12)
    t = torch.nn.functional.interpolate(torch.tensor(x), scale_factor=(2, 3), mode="nearest")
    np.testing.assert_array_equal(kp.unpool(x, (2, 3)), t.numpy())
    assert kp.gradcheck(lambda x: kp.unpool(x, 2), x[:1, :2])


UPSAMPLES = [  # spatial dims, scale, mode, torch mode
    (2, 2, "nearest", "nearest"),
    (2, (1.5, 3), "nearest", "nearest"),
    (2, 2, "bilinear", "bilinear"),
    (2, (2.5, 1.5), "bilinear", "bilinear"),
    (1, 3, "linear", "linear"),
    (3, 2, "trilinear", "trilinear"),
    (1, 0.5, "nearest", "nearest"),
]


@pytest.mark.parametrize("nd, scale, mode, torch_mode", UPSAMPLES)
def test_upsample_matches_torch(torch, rng, nd, scale, mode, torch_mode):
    x = rng.standard_normal((2, 3, *{1: (7,), 2: (4, 5), 3: (3, 4, 2)}[nd]))
    y = kp.upsample(x, scale, mode)
    xt = torch.tensor(x, requires_grad=True)
    kwargs = {} if torch_mode == "nearest" else {"align_corners": False}
    yt = torch.nn.functional.interpolate(xt, scale_factor=scale, mode=torch_mode, **kwargs)
    assert y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6, atol=1e-12)
    cot = rng.standard_normal(y.shape)
    gx = kp.grad(lambda x: kp.sum(kp.upsample(x, scale, mode) * cot))(x)
    (yt * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-6, atol=1e-12)


def test_upsample_bilinear_example_and_gradcheck(rng):
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    y = kp.upsample(x, 2, "bilinear")[0, 0]
    # align_corners=False: edges clamp, interior points are 1/4 - 3/4 blends
    np.testing.assert_allclose(y[0], [1.0, 1.25, 1.75, 2.0])
    np.testing.assert_allclose(y[:, 0], [1.0, 1.5, 2.5, 3.0])
    assert kp.gradcheck(lambda x: kp.upsample(x, (2, 1.5), "bilinear"), rng.standard_normal((1, 2, 3, 4)))


def test_upsample_errors():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="did you mean 'bilinear'"):
        kp.upsample(x, 2, "bilinaer")
    with pytest.raises(ValueError, match="positive number"):
        kp.upsample(x, -1)
    with pytest.raises(ValueError, match="scale has 3 entries for 2 spatial dimensions"):
        kp.upsample(x, (2, 2, 2))
    with pytest.raises(ValueError, match="shrinks spatial axis 0"):
        kp.upsample(x, 0.1)


# -- global pooling -------------------------------------------------------------------------------------------------
def test_global_pools_match_torch(torch, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    xt = torch.tensor(x, requires_grad=True)
    cot = rng.standard_normal((2, 3))
    avg_t = torch.nn.functional.adaptive_avg_pool2d(xt, 1).reshape(2, 3)
    max_t = torch.nn.functional.adaptive_max_pool2d(xt, 1).reshape(2, 3)
    np.testing.assert_allclose(kp.global_avg_pool(x), avg_t.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(kp.global_max_pool(x), max_t.detach().numpy(), rtol=1e-6)
    assert kp.global_max_pool(x, keepdims=True).shape == (2, 3, 1, 1)
    assert kp.global_avg_pool(x, keepdims=True).shape == (2, 3, 1, 1)
    ga, gm = (
        kp.grad(lambda x: kp.sum(kp.global_avg_pool(x) * cot) + kp.sum(kp.global_max_pool(x) * cot * 2))(x),
        None,
    )
    ((avg_t * torch.tensor(cot)).sum() + (max_t * torch.tensor(cot) * 2).sum()).backward()
    np.testing.assert_allclose(ga, xt.grad.numpy(), rtol=1e-6)
    del gm
    assert kp.gradcheck(lambda x: kp.global_max_pool(x), x[:1])
    with pytest.raises(ValueError, match=r"\(N, C, \*spatial\)"):
        kp.global_avg_pool(np.zeros((2, 3)))


# -- local response normalisation -------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 2, 5])
def test_lrn_matches_torch(torch, rng, size):
    x = rng.standard_normal((2, 7, 3, 4)) * 3
    lrn_t = torch.nn.LocalResponseNorm(size, alpha=0.1, beta=0.75, k=2.0)
    xt = torch.tensor(x, requires_grad=True)
    yt = lrn_t(xt)
    y = kp.lrn(x, size, alpha=0.1, beta=0.75, k=2.0)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6)
    cot = rng.standard_normal(x.shape)
    gx = kp.grad(lambda x: kp.sum(kp.lrn(x, size, 0.1, 0.75, 2.0) * cot))(x)
    (yt * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-6, atol=1e-12)


def test_lrn_example_and_gradcheck(rng):
    # one channel, size 1: y = x / (k + alpha * x^2) ** beta
    x = np.array([2.0]).reshape(1, 1, 1)
    assert kp.lrn(x, size=1, alpha=1.0, beta=1.0, k=1.0).item() == pytest.approx(2.0 / 5.0)
    assert kp.gradcheck(lambda x: kp.lrn(x, 3, alpha=0.5), rng.standard_normal((1, 4, 2, 3)))
    with pytest.raises(ValueError, match="size must be a positive int"):
        kp.lrn(rng.standard_normal((1, 4, 2, 3)), 0)
