"""Energy-based losses (kp.losses.energy, LeCun et al. 2006): worked numbers, gradients, parity, training."""

import math

import numpy as np
import pytest

import knetpy as kp

EB = kp.losses.energy
NAMES = ["energy", "perceptron", "hinge", "log", "lvq2", "mce", "square_square", "square_exp", "nll"]

# Two samples, three answers. Sample 0: correct 0 (E_y 0.5), most offending wrong 1 (E_bar 1.0).
# Sample 1: correct 2 (E_y 0.9), most offending wrong 1 (E_bar 0.2): a mistake.
E = np.array([[0.5, 1.0, 2.0], [1.5, 0.2, 0.9]])
Y = np.array([0, 2])
WORKED = {
    "energy": [0.5, 0.9],
    "perceptron": [0.0, 0.9 - 0.2],
    "hinge": [max(0, 1 + 0.5 - 1.0), 1 + 0.9 - 0.2],
    "log": [math.log1p(math.exp(-0.5)), math.log1p(math.exp(0.7))],
    "lvq2": [0.0, 1.0],  # (0.9 - 0.2) / 0.2 = 3.5, saturated at 1
    "mce": [1 / (1 + math.exp(0.5)), 1 / (1 + math.exp(-0.7))],
    "square_square": [0.25 + 0.0, 0.81 + 0.8**2],
    "square_exp": [0.25 + math.exp(-1.0), 0.81 + math.exp(-0.2)],
    "nll": [0.5 + math.log(math.exp(-0.5) + math.exp(-1.0) + math.exp(-2.0)),
            0.9 + math.log(math.exp(-1.5) + math.exp(-0.2) + math.exp(-0.9))],
}


@pytest.mark.parametrize("name", NAMES)
def test_worked_numbers_and_reductions(name):
    fn = getattr(EB, name)
    per = np.asarray(fn(E, Y, reduction="none"))
    np.testing.assert_allclose(per, WORKED[name], rtol=1e-12)
    assert float(fn(E, Y)) == pytest.approx(np.mean(WORKED[name]))
    assert float(fn(E, Y, reduction="sum")) == pytest.approx(np.sum(WORKED[name]))


def test_parameters_change_the_numbers():
    assert np.asarray(EB.hinge(E, Y, margin=0.2, reduction="none")).tolist() == pytest.approx([0.0, 0.9])
    assert np.asarray(EB.lvq2(E, Y, delta=10.0, reduction="none")).tolist() == pytest.approx([0.0, 0.35])
    assert np.asarray(EB.square_square(E, Y, margin=2.0, reduction="none")).tolist() == pytest.approx(
        [0.25 + 1.0, 0.81 + 1.8**2])
    assert np.asarray(EB.square_exp(E, Y, gamma=3.0, reduction="none")).tolist() == pytest.approx(
        [0.25 + 3 * math.exp(-1.0), 0.81 + 3 * math.exp(-0.2)])
    beta = 4.0
    want = [e[y] + math.log(sum(math.exp(-beta * v) for v in e)) / beta for e, y in zip(E, Y)]
    np.testing.assert_allclose(np.asarray(EB.nll(E, Y, beta=beta, reduction="none")), want, rtol=1e-12)


def test_nll_is_cross_entropy_of_negated_energies_and_tends_to_perceptron():
    rng = np.random.default_rng(0)
    e, y = rng.standard_normal((7, 5)), rng.integers(0, 5, 7)
    assert float(EB.nll(e, y)) == pytest.approx(float(kp.losses.cross_entropy(-e, y)), rel=1e-12)
    big = np.asarray(EB.nll(e, y, beta=1e4, reduction="none"))
    np.testing.assert_allclose(big, np.asarray(EB.perceptron(e, y, reduction="none")), atol=1e-3)


