"""Pieces of reinforcement learning: returns, a replay buffer, exploration, and the two losses.

Everything here is plain NumPy or knetpy ops, independent of any environment library; the losses and
the targets also take arrays on a device (CuPy's), and compute there. The CartPole programs (``knetpy train reinforce``, ``knetpy train dqn``) put them together with ``gymnasium``.

>>> g = kp.rl.discounted_returns([1.0, 1.0, 1.0], gamma=0.9)      # [2.71, 1.9, 1.0]
>>> loss = kp.rl.policy_gradient_loss(logits, actions, g - baseline)
>>> buffer = kp.rl.ReplayBuffer(10_000, obs_shape=(4,), seed=0)
>>> y = kp.rl.q_targets(rewards, q_next_target, dones, gamma=0.99)
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from .backend import array_namespace, is_array, to_host
from .losses import cross_entropy, huber
from .ops import mean
from .ops import sum as ksum


def _check_gamma(gamma, where):
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"{where}: gamma must be a number in [0, 1], got {gamma!r}")
    return float(gamma)


def _vector(x, where, what, dtype=None):
    if is_array(x) and type(x) is not np.ndarray:  # on a device: it stays there
        a = x if dtype is None else x.astype(dtype)
    else:
        a = np.asarray(x, dtype=dtype)
    if a.ndim != 1:
        raise ValueError(f"{where}: {what} must be one-dimensional, got shape {a.shape}")
    return a


# -- returns ---------------------------------------------------------------------------------------------
def discounted_returns(rewards, gamma, bootstrap=0.0):
    """G_t = r_t + gamma r_{t+1} + gamma^2 r_{t+2} + ... for one episode's rewards (float64).

    ``bootstrap`` is the value of the state after the last reward: 0 when the episode ended, an
    estimate of it when the episode was cut short.
    """
    gamma = _check_gamma(gamma, "discounted_returns")
    r = _vector(rewards, "discounted_returns", "rewards", np.float64)
    out = np.empty_like(r)
    running = float(bootstrap)
    for t in range(len(r) - 1, -1, -1):  # a Python loop: episodes are short, and it is exact
        running = r[t] + gamma * running
        out[t] = running
    return out


# -- exploration -----------------------------------------------------------------------------------------
def linear_schedule(start, end, steps):
    """A function of the step count: ``start`` at step 0, moving linearly to ``end`` at ``steps``, then ``end``."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"linear_schedule: steps must be a positive int, got {steps!r}")
    start, end = float(start), float(end)

    def value(step):
        if step < 0:
            raise ValueError(f"linear_schedule: step must be >= 0, got {step}")
        return end + (start - end) * max(0.0, 1.0 - step / steps)

    return value


def epsilon_greedy(q_values, epsilon, rng):
    """An action for one state: uniformly random with probability ``epsilon``, else the argmax of ``q_values``."""
    q = _vector(q_values, "epsilon_greedy", "q_values")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon_greedy: epsilon must be in [0, 1], got {epsilon}")
    if rng.random() < epsilon:
        return int(rng.integers(len(q)))
    return int(to_host(array_namespace(q).argmax(q)))  # (from a device: the one number comes over)


