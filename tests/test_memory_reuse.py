"""Memory: the buffer pool reuses free memory across shapes within a cap, and BatchNorm keeps no
normalised copy of its input for the backward pass (it computes it again, with the same values)."""

import gc
import math
import threading
import tracemalloc

import numpy as np
import pytest
from fast_switch import threads

import knetpy as kp
from knetpy.distributed.syncbn import sync_normalize
from knetpy.layers.normalization import normalize
from knetpy.ops import buffer_pool


def _address(a):
    return a.__array_interface__["data"][0]


@pytest.fixture
def pool():
    buffer_pool.clear()
    yield buffer_pool
    buffer_pool.clear()


# -- the pool ------------------------------------------------------------------------------------------------
def test_pool_reuses_a_buffer_for_another_shape_and_dtype(pool):
    a = pool.take(np, (1000,), np.float32)
    first = _address(a)
    pool.give(a)
    b = pool.take(np, (10, 50), np.float64)  # the same 4000 bytes, another shape and dtype
    assert b.shape == (10, 50) and b.dtype == np.float64 and b.flags.c_contiguous
    assert _address(b) == first and pool.held_bytes() == 0
    pool.give(b.reshape(-1)[:7])  # a view of a handed-out buffer brings the whole buffer back
    assert pool.held_bytes() == 4000


def test_pool_takes_the_smallest_buffer_that_fits_within_the_slack(pool):
    small, large = pool.take(np, (1000,), np.uint8), pool.take(np, (4000,), np.uint8)
    addresses = _address(small), _address(large)
    pool.give(large, small)
    got = pool.take(np, (200, 4), np.float32)  # 3200 bytes: only the large buffer holds them
    assert _address(got) == addresses[1]
    got2 = pool.take(np, (900,), np.uint8)  # best fit: the 1000-byte buffer
    assert _address(got2) == addresses[0]
    pool.give(got, got2)
    tiny = pool.take(np, (10,), np.uint8)  # far smaller than any free buffer: new memory, nothing pinned
    assert _address(tiny) not in addresses and pool.held_bytes() == 5000


def test_pool_respects_its_caps(pool, monkeypatch):
    assert pool.MAX_BYTES <= 256 << 20  # idle memory counts toward the peak: a modest cap
    monkeypatch.setattr(pool, "MAX_BYTES", 10_000)
    arrays = [pool.take(np, (3000,), np.uint8) for _ in range(5)]
    pool.give(*arrays)
    assert pool.held_bytes() == 9000  # a fourth would pass the cap
    pool.clear()
    monkeypatch.setattr(pool, "MAX_BYTES", 1 << 20)
    pool.give(*[pool.take(np, (100,), np.uint8) for _ in range(pool.MAX_PER_SIZE + 3)])
    assert pool.held_bytes() == pool.MAX_PER_SIZE * 100


def test_pool_keeps_a_buffer_once_and_never_foreign_views(pool):
    a = pool.take(np, (64,), np.float64)
    pool.give(a, a, a[1:])
    assert pool.held_bytes() == a.nbytes
    x = pool.take(np, (64,), np.float64)
    y = pool.take(np, (64,), np.float64)
    assert _address(x) != _address(y)  # handed out once, not to both
    other = np.zeros(512, dtype=np.uint8)
    pool.give(other[:256], other[::2])  # views of memory the pool did not hand out
    assert pool.held_bytes() == 0
    assert not other.any()


def test_pool_hands_no_memory_to_two_threads_at_once(pool):
    errors = []

    def work(tag):
        for i in range(300):
            shape = (64 + (i * 7 + tag) % 50,)  # sizes overlap within the slack: buffers move between them
            a = pool.take(np, shape, np.float32)
            a.fill(tag)
            if not (a == tag).all():
                errors.append(tag)
            pool.give(a)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_recycled_results_reuse_memory_across_shapes(pool):
    from knetpy.ops import recycle

    a = recycle.empty(np, (512, 1024), np.float32)  # 2 MiB
    first = _address(a)
    del a
    b = recycle.empty(np, (1024, 256, 2), np.float32)  # 2 MiB in another shape
    assert _address(b) == first


