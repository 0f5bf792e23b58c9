"""Every op, activation, loss and metric on the strict test backend (knetpy.testing.strict).

The strict backend stands in for CuPy on a machine without a GPU: its arrays refuse to become NumPy
arrays, so an op that calls ``np.*`` on its data, builds a NumPy temporary or reads a value back to
the host fails here as it would on a GPU. Each op runs forward and backward on NumPy and on strict
arrays; the results must be strict arrays (no silent return to NumPy) holding the NumPy run's values,
and the strict run must copy nothing to the host. The inputs come from the tables the other op tests
use (autodiff_cases.py, test_conv.py, test_pool.py, test_rnn_ops.py).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from autodiff_cases import CASE_IDS, CASES
from backend_cases import assert_runs_match, default_diff, differentiable, moved, run_op
from hypothesis import given, settings
from hypothesis import strategies as st
from test_conv import DECONV, KERNEL, OPTIONS, SPATIAL
from test_pool import GEOMETRIES, UPSAMPLES
from test_rnn_ops import MODES, SHAPES, random_weights

import knetpy as kp
from knetpy import activations, losses, metrics
from knetpy.special import erf, erfc
from knetpy.testing import strict

FAST = settings(max_examples=8, deadline=None, derandomize=True)


# -- running an op on both backends ---------------------------------------------------------------------
def to_strict(x):
    """NumPy arrays and scalars (also inside tuples, lists and dicts) as strict arrays."""
    return moved(x, strict.asarray)


def _close(name, got, want):
    assert type(got) is strict.StrictArray, f"{name}: a {type(got).__name__} came back, not a strict array"
    got = strict.asnumpy(got)
    want = np.asarray(want)  # (NumPy's Python numbers: a device gives a 0-d array)
    rtol = 1e-5 if want.dtype == np.float32 else 1e-10
    assert got.dtype == want.dtype and got.shape == want.shape, f"{name}: {got.dtype}{got.shape} vs {want.dtype}{want.shape}"
    atol = rtol * float(np.nanmax(np.abs(want), initial=1.0))  # (NaN where NumPy gives NaN compares equal)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)


def assert_same_on_strict(fn, *args, diff=None, **kw):
    """``fn(*args, **kw)`` forward and backward on strict arrays: strict results equal to NumPy's, and no
    copy to the host on the way. ``diff``: the arguments to differentiate (default: the floating ones)."""
    if diff is None:
        diff = default_diff(args)
    want = run_op(fn, args, kw, lambda a: a, diff)
    strict.reset_transfers()
    got = run_op(fn, args, kw, to_strict, diff)
    assert strict.transfers["to_host"] == 0, f"copies to the host inside the op: {strict.transfer_log}"
    assert_runs_match(got, want, diff, _close)


# -- the primitives of the autodiff table ---------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@FAST
@given(data=st.data())
def test_primitive_on_strict_arrays(case, data):
    args, kw = data.draw(case.inputs)
    assert_same_on_strict(case.kp_fn, *args, **kw)


SECOND_ORDER = [c for c in CASES if c.second_order]


@pytest.mark.parametrize("case", SECOND_ORDER, ids=[c.name for c in SECOND_ORDER])
@settings(max_examples=3, deadline=None, derandomize=True)
@given(data=st.data())
def test_second_derivatives_on_strict_arrays(case, data):
    """The VJPs themselves, recorded (create_graph) and differentiated again, on strict arrays."""
    args, kw = data.draw(case.inputs)
    diff = tuple(i for i, a in enumerate(args) if differentiable(a))

    def first_derivatives(*a, **k):
        return kp.grad(lambda *b: kp.sum(kp.square(case.kp_fn(*b, **k))), argnums=diff)(*a)

    assert_same_on_strict(first_derivatives, *args, **kw)


def test_in_place_updates_of_a_strict_leaf():
    want = kp.Param(np.linspace(-1, 1, 6).reshape(2, 3))
    got = kp.Param(strict.asarray(want.value))
    for t, move in ((want, lambda a: a), (got, strict.asarray)):
        t += 1.0
        t *= move(np.full((2, 3), 2.0))
        t /= 4
        t -= move(np.arange(3.0))
        t[0, 1] = 7.0
    assert type(got.value) is strict.StrictArray
    np.testing.assert_array_equal(strict.asnumpy(got.value), want.value)


EXTRA = {  # ops outside the autodiff table: (function, inputs)
    "take": (lambda x, i: kp.take(x, i, axis=1), (np.arange(12.0).reshape(3, 4), np.array([3, 0, 0]))),
    "scatter_add": (lambda g, i: kp.ops.scatter_add(g, i, (4, 2)), (np.ones((3, 2)), np.array([2, 0, 2]))),
    "sum_to": (lambda x: kp.sum_to(x, (1, 3)), (np.arange(6.0).reshape(2, 3),)),
    "swapaxes": (lambda x: kp.swapaxes(x, 0, 2), (np.arange(24.0).reshape(2, 3, 4),)),
    "moveaxis": (lambda x: kp.moveaxis(x, 0, -1), (np.arange(24.0).reshape(2, 3, 4),)),
    "flatten": (kp.flatten, (np.arange(24.0).reshape(2, 3, 4),)),
    "permute": (lambda x: kp.permute(x, (1, 2, 0)), (np.arange(24.0).reshape(2, 3, 4),)),
    "unsqueeze": (lambda x: kp.unsqueeze(x, 1), (np.arange(6.0).reshape(2, 3),)),
    "astype": (lambda x: kp.astype(x, np.float32), (np.linspace(-1, 1, 6),)),
    "inner": (kp.inner, (np.arange(6.0).reshape(2, 3), np.arange(3.0))),
    "identity": (kp.identity, (np.arange(3.0),)),
    "abs2": (kp.abs2, (np.linspace(-1, 1, 5),)),
    "log_softmax": (lambda x: kp.log_softmax(x, axis=0), (np.linspace(-2, 2, 6).reshape(3, 2),)),
    "argmax": (lambda x: kp.argmax(x, axis=1), (np.array([[1.0, 3.0, 2.0], [0.0, -1.0, 4.0]]),)),
    "argmin": (lambda x: kp.argmin(x), (np.array([[1.0, 3.0, 2.0], [0.0, -1.0, 4.0]]),)),
    "comparisons": (
        lambda x, y: [kp.less(x, y), kp.less_equal(x, y), kp.greater(x, y), kp.greater_equal(x, y),
                      kp.equal(x, y), kp.not_equal(x, y), kp.isfinite(x), kp.isnan(y), kp.sign(x),
                      kp.floor(x), kp.ceil(x), kp.round(x)],
        (np.array([-1.5, 0.0, 2.5]), np.array([0.0, 0.0, 3.0])),
    ),
    "accuracy": (lambda s, y: kp.accuracy(s, y, average=False), (np.eye(3) + 0.5, np.array([0, 2, 2]))),
    "erf": (erf, (np.linspace(-6, 6, 25),)),
    "erfc": (erfc, (np.linspace(-6, 6, 25),)),
    "erf_float32": (erf, (np.linspace(-3, 3, 13, dtype=np.float32),)),
    "l1_l2_elastic_net": (
        lambda a, b: kp.regularizers.elastic_net([a, {"b": b}], 0.1) + kp.regularizers.l2(a) + kp.regularizers.l1(b),
        (np.linspace(-1, 1, 6).reshape(2, 3), np.arange(3.0)),
    ),
}


@pytest.mark.parametrize("name", list(EXTRA))
def test_other_op_on_strict_arrays(name):
    fn, args = EXTRA[name]
    assert_same_on_strict(fn, *args)


# -- convolution, pooling, resizing ----------------------------------------------------------------------
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("padding, stride, dilation, groups", OPTIONS)
@pytest.mark.parametrize("mode", [0, 1])
def test_conv4_on_strict_arrays(rng, nd, padding, stride, dilation, groups, mode):
    x = rng.standard_normal((2, 6, *SPATIAL[nd]))
    w = rng.standard_normal((3 * groups, 6 // groups, *KERNEL[nd]))
    opts = dict(padding=padding, stride=stride, dilation=dilation, groups=groups, mode=mode)
    assert_same_on_strict(lambda w, x: kp.conv4(w, x, **opts), w, x)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("groups, mode", [(1, 1), (2, 0)])
def test_conv4_bias_on_strict_arrays(rng, relu, groups, mode):
    x = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
    w = rng.standard_normal((4, 4 // groups, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    fn = lambda w, x, b: kp.conv4_bias(w, x, b, padding=1, groups=groups, mode=mode, relu=relu)  # noqa: E731
    assert_same_on_strict(fn, w, x, b)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("padding, stride, dilation, groups, output_padding", DECONV)
@pytest.mark.parametrize("mode", [0, 1])
def test_deconv4_on_strict_arrays(rng, nd, padding, stride, dilation, groups, output_padding, mode):
    x = rng.standard_normal((2, 6, *{1: (5,), 2: (4, 5), 3: (3, 4, 3)}[nd]))
    w = rng.standard_normal((6, 2, *KERNEL[nd]))
    opts = dict(padding=padding, stride=stride, dilation=dilation, groups=groups, output_padding=output_padding)
    assert_same_on_strict(lambda w, x: kp.deconv4(w, x, mode=mode, **opts), w, x)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("window, padding, stride", GEOMETRIES)
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_pool_on_strict_arrays(rng, nd, window, padding, stride, mode):
    x = rng.standard_normal((2, 3, *{1: (9,), 2: (7, 8), 3: (5, 6, 7)}[nd]))
    assert_same_on_strict(lambda x: kp.pool(x, window, padding, stride, mode), x)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("window, padding, stride", [(2, 0, 2), (3, 1, 2), (2, 0, 1)])
def test_pool_indices_and_max_unpool_on_strict_arrays(rng, nd, window, padding, stride):
    shape = (2, 3, *{1: (8,), 2: (6, 7), 3: (4, 5, 4)}[nd])
    x = rng.standard_normal(shape)
    assert_same_on_strict(lambda x: kp.pool(x, window, padding, stride, return_indices=True), x)
    _, idx = kp.pool(x, window, padding, stride, return_indices=True)
    v = rng.standard_normal(idx.shape)
    fn = lambda v, idx: kp.max_unpool(v, idx, window, stride, padding, output_size=shape[2:])  # noqa: E731
    assert_same_on_strict(fn, v, idx)


@pytest.mark.parametrize("nd, scale, mode, torch_mode", UPSAMPLES)
def test_upsample_on_strict_arrays(rng, nd, scale, mode, torch_mode):
    x = rng.standard_normal((2, 3, *{1: (7,), 2: (4, 5), 3: (3, 4, 2)}[nd]))
    assert_same_on_strict(lambda x: kp.upsample(x, scale, mode), x)


@pytest.mark.parametrize(
    "name, fn",
    [
        ("unpool", lambda x: kp.unpool(x, (2, 3))),
        ("global_avg_pool", kp.global_avg_pool),
        ("global_max_pool", lambda x: kp.global_max_pool(x, keepdims=True)),
        ("lrn", lambda x: kp.lrn(x, 3, alpha=0.1, beta=0.75, k=2.0)),
        ("lp_pool", lambda x: kp.lp_pool(kp.abs(x), 3, 2, 1)),  # (a negative window sum has no real cube root)
        ("lp_pool_p2", lambda x: kp.lp_pool(x, 2, (2, 3))),
    ],
)
def test_spatial_op_on_strict_arrays(rng, name, fn):
    assert_same_on_strict(fn, rng.standard_normal((2, 5, 4, 6)))


# -- recurrent ops and attention ---------------------------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("L,bi", SHAPES, ids=["1layer", "2layers", "bidir", "2layers-bidir"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lengths", [None, [5, 2, 4]], ids=["full", "lengths"])
def test_rnnforw_on_strict_arrays(mode, L, bi, fused, lengths):
    rng = np.random.default_rng(3)
    N, T, F, H, D = 3, 5, 4, 3, 2 if bi else 1
    groups = random_weights(mode, F, H, L, bi, rng)
    flat = [p.value for group in groups for p in group]
    x, h0, c0 = (rng.standard_normal(s) for s in [(N, T, F), (L * D, N, H), (L * D, N, H)])
    lengths = None if lengths is None else np.array(lengths)

    def fn(x, h0, c0, lengths, *ws):
        weights = [ws[i : i + 4] for i in range(0, len(ws), 4)]
        c = c0 if mode == "lstm" else None
        return kp.rnnforw(weights, x, h0, c, mode, bidirectional=bi, lengths=lengths, fused=fused)

    diff = [0, 1, 2, *range(4, 4 + len(flat))] if mode == "lstm" else [0, 1, *range(4, 4 + len(flat))]
    assert_same_on_strict(fn, x, h0, c0, lengths, *flat, diff=diff)


@pytest.mark.parametrize("mode", MODES)
def test_cells_on_strict_arrays(mode):
    rng = np.random.default_rng(9)
    w = [p.value for p in random_weights(mode, 4, 2, rng=rng)[0]]
    x, h, c = rng.standard_normal((3, 4)), rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    if mode == "lstm":
        assert_same_on_strict(kp.lstm_cell, x, h, c, *w)
    elif mode == "gru":
        assert_same_on_strict(kp.gru_cell, x, h, *w)
    else:
        assert_same_on_strict(lambda *a: kp.rnn_cell(*a, activation=mode), x, h, *w)


@pytest.mark.parametrize(
    "options",
    [{}, {"causal": True}, {"scale": 0.5}, {"mask": "bool"}, {"mask": "float"}],
    ids=["plain", "causal", "scale", "bool_mask", "float_mask"],
)
def test_attention_on_strict_arrays(rng, options):
    q, k, v = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((2, 3, 6, 7))
    options = dict(options)
    args = [q, k, v]
    if options.get("mask") == "bool":
        mask = rng.random((4, 6)) > 0.3
        mask[:, 0] = True
        args.append(mask)
    elif options.get("mask") == "float":
        args.append(rng.standard_normal((2, 1, 4, 6)))
    options.pop("mask", None)
    diff = [0, 1, 2]
    fn = lambda q, k, v, mask=None: kp.scaled_dot_product_attention(q, k, v, mask=mask, **options)  # noqa: E731
    assert_same_on_strict(fn, *args, diff=diff)


def test_attention_weights_on_strict_arrays(rng):
    q, k, bias = rng.standard_normal((2, 4, 5)), rng.standard_normal((2, 6, 5)), rng.standard_normal((4, 6))
    assert_same_on_strict(lambda q, k, b: kp.attention_weights(q, k, b, scale=0.3), q, k, bias)


# -- activations, losses, metrics ---------------------------------------------------------------------------
ACTIVATION_INPUT = np.array([[-3.5, -1.2, -0.3, 0.4, 1.1, 4.0], [2.5, -2.0, 0.7, -0.6, 3.2, -5.0]])


@pytest.mark.parametrize("name", activations.names())
def test_activation_on_strict_arrays(name):
    assert_same_on_strict(activations.get(name), ACTIVATION_INPUT)
    assert_same_on_strict(activations.get(name), ACTIVATION_INPUT.astype(np.float32))


ACTIVATION_CLASSES = [
    c for c in vars(activations).values()
    if isinstance(c, type) and issubclass(c, activations.Activation) and c is not activations.Activation
]


@pytest.mark.parametrize("cls", ACTIVATION_CLASSES, ids=lambda c: c.__name__)
def test_activation_derivative_on_strict_arrays(cls):
    assert_same_on_strict(lambda x: cls().derivative(x), ACTIVATION_INPUT, diff=[])


_R = np.random.default_rng(5)
_SCORES = _R.standard_normal((4, 3))
_LABELS = np.array([0, 2, 1, 2])
_PROBS = kp.softmax(_R.standard_normal((4, 3)), axis=1)
_ONE_HOT = np.eye(3)[_LABELS]
_P01 = 1 / (1 + np.exp(-_R.standard_normal((4, 2))))
_T01 = (_R.random((4, 2)) > 0.5).astype(np.float64)
_SEQ = _R.standard_normal((2, 3, 5))  # (N, C, T): classes on axis 1
_SEQ_LABELS = np.array([[0, 1, 2, 2, 0], [1, 1, 0, 2, 2]])

LOSS_CASES = {  # name in losses.get: [(args, options), ...]
    "mse": [((_SCORES, _PROBS), {}), ((_SCORES, _PROBS), {"reduction": "none"})],
    "mae": [((_SCORES, _PROBS), {"reduction": "sum"})],
    "huber": [((_SCORES * 2, _PROBS), {"delta": 0.7})],
    "bce": [((_P01, _T01), {})],
    "bce_with_logits": [((_SCORES, _PROBS), {}), ((_SCORES, _PROBS), {"pos_weight": np.array([1.0, 2.0, 0.5])})],
    "cross_entropy": [
        ((_SCORES, _LABELS), {}),
        ((_SCORES, _LABELS), {"reduction": "none", "label_smoothing": 0.1}),
        ((_SCORES, _PROBS), {"label_smoothing": 0.2}),
        ((_SCORES, _LABELS), {"weight": np.array([1.0, 0.5, 2.0])}),
        ((_SCORES, _LABELS), {"ignore_index": 2, "label_smoothing": 0.1}),
        ((_SEQ, _SEQ_LABELS), {}),
    ],
    "nll": [((np.log(_PROBS), _LABELS), {})],
    "hinge": [((_SCORES, _LABELS), {}), ((_SCORES, _LABELS), {"squared": True, "reduction": "sum"})],
    "hellinger": [((_PROBS, _ONE_HOT * 0.9 + 0.1 / 3), {})],
    "kl_div": [((np.log(_PROBS), _ONE_HOT * 0.7 + 0.1), {}), ((np.log(_PROBS), np.log(_PROBS[::-1])), {"log_target": True})],
    "contrastive": [((_SCORES, _PROBS, np.array([1, 0, 0, 1])), {"margin": 2.0})],
    "sparse_categorical_crossentropy": [((_PROBS, _LABELS), {}), ((_SCORES, _LABELS), {"from_logits": True})],
    "categorical_crossentropy": [((_PROBS, _ONE_HOT), {"label_smoothing": 0.1})],
    "binary_crossentropy": [((_P01, _T01), {}), ((_SCORES, _PROBS), {"from_logits": True})],
    "kl_divergence": [((_PROBS, _ONE_HOT * 0.7 + 0.1), {})],
    "categorical_hinge": [((_SCORES, _ONE_HOT), {})],
}


def test_every_loss_has_a_strict_case():
    assert {losses.get(n) for n in losses.names()} <= {losses.get(n) for n in LOSS_CASES}


@pytest.mark.parametrize(
    "name, args, options",
    [(name, a, o) for name, cases in LOSS_CASES.items() for a, o in cases],
    ids=[f"{name}-{i}" for name, cases in LOSS_CASES.items() for i in range(len(cases))],
)
def test_loss_on_strict_arrays(name, args, options):
    fn = losses.get(name)
    assert_same_on_strict(lambda *a, **kw: fn(*a, **kw, **options), *args, diff=[0])
    # float32 as in training
    args32 = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in args]
    assert_same_on_strict(lambda *a, **kw: fn(*a, **kw, **options), *args32, diff=[0])


def test_kl_normal_on_strict_arrays():
    assert_same_on_strict(losses.kl_normal, _SCORES, _PROBS)


@pytest.mark.parametrize(
    "name, pred, target",
    [
        ("accuracy", _SCORES, _LABELS),
        ("accuracy", _SCORES, _ONE_HOT),
        ("accuracy", _SCORES[:, 0], _LABELS % 2),
        ("mse", _SCORES, _PROBS),
        ("mae", _SCORES[:, :1], _PROBS[:, 0]),
        ("top_k_accuracy", _SCORES, _LABELS),
        ("top5_accuracy", np.tile(_SCORES, 2), _LABELS),
    ],
)
def test_metric_on_strict_arrays(name, pred, target):
    """On a device a metric is a 0-d array of the device (a float only for NumPy data), so that a training
    loop can add it up without stopping the device."""
    fn = metrics.get(name)
    if name == "top_k_accuracy":
        fn = functools.partial(fn, k=2)
    want = fn(pred, target)
    assert isinstance(want, float)
    strict.reset_transfers()
    got = fn(strict.asarray(pred), strict.asarray(target))
    assert strict.transfers["to_host"] == 0, strict.transfer_log
    assert type(got) is strict.StrictArray and got.shape == ()
    assert float(got) == pytest.approx(want, rel=1e-12)


def test_host_metrics_copy_device_data_once_through_to_host():
    """confusion_matrix is a NumPy result: device data comes to the host through backend.to_host (a meant
    copy), never through an implicit conversion."""
    pred, target = strict.asarray(_SCORES), strict.asarray(_LABELS)
    np.testing.assert_array_equal(metrics.confusion_matrix(pred, target), metrics.confusion_matrix(_SCORES, _LABELS))
    np.testing.assert_array_equal(metrics.predicted_labels(pred), _SCORES.argmax(axis=1))


# -- the backend catches a trip through NumPy -------------------------------------------------------------------
@pytest.fixture
def relu_calling_numpy():
    """kp.relu with its forward changed to call np.maximum directly: the typical GPU bug."""
    cell = next(c for c in kp.relu.__closure__ if c.cell_contents is kp.relu.__wrapped__)
    original = cell.cell_contents
    cell.cell_contents = lambda x: np.maximum(x, 0)
    try:
        yield
    finally:
        cell.cell_contents = original


def test_an_op_changed_to_call_numpy_fails_on_strict_arrays_only(relu_calling_numpy):
    x = np.array([[-1.0, 2.0], [3.0, -4.0]])
    # On NumPy the changed op is still right: tests with NumPy arrays alone would not notice.
    p = kp.Param(x)
    kp.sum(kp.relu(p) * 3.0).backward()
    np.testing.assert_array_equal(kp.relu(x), [[0.0, 2.0], [3.0, 0.0]])
    np.testing.assert_array_equal(p.grad, [[0.0, 3.0], [3.0, 0.0]])
    # On strict arrays it fails, directly and through everything built on it.
    with pytest.raises(strict.ImplicitConversionError, match="np.maximum"):
        kp.relu(kp.Param(strict.asarray(x)))
    with pytest.raises(strict.ImplicitConversionError, match="np.maximum"):
        assert_same_on_strict(activations.get("relu"), x)
    with pytest.raises(strict.ImplicitConversionError, match="np.maximum"):
        losses.hinge(strict.asarray(x), strict.asarray(np.array([0, 1])))


def test_a_numpy_temporary_mixed_into_device_data_fails():
    """An op that adds a NumPy constant to its input (np.ones where xp.ones belongs) fails too."""
    bad = kp.autograd.primitive(lambda x: x + np.ones(x.shape), name="shift")
    bad.defvjp(lambda g, ans, x: g)
    x = np.arange(3.0)
    np.testing.assert_array_equal(bad(kp.Param(x)).value, x + 1)
    with pytest.raises(strict.ImplicitConversionError, match="NumPy array"):
        bad(kp.Param(strict.asarray(x)))


def test_host_index_arrays_move_to_the_device_of_the_data():
    """As CuPy does: a NumPy or list index of device data is copied to the device (forward and backward)."""
    for index in (np.array([2, 0, 2]), [2, 0, 2], (np.array([1, 0]), slice(None)), np.array([True, False, True])):
        want = kp.Param(np.arange(12.0).reshape(3, 4))
        got = kp.Param(strict.asarray(want.value))
        for t in (want, got):
            kp.sum(t[index] * 2.0).backward()
        assert type(got.grad) is strict.StrictArray
        np.testing.assert_array_equal(strict.asnumpy(got.grad), want.grad)
    taken = kp.take(kp.Param(strict.asarray(np.arange(6.0))), [5, 1])
    assert type(taken.value) is strict.StrictArray


def test_python_numbers_keep_device_data_and_its_dtype():
    x = kp.Param(strict.asarray(np.linspace(-1, 1, 4, dtype=np.float32)))
    for y in (x * 2.5, 1.0 - x, x / 3, x**2, 2.0**x, kp.maximum(x, 0.1), kp.where(x.value > 0, x, 0.0)):
        assert type(y.value) is strict.StrictArray and y.dtype == np.float32