# -- replay buffer ---------------------------------------------------------------------------------------
class Batch(NamedTuple):
    """Transitions sampled from a :class:`ReplayBuffer`, one row each."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    dones: np.ndarray


class ReplayBuffer:
    """The last ``capacity`` transitions (obs, action, reward, next_obs, done) in preallocated arrays.

    When full, each new transition overwrites the oldest. :meth:`sample` draws distinct stored
    transitions uniformly with the buffer's own generator (``seed``), so a seeded run repeats.
    ``done`` should mean the episode *terminated* (no future reward), not that it was cut off by a
    time limit: a cut-off state still has a future and its target keeps the bootstrap term.
    """

    def __init__(self, capacity, obs_shape, obs_dtype=np.float32, seed=None):
        if isinstance(capacity, bool) or not isinstance(capacity, numbers.Integral) or capacity < 1:
            raise ValueError(f"ReplayBuffer: capacity must be a positive int, got {capacity!r}")
        self.capacity = int(capacity)
        self.obs_shape = tuple(obs_shape)
        self.obs = np.zeros((self.capacity, *self.obs_shape), obs_dtype)
        self.next_obs = np.zeros_like(self.obs)
        self.actions = np.zeros(self.capacity, np.int64)
        self.rewards = np.zeros(self.capacity, np.float32)
        self.dones = np.zeros(self.capacity, np.float32)
        self.rng = np.random.default_rng(seed)
        self._next = 0  # where the next transition goes
        self._size = 0

    def __len__(self):
        return self._size

    def add(self, obs, action, reward, next_obs, done):
        """Store one transition (overwriting the oldest when full)."""
        for name, x in (("obs", obs), ("next_obs", next_obs)):
            if np.shape(x) != self.obs_shape:
                raise ValueError(f"ReplayBuffer.add: {name} has shape {np.shape(x)}, expected {self.obs_shape}")
        i = self._next
        self.obs[i], self.next_obs[i] = obs, next_obs
        self.actions[i], self.rewards[i], self.dones[i] = action, reward, float(done)
        self._next = (i + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)

    def sample(self, batch_size):
        """``batch_size`` distinct stored transitions, chosen uniformly, as a :class:`Batch`."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"ReplayBuffer.sample: batch_size must be a positive int, got {batch_size!r}")
        if batch_size > self._size:
            raise ValueError(f"ReplayBuffer.sample: asked for {batch_size} transitions, only {self._size} stored")
        idx = self.rng.choice(self._size, size=batch_size, replace=False)
        return Batch(self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.dones[idx])


# -- losses ----------------------------------------------------------------------------------------------
def policy_gradient_loss(logits, actions, advantages):
    """REINFORCE's surrogate loss -mean(A_t log pi(a_t | s_t)) of a softmax policy.

    ``logits`` (N, K) are the policy's scores, ``actions`` (N,) the actions taken and ``advantages``
    (N,) their returns less a baseline, held constant (no gradient flows into them). The gradient of
    this loss is minus the policy-gradient estimate, so gradient descent on it improves the policy.
    """
    adv = _vector(advantages, "policy_gradient_loss", "advantages")
    if np.shape(logits)[:1] != adv.shape:
        raise ValueError(f"policy_gradient_loss: logits of shape {tuple(np.shape(logits))} and advantages "
                         f"of shape {adv.shape} disagree on the number of steps")
    neg_log_prob = cross_entropy(logits, actions, reduction="none")  # -log pi(a_t | s_t)
    return mean(neg_log_prob * adv.astype(logits.dtype if hasattr(logits, "dtype") else np.float64))


def q_targets(rewards, next_q, dones, gamma, next_q_online=None):
    """The DQN target r + gamma (1 - done) max_a' Q_target(s', a') of a batch of transitions.

    ``next_q`` (N, K) are the target network's values of the next states. With ``next_q_online``
    (the online network's values of the same states), the Double-DQN target is returned instead:
    the online network picks a', the target network values it.
    """
    gamma = _check_gamma(gamma, "q_targets")
    r = _vector(rewards, "q_targets", "rewards")
    d = _vector(dones, "q_targets", "dones")
    nq = next_q if is_array(next_q) else np.asarray(next_q)
    if nq.ndim != 2 or nq.shape[0] != len(r) or len(d) != len(r):
        raise ValueError(f"q_targets: expected rewards (N,), next_q (N, K) and dones (N,); got {r.shape}, "
                         f"{nq.shape} and {d.shape}")
    if next_q_online is None:
        best = nq.max(axis=1)
    else:
        online = next_q_online if is_array(next_q_online) else np.asarray(next_q_online)
        if online.shape != nq.shape:
            raise ValueError(f"q_targets: next_q_online has shape {online.shape}, next_q {nq.shape}")
        best = nq[array_namespace(nq).arange(len(r)), online.argmax(axis=1)]
    return (r + gamma * (1.0 - d) * best).astype(nq.dtype)


def q_loss(q, actions, targets, delta=1.0):
    """The Huber loss between Q(s, a) of the actions taken (picked out of ``q`` (N, K)) and the targets."""
    a = _vector(actions, "q_loss", "actions")
    if np.shape(q)[:1] != a.shape:
        raise ValueError(f"q_loss: q of shape {tuple(np.shape(q))} and actions of shape {a.shape} disagree")
    dtype = targets.dtype if is_array(targets) else np.asarray(targets).dtype
    onehot = array_namespace(a).eye(np.shape(q)[1], dtype=dtype)[a]
    return huber(ksum(q * onehot, axis=1), targets, delta=delta)
