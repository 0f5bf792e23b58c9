"""Layers and optimizers on the strict test backend: the same results as on NumPy, and no trip through NumPy.

Each layer is built twice from the same seed, once on NumPy inputs and once on strict ("device") inputs
(its parameters then move to the strict backend), and run forward and backward; outputs and gradients
must match. The layer tables of the other layer tests are reused, so a layer added there is checked here.
"""

import numpy as np
import pytest
import test_conv_layers
import test_layers_core
import test_rnn_layers
from test_layers_normalization import test_batchnorm_train_then_eval_matches_torch as _bn_test
from test_layers_normalization import test_layernorm_matches_torch as _ln_test

import knetpy as kp
from knetpy import layers as L
from knetpy.testing import strict


def _marked(test, argnames):
    """The argument values of ``test``'s parametrize mark for ``argnames``: the other test files' tables."""
    for mark in test.pytestmark:
        if mark.name == "parametrize" and mark.args[0].replace(" ", "") == argnames:
            return list(mark.args[1])
    raise LookupError(f"{test.__name__} has no parametrize table for {argnames!r}")


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


CASES = []  # (id, make, inputs, call keyword arguments)
for i, (make, shape) in enumerate(test_layers_core.LAYERS):
    CASES.append((f"core{i}", make, None, shape))
for kwargs, _ in _marked(test_conv_layers.test_conv2d_matches_torch, "kwargs,torch_kwargs"):
    kw = dict(kwargs)
    kernel = kw.pop("kernel_size", 3)
    CASES.append((f"conv2d-{kw}", lambda kernel=kernel, kw=kw: L.Conv2D(6, kernel, **kw), None, (2, 4, 7, 8)))
for kwargs, _ in _marked(test_conv_layers.test_conv2d_transpose_matches_torch, "kwargs,torch_kwargs"):
    CASES.append((f"deconv2d-{kwargs}", lambda kw=kwargs: L.Conv2DTranspose(4, 3, **kw), None, (2, 4, 5, 4)))
for cls, kwargs in _marked(test_rnn_layers.test_layer_matches_torch, "cls,kwargs"):
    CASES.append((f"{cls.__name__}-{kwargs}",
                  lambda cls=cls, kw=kwargs: cls(3, return_sequences=True, return_state=True, **kw), None, (2, 4, 5)))
for shape, _ in _marked(_bn_test, "shape,torch_cls"):
    CASES.append((f"batchnorm-{shape}", lambda: L.BatchNorm(momentum=0.2, eps=1e-3), None, shape))
for normalized, shape in _marked(_ln_test, "normalized_shape,shape"):
    CASES.append((f"layernorm-{normalized}", lambda n=normalized: L.LayerNorm(n, eps=1e-4), None, shape))
# the classes those tables leave out
CASES += [
    ("lstm-unfused", lambda: L.LSTM(3, fused=False, return_sequences=True), None, (2, 4, 5)),
    ("lstm-dropout", lambda: L.LSTM(3, num_layers=2, dropout=0.5), None, (2, 4, 5)),
    ("rnncell", lambda: L.RNNCell(4, activation="relu"), None, (3, 5)),
    ("lstmcell", lambda: L.LSTMCell(4), None, (3, 5)),
    ("grucell", lambda: L.GRUCell(4), None, (3, 5)),
    ("conv1d", lambda: L.Conv1D(3, 2, padding="same", activation="relu"), None, (2, 4, 6)),
    ("conv3d", lambda: L.Conv3D(2, 2, strides=(1, 2, 1)), None, (2, 3, 3, 4, 3)),
    ("maxpool1d", lambda: L.MaxPool1D(3), None, (2, 3, 7)),
    ("maxpool2d", lambda: L.MaxPool2D(3, strides=2, padding=1), None, (2, 3, 6, 5)),
    ("maxpool3d", lambda: L.MaxPool3D((1, 2, 3)), None, (2, 3, 4, 4, 6)),
    ("avgpool1d", lambda: L.AvgPool1D(2), None, (2, 3, 6)),
    ("avgpool2d", lambda: L.AvgPool2D(3, 1, 1, count_include_pad=False), None, (2, 3, 5, 4)),
    ("avgpool3d", lambda: L.AvgPool3D(2), None, (2, 3, 4, 4, 4)),
    ("lppool1d", lambda: L.LPPool1D(2, 3), None, (2, 3, 6)),
    ("lppool2d", lambda: L.LPPool2D(2, (2, 3)), None, (2, 3, 4, 6)),
    ("globalavg1d", lambda: L.GlobalAvgPool1D(), None, (2, 3, 5)),
    ("globalavg2d", lambda: L.GlobalAvgPool2D(), None, (2, 3, 5, 4)),
    ("globalavg3d", lambda: L.GlobalAvgPool3D(), None, (2, 3, 2, 3, 2)),
    ("globalmax1d", lambda: L.GlobalMaxPool1D(), None, (2, 3, 5)),
    ("globalmax2d", lambda: L.GlobalMaxPool2D(keepdims=True), None, (2, 3, 5, 4)),
    ("globalmax3d", lambda: L.GlobalMaxPool3D(), None, (2, 3, 2, 3, 2)),
    ("upsampling", lambda: L.UpSampling2D(2), None, (2, 3, 3, 4)),
    ("upsampling-bilinear", lambda: L.UpSampling2D(2, interpolation="bilinear"), None, (2, 3, 3, 4)),
    ("zeropadding", lambda: L.ZeroPadding2D((1, 2)), None, (2, 3, 3, 4)),
    ("dropout2d", lambda: L.Dropout2D(0.5), None, (2, 3, 3, 4)),
    ("alphadropout", lambda: L.AlphaDropout(0.2), None, (4, 5)),
    ("input", lambda: L.Input((5,)), None, (4, 5)),
    ("posencoding", lambda: L.PositionalEncoding(), None, (2, 5, 6)),
    ("posembedding", lambda: L.PositionalEmbedding(10, 6), None, (2, 5, 6)),
    ("mha", lambda: L.MultiHeadAttention(8, 2), None, (3, 4, 8)),
    ("mha-masks", lambda: L.MultiHeadAttention(8, 2), "masks", (3, 4, 8)),
    ("encoder", lambda: L.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0), None, (3, 5, 8)),
    ("encoder-normfirst-masks", lambda: L.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.1,
                                                                    activation="gelu", norm_first=True),
     "src_masks", (3, 5, 8)),
]


