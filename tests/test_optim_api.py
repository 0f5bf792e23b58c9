"""Optimizer interfaces: binding, errors, get(), state_dict, and the functional (Knet) style."""

import io
import json
import math
from collections import OrderedDict

import numpy as np
import pytest

import knetpy as kp
from knetpy.optim import optimizers, update

FIRST_ORDER = ["sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamax", "adamw"]
CLASSES = [kp.optim.OPTIMIZERS[n] for n in FIRST_ORDER] + [kp.optim.LBFGS]

# Options that make every rule use all of its state (momentum buffers, centred averages, ...).
RICH_OPTIONS = {
    "sgd": dict(lr=0.05, momentum=0.9, dampening=0.1),
    "momentum": dict(lr=0.05),
    "nesterov": dict(lr=0.05),
    "adagrad": dict(lr=0.1, lr_decay=0.01),
    "adadelta": dict(lr=1.0),
    "rmsprop": dict(lr=0.01, momentum=0.5, centered=True),
    "adam": dict(lr=0.01, amsgrad=True),
    "adamax": dict(lr=0.01),
    "adamw": dict(lr=0.01, weight_decay=0.1),
}


def grad_fn(i, value, t):
    return np.sin(value * (i + 1) + t) + 0.1 * t


# -- learning rate validation ------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", [0, 0.0, -0.1, float("nan"), float("inf"), "0.1", None, True])
def test_bad_lr_raises_naming_value(cls, bad):
    with pytest.raises(ValueError, match="lr") as err:
        cls(lr=bad)
    assert repr(bad) in str(err.value)


def test_lr_setter_validates_and_accepts_zero():
    opt = kp.optim.Adam(lr=0.1)
    opt.lr = 0.5
    assert opt.lr == 0.5 and isinstance(opt.lr, float)
    opt.lr = 0.0  # schedules reach 0 (cosine annealing)
    assert opt.lr == 0.0
    for bad in (-1.0, float("nan"), float("inf"), "fast"):
        with pytest.raises(ValueError, match=r"Adam: lr"):
            opt.lr = bad
    opt.lr = np.float32(0.25)
    assert type(opt.lr) is float


def test_hyperparameter_errors_are_clear():
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        kp.optim.Adam(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="betas must be a pair"):
        kp.optim.Adamax(betas=0.9)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        kp.optim.SGD(lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="weight_decay"):
        kp.optim.RMSprop(weight_decay=-1)
    with pytest.raises(ValueError, match="clip_norm"):
        kp.optim.SGD(clip_norm=0)
    with pytest.raises(ValueError, match="rho"):
        kp.optim.Adadelta(rho=1.5)
    with pytest.raises(ValueError, match="did you mean 'strong_wolfe'"):
        kp.optim.LBFGS(line_search_fn="strong_wolf")


# -- parameters and binding ------------------------------------------------------------------------
def test_step_before_bind_is_a_clear_error_then_bind_works():
    opt = kp.optim.SGD(lr=0.5)
    with pytest.raises(RuntimeError, match=r"opt.bind\(params\)"):
        opt.step()
    model_params = OrderedDict(w=kp.Param(np.ones(2)), b=kp.Param(np.zeros(1)))
    assert opt.bind(model_params) is opt
    assert list(opt.params) == ["w", "b"]
    model_params["w"].grad = np.array([1.0, 2.0])
    opt.step()
    np.testing.assert_allclose(model_params["w"].value, [0.5, 0.0])
    assert list(opt.state) == ["w"]


def test_params_from_generator_nested_and_layer_like():
    ps = [kp.Param(np.ones(2)) for _ in range(3)]
    opt = kp.optim.SGD((p for p in ps), lr=1.0)
    assert list(opt.params) == ["0", "1", "2"]
    opt = kp.optim.SGD({"enc": [ps[0], ps[1]], "dec": {"w": ps[2]}, "tied": ps[0]}, lr=1.0)
    assert list(opt.params) == ["enc.0", "enc.1", "dec.w"]  # a tied parameter is kept once

    class Layerish:
        params = OrderedDict(kernel=ps[0])

    assert list(kp.optim.Adam(Layerish()).params) == ["kernel"]


def test_bad_params_errors():
    with pytest.raises(TypeError, match="lr=0.1"):
        kp.optim.SGD(0.1)
    with pytest.raises(TypeError, match="functional style"):
        kp.optim.Adam([np.ones(3)])
    with pytest.raises(TypeError, match="does not require a gradient"):
        kp.optim.Adam([kp.tensor(np.ones(3))])
    with pytest.raises(ValueError, match="empty parameter list"):
        kp.optim.Adam([])
    with pytest.raises(TypeError, match="computed by an op"):
        kp.optim.Adam([kp.Param(np.ones(2)) * 2])


