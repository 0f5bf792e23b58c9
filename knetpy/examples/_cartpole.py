"""What the CartPole programs share: the environment, a small MLP as a list of arrays, the solved test."""

from __future__ import annotations

import collections

import numpy as np

from ..ops import relu
from ._common import ExampleError, knet_line, positive

ENV_ID = "CartPole-v1"
SOLVED_SCORE, SOLVED_WINDOW = 475.0, 100  # gymnasium's reward threshold for CartPole-v1, over 100 episodes


def make_env(seed):
    """CartPole-v1 (no display needed), seeded; a one-line error when gymnasium is not installed."""
    try:
        import gymnasium
    except ImportError:
        raise ExampleError("the reinforcement-learning examples need gymnasium: pip install 'knetpy[rl]'") from None
    env = gymnasium.make(ENV_ID)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def add_rl_options(parser, *, episodes, quick_episodes, lr, gamma=0.99, hidden=128):
    parser.add_argument("--episodes", type=positive(int), default=None,
                        help=f"most episodes to train; stops once solved "
                             f"(default: {episodes}; {quick_episodes} with --quick)")
    parser.add_argument("--lr", type=positive(float), default=lr, help="Adam's learning rate (default: %(default)s)")
    parser.add_argument("--gamma", type=float, default=gamma, help="discount factor (default: %(default)s)")
    parser.add_argument("--hidden", type=positive(int), default=hidden,
                        help="units in each hidden layer (default: %(default)s)")
    parser.add_argument("--report-every", type=positive(int), default=None,
                        help="print a progress line every this many episodes (default: 50; 10 with --quick)")
    return parser


def mlp_init(rng, sizes, dtype=np.float32):
    """[W1, b1, W2, b2, ...] for layer sizes (in, hidden..., out): He-uniform weights, zero biases."""
    w = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        limit = np.sqrt(6.0 / fan_in)
        w += [rng.uniform(-limit, limit, (fan_in, fan_out)).astype(dtype), np.zeros(fan_out, dtype)]
    return w


def mlp(w, x):
    """ReLU hidden layers and a linear output; works on arrays and on knetpy tensors alike."""
    for i in range(0, len(w) - 2, 2):
        x = relu(x @ w[i] + w[i + 1])
    return x @ w[-2] + w[-1]


def scale_last_layer(w, factor):
    """Shrink the output layer: a near-uniform starting policy (or near-zero values) learns more steadily."""
    w[-2] *= factor
    return w


def evaluate(env, w, episodes=SOLVED_WINDOW):
    """The returns of ``episodes`` episodes played greedily (the highest-scoring action, no exploration)."""
    returns = []
    for _ in range(episodes):
        obs, _ = env.reset()
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(np.argmax(mlp(w, obs[None])[0])))
            total, done = total + reward, terminated or truncated
        returns.append(total)
    return returns


class Scores:
    """The episodes' returns, the running mean over the last 100, and when it first reached 475."""

    def __init__(self):
        self.returns = []
        self.window = collections.deque(maxlen=SOLVED_WINDOW)
        self.solved_at = None  # the episode that completed the first window averaging >= 475

    def add(self, ret):
        self.returns.append(float(ret))
        self.window.append(float(ret))
        if self.solved_at is None and len(self.window) == SOLVED_WINDOW and self.mean100 >= SOLVED_SCORE:
            self.solved_at = len(self.returns)
        return self.solved_at is not None

    @property
    def mean100(self):
        return float(np.mean(self.window)) if self.window else 0.0

    def line(self, seconds, *extra):
        n = len(self.returns)
        return knet_line("episode", n, "return", int(self.returns[-1]), f"mean{SOLVED_WINDOW}",
                         f"{self.mean100:.1f}", *extra, "seconds", f"{seconds:.1f}")

    def summary(self, seconds, steps):
        n = len(self.returns)
        if self.solved_at is not None:
            return (f"solved: mean return {self.mean100:.1f} over episodes {self.solved_at - SOLVED_WINDOW + 1}-"
                    f"{self.solved_at} (>= {SOLVED_SCORE:g}) after {self.solved_at} episodes, {steps} steps, "
                    f"{seconds:.1f} s")
        best = max(np.convolve(self.returns, np.ones(SOLVED_WINDOW) / SOLVED_WINDOW, "valid"), default=None)
        best = f"; best mean over {SOLVED_WINDOW} episodes {best:.1f}" if best is not None else ""
        return (f"not solved in {n} episodes ({steps} steps, {seconds:.1f} s): last mean return "
                f"{self.mean100:.1f}{best}")


def save_returns_curve(returns, out, title, enabled):
    """The returns per episode and their running mean over 100, as ``out/learning_curve.png``."""
    from ._common import save_curve

    r = np.asarray(returns, dtype=float)
    running = [float(r[max(0, i - SOLVED_WINDOW + 1): i + 1].mean()) for i in range(len(r))]
    return save_curve({"return": list(r), f"mean{SOLVED_WINDOW}": running}, out, title=title, enabled=enabled,
                      xlabel="episode", labels={"return": "return of the episode",
                                                f"mean{SOLVED_WINDOW}": f"mean over the last {SOLVED_WINDOW}"})
