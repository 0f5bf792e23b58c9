"""REINFORCE with a learned baseline on CartPole-v1: a softmax policy trained by the policy gradient.

Knet's policy-gradient example, written the Knet way: the policy and the baseline are plain lists of
arrays (4 -> 128 -> 2 action scores; 4 -> 128 -> 1 state value), the loss a Python function, and
``kp.grad`` its gradient. Each episode is played with actions sampled from the policy; the discounted
returns G_t (an episode cut off at 500 steps is bootstrapped with the baseline's value of its last
state) less the baseline's value V(s_t) are the advantages, normalised over the batch, and the policy
follows -mean(A_t log pi(a_t|s_t)) (kp.rl.policy_gradient_loss) downhill while the baseline regresses
on G_t. Training stops once the mean return of the last 100 episodes reaches 475 (CartPole-v1's solved
score). Needs gymnasium: pip install 'knetpy[rl]'.
"""

from __future__ import annotations

import time

import numpy as np

import knetpy as kp

from ._cartpole import Scores, add_rl_options, make_env, mlp, mlp_init, save_returns_curve, scale_last_layer
from ._common import (
    add_device_option,
    make_parser,
    on_device,
    on_host,
    one_blas_thread,
    parse,
    positive,
    run_script,
    save_checkpoint,
)

NAME = "reinforce"


def build_parser(prog=None):
    parser = make_parser(NAME, __doc__, prog)
    add_rl_options(parser, episodes=2000, quick_episodes=200, lr=0.002)
    parser.add_argument("--batch-episodes", type=positive(int), default=2,
                        help="episodes played per gradient step (default: %(default)s)")
    add_device_option(parser)
    return parser


def policy_loss(w, obs, actions, advantages):
    return kp.rl.policy_gradient_loss(mlp(w, obs), actions, advantages)


def value_loss(v, obs, returns):
    return kp.mean(kp.square(mlp(v, obs)[:, 0] - returns))


def play(env, w, v, rng, gamma):
    """One episode with actions sampled from the policy: (states, actions, returns, total reward)."""
    obs, _ = env.reset()
    states, actions, rewards = [], [], []
    while True:
        logits = mlp(w, obs[None])[0]
        p = np.exp(logits - logits.max())
        action = int(rng.choice(len(p), p=p / p.sum()))
        states.append(obs)
        actions.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        if terminated or truncated:
            break
    # Cut off by the time limit: the pole still stands, so the future is worth the baseline's estimate.
    bootstrap = 0.0 if terminated else float(mlp(v, obs[None])[0, 0])
    returns = kp.rl.discounted_returns(rewards, gamma, bootstrap=bootstrap)
    return np.array(states, np.float32), np.array(actions), returns.astype(np.float32), float(sum(rewards))


def main(argv=None, prog=None):
    """Train until solved (or out of episodes); returns the episodes' returns and when it was solved."""
    args = parse(build_parser(prog), argv)
    with one_blas_thread():
        return _train(args)


def _train(args):
    episodes = args.episodes or (200 if args.quick else 2000)
    report_every = args.report_every or (10 if args.quick else 50)
    kp.set_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    env = make_env(args.seed)
    n_obs, n_act = env.observation_space.shape[0], env.action_space.n
    print(f"reinforce: CartPole-v1, {n_obs} observations, {n_act} actions; up to {episodes} episodes, "
          f"{args.batch_episodes} per update")
    w = scale_last_layer(mlp_init(rng, (n_obs, args.hidden, n_act)), 0.01)
    v = mlp_init(rng, (n_obs, args.hidden, 1))
    # The networks train on the device; the episodes are played on the host, one state at a time,
    # with a copy of them taken after each update (on the CPU: the same arrays).
    w, v = on_device((w, v), args.device)
    acting = on_host((w, v))
    w_opts = kp.optim.optimizers(w, kp.optim.Adam, lr=args.lr)
    v_opts = kp.optim.optimizers(v, kp.optim.Adam, lr=args.lr * 5)
    dpolicy, dvalue = kp.grad(policy_loss), kp.grad(value_loss)

    scores, batch, steps, start = Scores(), [], 0, time.perf_counter()
    for episode in range(1, episodes + 1):
        states, actions, returns, total = play(env, *acting, rng, args.gamma)
        batch.append((states, actions, returns))
        steps += len(actions)
        solved = scores.add(total)
        if episode % report_every == 0 or solved or episode == episodes:
            print(scores.line(time.perf_counter() - start), flush=True)
        if solved:
            break
        if len(batch) == args.batch_episodes:
            obs = np.concatenate([b[0] for b in batch])
            act = np.concatenate([b[1] for b in batch])
            ret = np.concatenate([b[2] for b in batch])
            obs, act, ret = on_device((obs, act, ret), args.device)
            adv = ret - mlp(v, obs)[:, 0]  # the baseline: what the state was expected to be worth
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            kp.optim.update(w, dpolicy(w, obs, act, adv), w_opts)
            kp.optim.update(v, dvalue(v, obs, ret), v_opts)
            acting = on_host((w, v))
            batch = []
    seconds = time.perf_counter() - start
    env.close()
    print(scores.summary(seconds, steps))
    checkpoint = save_checkpoint({"policy": w, "baseline": v}, args.out)
    curve = save_returns_curve(scores.returns, args.out, "REINFORCE with a baseline on CartPole-v1",
                               not args.no_plot)
    return {"returns": scores.returns, "solved_at": scores.solved_at, "steps": steps, "seconds": seconds,
            "checkpoint": checkpoint, "plot": curve}


if __name__ == "__main__":
    raise SystemExit(run_script(main))
