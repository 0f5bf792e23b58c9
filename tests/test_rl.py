"""kp.rl and the CartPole programs: the policy-gradient estimator against the analytic gradient, the
DQN target and loss against hand numbers, the replay buffer, and the --quick runs learning."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import knetpy as kp
from knetpy import cli
from knetpy.examples import _cartpole
from knetpy.examples._common import ExampleError

# -- policy gradient on a one-step bandit ---------------------------------------------------------------------
# A softmax policy over K arms with logits theta and known rewards r: J(theta) = sum_a pi_a r_a, whose
# gradient is dJ/dtheta_j = pi_j (r_j - sum_a pi_a r_a).
THETA = np.array([0.3, -1.2, 0.8, 0.1])
REWARDS = np.array([1.0, 5.0, -2.0, 0.5])


def _pi(theta):
    e = np.exp(theta - theta.max())
    return e / e.sum()


def _analytic_grad(theta, r):
    pi = _pi(theta)
    return pi * (r - pi @ r)


def _estimate(theta, actions, advantages):
    """The policy-gradient estimate: minus the gradient of the surrogate loss (every row is the bandit)."""
    n = len(actions)
    loss = lambda t: kp.rl.policy_gradient_loss(t + np.zeros((n, len(theta))), actions, advantages)  # noqa: E731
    return -kp.grad(loss)(theta)


def test_policy_gradient_by_exact_enumeration_equals_the_analytic_gradient():
    k = len(THETA)
    pi = _pi(THETA)
    # One row per arm, weighted by its probability: the mean over rows is then the expectation over pi.
    got = _estimate(THETA, np.arange(k), k * pi * REWARDS)
    np.testing.assert_allclose(got, _analytic_grad(THETA, REWARDS), rtol=1e-12, atol=1e-14)
    # A constant baseline leaves the expectation unchanged (E[grad log pi] = 0).
    with_baseline = _estimate(THETA, np.arange(k), k * pi * (REWARDS - 1.7))
    np.testing.assert_allclose(with_baseline, _analytic_grad(THETA, REWARDS), rtol=1e-12, atol=1e-14)


def test_policy_gradient_sampled_estimate_matches_within_its_standard_error():
    rng = np.random.default_rng(0)
    n = 200_000
    actions = rng.choice(len(THETA), size=n, p=_pi(THETA))
    expected = _analytic_grad(THETA, REWARDS)
    # Per-sample terms (onehot(a) - pi) r_a give the standard error of each component of the mean.
    terms = (np.eye(len(THETA))[actions] - _pi(THETA)) * REWARDS[actions, None]
    stderr = terms.std(axis=0) / np.sqrt(n)
    for baseline in (0.0, REWARDS @ _pi(THETA)):
        got = _estimate(THETA, actions, REWARDS[actions] - baseline)
        assert np.all(np.abs(got - expected) < 5 * stderr), (baseline, got, expected, stderr)


def test_policy_gradient_loss_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match=r"logits of shape \(3, 2\) and advantages of shape \(2,\)"):
        kp.rl.policy_gradient_loss(np.zeros((3, 2)), [0, 1, 0], [1.0, 2.0])


# -- discounted returns and exploration ------------------------------------------------------------------------
def test_discounted_returns_by_hand():
    np.testing.assert_allclose(kp.rl.discounted_returns([1.0, 1.0, 1.0], 0.9), [2.71, 1.9, 1.0])
    # A cut-off episode: the last state is still worth 10.
    np.testing.assert_allclose(kp.rl.discounted_returns([1.0, 2.0], 0.5, bootstrap=10.0), [4.5, 7.0])
    assert kp.rl.discounted_returns([], 0.9).shape == (0,)
    with pytest.raises(ValueError, match="gamma must be a number in"):
        kp.rl.discounted_returns([1.0], 1.5)


def test_linear_schedule_and_epsilon_greedy():
    eps = kp.rl.linear_schedule(1.0, 0.1, 10)
    assert [eps(0), eps(5), eps(10), eps(1000)] == pytest.approx([1.0, 0.55, 0.1, 0.1])
    rng = np.random.default_rng(0)
    assert {kp.rl.epsilon_greedy([0.1, 3.0, -1.0], 0.0, rng) for _ in range(20)} == {1}
    counts = np.bincount([kp.rl.epsilon_greedy([0.1, 3.0, -1.0], 1.0, rng) for _ in range(3000)], minlength=3)
    assert np.all(np.abs(counts / 3000 - 1 / 3) < 0.05), counts


# -- DQN target and loss ---------------------------------------------------------------------------------------
def test_q_targets_by_hand():
    rewards = np.array([1.0, 0.5, -1.0])
    dones = np.array([0.0, 1.0, 0.0])
    next_q = np.array([[1.0, 2.0], [3.0, 4.0], [-1.0, -2.0]])
    # r + 0.9 (1 - done) max_a' Q_target(s', a'): 1 + 0.9 * 2, 0.5 (terminal), -1 + 0.9 * -1
    np.testing.assert_allclose(kp.rl.q_targets(rewards, next_q, dones, 0.9), [2.8, 0.5, -1.9])
    # Double DQN: the online values pick a' = 0, 1, 1; the target network values them 1, (4), -2.
    online = np.array([[5.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(kp.rl.q_targets(rewards, next_q, dones, 0.9, next_q_online=online), [1.9, 0.5, -2.8])
    with pytest.raises(ValueError, match=r"next_q \(N, K\)"):
        kp.rl.q_targets(rewards, next_q[:2], dones, 0.9)


def test_q_loss_is_huber_on_the_actions_taken_by_hand():
    q = np.array([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]])
    actions = np.array([1, 0, 1])
    targets = np.array([2.8, 0.5, -1.9])
    # Q(s, a) = 2, 3, 0; errors -0.8, 2.5, 1.9: 0.5 * 0.64, 2.5 - 0.5, 1.9 - 0.5; mean of 0.32, 2.0, 1.4
    assert float(kp.rl.q_loss(q, actions, targets)) == pytest.approx(3.72 / 3)
    g = kp.grad(lambda q: kp.rl.q_loss(q, actions, targets))(q)
    np.testing.assert_allclose(g, np.array([[0.0, -0.8], [1.0, 0.0], [0.0, 1.0]]) / 3)


# -- replay buffer ---------------------------------------------------------------------------------------------
def _filled(capacity, n, seed=0):
    buf = kp.rl.ReplayBuffer(capacity, (2,), seed=seed)
    for i in range(n):
        buf.add([i, -i], i % 2, float(i), [i + 1, -i - 1], i == n - 1)
    return buf


def test_replay_buffer_keeps_the_last_capacity_transitions():
    buf = _filled(3, 5)
    assert len(buf) == 3
    # Transitions 3 and 4 overwrote 0 and 1 in place; 2 is still where it was.
    np.testing.assert_array_equal(buf.rewards, [3.0, 4.0, 2.0])
    np.testing.assert_array_equal(buf.obs[:, 0], [3, 4, 2])
    np.testing.assert_array_equal(buf.next_obs[:, 0], [4, 5, 3])
    np.testing.assert_array_equal(buf.dones, [0.0, 1.0, 0.0])
    batch = buf.sample(3)
    assert sorted(batch.rewards) == [2.0, 3.0, 4.0]  # distinct, all of them
    np.testing.assert_array_equal(batch.obs[:, 0], batch.rewards)  # rows stay together
    np.testing.assert_array_equal(batch.actions, batch.rewards.astype(int) % 2)


def test_replay_buffer_sampling_is_seeded_and_uniform():
    a, b = _filled(100, 150, seed=7), _filled(100, 150, seed=7)
    for _ in range(3):
        np.testing.assert_array_equal(a.sample(10).rewards, b.sample(10).rewards)
    assert not np.array_equal(_filled(100, 150, seed=8).sample(10).rewards, _filled(100, 150, seed=7).sample(10).rewards)
    counts = np.bincount(np.concatenate([a.sample(10).rewards.astype(int) for _ in range(2000)]), minlength=150)
    assert counts[:50].sum() == 0  # overwritten
    assert counts[50:].min() > 120 and counts[50:].max() < 280  # about 200 each


def test_replay_buffer_errors_name_the_problem():
    buf = _filled(4, 2)
    with pytest.raises(ValueError, match="asked for 3 transitions, only 2 stored"):
        buf.sample(3)
    with pytest.raises(ValueError, match=r"obs has shape \(3,\), expected \(2,\)"):
        buf.add([1, 2, 3], 0, 1.0, [1, 2], False)
    with pytest.raises(ValueError, match="capacity must be a positive int"):
        kp.rl.ReplayBuffer(0, (2,))


# -- the CartPole programs -----------------------------------------------------------------------------------
def test_train_lists_the_rl_examples(capsys):
    assert cli.main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "  reinforce " in out and "  dqn " in out


def test_missing_gymnasium_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # import fails as if not installed
    with pytest.raises(ExampleError, match=r"pip install 'knetpy\[rl\]'"):
        _cartpole.make_env(0)


def _quick(name, tmp_path):
    pytest.importorskip("gymnasium", reason="the CartPole programs need gymnasium (extra [rl])")
    from knetpy.examples import get

    return get(name).main(["--quick", "--no-plot", "--out", str(tmp_path)])


@pytest.mark.parametrize("name", ["reinforce", "dqn"])
def test_quick_run_learns(name, tmp_path, capsys):
    result = _quick(name, tmp_path)
    returns = np.array(result["returns"])
    first, last = returns[:20].mean(), returns[-20:].mean()
    assert last > 2 * first, (first, last)
    assert result["seconds"] < 60
    out = capsys.readouterr().out
    assert "(:episode, 10, :return, " in out
    assert [a.shape for a in kp.load(result["checkpoint"])["policy" if name == "reinforce" else "q"]][0][0] == 4


def test_reinforce_quick_run_repeats_with_its_seed(tmp_path):
    first = _quick("reinforce", tmp_path)["returns"]
    assert _quick("reinforce", tmp_path)["returns"] == first


@pytest.mark.slow
@pytest.mark.parametrize("name, episodes", [("reinforce", 700), ("dqn", 600)])
def test_full_run_solves_cartpole(name, episodes, tmp_path):
    pytest.importorskip("gymnasium", reason="the CartPole programs need gymnasium (extra [rl])")
    from knetpy.examples import get

    result = get(name).main(["--no-plot", "--out", str(tmp_path)])
    assert result["solved_at"] is not None and result["solved_at"] <= episodes
    if name == "reinforce":  # solved on its training episodes
        assert np.mean(result["returns"][-100:]) >= 475
    else:  # solved by the greedy policy on 100 evaluation episodes
        assert result["evaluations"][-1][1] >= 475