def test_gradient_shape_mismatch_is_an_error_not_a_broadcast():
    p = kp.Param(np.ones((2, 3)))
    opt = kp.optim.SGD([p], lr=0.1)
    p.grad = np.ones(3)
    with pytest.raises(
        ValueError, match=r"gradient for '0' has shape \(3,\), the parameter has shape \(2, 3\)"
    ):
        opt.step()


def test_grad_arrays_are_never_modified_in_place():
    p = kp.Param(np.ones(4))
    shared = np.array([3.0, -4.0, 0.5, 10.0])
    keep = shared.copy()
    opt = kp.optim.Adam([p], lr=0.1, weight_decay=0.5, clip_norm=1.0, clip_value=2.0, grad_noise=0.1)
    for _ in range(3):
        p.grad = shared
        opt.step()
        assert p.grad is shared
    np.testing.assert_array_equal(shared, keep)


def test_zero_grad_sets_none():
    p = kp.Param(np.ones(2))
    opt = kp.optim.SGD([p], lr=0.1)
    p.grad = np.ones(2)
    opt.zero_grad()
    assert p.grad is None


# -- get() -------------------------------------------------------------------------------------------
def test_get_by_name_class_and_instance():
    opt = kp.optim.get("Adam", lr=0.01, betas=(0.8, 0.9))
    assert type(opt) is kp.optim.Adam and opt.lr == 0.01 and opt.betas == (0.8, 0.9)
    assert type(kp.optim.get("l-bfgs")) is kp.optim.LBFGS
    assert type(kp.optim.get(kp.optim.RMSprop)) is kp.optim.RMSprop
    inst = kp.optim.SGD(lr=0.3)
    assert kp.optim.get(inst) is inst
    with pytest.raises(ValueError, match="existing SGD"):
        kp.optim.get(inst, lr=0.1)
    for name, cls in kp.optim.OPTIMIZERS.items():
        assert type(kp.optim.get(name)) is cls


def test_get_unknown_name_suggests_closest():
    with pytest.raises(ValueError, match="did you mean 'adam'"):
        kp.optim.get("adm")
    with pytest.raises(ValueError, match="did you mean 'rmsprop'"):
        kp.optim.get("rmsprob")
    with pytest.raises(TypeError, match="optimizer name or class"):
        kp.optim.get(3)


def test_defaults_follow_pytorch(torch):
    pairs = {
        "SGD": dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
        "Adam": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False),
        "AdamW": dict(lr=1e-3, weight_decay=1e-2),
        "Adamax": dict(lr=2e-3, eps=1e-8),
        "RMSprop": dict(lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, centered=False),
        "Adagrad": dict(lr=1e-2, lr_decay=0.0, initial_accumulator_value=0.0, eps=1e-10),
        "Adadelta": dict(lr=1.0, rho=0.9, eps=1e-6),
        "LBFGS": dict(
            lr=1, max_iter=20, max_eval=25, tolerance_grad=1e-7, tolerance_change=1e-9, history_size=100
        ),
    }
    dummy = [torch.zeros(1, requires_grad=True)]
    for name, expected in pairs.items():
        ours = getattr(kp.optim, name)()
        theirs = getattr(torch.optim, name)(dummy).defaults
        for key, value in expected.items():
            assert getattr(ours, key) == value == theirs[key], (name, key)
    assert kp.optim.Momentum().momentum == 0.9 and kp.optim.Nesterov().nesterov


# -- state_dict ---------------------------------------------------------------------------------------
def _roundtrip_through_files(sd):
    """Meta through JSON, arrays through np.savez / np.load without pickle."""
    meta = json.loads(json.dumps(sd["meta"]))
    buf = io.BytesIO()
    np.savez(buf, **sd["arrays"])
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return {"meta": meta, "arrays": arrays}


