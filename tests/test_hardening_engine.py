"""The engine under stress: threads, in-place edits between forward and backward, casts to integer
types, ``Tensor.data``, writable gradients and non-numeric inputs."""

import threading

import numpy as np
import pytest
from thread_cases import run_threads

import knetpy as kp
from knetpy.autograd import primitive

# -- recording state is per thread ------------------------------------------------------------------


def _mlp_params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.standard_normal((6, 16)).astype(np.float32),
        "b1": np.zeros(16, np.float32),
        "w2": rng.standard_normal((16, 3)).astype(np.float32),
        "b2": np.zeros(3, np.float32),
    }


def _mlp_loss(p, x, y):
    h = kp.tanh(x @ p["w1"] + p["b1"])
    return kp.losses.cross_entropy(h @ p["w2"] + p["b2"], y)


def test_grad_in_8_threads_equals_one_thread():
    rng = np.random.default_rng(1)
    params = _mlp_params()
    xs = [rng.standard_normal((5, 6)).astype(np.float32) for _ in range(8)]
    ys = [rng.integers(0, 3, 5) for _ in range(8)]
    dloss = kp.grad(_mlp_loss)
    expected = [dloss(params, x, y) for x, y in zip(xs, ys)]
    assert all(np.abs(e["w1"]).sum() > 0 for e in expected)
    start = threading.Barrier(8)

    def work(i):
        start.wait()
        for _ in range(60):
            g = dloss(params, xs[i], ys[i])
            for k in params:
                np.testing.assert_array_equal(g[k], expected[i][k], err_msg=f"thread {i}, {k}")

    run_threads(8, work)
    assert kp.is_grad_enabled()


def test_concurrent_passes_through_shared_parameters():
    # Parameters shared by every thread's graph: each pass sums their gradients privately.
    import sys

    from knetpy.autograd import backprop

    rng = np.random.default_rng(2)
    w = kp.Param(rng.standard_normal((6, 6)).astype(np.float32))
    b = kp.Param(rng.standard_normal(6).astype(np.float32))
    xs = [rng.standard_normal((4, 6)).astype(np.float32) for _ in range(8)]

    def grads(x):
        h = kp.tanh(x @ w + b)
        loss = kp.sum(kp.tanh(h @ w + b) * h)  # w and b used twice: their gradients are sums
        return backprop(loss, np.ones((), np.float32), [w, b])

    expected = [grads(x) for x in xs]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, mid-pass
    try:
        def work(i):
            for _ in range(100):
                for got, want in zip(grads(xs[i]), expected[i]):
                    np.testing.assert_array_equal(got, want)

        run_threads(8, work)
    finally:
        sys.setswitchinterval(old)


def test_concurrent_backward_into_shared_parameters_accumulates_every_pass():
    import sys

    rng = np.random.default_rng(3)
    w = kp.Param(rng.standard_normal((5, 5)))
    xs = [rng.standard_normal((3, 5)) for _ in range(8)]

    def backward(x):
        kp.sum(kp.tanh(x @ w) ** 2).backward()

    expected = np.zeros((5, 5))
    for x in xs:
        backward(x)
        expected += w.grad
        w.grad = None
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        run_threads(8, lambda i: [backward(xs[i]) for _ in range(50)])
    finally:
        sys.setswitchinterval(old)
    np.testing.assert_allclose(w.grad, 50 * expected, rtol=1e-10)


def test_no_grad_in_one_thread_does_not_stop_recording_in_another():
    entered, checked = threading.Event(), threading.Event()
    seen = {}

    def holder():
        with kp.no_grad():
            entered.set()
            checked.wait(10)
            seen["holder"] = kp.is_grad_enabled()

    t = threading.Thread(target=holder)
    t.start()
    assert entered.wait(10)
    w = kp.Param([1.0, 2.0])
    y = w * w
    seen["main"] = (kp.is_grad_enabled(), y.requires_grad)
    checked.set()
    t.join()
    assert seen == {"holder": False, "main": (True, True)}
    assert kp.is_grad_enabled()


def test_new_thread_records_while_creator_is_in_no_grad():
    seen = {}

    def child():
        seen["child"] = (kp.is_grad_enabled(), (kp.Param([1.0]) * 2.0).requires_grad)

    with kp.no_grad():
        t = threading.Thread(target=child)
        t.start()
        t.join()
        assert not kp.is_grad_enabled()
    assert seen["child"] == (True, True)


