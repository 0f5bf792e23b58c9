"""conv4 and deconv4: Knet's worked examples, PyTorch parity, gradchecks, higher order, errors."""

import itertools

import numpy as np
import pytest

import knetpy as kp
from knetpy.ops.conv import ConvGeometry, _conv, _conv_filter_grad, _conv_transpose
from knetpy.ops.conv_reference import conv_filter_grad_reference, conv_reference, conv_transpose_reference


def flip(w):
    return w[(slice(None), slice(None)) + (slice(None, None, -1),) * (w.ndim - 2)].copy()


def torch_conv(torch, nd, transpose=False):
    F = torch.nn.functional
    if transpose:
        return {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
    return {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]


# -- Knet's worked examples ------------------------------------------------------------------------------
W1 = np.array([1.0, 2.0, 3.0]).reshape(1, 1, 3)
X1 = np.arange(1.0, 8.0).reshape(1, 1, 7)


def test_conv4_1d_examples():
    assert np.array_equal(kp.conv4(W1, X1).ravel(), [10, 16, 22, 28, 34])
    assert np.array_equal(kp.conv4(W1, X1, padding=1).ravel(), [4, 10, 16, 22, 28, 34, 32])
    assert np.array_equal(kp.conv4(W1, X1, padding=1, stride=3).ravel(), [4, 22, 32])
    assert kp.conv4(W1, X1, mode=1).ravel()[0] == 14
    assert np.array_equal(kp.conv4(W1, X1, padding=1, mode=1).ravel(), [8, 14, 20, 26, 32, 38, 20])


def test_conv4_2d_example():
    w = np.array([[1.0, 3.0], [2.0, 4.0]]).reshape(1, 1, 2, 2)
    x = np.array([[1.0, 4.0, 7.0], [2.0, 5.0, 8.0], [3.0, 6.0, 9.0]]).reshape(1, 1, 3, 3)
    assert np.array_equal(kp.conv4(w, x)[0, 0], [[23, 53], [33, 63]])


def test_conv4_output_size_formula():
    # 1 + floor((X + 2P - D(W-1) - 1) / S) per axis
    x = np.zeros((1, 1, 11, 10, 9))
    w = np.zeros((1, 1, 3, 2, 4))
    y = kp.conv4(w, x, padding=(1, 0, 2), stride=(2, 3, 1), dilation=(2, 1, 3))
    assert y.shape == (1, 1, 1 + (11 + 2 - 4 - 1) // 2, 1 + (10 - 1 - 1) // 3, 1 + (9 + 4 - 9 - 1) // 1)


# -- PyTorch parity, forward and backward ----------------------------------------------------------------
OPTIONS = [  # padding, stride, dilation, groups
    (0, 1, 1, 1),
    (1, 1, 1, 1),
    (2, 2, 1, 1),
    (1, 3, 2, 1),
    (0, 1, 2, 2),
    (1, 2, 1, 3),
    (2, 1, 1, 6),
]
SPATIAL = {1: (9,), 2: (8, 7), 3: (6, 7, 5)}
KERNEL = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("padding, stride, dilation, groups", OPTIONS)
@pytest.mark.parametrize("mode", [0, 1])
def test_conv4_matches_torch(torch, rng, nd, padding, stride, dilation, groups, mode):
    x = rng.standard_normal((2, 6, *SPATIAL[nd]))
    w = rng.standard_normal((3 * groups, 6 // groups, *KERNEL[nd]))
    opts = dict(padding=padding, stride=stride, dilation=dilation, groups=groups)
    y = kp.conv4(w, x, mode=mode, **opts)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    yt = torch_conv(torch, nd)(xt, wt.flip(list(range(2, nd + 2))) if mode == 0 else wt, **opts)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6, atol=1e-12)

    cot = rng.standard_normal(y.shape)
    gw, gx = kp.grad(lambda w, x: kp.sum(kp.conv4(w, x, mode=mode, **opts) * cot), argnums=(0, 1))(w, x)
    (yt * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-6, atol=1e-12)


def test_conv4_per_axis_options_match_torch(torch, rng):
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((4, 2, 3, 2))
    opts = dict(padding=(2, 1), stride=(2, 3), dilation=(1, 2), groups=2)
    y = kp.conv4(w, x, mode=1, **opts)
    ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), **opts).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-6)