def test_nll_torch_parity(torch):
    rng = np.random.default_rng(1)
    e, y = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    beta = 2.5
    want = torch.nn.functional.cross_entropy(torch.tensor(-beta * e), torch.tensor(y)).item() / beta
    assert float(EB.nll(e, y, beta=beta)) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name):
    rng = np.random.default_rng(2)
    # positive energies, well apart (no ties at the min, no kinks at the margins or the LVQ2 saturation)
    e = rng.permutation(np.linspace(0.3, 3.0, 24)).reshape(6, 4) + 0.013 * rng.standard_normal((6, 4))
    y = rng.integers(0, 4, 6)
    kw = {"lvq2": {"delta": 20.0}}.get(name, {})
    assert kp.gradcheck(lambda v: getattr(EB, name)(v, y, **kw), e)


def test_hinge_gradient_pushes_correct_down_and_offender_up():
    g = kp.grad(lambda v: EB.hinge(v, Y, reduction="sum"))(E)
    # sample 0 is inside the margin: -/+1 on correct/offender; sample 1 likewise; others untouched
    np.testing.assert_array_equal(g, [[1.0, -1.0, 0.0], [0.0, -1.0, 1.0]])


def test_names_stay_distinct_from_the_score_hinge():
    assert EB.hinge is not kp.losses.hinge
    assert kp.ebm is EB
    assert EB.predict(E).tolist() == [0, 1]


def test_errors_are_clear():
    with pytest.raises(ValueError, match=r"shape \(N, C\).*got shape \(3,\)"):
        EB.hinge(np.ones(3), Y)
    with pytest.raises(ValueError, match="at least 2 answers"):
        EB.log(np.ones((2, 1)), np.zeros(2, np.int64))
    with pytest.raises(TypeError, match="integers"):
        EB.mce(E, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="margin must be"):
        EB.hinge(E, Y, margin=-1)
    with pytest.raises(ValueError, match="positive energies"):
        EB.lvq2(-E, Y)
    with pytest.raises(ValueError, match="reduction"):
        EB.nll(E, Y, reduction="avg")


@pytest.mark.parametrize("name", ["hinge", "log", "mce", "nll"])
def test_each_margin_loss_trains_a_linear_energy_model(name):
    """E = x W + b on three separable blobs: each loss drives the argmin-energy answer to the label."""
    rng = np.random.default_rng(0)
    centres = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    y = np.repeat(np.arange(3), 40)
    x = centres[y] + 0.7 * rng.standard_normal((120, 2))
    w = [0.01 * rng.standard_normal((2, 3)), np.zeros(3)]
    dloss = kp.grad(lambda w: getattr(EB, name)(x @ w[0] + w[1], y))
    for _ in range(300):
        for wi, gi in zip(w, dloss(w)):
            wi -= 0.5 * gi
    acc = np.mean(EB.predict(x @ w[0] + w[1]) == y)
    assert acc > 0.95, (name, acc)


@pytest.mark.parametrize("name", ["square_square", "square_exp", "lvq2", "hinge"])
def test_losses_for_positive_energies_train_prototypes(name):
    """E_j = |x - m_j|^2, squared distances to learned prototypes (the energies these losses assume)."""
    rng = np.random.default_rng(0)
    centres = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    y = np.repeat(np.arange(3), 40)
    x = centres[y] + 0.7 * rng.standard_normal((120, 2))
    protos = [rng.standard_normal((3, 2)) * 0.5 + x.mean(axis=0)]

    def energies(m):
        return kp.sum((x[:, None, :] - m[None]) ** 2, axis=2) + 0.01

    kw = {"square_square": {"margin": 4.0}, "lvq2": {"delta": 5.0}}.get(name, {})
    dloss = kp.grad(lambda m: getattr(EB, name)(energies(m[0]), y, **kw))
    for _ in range(300):
        protos[0] -= 0.05 * dloss(protos)[0]
    acc = np.mean(EB.predict(energies(protos[0])) == y)
    assert acc > 0.95, (name, acc)