@pytest.mark.parametrize("n_threads", [1, 2])
def test_a_dense_weight_gradient_reuses_its_memory_every_step(pool, n_threads):
    """A large GEMM result (here a Dense layer's 1.6 MB weight gradient) comes from the pool: once the
    previous step's gradient is dropped (zero_grad), the next step's takes the same memory, which
    malloc would otherwise give back to the system and page-fault in again."""
    from knetpy.ops import recycle

    with threads(n_threads):
        kp.set_seed(0)
        layer = kp.layers.Dense(500, n_in=800)
        x = np.random.default_rng(0).random((100, 800), np.float32)
        addresses = []
        for _ in range(3):
            layer.w.zero_grad()
            kp.sum(layer(x)).backward()
            addresses.append(_address(layer.w.grad))
            assert isinstance(layer.w.grad.base, recycle._Owner)  # pooled memory
            np.testing.assert_allclose(layer.w.grad, np.repeat(x.sum(0)[:, None], 500, axis=1), rtol=1e-5)
        assert addresses[1] == addresses[2]


# -- BatchNorm: xhat computed again, bit for bit ------------------------------------------------------
@pytest.fixture
def numpy_path():
    """The NumPy reference op (test_fast_batchnorm holds the compiled kernels equal to it within rounding)."""
    prev = kp.ops.fast.set_fast(False)
    yield
    kp.ops.fast.set_fast(prev)


def _reference_normalize(x, gamma, beta, axes, pshape, eps):
    """The former op: xhat saved from the forward pass and used by the backward formulas."""
    mean = x.mean(axis=axes, keepdims=True)
    inv_std = 1.0 / (x.var(axis=axes, keepdims=True) + eps) ** 0.5
    xhat = (x - mean) * inv_std
    y = xhat * gamma.reshape(pshape) + beta.reshape(pshape)
    return y, xhat, mean, inv_std


def _reference_grads(g, x, xhat, gamma, axes, pshape, inv_std):
    dxhat = g * gamma.reshape(pshape)
    mean_g = dxhat.mean(axis=axes, keepdims=True)
    mean_gx = (dxhat * xhat).mean(axis=axes, keepdims=True)
    dx = (dxhat - mean_g - xhat * mean_gx) * inv_std
    return dx, kp.ops.sum_to(g * xhat, pshape).reshape(-1), kp.ops.sum_to(g, pshape).reshape(-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["batch", "layer"])
def test_normalize_forward_and_backward_equal_the_former_op_bit_for_bit(dtype, layout, numpy_path):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((6, 4, 5, 3)) * 3 + 1).astype(dtype)
    axes, pshape = ((0, 2, 3), (1, 4, 1, 1)) if layout == "batch" else ((1, 2, 3), (1, 4, 5, 3))
    c = pshape[1:] if layout == "layer" else (4,)
    gamma, beta = (rng.standard_normal(c).astype(dtype) for _ in range(2))
    g = rng.standard_normal(x.shape).astype(dtype)
    y_ref, xhat, mean, inv_std = _reference_normalize(x, gamma, beta, axes, pshape, 1e-5)
    dx_ref, dgamma_ref, dbeta_ref = _reference_grads(g, x, xhat, gamma, axes, pshape, inv_std)

    xt, gt, bt = kp.Param(x), kp.Param(gamma), kp.Param(beta)
    y = normalize(xt, gt, bt, mean=mean, inv_std=inv_std, axes=axes, pshape=pshape, eps=1e-5)
    np.testing.assert_array_equal(y.value, y_ref)
    assert y.dtype == dtype
    kp.sum(y * g).backward()
    np.testing.assert_array_equal(xt.grad, dx_ref)
    np.testing.assert_array_equal(gt.grad.reshape(-1), dgamma_ref)
    np.testing.assert_array_equal(bt.grad.reshape(-1), dbeta_ref)


