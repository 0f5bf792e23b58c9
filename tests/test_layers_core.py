"""Core layers: PyTorch parity (forward and gradients, float64), checks, configs, the worked example."""

import json

import numpy as np
import pytest

import knetpy as kp
from knetpy import layers

RTOL, ATOL = 1e-6, 1e-12


@pytest.fixture
def f64():
    kp.set_dtype("float64")
    yield
    kp.set_dtype("float32")


def _backward(out, cot):
    """Backpropagate sum(out * cot) through a knetpy result."""
    kp.sum(out * cot).backward()


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# -- Dense ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", [None, "relu", "tanh", "sigmoid", "gelu"])
@pytest.mark.parametrize("shape", [(5, 4), (3, 2, 4)])
def test_dense_matches_torch_linear(torch, f64, activation, shape):
    d = layers.Dense(3, activation=activation)
    x = kp.Param(_x(shape))
    y = d(x)
    lin = torch.nn.Linear(4, 3)
    with torch.no_grad():  # torch stores (out, in): the transpose of our (in, out)
        lin.weight.copy_(torch.tensor(d.w.value.T))
        lin.bias.copy_(torch.tensor(d.b.value))
    tx = torch.tensor(x.value, requires_grad=True)
    act = {None: lambda v: v, "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
           "gelu": torch.nn.functional.gelu}[activation]
    ty = act(lin(tx))
    np.testing.assert_allclose(y.value, ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    cot = _x(ty.shape, 1)
    _backward(y, cot)
    (ty * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(d.w.grad, lin.weight.grad.numpy().T, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(d.b.grad, lin.bias.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_dense_builds_lazily_or_up_front_and_orders_params():
    d = layers.Dense(10)
    assert d.params == {} and not d.built
    d(np.zeros((2, 7), dtype=np.float32))
    assert list(d.params) == ["w", "b"] and d.w.shape == (7, 10) and d.b.shape == (10,)
    assert d.count_params() == 7 * 10 + 10
    e = layers.Dense(4, n_in=3, bias=False)
    assert e.built and list(e.params) == ["w"] and e.count_params() == 12
    np.testing.assert_array_equal(d.b.value, 0.0)
    assert d.w.dtype == np.float32


def test_dense_input_checks_name_the_shapes():
    d = layers.Dense(10, n_in=784)
    with pytest.raises(ValueError, match=r"Dense expects inputs of shape \(N, 784\), got \(N, 100\)"):
        d(np.zeros((32, 100), dtype=np.float32))
    with pytest.raises(ValueError, match=r"Dense expects inputs of shape \(N, 784\), got \(784,\)"):
        d(np.zeros(784, dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, 5, 784\), got \(N, 5, 3\)"):
        d(np.zeros((2, 5, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="n_out must be a positive integer"):
        layers.Dense(0)
    with pytest.raises(ValueError, match="did you mean 'relu'"):
        layers.Dense(3, activation="rleu")
    with pytest.raises(ValueError, match="did you mean 'he_normal'"):
        layers.Dense(3, init="he_nromal")


def test_dense_keeps_float32_and_casts_other_inputs():
    d = layers.Dense(3, activation="relu")
    assert d(np.ones((2, 4))).dtype == np.float32  # a float64 array does not promote the layer
    assert d(np.ones((2, 4), dtype=np.uint8)).dtype == np.float32
    y = d(kp.tensor(np.ones((2, 4))))
    assert y.dtype == np.float32
    g = kp.grad(lambda x: kp.sum(d(x)))(np.ones((2, 4)))
    assert g.dtype == np.float64  # the gradient comes back in the input's own dtype


def test_dense_forward_is_one_op_plus_the_activation():
    d = layers.Dense(3, activation="relu")
    y = d(np.ones((2, 4), dtype=np.float32))
    assert y._prim.name == "relu" and y._args[0]._prim.name == "affine"


# -- the worked example: one SGD step of a 2-2-2 sigmoid network ----------------------------------------------
def test_two_two_two_network_worked_example(f64):
    # w1..w4 connect (i1, i2) to (h1, h2), w5..w8 (h1, h2) to (o1, o2); Dense computes x @ w with w
    # of shape (n_in, n_out), so w[i, j] connects input i to unit j: w_hidden = [[w1, w3], [w2, w4]].
    hidden = layers.Dense(2, n_in=2, activation="sigmoid")
    output = layers.Dense(2, n_in=2, activation="sigmoid")
    hidden.w.value = np.array([[0.15, 0.25], [0.20, 0.30]])
    output.w.value = np.array([[0.40, 0.50], [0.45, 0.55]])
    hidden.b.value = np.array([0.35, 0.35])
    output.b.value = np.array([0.60, 0.60])
    x = np.array([[0.05, 0.10]])
    target = np.array([[0.01, 0.99]])

    out = output(hidden(x))
    error = 0.5 * kp.sum((target - out) ** 2)
    assert error.item() == pytest.approx(0.298371109, abs=1e-9)
    error.backward()
    for layer in (hidden, output):  # the biases stay frozen
        layer.w.value -= 0.5 * layer.w.grad
    assert output.w.value[0, 0] == pytest.approx(0.35891648, abs=1e-8)  # w5
    assert hidden.w.value[0, 0] == pytest.approx(0.149780716, abs=1e-9)  # w1
    # the other updated weights of the same example
    np.testing.assert_allclose(output.w.value, [[0.35891648, 0.51130127], [0.408666186, 0.561370121]], atol=1e-8)
    np.testing.assert_allclose(hidden.w.value, [[0.149780716, 0.24975114], [0.19956143, 0.29950229]], atol=1e-8)
    np.testing.assert_array_equal(hidden.b.value, 0.35)


# -- Dropout ----------------------------------------------------------------------------------------------
def test_dropout_statistics_and_scaling():
    drop = layers.Dropout(0.3)
    x = np.ones((200, 500), dtype=np.float32)
    y = drop(x)
    assert y.dtype == np.float32
    kept = y != 0
    # 100000 Bernoulli(0.7) draws: the kept fraction is within 5 standard errors of 0.7
    assert abs(kept.mean() - 0.7) < 5 * np.sqrt(0.7 * 0.3 / kept.size)
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)  # inverted dropout: the mean is kept
    assert abs(y.mean() - 1.0) < 0.01


def test_dropout_is_the_identity_in_eval_mode_and_for_p_zero():
    x = _x((4, 5))
    drop = layers.Dropout(0.5).eval()
    assert drop(x) is x
    t = kp.Param(x)
    assert drop(t) is t
    assert layers.Dropout(0.0)(x) is x
    np.testing.assert_array_equal(layers.Dropout(1.0)(x), 0.0)


def test_dropout_applies_the_same_mask_in_backward():
    x = kp.Param(_x((50, 40)))
    y = layers.Dropout(0.4)(x)
    cot = _x((50, 40), 2)
    _backward(y, cot)
    mask = y.value / x.value
    np.testing.assert_allclose(x.grad, cot * mask)
    assert set(np.round(np.unique(mask), 6)) == {0.0, round(1 / 0.6, 6)}


def test_dropout_masks_come_from_the_knetpy_seed():
    kp.set_seed(5)
    a = layers.Dropout(0.5)(np.ones((10, 10)))
    kp.set_seed(5)
    np.testing.assert_array_equal(a, layers.Dropout(0.5)(np.ones((10, 10))))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        layers.Dropout(1.5)


# -- shape layers ------------------------------------------------------------------------------------------
def test_flatten_and_reshape():
    x = kp.Param(_x((2, 3, 4)))
    y = layers.Flatten()(x)
    assert y.shape == (2, 12)
    z = layers.Reshape((4, -1))(y)
    assert z.shape == (2, 4, 3)
    np.testing.assert_array_equal(z.value, x.value.reshape(2, 4, 3))
    kp.sum(z * 2.0).backward()
    np.testing.assert_array_equal(x.grad, 2.0)
    assert layers.Reshape((4, -1)).compute_output_shape((None, 12)) == (None, 4, 3)
    assert layers.Flatten().compute_output_shape((None, 3, 4, 5)) == (None, 60)
    with pytest.raises(ValueError, match=r"a sample has 12 elements, the target shape holds 5"):
        layers.Reshape((5,))(y)
    with pytest.raises(ValueError, match="at most one -1"):
        layers.Reshape((-1, -1))


# -- Activation, PReLU, Maxout, Lambda ---------------------------------------------------------------------
def test_activation_layer():
    x = _x((3, 4))
    np.testing.assert_allclose(layers.Activation("tanh")(x), np.tanh(x))
    lrelu = layers.Activation({"name": "leaky_relu", "alpha": 0.2})
    np.testing.assert_allclose(lrelu(x), np.where(x > 0, x, 0.2 * x))
    assert lrelu.get_config()["activation"] == {"name": "leaky_relu", "alpha": 0.2}
    with pytest.raises(ValueError, match="did you mean 'softmax'"):
        layers.Activation("sofmax")


@pytest.mark.parametrize("num, shape", [(1, (4, 6)), (3, (4, 3)), (3, (2, 3, 5, 4))])
def test_prelu_matches_torch(torch, f64, num, shape):
    layer = layers.PReLU(num, init=0.1)
    layer.alpha.value = np.linspace(0.1, 0.4, num)
    x = kp.Param(_x(shape))
    y = layer(x)
    ref = torch.nn.PReLU(num)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(layer.alpha.value))
    tx = torch.tensor(x.value, requires_grad=True)
    ty = ref(tx)
    np.testing.assert_allclose(y.value, ty.detach().numpy(), rtol=RTOL)
    cot = _x(shape, 4)
    _backward(y, cot)
    (ty * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(layer.alpha.grad, ref.weight.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_prelu_checks_channels():
    with pytest.raises(ValueError, match="expects 3 channels on axis 1"):
        layers.PReLU(3)(np.zeros((2, 4)))


def test_maxout_matches_a_torch_reference(torch, f64):
    layer = layers.Maxout(3, pieces=4)
    x = kp.Param(_x((5, 6)))
    y = layer(x)
    assert y.shape == (5, 3) and layer.w.shape == (6, 12)
    tx = torch.tensor(x.value, requires_grad=True)
    tw = torch.tensor(layer.w.value, requires_grad=True)
    tb = torch.tensor(layer.b.value + np.linspace(-1, 1, 12), requires_grad=True)
    layer.b.value = tb.detach().numpy().copy()
    y = layer(x)
    ty = (tx @ tw + tb).reshape(5, 3, 4).amax(-1)
    np.testing.assert_allclose(y.value, ty.detach().numpy(), rtol=RTOL)
    cot = _x((5, 3), 6)
    _backward(y, cot)
    (ty * torch.tensor(cot)).sum().backward()
    for mine, theirs in ((x.grad, tx.grad), (layer.w.grad, tw.grad), (layer.b.grad, tb.grad)):
        np.testing.assert_allclose(mine, theirs.numpy(), rtol=RTOL, atol=ATOL)


def test_lambda_layer():
    square = layers.Lambda(lambda x: x * x)
    x = kp.Param(_x((2, 3)))
    kp.sum(square(x)).backward()
    np.testing.assert_allclose(x.grad, 2 * x.value)
    assert square.compute_output_shape((None, 3)) == (None, 3)
    assert layers.Lambda(kp.mat).compute_output_shape((None, 2, 5)) == (None, 10)
    named = layers.Lambda("relu")
    assert named.get_config() == {"fn": "relu", "name": None}
    assert layers.Lambda("flatten").get_config()["fn"] == "flatten"
    with pytest.raises(ValueError, match="cannot be saved in a config"):
        square.get_config()
    with pytest.raises(TypeError, match="expects a function"):
        layers.Lambda(3)


# -- Embedding ---------------------------------------------------------------------------------------------
def test_embedding_matches_torch_with_repeated_indices(torch, f64):
    emb = layers.Embedding(7, 4)
    idx = np.array([[1, 3, 1], [6, 1, 0]])
    y = emb(idx)
    assert y.shape == (2, 3, 4)
    tw = torch.tensor(emb.w.value, requires_grad=True)
    ty = torch.nn.functional.embedding(torch.tensor(idx), tw)
    np.testing.assert_array_equal(y.value, ty.detach().numpy())
    cot = _x((2, 3, 4), 8)
    _backward(y, cot)
    (ty * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(emb.w.grad, tw.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(emb.w.grad[1], cot[0, 0] + cot[0, 2] + cot[1, 1])  # three uses of row 1
    np.testing.assert_array_equal(emb.w.grad[[2, 4, 5]], 0.0)


def test_embedding_gradient_does_not_use_add_at(monkeypatch):
    """The backward of the lookup takes the row-gather path of scatter_add, not np.add.at."""
    import types

    from knetpy.ops import index

    def forbidden(*a, **k):
        raise AssertionError("np.add.at used in the embedding backward")

    class NumpyWithoutAddAt:
        add = types.SimpleNamespace(at=forbidden, reduceat=np.add.reduceat)

        def __getattr__(self, name):
            return getattr(np, name)

    proxy = NumpyWithoutAddAt()
    monkeypatch.setattr(index, "np", proxy)
    monkeypatch.setattr(index, "array_namespace", lambda *a: proxy)
    emb = layers.Embedding(1000, 8)
    idx = np.random.default_rng(0).integers(0, 1000, (64, 20))
    kp.sum(emb(idx)).backward()
    counts = np.bincount(idx.ravel(), minlength=1000)
    np.testing.assert_allclose(emb.w.grad, np.repeat(counts[:, None], 8, axis=1))


def test_embedding_checks_indices():
    emb = layers.Embedding(5, 2)
    with pytest.raises(TypeError, match="integer indices"):
        emb(np.array([0.0, 1.0]))
    with pytest.raises(IndexError, match="index 5 is out of range for a vocabulary of 5"):
        emb(np.array([0, 5]))
    with pytest.raises(IndexError, match="index -1"):
        emb(np.array([-1, 2]))
    assert emb(np.array(3)).shape == (2,)
    assert emb.compute_output_shape((None, 7)) == (None, 7, 2)


# -- common behaviour: config, repr, output shapes, saving --------------------------------------------------------
LAYERS = [
    (lambda: layers.Dense(3, activation={"name": "leaky_relu", "alpha": 0.2}, init="he_normal"), (4, 5)),
    (lambda: layers.Dense(3, bias=False), (2, 6, 5)),
    (lambda: layers.Dropout(0.25), (4, 5)),
    (lambda: layers.Flatten(), (4, 2, 3)),
    (lambda: layers.Reshape((3, 2)), (4, 6)),
    (lambda: layers.Activation("gelu"), (4, 5)),
    (lambda: layers.PReLU(2), (4, 2, 3)),
    (lambda: layers.Maxout(3, 2), (4, 5)),
    (lambda: layers.Lambda("softsign"), (4, 5)),
    (lambda: layers.Embedding(10, 3, init={"name": "uniform", "low": -0.1, "high": 0.1}), (4, 5)),
    (lambda: layers.BatchNorm(momentum=None), (4, 3, 2)),
    (lambda: layers.LayerNorm((2, 3), eps=1e-3), (4, 2, 3)),
    (lambda: layers.LayerNorm(axis=1, affine=False), (4, 3, 2)),
]


def _input_for(layer, shape):
    if isinstance(layer, layers.Embedding):
        return np.arange(np.prod(shape)).reshape(shape) % 10
    return _x(shape).astype(np.float32)


@pytest.mark.parametrize("i", range(len(LAYERS)))
def test_config_rebuilds_an_equivalent_layer(i):
    make, shape = LAYERS[i]
    layer = make()
    x = _input_for(layer, shape)
    layer.eval()
    y = layer(x)
    config = json.loads(json.dumps(layer.get_config()))  # JSON-serialisable
    twin = type(layer)(**config).eval()
    twin(x)
    for name, p in layer.params.items():
        twin.params[name].value = p.value.copy()
    np.testing.assert_allclose(np.asarray(twin(x)), np.asarray(y), rtol=1e-6)
    assert twin.get_config() == config
    assert repr(layer).startswith(type(layer).__name__ + "(")


@pytest.mark.parametrize("i", range(len(LAYERS)))
def test_compute_output_shape_agrees_with_the_output(i):
    make, shape = LAYERS[i]
    layer = make()
    y = layer(_input_for(layer, shape))
    assert layer.compute_output_shape((None, *shape[1:])) == (None, *y.shape[1:])


def test_train_eval_switch_reaches_every_layer():
    d = layers.Dropout(0.5)
    assert d.training
    assert d.eval() is d and not d.training
    assert d.train().training


def test_save_and_load_keep_parameters_and_running_statistics(tmp_path):
    bn = layers.BatchNorm()
    d = layers.Dense(3, activation="relu")
    x = _x((8, 4)).astype(np.float32)
    for _ in range(3):
        bn(x * 2 + 1)
    d(x)
    for layer in (bn, d):
        kp.save(tmp_path / "layer.kp", layer)
        back = kp.load(tmp_path / "layer.kp")
        assert type(back) is type(layer) and back.get_config() == layer.get_config()
        for name, p in layer.params.items():
            np.testing.assert_array_equal(back.params[name].value, p.value)
        for name, t in layer.state().items():
            np.testing.assert_array_equal(back.state()[name].value, t.value)
        layer.eval()
        back.eval()
        np.testing.assert_array_equal(np.asarray(back(x)), np.asarray(layer(x)))