def _masks(kind, shape, device):
    n, length = shape[0], shape[1]
    move = strict.asarray if device else (lambda a: a)
    pad = np.zeros((n, length), bool)
    pad[1, 3:] = True
    causal = np.triu(np.ones((length, length), bool), 1)
    if kind == "masks":
        return {"key_padding_mask": move(pad), "attn_mask": move(causal)}
    if kind == "src_masks":
        return {"src_mask": move(causal), "src_key_padding_mask": move(pad)}
    return {}


def _leaves(out):
    if isinstance(out, (tuple, list)):
        return [leaf for o in out for leaf in _leaves(o)]
    return [out]


def _host(a):
    a = a.value if isinstance(a, kp.Tensor) else a
    assert isinstance(a, (strict.StrictArray, np.ndarray)), type(a)
    return a.get() if isinstance(a, strict.StrictArray) else a


def _run(make, kind, shape, device, training):
    """Build (seed 0) and run the layer forward and backward; outputs, input gradient and parameter gradients."""
    kp.set_seed(0)
    layer = make()
    layer.train(training)
    integer = isinstance(layer, L.Embedding)
    x = test_layers_core._input_for(layer, shape) if integer else _x(shape)
    if device:
        x = strict.asarray(x)
    xin = x if integer else kp.Param(x)
    out = layer(xin, **_masks(kind, shape, device))
    outs = [o for o in _leaves(out) if isinstance(o, kp.Tensor) and o.requires_grad]
    total = sum(kp.sum(o * (k + 1.0)) for k, o in enumerate(outs)) if outs else None
    if total is not None:
        total.backward()
    grads = {name: p.grad for name, p in layer.params.items()}
    return layer, _leaves(out), (None if integer else xin.grad), grads


def _same(mine, ref, what):
    if ref is None:
        assert mine is None, what
        return
    mine_v = mine.value if isinstance(mine, kp.Tensor) else mine
    assert isinstance(mine_v, strict.StrictArray), f"{what}: {type(mine_v).__name__}, not a strict array"
    np.testing.assert_allclose(_host(mine), _host(ref), rtol=2e-5, atol=2e-6, err_msg=what)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_layer_on_strict_matches_numpy(case, training):
    name, make, kind, shape = case
    prev = kp.ops.fast.set_fast(False)  # the NumPy reference (the compiled kernels have tests of their own)
    try:
        ref_layer, ref_out, ref_dx, ref_grads = _run(make, kind, shape, False, training)
    finally:
        kp.ops.fast.set_fast(prev)
    strict.reset_transfers()
    layer, out, dx, grads = _run(make, kind, shape, True, training)
    assert strict.transfers["to_host"] == 0, f"{name}: forward and backward copied to the host: {strict.transfer_log}"
    for p_name, p in layer.params.items():
        assert isinstance(p.value, strict.StrictArray), f"{name}: parameter {p_name} is not on the device"
    for s_name, t in layer.state().items():
        assert isinstance(t.value, strict.StrictArray), f"{name}: state {s_name} is not on the device"
    assert len(out) == len(ref_out)
    if training and _draws(layer):  # the device draws its own dropout masks: same shapes, strict arrays
        for o, r in zip(out, ref_out):
            assert isinstance(_raw(o), strict.StrictArray) and o.shape == r.shape
        return
    for k, (o, r) in enumerate(zip(out, ref_out)):
        _same(o, r, f"{name}: output {k}")
    _same(dx, ref_dx, f"{name}: input gradient")
    for p_name, g in ref_grads.items():
        _same(grads[p_name], g, f"{name}: gradient of {p_name}")
    for s_name, t in ref_layer.state().items():  # e.g. running statistics after a training step
        _same(layer.state()[s_name], t, f"{name}: state {s_name}")