def test_a_backward_pass_does_not_switch_recording_off_in_other_threads():
    # A VJP that pauses mid-backward: while one thread is inside backprop (recording off there),
    # another thread's forward must still record. This is how concurrent kp.grad got zero gradients.
    in_vjp, go_on = threading.Event(), threading.Event()

    @primitive
    def slow_square(x):
        return x * x

    def vjp(g, ans, x):
        in_vjp.set()
        go_on.wait(10)
        return g * 2 * x

    slow_square.defvjp(vjp)
    result = {}

    def backward_thread():
        w = kp.Param([3.0])
        kp.sum(slow_square(w)).backward()
        result["grad"] = w.grad.copy()

    t = threading.Thread(target=backward_thread)
    t.start()
    assert in_vjp.wait(10)
    v = kp.Param([1.0, 2.0])
    out = kp.sum(v * v)
    go_on.set()
    t.join()
    assert out.requires_grad
    out.backward()
    np.testing.assert_array_equal(v.grad, [2.0, 4.0])
    np.testing.assert_array_equal(result["grad"], [6.0])


@pytest.mark.filterwarnings("ignore:divide by zero")
def test_detect_anomaly_is_per_thread():
    entered, done = threading.Event(), threading.Event()
    caught = {}

    def debugging():
        with kp.detect_anomaly():
            entered.set()
            done.wait(10)
            try:
                kp.log(kp.Param([0.0]))
            except kp.AnomalyError as e:
                caught["holder"] = str(e)

    t = threading.Thread(target=debugging)
    t.start()
    assert entered.wait(10)
    y = kp.log(kp.Param([0.0]))  # -inf, no anomaly mode in this thread: no error
    done.set()
    t.join()
    assert np.isneginf(y.value).all()
    assert "log" in caught["holder"]


def test_shared_grad_mode_object_used_by_two_threads():
    ng = kp.no_grad()
    inside, leave = threading.Event(), threading.Event()

    def other():
        with ng:
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=other)
    t.start()
    assert inside.wait(10)
    with ng:
        assert not kp.is_grad_enabled()
    assert kp.is_grad_enabled()
    leave.set()
    t.join()
    assert kp.is_grad_enabled()


# -- in-place edits between forward and backward ------------------------------------------------------


def test_inplace_edit_before_backward_raises():
    w = kp.Param([1.0, 2.0, 3.0])
    loss = kp.sum(w * w)
    w -= 1
    with pytest.raises(RuntimeError, match=r"in-place.*argument 0 of op 'mul'.*shape \(3,\).*version 1"):
        loss.backward()


@pytest.mark.parametrize("edit", ["iadd", "imul", "itruediv", "setitem", "setitem_tensor"])
def test_every_inplace_path_bumps_the_version(edit):
    w = kp.Param([1.0, 2.0, 3.0])
    loss = kp.sum(kp.tanh(w))
    v0 = w._version
    if edit == "iadd":
        w += 1
    elif edit == "imul":
        w *= 2
    elif edit == "itruediv":
        w /= 2
    elif edit == "setitem":
        w[0] = 5.0
    else:
        w[kp.tensor([1])] = kp.tensor([5.0])
    assert w._version == v0 + 1
    with pytest.raises(RuntimeError, match="'tanh'"):
        loss.backward()


def test_inplace_edit_of_a_constant_operand_raises():
    w = kp.Param([1.0, 2.0])
    x = kp.tensor([3.0, 4.0])
    loss = kp.sum(w * x)
    x += 1  # the gradient for w reads x
    with pytest.raises(RuntimeError, match="argument 1 of op 'mul'"):
        loss.backward()


def test_inplace_edit_seen_through_a_view():
    w = kp.Param([[1.0, 2.0, 3.0]])
    v = w.reshape((3, 1))  # shares w's memory
    loss = kp.sum(v * v)
    w -= 1
    with pytest.raises(RuntimeError, match="view of a Param of shape \\(1, 3\\)"):
        loss.backward()


def test_ops_that_do_not_read_their_operands_allow_edits():
    w = kp.Param([1.0, 2.0, 3.0])
    loss = kp.sum(w + 2.0) - kp.sum(w.reshape((3, 1)))
    w -= 1
    loss.backward()
    np.testing.assert_array_equal(w.grad, [0.0, 0.0, 0.0])