def test_normalize_gradient_of_gamma_alone_and_of_x_alone(numpy_path):
    # Either VJP may run without the other (a frozen input or a frozen scale).
    rng = np.random.default_rng(4)
    x, gamma, beta = rng.standard_normal((8, 3)), rng.standard_normal(3), rng.standard_normal(3)
    g = rng.standard_normal((8, 3))
    _, xhat, mean, inv_std = _reference_normalize(x, gamma, beta, (0,), (1, 3), 1e-5)
    dx_ref, dgamma_ref, _ = _reference_grads(g, x, xhat, gamma, (0,), (1, 3), inv_std)
    kw = dict(mean=mean, inv_std=inv_std, axes=(0,), pshape=(1, 3), eps=1e-5)
    gt = kp.Param(gamma)
    kp.sum(normalize(x, gt, beta, **kw) * g).backward()
    np.testing.assert_array_equal(gt.grad, dgamma_ref)
    xt = kp.Param(x)
    y = normalize(xt, gamma, beta, **kw)
    kp.sum(y * g).backward()
    np.testing.assert_array_equal(xt.grad, dx_ref)


def test_sync_normalize_gradients_equal_the_former_op_on_one_process():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 2, 2))
    gamma, beta, g = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal(x.shape)
    axes, pshape = (0, 2, 3), (1, 3, 1, 1)
    _, xhat, mean, inv_std = _reference_normalize(x, gamma, beta, axes, pshape, 1e-5)
    count = 16.0
    dxhat = g * gamma.reshape(pshape)
    sum_g, sum_gx = dxhat.sum(axis=axes, keepdims=True), (dxhat * xhat).sum(axis=axes, keepdims=True)
    dx_ref = (dxhat - sum_g / count - xhat * (sum_gx / count)) * inv_std
    xt, gt = kp.Param(x), kp.Param(gamma)
    y = sync_normalize(xt, gt, beta, mean=mean, inv_std=inv_std, axes=axes, pshape=pshape, eps=1e-5,
                       count=count)
    kp.sum(y * g).backward()
    np.testing.assert_array_equal(xt.grad, dx_ref)
    np.testing.assert_array_equal(gt.grad, (g * xhat).sum(axis=axes))


def test_batchnorm_keeps_no_normalised_copy_for_the_backward_pass():
    # Training mode: after the forward pass the graph holds the input (the caller's), the output and
    # small statistics; the former op also kept xhat, a second array the size of the output.
    bn = kp.layers.BatchNorm()
    x = kp.Param(np.random.default_rng(6).standard_normal((32, 8, 32, 32)).astype(np.float32))  # 1 MiB
    bn(x)  # build the parameters outside the measurement
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        y = bn(x)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    out = y.value.nbytes
    assert out <= held < 1.5 * out, f"the forward pass keeps {held / out:.2f} outputs' worth of memory"
    assert not any(isinstance(s, np.ndarray) and s.size > 8 for s in y._saved)
    y.backward(np.ones(y.shape, np.float32))
    assert x.grad.shape == x.shape and math.isfinite(float(bn.gamma.grad.sum()))