def _raw(o):
    return o.value if isinstance(o, kp.Tensor) else o


def _draws(layer):
    """True when ``layer`` (or a layer inside it) drops units at random in training."""
    stack = [layer]
    while stack:
        current = stack.pop()
        p = current.p if isinstance(current, L.Dropout) else getattr(current, "dropout", 0)
        if isinstance(p, (int, float)) and p > 0:
            return True
        stack.extend(current.layers())
    return False


def test_dropout_on_strict_draws_on_the_device_and_set_seed_repeats_it():
    x = strict.asarray(np.ones((50, 40), np.float32))
    strict.reset_transfers()
    kp.set_seed(3)
    a = L.Dropout(0.25)(x)
    kp.set_seed(3)
    b = L.Dropout(0.25)(x)
    assert strict.transfers["to_device"] == 0, "the mask was drawn on the host and copied over"
    assert isinstance(a, strict.StrictArray)
    a, b = a.get(), b.get()
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, np.float32(1 / 0.75)}
    assert 0.6 < (a > 0).mean() < 0.9


def test_numpy_dropout_draws_are_unchanged_by_the_device_generator():
    kp.set_seed(5)
    before = L.Dropout(0.5)(np.ones((4, 6), np.float32))
    kp.set_seed(5)
    L.Dropout(0.5)(strict.asarray(np.ones((2, 2), np.float32)))  # seeds the device generator first
    kp.set_seed(5)
    np.testing.assert_array_equal(L.Dropout(0.5)(np.ones((4, 6), np.float32)), before)


# -- optimizers ----------------------------------------------------------------------------------------
def _optimizers():
    names = sorted(kp.optim.OPTIMIZERS)
    assert {"sgd", "adam", "rmsprop", "adagrad"} <= set(names)
    return names


@pytest.mark.parametrize("name", _optimizers())
@pytest.mark.parametrize("options", [{}, {"weight_decay": 0.01, "clip_norm": 0.5}], ids=["plain", "decay-clip"])
def test_optimizer_steps_strict_parameters_like_numpy(name, options):
    def train(device):
        g = np.random.default_rng(1)
        values = [g.standard_normal(s).astype(np.float32) for s in [(3, 4), (4,), (2, 3, 2)]]
        params = [kp.Param(strict.asarray(v) if device else v) for v in values]
        try:
            opt = kp.optim.OPTIMIZERS[name](params, lr=0.05, **options)
        except TypeError as e:
            pytest.skip(f"{name} takes no {options}: {e}")
        for step in range(4):
            def closure(step=step):
                opt.zero_grad()
                loss = sum(kp.sum(kp.tanh(p) * (k + 1.0) + p * p * 0.1 * step) for k, p in enumerate(params))
                loss.backward()
                return loss

            if name == "lbfgs":  # L-BFGS evaluates the loss itself
                opt.step(closure)
            else:
                closure()
                opt.step()
        return params, opt

    ref, _ = train(False)
    strict.reset_transfers()
    params, opt = train(True)
    if name != "lbfgs":  # L-BFGS's line search and stopping tests read numbers on the host by design
        assert strict.transfers["to_host"] == 0, f"{name} copied to the host: {strict.transfer_log}"
    for k, (p, r) in enumerate(zip(params, ref)):
        _same(p, r, f"{name}: parameter {k} after 4 steps")
    arrays = list(_arrays(opt.state))
    assert arrays or name == "sgd", f"{name} keeps no state arrays"
    for key, arr in arrays:
        assert isinstance(arr, strict.StrictArray), f"{name}: optimizer state {key} is a {type(arr).__name__}"


def _arrays(tree, prefix=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _arrays(v, f"{prefix}{k}/")
    elif isinstance(tree, (list, tuple)):
        for k, v in enumerate(tree):
            yield from _arrays(v, f"{prefix}{k}/")
    elif hasattr(tree, "shape"):
        yield prefix.rstrip("/"), tree


def test_gradient_noise_is_drawn_on_the_device_and_repeats_with_the_seed():
    def noisy_step():
        kp.set_seed(7)
        p = kp.Param(strict.asarray(np.ones((3, 4), np.float32)))
        opt = kp.optim.SGD([p], lr=0.1, grad_noise=0.5)
        kp.sum(p * p).backward()
        opt.step()
        return p.value

    strict.reset_transfers()
    a = noisy_step()
    assert strict.transfers["to_device"] == 1 and strict.transfers["to_host"] == 0, strict.transfers
    a, b = a.get(), noisy_step().get()
    np.testing.assert_array_equal(a, b)
    assert np.std(a) > 0.01  # the noise is there: the plain step would leave every entry at 0.8