DECONV = [  # padding, stride, dilation, groups, output_padding
    (0, 1, 1, 1, 0),
    (1, 2, 1, 1, 1),
    (2, 3, 1, 2, 2),
    (1, 1, 2, 1, 1),
    (0, 2, 2, 3, 1),
]


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("padding, stride, dilation, groups, output_padding", DECONV)
@pytest.mark.parametrize("mode", [0, 1])
def test_deconv4_matches_torch(torch, rng, nd, padding, stride, dilation, groups, output_padding, mode):
    spatial = {1: (5,), 2: (4, 5), 3: (3, 4, 3)}[nd]
    x = rng.standard_normal((2, 6, *spatial))
    w = rng.standard_normal((6, 2, *KERNEL[nd]))  # (C_x, C_out / groups, *kernel)
    opts = dict(
        padding=padding, stride=stride, dilation=dilation, groups=groups, output_padding=output_padding
    )
    y = kp.deconv4(w, x, mode=mode, **opts)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    yt = torch_conv(torch, nd, transpose=True)(
        xt, wt.flip(list(range(2, nd + 2))) if mode == 0 else wt, **opts
    )
    assert y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6, atol=1e-12)

    cot = rng.standard_normal(y.shape)
    gw, gx = kp.grad(lambda w, x: kp.sum(kp.deconv4(w, x, mode=mode, **opts) * cot), argnums=(0, 1))(w, x)
    (yt * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("mode", [0, 1])
def test_deconv4_is_the_adjoint_of_conv4(rng, mode):
    # <conv4(w, x), y> == <x, deconv4(w, y)> for every x, y: deconv4 is conv4's input gradient.
    w = rng.standard_normal((4, 3, 3, 2))
    x = rng.standard_normal((2, 3, 9, 9))  # width 9: the conv drops a column that output_padding restores
    opts = dict(padding=1, stride=2, dilation=1, mode=mode)
    y = rng.standard_normal(kp.conv4(w, x, **opts).shape)
    xt = kp.deconv4(w, y, output_padding=(0, 1), **opts)
    assert xt.shape == x.shape
    np.testing.assert_allclose(np.sum(kp.conv4(w, x, **opts) * y), np.sum(x * xt), rtol=1e-10)


# -- gradcheck (float64 central differences) -------------------------------------------------------------
@pytest.mark.parametrize(
    "nd, opts",
    [
        (1, dict(padding=1, stride=2, dilation=1, groups=1, mode=0)),
        (2, dict(padding=(1, 0), stride=(1, 2), dilation=(2, 1), groups=2, mode=1)),
        (2, dict(padding=1, stride=1, dilation=1, groups=1, mode=0)),
        (3, dict(padding=1, stride=2, dilation=1, groups=1, mode=1)),
    ],
)
def test_conv4_gradcheck(rng, nd, opts):
    x = rng.standard_normal((2, 4, *{1: (7,), 2: (5, 6), 3: (4, 4, 3)}[nd]))
    w = rng.standard_normal((4, 4 // opts["groups"], *{1: (3,), 2: (2, 3), 3: (2, 2, 2)}[nd]))
    assert kp.gradcheck(lambda w, x: kp.conv4(w, x, **opts), w, x)


def test_deconv4_gradcheck(rng):
    x = rng.standard_normal((2, 4, 3, 4))
    w = rng.standard_normal((4, 1, 3, 2))
    opts = dict(padding=1, stride=2, dilation=1, groups=2, mode=0, output_padding=1)
    assert kp.gradcheck(lambda w, x: kp.deconv4(w, x, **opts), w, x)


# -- higher order: the VJPs are the other two primitives, all differentiable ---------------------------------
@pytest.mark.parametrize("mode", [0, 1])
def test_conv4_second_order_matches_torch(torch, rng, mode):
    x = rng.standard_normal((2, 4, 6, 5))
    w = rng.standard_normal((6, 2, 3, 2))
    opts = dict(padding=1, stride=2, dilation=1, groups=2)
    r = rng.standard_normal(x.shape)

    def inner(w, x):
        return kp.sum(kp.square(kp.conv4(w, x, mode=mode, **opts)))

    def outer(w, x):
        gw, gx = kp.grad(inner, argnums=(0, 1))(w, x)
        return kp.sum(gx * r) + kp.sum(gw * gw)

    hw, hx = kp.grad(outer, argnums=(0, 1))(w, x)

    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    wk = wt.flip([2, 3]) if mode == 0 else wt
    loss = (torch.nn.functional.conv2d(xt, wk, **opts) ** 2).sum()
    gwt, gxt = torch.autograd.grad(loss, (wt, xt), create_graph=True)
    ((gxt * torch.tensor(r)).sum() + (gwt * gwt).sum()).backward()
    np.testing.assert_allclose(hw, wt.grad.numpy(), rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(hx, xt.grad.numpy(), rtol=1e-6, atol=1e-10)


def test_deconv4_second_order_gradcheck(rng):
    x = rng.standard_normal((1, 2, 3, 3))
    w = rng.standard_normal((2, 3, 2, 2))
    r = rng.standard_normal((1, 2, 3, 3))

    def grad_dot(w, x):  # d/dx <deconv4(w, x)^2> . r, a function of both w and x
        gx = kp.grad(lambda x: kp.sum(kp.square(kp.deconv4(w, x, stride=2, padding=1))))(x)
        return kp.sum(gx * r)

    assert kp.gradcheck(grad_dot, w, x)


# -- the fast im2col paths against the direct reference definitions ---------------------------------------------
CASES = list(
    itertools.product(
        [1, 2, 3],  # spatial dims
        [(0, 1, 1, 1), (1, 2, 1, 1), (2, 1, 2, 2), (1, 3, 1, 4), (0, 2, 3, 2)],
        [0, 1],  # mode
    )
)


@pytest.mark.parametrize("nd, opts, mode", CASES)
def test_fast_paths_match_reference(rng, nd, opts, mode):
    padding, stride, dilation, groups = opts
    spatial = {1: (13,), 2: (9, 10), 3: (7, 8, 9)}[nd]
    kernel = {1: (4,), 2: (3, 2), 3: (2, 3, 2)}[nd]
    x = rng.standard_normal((3, 4, *spatial))
    w = rng.standard_normal((2 * groups, 4 // groups, *kernel))
    geom = ConvGeometry((padding,) * nd, (stride,) * nd, (dilation,) * nd, groups, mode == 0)
    ref = conv_reference(w, x, geom.padding, geom.stride, geom.dilation, groups, mode)
    y = _conv(w, x, geom=geom)
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)

    gy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(
        _conv_transpose(w, gy, geom=geom, in_spatial=spatial),
        conv_transpose_reference(w, gy, geom.padding, geom.stride, geom.dilation, groups, spatial, mode),
        rtol=1e-10,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        _conv_filter_grad(x, gy, geom=geom, kernel=kernel),
        conv_filter_grad_reference(x, gy, geom.padding, geom.stride, geom.dilation, groups, kernel, mode),
        rtol=1e-10,
        atol=1e-12,
    )


def test_reference_matches_torch(torch, rng):
    x = rng.standard_normal((2, 6, 7, 8))
    w = rng.standard_normal((4, 3, 3, 2))
    ref = conv_reference(w, x, (1, 2), (2, 1), (1, 2), groups=2, mode=1)
    t = torch.nn.functional.conv2d(
        torch.tensor(x), torch.tensor(w), padding=(1, 2), stride=(2, 1), dilation=(1, 2), groups=2
    )
    np.testing.assert_allclose(ref, t.numpy(), rtol=1e-10)


# -- layouts, dtypes, tensors ------------------------------------------------------------------------------------
def test_any_input_layout_gives_the_same_result(rng):
    w = rng.standard_normal((5, 3, 3, 3))
    x = rng.standard_normal((2, 3, 9, 9))
    expected = conv_reference(w, x, (1, 1), (1, 1), (1, 1), 1, 0)
    channels_last = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
    strided = np.zeros((2, 3, 18, 9))
    strided[:, :, ::2] = x
    for variant in (x, channels_last, strided[:, :, ::2], np.asfortranarray(x)):
        np.testing.assert_allclose(kp.conv4(w, variant, padding=1), expected, rtol=1e-10)


def test_output_is_channels_last_and_chains(rng):
    # conv4 hands back channels-last memory; a second conv (and pooling) read it without copies.
    w1 = rng.standard_normal((4, 3, 3, 3))
    w2 = rng.standard_normal((2, 4, 3, 3))
    x = rng.standard_normal((2, 3, 8, 8))
    y1 = kp.conv4(w1, x, mode=1)
    assert y1.shape == (2, 4, 6, 6) and y1.strides[1] == y1.itemsize
    y2 = kp.conv4(w2, kp.pool(np.maximum(y1, 0)), mode=1)
    ref = conv_reference(w2, kp.pool(np.maximum(np.ascontiguousarray(y1), 0)), (0, 0), (1, 1), (1, 1), 1, 1)
    np.testing.assert_allclose(y2, ref, rtol=1e-10)


def test_float32_stays_float32(rng):
    w = kp.Param(rng.standard_normal((4, 2, 3, 3)).astype(np.float32))
    x = kp.tensor(rng.standard_normal((2, 2, 6, 6)).astype(np.float32))
    y = kp.conv4(w, x, padding=1)
    assert y.dtype == np.float32
    kp.sum(y * y).backward()
    assert w.grad.dtype == np.float32 and w.grad.shape == w.shape
    assert kp.deconv4(w.value, y.value, padding=1).dtype == np.float32


def test_tensor_backward_and_raw_fast_path_agree(rng):
    w = rng.standard_normal((3, 2, 2, 2))
    x = rng.standard_normal((2, 2, 5, 5))
    wp = kp.Param(w)
    kp.sum(kp.square(kp.conv4(wp, x, stride=2))).backward()
    gw = kp.grad(lambda w: kp.sum(kp.square(kp.conv4(w, x, stride=2))))(w)
    np.testing.assert_allclose(wp.grad, gw, rtol=1e-12)
    assert isinstance(kp.conv4(w, x), np.ndarray)  # raw arrays in, raw array out


# -- errors ------------------------------------------------------------------------------------------------------
def test_conv4_errors():
    x = np.zeros((2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"x has 3 channels .* expects 4"):
        kp.conv4(np.zeros((5, 4, 3, 3)), x)
    with pytest.raises(ValueError, match=r"expects 6 \(3 per group x groups=2\)"):
        kp.conv4(np.zeros((4, 3, 3, 3)), x, groups=2)
    with pytest.raises(ValueError, match=r"5 output channels .* not divisible by groups=2"):
        kp.conv4(np.zeros((5, 3, 3, 3)), np.zeros((2, 6, 8, 8)), groups=2)
    with pytest.raises(ValueError, match="groups must be a positive int"):
        kp.conv4(np.zeros((4, 3, 3, 3)), x, groups=0)
    with pytest.raises(ValueError, match=r"kernel spans 9 along spatial axis 1 .* padded input has only 8"):
        kp.conv4(np.zeros((1, 3, 3, 9)), x)
    with pytest.raises(ValueError, match=r"kernel spans 9 .* dilation 4"):
        kp.conv4(np.zeros((1, 3, 3, 3)), x, dilation=(1, 4))
    with pytest.raises(ValueError, match="mode must be 0"):
        kp.conv4(np.zeros((1, 3, 3, 3)), x, mode=2)
    with pytest.raises(ValueError, match=r"needs x of shape \(N, C, X, Y\)"):
        kp.conv4(np.zeros((1, 3, 3, 3)), np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="padding has 3 entries for 2 spatial dimensions"):
        kp.conv4(np.zeros((1, 3, 3, 3)), x, padding=(1, 1, 1))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        kp.conv4(np.zeros((1, 3, 3, 3)), x, stride=0)
    with pytest.raises(TypeError, match="w has dtype float32 but x has dtype float64"):
        kp.conv4(np.zeros((1, 3, 3, 3), np.float32), x)
    with pytest.raises(TypeError, match="x must be a floating array"):
        kp.conv4(np.zeros((1, 3, 3, 3)), np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="1 to 3 kernel dimensions"):
        kp.conv4(np.zeros((1, 3)), x)


def test_deconv4_errors():
    x = np.zeros((2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"x has 4 channels .* expects 3"):
        kp.deconv4(np.zeros((3, 2, 3, 3)), x)
    with pytest.raises(ValueError, match="output_padding 2 along spatial axis 0 must be smaller"):
        kp.deconv4(np.zeros((4, 2, 3, 3)), x, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="empty output"):
        kp.deconv4(np.zeros((4, 2, 1, 1)), np.zeros((1, 4, 1, 1)), padding=1)


# -- the fused convolution + bias (+ relu) the layers use ---------------------------------------------------------
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("groups, mode", [(1, 1), (2, 0)])
def test_conv4_bias_matches_torch(torch, rng, relu, groups, mode):
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((6, 4 // groups, 3, 2))
    b = rng.standard_normal(6)
    opts = dict(padding=1, stride=(2, 1), dilation=1, groups=groups)
    y = kp.conv4_bias(w, x, b, mode=mode, relu=relu, **opts)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt.flip([2, 3]) if mode == 0 else wt, bt, **opts)
    yt = torch.relu(yt) if relu else yt
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6, atol=1e-12)
    cot = rng.standard_normal(y.shape)
    grads = kp.grad(
        lambda w, x, b: kp.sum(kp.conv4_bias(w, x, b, mode=mode, relu=relu, **opts) * cot), (0, 1, 2)
    )(w, x, b)
    (yt * torch.tensor(cot)).sum().backward()
    for got, want in zip(grads, (wt, xt, bt)):
        np.testing.assert_allclose(got, want.grad.numpy(), rtol=1e-6, atol=1e-12)


def test_conv4_bias_gradcheck_and_second_order(torch, rng):
    x = rng.standard_normal((2, 3, 5, 5))
    w = rng.standard_normal((4, 3, 2, 2))
    b = rng.standard_normal(4)
    assert kp.gradcheck(lambda w, x, b: kp.conv4_bias(w, x, b, padding=1, relu=True), w, x, b)
    r = rng.standard_normal(x.shape)

    def outer(w, x, b):
        gw, gx, gb = kp.grad(
            lambda w, x, b: kp.sum(kp.square(kp.conv4_bias(w, x, b, mode=1, relu=True))), (0, 1, 2)
        )(w, x, b)
        return kp.sum(gx * r) + kp.sum(gw * gw) + kp.sum(gb * gb)

    hw, hx, hb = kp.grad(outer, (0, 1, 2))(w, x, b)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    loss = (torch.relu(torch.nn.functional.conv2d(xt, wt, bt)) ** 2).sum()
    gwt, gxt, gbt = torch.autograd.grad(loss, (wt, xt, bt), create_graph=True)
    ((gxt * torch.tensor(r)).sum() + (gwt * gwt).sum() + (gbt * gbt).sum()).backward()
    for got, want in zip((hw, hx, hb), (wt, xt, bt)):
        np.testing.assert_allclose(got, want.grad.numpy(), rtol=1e-6, atol=1e-10)


def test_conv4_bias_errors():
    with pytest.raises(ValueError, match=r"b must have shape \(4,\)"):
        kp.conv4_bias(np.zeros((4, 3, 2, 2)), np.zeros((1, 3, 5, 5)), np.zeros((1, 4, 1, 1)))
    with pytest.raises(ValueError, match=r"x has 2 channels"):
        kp.conv4_bias(np.zeros((4, 3, 2, 2)), np.zeros((1, 2, 5, 5)), np.zeros(4))


# -- recycled result memory --------------------------------------------------------------------------------------
def test_recycled_memory_returns_only_after_the_last_view():
    from knetpy.ops import buffer_pool, recycle

    def address(array):
        return array.__array_interface__["data"][0]

    buffer_pool.clear()
    shape = (256, 1024)  # 1 MiB of float32: large enough to be recycled
    a = recycle.empty(np, shape, np.float32)
    a.fill(7.0)
    first = address(a)
    view = a[10:20].T
    del a
    b = recycle.empty(np, shape, np.float32)  # a view still sees the first buffer: not reused
    b.fill(-1.0)
    assert address(b) != first and np.all(view == 7.0)
    del view
    c = recycle.zeros(np, shape, np.float32)  # now it is
    assert address(c) == first and not c.any()
    assert recycle.empty(np, (3, 4), np.float32).base is None  # small arrays: plain NumPy
    del b, c
    buffer_pool.clear()


def test_training_steps_reuse_buffers(rng):
    # After one step, the steps that follow take their large arrays from the pool.
    from knetpy.ops import buffer_pool, recycle

    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    x = rng.standard_normal((32, 8, 32, 32)).astype(np.float32)

    def loss(w):
        return kp.sum(kp.pool(kp.relu(kp.conv4(w, x, padding=1))))

    # one thread: with several, how many same-shaped buffers are out at once depends on timing
    threads = "auto" if kp.parallel.is_auto() else kp.get_num_threads()
    kp.set_num_threads(1)
    try:
        _check_steps_reuse_buffers(loss, w, buffer_pool, recycle)
    finally:
        kp.set_num_threads(threads)


def _check_steps_reuse_buffers(loss, w, buffer_pool, recycle):
    kp.grad(loss)(w)
    recycle._flush()
    held = buffer_pool.held_bytes()
    assert held > 0
    g1 = kp.grad(loss)(w)
    recycle._flush()
    assert buffer_pool.held_bytes() == held  # the same buffers came back
    np.testing.assert_allclose(kp.grad(loss)(w), g1, rtol=1e-6)