@pytest.mark.parametrize("name", FIRST_ORDER)
def test_state_dict_roundtrip_continues_identically(name):
    kw = dict(RICH_OPTIONS[name], clip_norm=2.0, grad_noise=0.01)
    shapes = [(3, 2), (4,)]
    rng = np.random.default_rng(3)
    a = [kp.Param(rng.standard_normal(s)) for s in shapes]
    opt_a = kp.optim.get(name, **kw).bind(a)
    for t in range(5):
        for i, p in enumerate(a):
            p.grad = grad_fn(i, p.value, t)
        opt_a.step()
    opt_a.lr = 0.5 * opt_a.lr  # hyper-parameters travel too
    sd = _roundtrip_through_files(opt_a.state_dict())
    assert sd["arrays"] and all(isinstance(v, np.ndarray) for v in sd["arrays"].values())

    b = [kp.Param(p.value.copy()) for p in a]
    opt_b = kp.optim.get(name).bind(b)
    opt_b.load_state_dict(sd)
    assert opt_b.lr == opt_a.lr and opt_b.iterations == 5
    rng_state = kp.get_rng_state()
    for t in range(5, 10):
        for i, p in enumerate(a):
            p.grad = grad_fn(i, p.value, t)
        opt_a.step()
    kp.set_rng_state(rng_state)  # same noise draws for the copy
    for t in range(5, 10):
        for i, p in enumerate(b):
            p.grad = grad_fn(i, p.value, t)
        opt_b.step()
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa.value, pb.value)


def test_state_dict_is_a_snapshot_and_load_copies():
    p = kp.Param(np.ones(2))
    opt = kp.optim.Adam([p], lr=0.1)
    p.grad = np.ones(2)
    opt.step()
    sd = opt.state_dict()
    saved = sd["arrays"]["0/exp_avg"].copy()
    opt.step()
    np.testing.assert_array_equal(sd["arrays"]["0/exp_avg"], saved)
    other = kp.optim.Adam([kp.Param(np.ones(2))])
    other.load_state_dict(sd)
    assert other.state["0"]["exp_avg"] is not sd["arrays"]["0/exp_avg"]


def test_load_state_dict_errors():
    p = kp.Param(np.ones(2))
    opt = kp.optim.Adam([p], lr=0.1)
    p.grad = np.ones(2)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="belongs to a 'Adam' optimizer"):
        kp.optim.SGD([kp.Param(np.ones(2))]).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"has shape \(2,\), parameter '0' has shape \(3,\)"):
        kp.optim.Adam([kp.Param(np.ones(3))]).load_state_dict(sd)
    with pytest.raises(ValueError, match="not among the bound parameters"):
        kp.optim.Adam({"w": kp.Param(np.ones(2))}).load_state_dict(sd)
    with pytest.raises(ValueError, match="'meta' and 'arrays'"):
        opt.load_state_dict({"exp_avg": 1})


def test_load_before_bind_then_bind_checks_shapes():
    p = kp.Param(np.ones(2))
    opt = kp.optim.RMSprop([p], lr=0.1)
    p.grad = np.ones(2)
    opt.step()
    fresh = kp.optim.RMSprop()
    fresh.load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="shape"):
        fresh.bind([kp.Param(np.ones(5))])
    fresh.bind([kp.Param(np.ones(2))])
    assert fresh.state["0"]["step"] == 1


def test_state_is_inspectable():
    p = kp.Param(np.ones(3))
    opt = kp.optim.Adam({"w": p}, lr=0.1, amsgrad=True)
    p.grad = np.full(3, 2.0)
    opt.step()
    st = opt.state["w"]
    assert st["step"] == 1 and set(st) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    np.testing.assert_allclose(st["exp_avg"], 0.2)
    np.testing.assert_allclose(st["exp_avg_sq"], 0.004)
    assert "betas=[0.9, 0.999]" in repr(opt) and "lr=0.1" in repr(opt)


# -- functional style ------------------------------------------------------------------------------------
def _tree(rng, dtype):
    return {
        "W": rng.standard_normal((3, 2)).astype(dtype),
        "layers": [rng.standard_normal(4).astype(dtype), (rng.standard_normal((2, 2)).astype(dtype),)],
    }


@pytest.mark.parametrize("name", FIRST_ORDER)
def test_functional_update_equals_object_step(name):
    kw = dict(RICH_OPTIONS[name], weight_decay=0.02, clip_norm=1.0, clip_value=1.5, grad_noise=0.05)
    rng = np.random.default_rng(0)
    tree = _tree(rng, np.float32)
    leaves, treedef = kp.tree_flatten(tree)
    params = [kp.Param(v.copy()) for v in leaves]
    obj = kp.optim.get(name, **kw).bind(params)
    opts = optimizers(tree, name, **kw)
    assert kp.tree_flatten(opts)[1] == treedef
    kp.set_seed(11)
    for t in range(6):
        grads = [grad_fn(i, v, t).astype(np.float32) for i, v in enumerate(leaves)]
        update(tree, kp.tree_unflatten(treedef, grads), opts)
    kp.set_seed(11)
    for t in range(6):
        for i, p in enumerate(params):
            p.grad = grad_fn(i, p.value, t).astype(np.float32)
        obj.step()
    for v, p in zip(kp.tree_flatten(tree)[0], params):
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v, p.value)
    # Arrays were updated in place: the leaves seen before are the tree's leaves now.
    assert all(a is b for a, b in zip(leaves, kp.tree_flatten(tree)[0]))
    first = kp.tree_flatten(opts)[0][0]
    assert first.state["array"]["step"] == 6