# -- BatchNorm with the ReLU fused (the residual blocks) -----------------------------------------------
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_relu_equals_relu_of_batchnorm_bit_for_bit(training):
    rng = np.random.default_rng(7)
    x0 = rng.standard_normal((6, 4, 5, 5)).astype(np.float32)
    g = rng.standard_normal(x0.shape).astype(np.float32)
    results = []
    for fused in (False, True):
        bn = kp.layers.BatchNorm()
        bn.build(x0.shape)
        bn.built = True
        bn.gamma.value[:] = rng.standard_normal(4) if not results else results[0][4]
        bn.beta.value[:] = rng.standard_normal(4) if not results else results[0][5]
        bn.train(training)
        x = kp.Param(x0.copy())
        y = bn(x, relu=True) if fused else kp.relu(bn(x))
        kp.sum(y * g).backward()
        results.append((y.value, x.grad, bn.gamma.grad, bn.beta.grad,
                        bn.gamma.value.copy(), bn.beta.value.copy()))
    assert (results[0][0] == 0).any() and (results[0][0] > 0).any()  # the ReLU cuts somewhere
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_fused_relu_gradient_follows_each_backward_pass():
    # The gradient through the ReLU is shared by the VJPs of one pass; a second pass brings a new one.
    x = kp.Param(np.random.default_rng(8).standard_normal((8, 3)))
    bn = kp.layers.BatchNorm()
    y = bn(x, relu=True)
    y.backward(np.ones((8, 3)), retain_graph=True)
    first = (x.grad.copy(), bn.gamma.grad.copy(), bn.beta.grad.copy())
    for t in (x, bn.gamma, bn.beta):
        t.zero_grad()
    y.backward(np.full((8, 3), 2.0))
    for a, b in zip(first, (x.grad, bn.gamma.grad, bn.beta.grad)):
        np.testing.assert_allclose(b, 2 * a, rtol=1e-12, atol=1e-14)


def test_fused_relu_keeps_one_array_for_the_backward_pass():
    bn = kp.layers.BatchNorm()
    x = kp.Param(np.random.default_rng(9).standard_normal((32, 8, 32, 32)).astype(np.float32))
    bn(x)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        y = bn(x, relu=True)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1.5 * y.value.nbytes, f"BatchNorm + ReLU keeps {held / y.value.nbytes:.2f} outputs' worth"


def test_resnet_block_uses_the_fused_op_and_matches_torch_gradients():
    torch = pytest.importorskip("torch", reason="the reference for the residual block")
    from knetpy.models.blocks import BasicBlock

    rng = np.random.default_rng(10)
    x0 = rng.standard_normal((4, 8, 6, 6)).astype(np.float64)
    kp.set_dtype("float64")
    try:
        block = BasicBlock(8)
        block(x0)  # built
    finally:
        kp.set_dtype("float32")
    calls = []
    bn1_forward = block.bn1.forward
    block.bn1.forward = lambda x, **kw: calls.append(kw) or bn1_forward(x, **kw)
    x = kp.Param(x0)
    y = block(x)
    assert calls == [{"relu": True}]
    kp.sum(y * y).backward()

    tc = [torch.nn.Conv2d(8, 8, 3, padding=1, bias=False).double() for _ in range(2)]
    tb = [torch.nn.BatchNorm2d(8).double() for _ in range(2)]
    with torch.no_grad():
        for c, conv in zip(tc, (block.conv1, block.conv2)):
            c.weight.copy_(torch.from_numpy(conv.w.value))
    xt = torch.from_numpy(x0).requires_grad_()
    yt = torch.relu(tb[1](tc[1](torch.relu(tb[0](tc[0](xt))))) + xt)
    (yt * yt).sum().backward()
    np.testing.assert_allclose(y.value, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), rtol=1e-8, atol=1e-10)


def test_fused_batchnorm_relu_replays_bit_for_bit_under_fit_compile():
    from knetpy import training
    from knetpy.models.blocks import BasicBlock

    def fit(compile):
        kp.set_seed(0)
        rng = np.random.default_rng(11)
        x = rng.standard_normal((48, 3, 6, 6)).astype(np.float32)
        y = rng.integers(0, 3, 48)
        model = kp.Sequential([kp.layers.Conv2D(4, 3, padding=1), BasicBlock(4), kp.layers.Flatten(),
                               kp.layers.Dense(3)])
        model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.05, momentum=0.9))
        hist = model.fit(x, y, epochs=3, batch_size=16, verbose=0, compile=compile)
        return hist.history, {k: p.value for k, p in model.params.items()}, model

    eager, compiled = fit(False), fit(True)
    assert eager[0] == compiled[0]
    for k, v in eager[1].items():
        assert v.tobytes() == compiled[1][k].tobytes(), k
    assert training.compiled_step(compiled[2]).replays > 0
