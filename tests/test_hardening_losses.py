"""Keras's and NumpyDL's loss names, probability-input losses, the softmax-twice warning, fine-tuning a
subset of the parameters, frozen layers, and NumpyDL's optimizer and activation class names."""

import warnings

import numpy as np
import pytest

import knetpy as kp
from knetpy import activations as A
from knetpy import losses as L

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _probs(n=6, c=4, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return logits, p, rng.integers(0, c, n)


def _blobs(n=300, seed=0):
    """Three well separated clusters: a small network classifies them perfectly."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    x = (centres[y] + rng.standard_normal((n, 2))).astype(np.float32)
    return x, y


# -- names --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, fn",
    [
        ("sparse_categorical_crossentropy", L.sparse_categorical_crossentropy),
        ("categorical_crossentropy", L.categorical_crossentropy),
        ("categorical_cross_entropy", L.categorical_crossentropy),
        ("binary_crossentropy", L.binary_crossentropy),
        ("mean_squared_error", L.mse),
        ("mse", L.mse),
        ("mean_absolute_error", L.mae),
        ("mae", L.mae),
        ("huber", L.huber),
        ("kl_divergence", L.kl_divergence),
        ("kld", L.kl_divergence),
        ("categorical_hinge", L.categorical_hinge),
        ("Sparse-Categorical-Crossentropy", L.sparse_categorical_crossentropy),
    ],
)
def test_keras_names_resolve(name, fn):
    assert L.get(name) is fn
    assert L.get(L.serialize(fn)) is fn


def test_keras_names_take_probabilities_and_logits_names_do_not():
    assert L.takes_logits(L.get("cross_entropy")) and L.takes_logits(L.get("bce_with_logits"))
    assert L.takes_logits(kp.nll) and L.takes_logits(L.nll)
    assert not L.takes_logits(L.get("bce"))
    for name in ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy"):
        assert not L.takes_logits(L.get(name))
        assert L.takes_logits(L.get(name, from_logits=True))
    assert L.takes_logits(L.SparseCategoricalCrossentropy(from_logits=True))
    assert not L.takes_logits(L.SparseCategoricalCrossentropy())


# -- probability-input losses against torch --------------------------------------------------------------------
def test_sparse_categorical_crossentropy_on_probabilities():
    logits, p, y = _probs()
    got = L.sparse_categorical_crossentropy(p, y)
    want = F.nll_loss(torch.log(torch.tensor(p)), torch.tensor(y))
    np.testing.assert_allclose(float(got), float(want), rtol=1e-12)
    np.testing.assert_allclose(
        L.sparse_categorical_crossentropy(p, y, reduction="none"),
        F.nll_loss(torch.log(torch.tensor(p)), torch.tensor(y), reduction="none").numpy(),
        rtol=1e-12,
    )
    # through a softmax: the same gradient as the logits loss
    w = kp.Param(logits.copy())
    L.sparse_categorical_crossentropy(kp.softmax(w, axis=1), y).backward()
    t = torch.tensor(logits, requires_grad=True)
    F.cross_entropy(t, torch.tensor(y)).backward()
    np.testing.assert_allclose(w.grad, t.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert kp.gradcheck(lambda q: L.sparse_categorical_crossentropy(q, y), p)
    # from_logits=True is cross_entropy
    assert float(L.sparse_categorical_crossentropy(logits, y, from_logits=True)) == float(L.cross_entropy(logits, y))


def test_categorical_crossentropy_on_probabilities():
    logits, p, y = _probs(seed=1)
    soft = np.random.default_rng(2).dirichlet(np.ones(4), size=6)
    for target in (np.eye(4)[y], soft):
        got = L.categorical_crossentropy(p, target)
        want = -(torch.tensor(target) * torch.log(torch.tensor(p))).sum(1).mean()
        np.testing.assert_allclose(float(got), float(want), rtol=1e-12)
        w = kp.Param(logits.copy())
        L.categorical_crossentropy(kp.softmax(w, axis=1), target).backward()
        t = torch.tensor(logits, requires_grad=True)
        F.cross_entropy(t, torch.tensor(target)).backward()
        np.testing.assert_allclose(w.grad, t.grad.numpy(), rtol=1e-10, atol=1e-12)
        assert kp.gradcheck(lambda q, tt=target: L.categorical_crossentropy(q, tt), p)
        np.testing.assert_allclose(
            float(L.categorical_crossentropy(logits, target, from_logits=True, label_smoothing=0.1)),
            float(F.cross_entropy(torch.tensor(logits), torch.tensor(target), label_smoothing=0.1)),
            rtol=1e-12,
        )
    smoothed = np.eye(4)[y] * 0.9 + 0.1 / 4
    np.testing.assert_allclose(
        float(L.categorical_crossentropy(p, np.eye(4)[y], label_smoothing=0.1)),
        float(-(torch.tensor(smoothed) * torch.log(torch.tensor(p))).sum(1).mean()),
        rtol=1e-12,
    )


def test_binary_crossentropy_on_probabilities():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((8, 3))
    p = 1 / (1 + np.exp(-z))
    t = rng.integers(0, 2, (8, 3)).astype(np.float64)
    got = L.binary_crossentropy(p, t)
    np.testing.assert_allclose(float(got), float(F.binary_cross_entropy(torch.tensor(p), torch.tensor(t))), rtol=1e-12)
    w = kp.Param(z.copy())
    L.binary_crossentropy(kp.sigmoid(w), t).backward()
    tz = torch.tensor(z, requires_grad=True)
    F.binary_cross_entropy_with_logits(tz, torch.tensor(t)).backward()
    np.testing.assert_allclose(w.grad, tz.grad.numpy(), rtol=1e-9, atol=1e-12)
    assert kp.gradcheck(lambda q: L.binary_crossentropy(q, t), p)
    assert float(L.binary_crossentropy(z, t, from_logits=True)) == pytest.approx(float(L.bce_with_logits(z, t)))
    ls = L.binary_crossentropy(p, t, label_smoothing=0.2)
    np.testing.assert_allclose(
        float(ls), float(F.binary_cross_entropy(torch.tensor(p), torch.tensor(t * 0.8 + 0.1))), rtol=1e-12
    )


def test_probabilities_of_exactly_0_and_1_are_clipped():
    p = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([1, 1])
    got = L.sparse_categorical_crossentropy(p, y, reduction="none")
    np.testing.assert_allclose(got, [-np.log(1e-7), -np.log(1 - 1e-7)], rtol=1e-9)
    assert np.isfinite(float(L.categorical_crossentropy(p, np.eye(2)[y])))
    assert np.isfinite(float(L.binary_crossentropy(p, 1 - p)))
    # gradients are finite (zero where the clip is active, as in Keras)
    w = kp.Param(p.copy())
    L.binary_crossentropy(w, 1 - p).backward()
    assert np.isfinite(w.grad).all()
    for x in (np.float32, np.float16):
        assert np.isfinite(float(L.binary_crossentropy(p.astype(x), (1 - p).astype(x))))


def test_kl_divergence_and_categorical_hinge():
    _, p, _ = _probs(seed=4)
    _, q, _ = _probs(seed=5)
    want = F.kl_div(torch.log(torch.tensor(p)), torch.tensor(q), reduction="batchmean")
    np.testing.assert_allclose(float(L.kl_divergence(p, q)), float(want), rtol=1e-10)
    assert kp.gradcheck(lambda a: L.kl_divergence(a, q), p)
    s = np.random.default_rng(6).standard_normal((5, 4))
    y = np.array([0, 1, 2, 3, 1])
    onehot = np.eye(4)[y]
    pos = (s * onehot).sum(1)
    neg = np.where(onehot == 1, -np.inf, s).max(1)
    np.testing.assert_allclose(float(L.categorical_hinge(s, onehot)), np.maximum(0, neg - pos + 1).mean())


def test_probability_losses_say_what_is_wrong():
    logits, _, y = _probs()
    with pytest.raises(ValueError, match="from_logits=True"):
        L.sparse_categorical_crossentropy(logits * 10, y)
    with pytest.raises(ValueError, match="from_logits=True"):
        L.binary_crossentropy(logits * 10, (logits > 0).astype(float))
    with pytest.raises(TypeError, match="sparse_categorical_crossentropy"):
        L.categorical_crossentropy(np.full((6, 4), 0.25), y)
    with pytest.raises(TypeError, match="categorical_crossentropy"):
        L.sparse_categorical_crossentropy(np.full((6, 4), 0.25), np.eye(4)[y])
    with pytest.raises(TypeError, match="epsilonn"):
        L.SparseCategoricalCrossentropy(epsilonn=1e-3)


# -- loss objects --------------------------------------------------------------------------------------------
def test_loss_classes_are_their_functions():
    logits, p, y = _probs(seed=7)
    onehot = np.eye(4)[y]
    t = np.random.default_rng(8).random((6, 4))
    cases = [
        (L.SparseCategoricalCrossentropy(), (p, y), L.sparse_categorical_crossentropy(p, y)),
        (L.SparseCategoricalCrossentropy(from_logits=True), (logits, y), L.cross_entropy(logits, y)),
        (L.CategoricalCrossentropy(), (p, onehot), L.categorical_crossentropy(p, onehot)),
        (L.BinaryCrossentropy(), (p, onehot), L.binary_crossentropy(p, onehot)),
        (L.MeanSquaredError(), (p, t), L.mse(p, t)),
        (L.MeanAbsoluteError(), (p, t), L.mae(p, t)),
        (L.Huber(delta=0.1), (p, t), L.huber(p, t, delta=0.1)),
        (L.KLDivergence(), (p, onehot * 0.7 + 0.075), L.kl_divergence(p, onehot * 0.7 + 0.075)),
        # NumpyDL's names
        (L.BinaryCrossEntropy(), (p, onehot), L.binary_crossentropy(p, onehot)),
        (L.SoftmaxCategoricalCrossEntropy(), (p, onehot), L.categorical_crossentropy(p, onehot)),
        (L.SCCE(), (p, onehot), L.categorical_crossentropy(p, onehot)),
        (L.HellingerDistance(), (p, t / t.sum(1, keepdims=True)), L.hellinger(p, t / t.sum(1, keepdims=True))),
    ]
    for obj, args, want in cases:
        assert float(obj(*args)) == float(want), obj
        spec = L.serialize(obj)
        assert float(L.get(spec)(*args)) == float(want), spec
    assert L.SCCE is L.SoftmaxCategoricalCrossEntropy
    assert repr(L.SparseCategoricalCrossentropy(from_logits=True)) == "SparseCategoricalCrossentropy(from_logits=True)"


# -- training with probability outputs ------------------------------------------------------------------------
def _train(last_activation, loss, epochs=25, seed=0, body=None):
    x, y = _blobs()
    kp.set_seed(seed)
    model = kp.Sequential(kp.layers.Dense(16, activation="relu"), kp.layers.Dense(3, activation=last_activation))
    model.compile(loss=loss, optimizer=kp.optim.Adam(lr=0.02), metrics=["accuracy"])
    hist = model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model, hist.history["accuracy"][-1]


def test_softmax_output_trains_with_keras_loss_names():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no double-softmax warning for the right pairings
        _, acc_probs = _train("softmax", "sparse_categorical_crossentropy")
        _, acc_obj = _train("softmax", L.SparseCategoricalCrossentropy())
        _, acc_logits = _train(None, "cross_entropy")
        _, acc_flag = _train(None, L.SparseCategoricalCrossentropy(from_logits=True))
    assert acc_logits >= 0.98
    assert acc_probs >= 0.98 and acc_obj == acc_probs and acc_flag == acc_logits


def _caught(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [w for w in caught if issubclass(w.category, UserWarning) and "applies" in str(w.message)]


@pytest.mark.parametrize(
    "layers, loss, kind",
    [
        ([kp.layers.Dense(3, activation="softmax")], "cross_entropy", "softmax"),
        ([kp.layers.Dense(3), kp.layers.Activation("softmax")], "cross_entropy", "softmax"),
        ([kp.layers.Dense(3), kp.softmax], "cross_entropy", "softmax"),
        ([kp.layers.Dense(3, activation=A.Softmax())], L.SparseCategoricalCrossentropy(from_logits=True), "softmax"),
        ([kp.layers.Dense(1, activation="sigmoid")], "bce_with_logits", "sigmoid"),
        ([kp.layers.Dense(3, activation="softmax")], kp.nll, "softmax"),
    ],
)
def test_logits_loss_on_squashed_output_warns_once_per_compile_and_fit(layers, loss, kind):
    x, y = _blobs(60)
    if kind == "sigmoid":
        y = (y == 0).astype(np.float32).reshape(-1, 1)
    model = kp.Sequential([kp.layers.Dense(8, activation="relu"), *layers])
    got = _caught(lambda: model.compile(loss=loss, optimizer="adam"))
    assert len(got) == 1
    msg = str(got[0].message)
    assert f"applies {kind}" in msg and "index" in msg and "logits" in msg
    assert len(_caught(lambda: model.fit(x, y, epochs=2, batch_size=16, verbose=0))) == 1


def test_no_warning_for_matching_pairs():
    for layers, loss in [
        ([kp.layers.Dense(3)], "cross_entropy"),
        ([kp.layers.Dense(3, activation="log_softmax")], "cross_entropy"),
        ([kp.layers.Dense(3, activation="softmax")], "sparse_categorical_crossentropy"),
        ([kp.layers.Dense(1, activation="sigmoid")], "binary_crossentropy"),
        ([kp.layers.Dense(1)], L.BinaryCrossentropy(from_logits=True)),
    ]:
        model = kp.Sequential([kp.layers.Dense(4), *layers])
        assert not _caught(lambda m=model, lo=loss: m.compile(loss=lo)), (layers, loss)


def test_binary_accuracy_threshold_follows_from_logits():
    x, y = _blobs(200)
    yb = (y == 0).astype(np.float32).reshape(-1, 1)
    for last, loss in [(None, L.BinaryCrossentropy(from_logits=True)), ("sigmoid", "binary_crossentropy")]:
        kp.set_seed(0)
        model = kp.Sequential(kp.layers.Dense(8, activation="relu"), kp.layers.Dense(1, activation=last))
        model.compile(loss=loss, optimizer=kp.optim.Adam(lr=0.05), metrics=["accuracy"])
        model.fit(x, yb, epochs=15, batch_size=32, verbose=0)
        assert model.evaluate(x, yb)["accuracy"] >= 0.97, loss


# -- fine-tuning a subset, frozen layers ----------------------------------------------------------------------
def _built_model(seed=0):
    x, y = _blobs(120)
    kp.set_seed(seed)
    model = kp.Sequential(
        kp.layers.Dense(8, activation="relu"), kp.layers.Dense(8, activation="relu"), kp.layers.Dense(3)
    )
    model(x[:1])
    return model, x, y


def _snapshot(model):
    return {k: v.value.copy() for k, v in model.params.items()}


def test_optimizer_over_the_head_trains_only_the_head():
    model, x, y = _built_model()
    before = _snapshot(model)
    head = model.layers()[-1]
    model.compile(loss="cross_entropy", optimizer=kp.optim.Adam(head.parameters(), lr=0.05))
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    after = _snapshot(model)
    for name in before:
        if name.startswith("2."):
            assert not np.array_equal(before[name], after[name]), name
        else:
            assert np.array_equal(before[name], after[name]), name  # bit-identical
    assert all(p.grad is None for p in model.parameters())  # nothing accumulates outside the optimizer
    assert len(model.optimizer.params) == 2


def test_frozen_layers_are_not_trained_and_get_no_gradient():
    model, x, y = _built_model()
    model.layers()[0].trainable = False
    before = _snapshot(model)
    model.compile(loss="cross_entropy", optimizer="sgd")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    after = _snapshot(model)
    assert np.array_equal(before["0.w"], after["0.w"]) and np.array_equal(before["0.b"], after["0.b"])
    assert not np.array_equal(before["1.w"], after["1.w"])
    assert all(p.grad is None for p in model.parameters())
    assert set(model.optimizer.params) == {"1.w", "1.b", "2.w", "2.b"}
    # unfreezing trains the layer again, starting from no stale gradient
    model.layers()[0].trainable = True
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert not np.array_equal(before["0.w"], model.params["0.w"].value)


def test_freezing_is_recursive_and_explicit_optimizers_respect_it():
    x, y = _blobs(60)
    kp.set_seed(0)
    body = kp.Sequential(kp.layers.Dense(6, activation="relu"), kp.layers.Dense(6, activation="relu"))
    model = kp.Sequential(body, kp.layers.Dense(3))
    model(x[:1])
    body.trainable = False
    assert list(model.trainable_params) == ["1.w", "1.b"]
    before = _snapshot(model)
    # an optimizer over every parameter: the frozen ones still stay as they are (weight decay included)
    model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.1))
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for name, value in before.items():
        assert np.array_equal(value, model.params[name].value) == name.startswith("0."), name
    model.trainable = False
    model.compile(loss="cross_entropy")
    with pytest.raises(RuntimeError, match="frozen"):
        model.fit(x, y, epochs=1, verbose=0)


def test_frozen_layers_with_lbfgs():
    model, x, y = _built_model()
    model.layers()[1].trainable = False
    before = _snapshot(model)
    model.compile(loss="cross_entropy", optimizer=kp.optim.LBFGS(lr=0.5, max_iter=3))
    model.fit(x, y, epochs=1, batch_size=120, verbose=0)
    assert np.array_equal(before["1.w"], model.params["1.w"].value)
    assert not np.array_equal(before["2.w"], model.params["2.w"].value)


def test_optimizer_of_another_model_is_an_error():
    model, x, y = _built_model()
    other, _, _ = _built_model(seed=1)
    model.compile(loss="cross_entropy", optimizer=kp.optim.Adam(other.parameters()))
    with pytest.raises(ValueError, match="belongs to this model"):
        model.fit(x, y, epochs=1, verbose=0)


def test_frozen_model_saves_loads_and_resumes(tmp_path):
    model, x, y = _built_model()
    model.layers()[0].trainable = False
    model.compile(loss="cross_entropy", optimizer="adam")
    ckpt = tmp_path / "run.knet"
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, checkpoint=ckpt)
    frozen = model.params["0.w"].value.copy()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, checkpoint=ckpt, resume=True)
    assert np.array_equal(frozen, model.params["0.w"].value)
    path = tmp_path / "m.knet"
    kp.save(path, model)
    loaded = kp.load(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


# -- NumpyDL's optimizer and activation names ------------------------------------------------------------------
def test_nesterov_momentum_alias():
    assert kp.optim.NesterovMomentum is kp.optim.Nesterov
    assert type(kp.optim.get("NesterovMomentum", lr=0.1)) is kp.optim.Nesterov
    w1, w2 = kp.Param(np.ones(3)), kp.Param(np.ones(3))
    o1, o2 = kp.optim.NesterovMomentum([w1], lr=0.1), kp.optim.SGD([w2], lr=0.1, momentum=0.9, nesterov=True)
    for _ in range(3):
        for w, o in ((w1, o1), (w2, o2)):
            (w * w).sum().backward()
            o.step()
            o.zero_grad()
    np.testing.assert_array_equal(w1.value, w2.value)


ACTIVATION_CLASSES = [
    (A.Sigmoid(), A.sigmoid),
    (A.Tanh(), kp.tanh),
    (A.ReLU(), A.relu),
    (A.Linear(), A.linear),
    (A.ELU(alpha=0.7), lambda x: A.elu(x, alpha=0.7)),
    (A.LeakyReLU(alpha=0.2), lambda x: A.leaky_relu(x, alpha=0.2)),
    (A.SoftPlus(), A.softplus),
    (A.SoftSign(), A.softsign),
    (A.Elliot(steepness=2.0), lambda x: A.elliot(x, steepness=2.0)),
    (A.SymmetricElliot(), A.symmetric_elliot),
]


@pytest.mark.parametrize("obj, fn", ACTIVATION_CLASSES, ids=lambda v: type(v).__name__)
def test_activation_classes_forward_and_derivative(obj, fn):
    x = np.array([-2.5, -1.0, -0.3, 0.4, 1.2, 3.0])
    np.testing.assert_array_equal(obj.forward(x), fn(x))
    np.testing.assert_array_equal(obj(x), fn(x))
    slope = kp.grad(lambda v: kp.sum(fn(v)))(x)  # elementwise: the gradient of the sum is the derivative
    np.testing.assert_allclose(obj.derivative(x), slope, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(obj.derivative(), slope, rtol=1e-12, atol=1e-15)  # at the last forward input
    assert obj.derivative(x.astype(np.float32)).dtype == np.float32


def test_softmax_class_derivative_is_the_jacobian_diagonal():
    x = np.random.default_rng(0).standard_normal((3, 5))
    sm = A.Softmax()
    np.testing.assert_allclose(sm.forward(x), A.softmax(x))
    jac = torch.autograd.functional.jacobian(lambda t: torch.softmax(t, -1), torch.tensor(x[0]))
    np.testing.assert_allclose(sm.derivative(x)[0], torch.diagonal(jac).numpy(), rtol=1e-12)


def test_activation_objects_in_layers_save_by_name(tmp_path):
    kp.set_seed(0)
    model = kp.Sequential(kp.layers.Dense(4, activation=A.LeakyReLU(alpha=0.2)), kp.layers.Dense(2))
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    want = model.predict(x)
    assert A.serialize(A.LeakyReLU(alpha=0.2)) == {"name": "leaky_relu", "alpha": 0.2}
    kp.save(tmp_path / "m.knet", model)
    np.testing.assert_array_equal(kp.load(tmp_path / "m.knet").predict(x), want)


def test_recompiling_with_an_optimizer_fit_bound_follows_new_layers():
    model, x, y = _built_model()
    opt = kp.optim.SGD(lr=0.1)
    model.compile(loss="cross_entropy", optimizer=opt)
    model.fit(x, y, epochs=1, verbose=0)
    model.add(kp.layers.Dense(3))
    model.compile(loss="cross_entropy", optimizer=opt)  # the same object, bound by the first fit
    model.fit(x, y, epochs=1, verbose=0)
    assert "3.w" in opt.params