def test_functional_with_grad_trains_linear_regression():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 2))
    y = x @ np.array([2.0, -1.0]) + 0.5
    w = {"w": np.zeros(2), "b": np.zeros(1)}

    def loss(w, x, y):
        return kp.mean((x @ w["w"] + w["b"] - y) ** 2)

    opts = optimizers(w, kp.optim.Adam, lr=0.1)
    first = float(loss(w, x, y))
    dloss = kp.grad(loss)
    for _ in range(200):
        update(w, dloss(w, x, y), opts)
    assert float(loss(w, x, y)) < 1e-4 * first
    np.testing.assert_allclose(w["w"], [2.0, -1.0], atol=1e-2)


def test_functional_single_array_and_none_gradient():
    w = np.array([1.0, 2.0])
    opt = optimizers(w, "sgd", lr=0.5)
    assert isinstance(opt, kp.optim.SGD)
    update(w, np.array([2.0, 2.0]), opt)
    np.testing.assert_allclose(w, [0.0, 1.0])
    tree = [np.ones(2), np.ones(2)]
    opts = optimizers(tree, "sgd", lr=1.0)
    update(tree, [None, np.ones(2)], opts)
    np.testing.assert_allclose(tree[0], 1.0)
    np.testing.assert_allclose(tree[1], 0.0)


def test_functional_global_clip_matches_object_style():
    tree = [np.zeros(1), np.zeros(1)]
    update(tree, [np.array([3.0]), np.array([4.0])], optimizers(tree, "sgd", lr=1.0, clip_norm=2.5))
    np.testing.assert_allclose([tree[0][0], tree[1][0]], [-1.5, -2.0], rtol=1e-6)


def test_functional_errors():
    tree = [np.ones(2), np.ones(3)]
    opts = optimizers(tree, "adam")
    with pytest.raises(ValueError, match="same structure"):
        update(tree, [np.ones(2)], opts)
    with pytest.raises(ValueError, match=r"gradient for '\[1\]' has shape \(2,\)"):
        update(tree, [np.ones(2), np.ones(2)], opts)
    with pytest.raises(ValueError, match="also serves another array"):
        shared = kp.optim.Adam()
        update(tree, [np.ones(2), np.ones(3)], [shared, shared])
    with pytest.raises(TypeError, match=r"parameter \['b'\] must be a floating array"):
        optimizers({"w": np.ones(2), "b": np.arange(3)}, "adam")
    with pytest.raises(TypeError, match="closure"):
        optimizers(tree, "lbfgs")
    frozen = np.ones(2)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        update([frozen], [np.ones(2)], optimizers([frozen], "sgd"))
    with pytest.raises(TypeError, match="not an optimizer"):
        update([np.ones(2)], [np.ones(2)], ["adam"])


# -- clipping helpers -----------------------------------------------------------------------------------
def test_clip_helpers_on_pytrees_and_zero():
    grads = {"a": np.array([3.0]), "b": [np.array([4.0, 0.0])]}
    clipped, norm = kp.optim.clip_by_global_norm(grads, 1.0)
    assert norm == 5.0
    assert math.isclose(kp.optim.global_norm(clipped), 1.0, rel_tol=1e-6)
    np.testing.assert_array_equal(grads["a"], [3.0])  # inputs untouched
    zeros, norm = kp.optim.clip_by_global_norm([np.zeros(3)], 1.0)
    assert norm == 0.0 and np.all(zeros[0] == 0) and not np.any(np.isnan(zeros[0]))
    small, _ = kp.optim.clip_by_global_norm([np.array([0.1])], 1.0)
    np.testing.assert_array_equal(small[0], [0.1])
    vals = kp.optim.clip_by_value({"g": np.array([-3.0, 0.2, 9.0])}, 1.0)
    np.testing.assert_array_equal(vals["g"], [-1.0, 0.2, 1.0])
    with pytest.raises(ValueError, match="max_norm"):
        kp.optim.clip_by_global_norm([np.ones(1)], -1.0)


def test_global_norm_survives_float32_overflow():
    g = np.full(4, 3e19, dtype=np.float32)  # squares overflow float32
    assert math.isclose(kp.optim.global_norm([g]), 6e19, rel_tol=1e-6)