def _model_and_data():
    rng = np.random.default_rng(0)
    w = kp.Param(rng.standard_normal((4, 3)).astype(np.float32))
    b = kp.Param(np.zeros(3, np.float32))
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    return w, b, x, y


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_optimizer_step_between_forward_and_backward_raises(name):
    w, b, x, y = _model_and_data()
    opt = getattr(kp.optim, name)([w, b], lr=0.1)
    kp.losses.cross_entropy(x @ w + b, y).backward()
    opt.step()
    loss = kp.losses.cross_entropy(x @ w + b, y)  # forward
    opt.step()  # the gradients from before: updates w in place
    with pytest.raises(RuntimeError, match="op 'matmul'.*Param of shape \\(4, 3\\)"):
        loss.backward()


def test_functional_update_between_forward_and_backward_raises():
    w, b, x, y = _model_and_data()
    params = [w, b]
    opts = kp.optim.optimizers(params, "SGD", lr=0.1)
    loss = kp.losses.cross_entropy(x @ w + b, y)
    kp.optim.update(params, [np.ones((4, 3), np.float32), None], opts)
    with pytest.raises(RuntimeError, match="op 'matmul'"):
        loss.backward()


def test_forward_backward_step_loop_and_edits_after_backward_are_fine():
    w, b, x, y = _model_and_data()
    w0 = w.value.copy()
    opt = kp.optim.SGD([w, b], lr=0.5)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = kp.losses.cross_entropy(x @ w + b, y)
        loss.backward()
        g = w.grad.copy()
        before = w.value.copy()
        opt.step()
        np.testing.assert_allclose(w.value, before - 0.5 * g, rtol=1e-6)
        losses.append(float(loss.value))
    assert losses[-1] < losses[0]
    w -= 1  # after backward: nothing left to corrupt
    w[0, 0] = 3.0
    loss = kp.sum(w * w)
    w.grad = None
    loss.backward()
    np.testing.assert_allclose(w.grad, 2 * w.value)
    assert not np.array_equal(w.value, w0)


def test_lbfgs_closure_loop_still_works():
    w = kp.Param(np.array([3.0, -2.0]))
    opt = kp.optim.LBFGS([w], lr=1.0)

    def closure():
        opt.zero_grad()
        loss = kp.sum((w - 1.0) ** 2)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    np.testing.assert_allclose(w.value, [1.0, 1.0], atol=1e-5)


# -- casts and integer results never carry gradients --------------------------------------------------


def test_cast_to_int_has_zero_gradient_and_float_cast_keeps_it():
    w = np.array([1.5, 2.5, -0.5], np.float32)
    # d/dw [int(w) * w] = int(w): the cast contributes nothing (the identity would add w)
    g = kp.grad(lambda w: kp.sum(w.astype("int32").astype("float32") * w))(w)
    np.testing.assert_array_equal(g, w.astype(np.int32).astype(np.float32))
    g = kp.grad(lambda w: kp.sum(w.astype("float64") ** 2))(w)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, 2 * w)
    g = kp.grad(lambda w: kp.sum(w.astype(bool).astype("float32") + w))(w)
    np.testing.assert_array_equal(g, np.ones(3, np.float32))


@pytest.mark.parametrize(
    "make",
    [
        lambda w: w.astype("int64"),
        lambda w: w.astype(bool),
        lambda w: kp.argmax(w),
        lambda w: w.argmax(),
        lambda w: w > 0,
        lambda w: kp.equal(w, w),
        lambda w: kp.floor(w),
        lambda w: kp.round(w),
        lambda w: w.astype("int32")[kp.tensor([0, 1])],
        lambda w: kp.reshape(w.astype("int16"), (3, 1)),
    ],
)
def test_integer_and_bool_results_do_not_require_grad(make):
    w = kp.Param([0.5, -1.5, 2.0])
    out = make(w)
    if out.dtype.kind in "iub":
        assert not out.requires_grad
    g = kp.grad(lambda v: kp.sum(make(v).astype("float32") * 1.0) + kp.sum(v * 0.0))(w.value.copy())
    np.testing.assert_array_equal(g, np.zeros(3, np.float32))


def test_a_primitive_returning_integers_gives_a_constant():
    @primitive
    def to_int(x):
        return (x * 10).astype(np.int64)

    to_int.defvjp(lambda g, ans, x: g)  # a wrong VJP must not even be reached
    out = to_int(kp.Param([0.25]))
    assert not out.requires_grad and out.is_leaf


def test_integer_tensors_cannot_require_grad():
    t = kp.tensor([1, 2, 3])
    with pytest.raises(TypeError, match="int64"):
        t.requires_grad_()
    with pytest.raises(TypeError, match="floating"):
        kp.tensor([1, 2], requires_grad=True)
    p = kp.Param([1.0])
    with pytest.raises(TypeError, match="int"):
        p.data = np.array([1, 2])


def test_astype_rejects_a_bad_dtype_clearly():
    with pytest.raises(TypeError, match="astype: 'flaot32' is not a dtype"):
        kp.Param([1.0]).astype("flaot32")


# -- Tensor.data ---------------------------------------------------------------------------------------


def test_data_is_the_value_and_can_be_replaced():
    w = kp.Param([1.0, 2.0])
    assert w.data is w.value
    new = np.array([[1.0, 2.0, 3.0]], np.float64)
    w.data = new
    assert w.value is new and w.shape == (1, 3) and w.dtype == np.float64
    assert w.requires_grad and w._version == 0  # not recorded, no version bump
    w.data = kp.tensor([4.0, 5.0])
    np.testing.assert_array_equal(w.value, [4.0, 5.0])
    kp.sum(w * w).backward()
    np.testing.assert_array_equal(w.grad, [8.0, 10.0])
    c = kp.tensor([1, 2])
    c.data = np.array([7, 8])
    np.testing.assert_array_equal(c.value, [7, 8])
    with pytest.raises(TypeError, match="numeric"):
        c.data = ["a", "b"]


# -- gradients are writable arrays each leaf owns -------------------------------------------------------


def test_leaf_grads_are_writable_and_not_shared():
    a = kp.Param([1.0, 2.0])
    b = kp.Param([3.0, 4.0])
    kp.sum(a + b).backward()
    for g in (a.grad, b.grad):
        assert isinstance(g, np.ndarray) and g.flags.writeable
    assert not np.shares_memory(a.grad, b.grad)
    a.grad += 1
    a.grad[0] = 10
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])
    np.testing.assert_array_equal(a.grad, [10.0, 2.0])


def test_leaf_grads_are_writable_with_create_graph():
    a = kp.Param([1.0, 2.0])
    b = kp.Param([3.0, 4.0])
    kp.sum(a + b).backward(create_graph=True)
    assert a.grad.value.flags.writeable and not np.shares_memory(a.grad.value, b.grad.value)
    a.grad += 1
    np.testing.assert_array_equal(b.grad.value, [1.0, 1.0])


def test_functional_grads_are_not_shared():
    x = np.array([1.0, 2.0], np.float32)
    ga, gb = kp.grad(lambda a, b: kp.sum(a + b), argnums=(0, 1))(x, x.copy())
    assert ga.flags.writeable and not np.shares_memory(ga, gb)


def test_readme_says_grads_are_writable():
    import pathlib

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "Gradients are read-only" not in readme
    assert "writable" in readme


# -- non-numeric input gets a clear error from every op --------------------------------------------------


@pytest.mark.parametrize(
    "call, op, what",
    [
        (lambda: kp.relu("abc"), "relu", "str"),
        (lambda: kp.exp(None), "exp", "NoneType"),
        (lambda: kp.add(1.0, "abc"), "add", "str"),
        (lambda: kp.Param([1.0]) + "abc", "add", "str"),
        (lambda: kp.sum(["a", "b"]), "sum", "<U1"),
        (lambda: kp.matmul("ab", "cd"), "matmul", "str"),
        (lambda: kp.tanh(np.array(["x"], dtype=object)), "tanh", "object"),
        (lambda: kp.floor("abc"), "floor", "str"),
        (lambda: kp.sigm(np.array([b"x"])), "sigm", "S1"),
    ],
)
def test_non_numeric_input_names_the_op_and_the_dtype(call, op, what):
    with pytest.raises(TypeError) as info:
        call()
    assert type(info.value) is TypeError  # not NumPy's UFuncTypeError
    assert str(info.value).startswith(f"{op}:") and what in str(info.value)


def test_loading_weights_between_forward_and_backward_raises(tmp_path):
    model = kp.Sequential([kp.layers.Dense(3)])
    x = np.ones((2, 4), "f")
    model(x)
    path = tmp_path / "w.ckpt"
    kp.save(path, model)
    for reload in (lambda: model.load_weights(path), lambda: model.load_state_dict(model.state_dict())):
        out = kp.sum(model(x) * model(x))
        reload()
        with pytest.raises(RuntimeError, match="modified by an in-place operation"):
            out.backward()
