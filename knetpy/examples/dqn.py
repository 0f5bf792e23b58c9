"""DQN on CartPole-v1: a Q-network trained from a replay buffer against a slowly moving target network.

Knet's deep Q-learning example, written the Knet way: the Q-network is a plain list of arrays
(4 -> 128 -> 128 -> 2 action values) and ``kp.grad`` differentiates the Huber loss between Q(s, a)
and the target r + gamma (1 - done) Q_target(s', argmax_a' Q(s', a')) (Double DQN; --no-double for
the max of the target network). Actions are epsilon-greedy, epsilon falling linearly from 1 to 0.01
over the first 5000 steps; every step stores the transition in the replay buffer (kp.rl.ReplayBuffer) and
takes one Adam step on a random batch from it; the target network follows the online one by Polyak
averaging (--tau). An episode cut off at 500 steps is not "done": its last state keeps its future
value in the target. Whenever the last 10 training episodes average 450 or more, the greedy policy
(no exploration) plays 100 evaluation episodes on a separate environment; training stops once their
mean return reaches 475 (CartPole-v1's solved score). DQN's training returns swing (a good Q-network
can unlearn), so the stopping rule tests the policy itself. Needs gymnasium: pip install 'knetpy[rl]'.
"""

from __future__ import annotations

import time

import numpy as np

import knetpy as kp

from ._cartpole import (
    SOLVED_SCORE,
    SOLVED_WINDOW,
    Scores,
    add_rl_options,
    evaluate,
    make_env,
    mlp,
    mlp_init,
    save_returns_curve,
    scale_last_layer,
)
from ._common import (
    add_device_option,
    add_sized_option,
    make_parser,
    on_device,
    on_host,
    one_blas_thread,
    parse,
    positive,
    run_script,
    save_checkpoint,
)

NAME = "dqn"


def build_parser(prog=None):
    parser = make_parser(NAME, __doc__, prog)
    add_rl_options(parser, episodes=1000, quick_episodes=150, lr=1e-3)
    add_sized_option(parser, "--batch-size", 128, 64, help="transitions per gradient step")
    parser.add_argument("--buffer", type=positive(int), default=100_000,
                        help="replay buffer capacity, in transitions (default: %(default)s)")
    parser.add_argument("--learning-starts", type=positive(int), default=1000,
                        help="random steps stored before the first update (default: %(default)s)")
    parser.add_argument("--epsilon-steps", type=positive(int), default=None,
                        help="steps over which epsilon falls from 1 to 0.01 (default: 5000; 3000 with --quick)")
    parser.add_argument("--tau", type=positive(float), default=0.005,
                        help="target network update: target += tau (online - target) each step "
                             "(default: %(default)s)")
    parser.add_argument("--lr-decay-steps", type=positive(int), default=50_000,
                        help="steps over which the learning rate falls linearly to a tenth: late updates stay small "
                             "and a good policy is not unlearned (default: %(default)s)")
    parser.add_argument("--no-double", action="store_true", help="the plain DQN target, max over the target network")
    add_device_option(parser)
    return parser


def td_loss(w, obs, actions, targets):
    return kp.rl.q_loss(mlp(w, obs), actions, targets)


def main(argv=None, prog=None):
    """Train until solved (or out of episodes); returns the episodes' returns and when it was solved."""
    args = parse(build_parser(prog), argv)
    with one_blas_thread():
        return _train(args)


def _train(args):
    episodes = args.episodes or (150 if args.quick else 1000)
    report_every = args.report_every or (10 if args.quick else 50)
    epsilon = kp.rl.linear_schedule(1.0, 0.01, args.epsilon_steps or (3000 if args.quick else 5000))
    lr = kp.rl.linear_schedule(args.lr, args.lr / 10, args.lr_decay_steps)
    kp.set_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    env, eval_env = make_env(args.seed), make_env(args.seed + 10_000)
    n_obs, n_act = env.observation_space.shape[0], env.action_space.n
    print(f"dqn: CartPole-v1, {n_obs} observations, {n_act} actions; up to {episodes} episodes, "
          f"{'Double DQN' if not args.no_double else 'DQN'} with a {args.buffer}-transition replay buffer")
    w = on_device(scale_last_layer(mlp_init(rng, (n_obs, args.hidden, args.hidden, n_act)), 0.1), args.device)
    target = [a.copy() for a in w]
    opts = kp.optim.optimizers(w, kp.optim.Adam, lr=args.lr, clip_norm=10.0)
    dloss = kp.grad(td_loss)
    buffer = kp.rl.ReplayBuffer(args.buffer, (n_obs,), seed=args.seed)

    scores, steps, start = Scores(), 0, time.perf_counter()
    evaluations, solved_at = [], None  # (episode, mean greedy return over 100 episodes)
    for _ in range(episodes):
        obs, _ = env.reset()
        total, done = 0.0, False
        while not done:
            eps = epsilon(steps)
            # the network changes every step: each state goes over, and its one action comes back
            action = kp.rl.epsilon_greedy(mlp(w, on_device(obs[None], args.device))[0], eps, rng)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            buffer.add(obs, action, reward, next_obs, terminated)
            obs, total, steps, done = next_obs, total + reward, steps + 1, terminated or truncated
            if steps >= args.learning_starts:
                b = on_device(buffer.sample(args.batch_size), args.device)
                next_q = mlp(target, b.next_obs)
                online = None if args.no_double else mlp(w, b.next_obs)
                y = kp.rl.q_targets(b.rewards, next_q, b.dones, args.gamma, next_q_online=online)
                for opt in opts:
                    opt.lr = lr(steps)
                kp.optim.update(w, dloss(w, b.obs, b.actions, y), opts)
                for t, a in zip(target, w):  # Polyak averaging: the target moves slowly, targets stay steady
                    t += args.tau * (a - t)
        scores.add(total)
        n = len(scores.returns)
        if n % report_every == 0 or n == episodes:
            print(scores.line(time.perf_counter() - start, "epsilon", f"{eps:.3f}"), flush=True)
        if n >= 10 and np.mean(scores.returns[-10:]) >= 450:
            greedy = evaluate(eval_env, on_host(w))
            evaluations.append((n, float(np.mean(greedy))))
            print(f"(:episode, {n}, :greedy_mean{SOLVED_WINDOW}, {evaluations[-1][1]:.1f})", flush=True)
            if evaluations[-1][1] >= SOLVED_SCORE:
                solved_at = n
                break
    seconds = time.perf_counter() - start
    env.close()
    eval_env.close()
    if solved_at is not None:
        print(f"solved: the greedy policy's mean return over {SOLVED_WINDOW} evaluation episodes is "
              f"{evaluations[-1][1]:.1f} (>= {SOLVED_SCORE:g}) after {solved_at} training episodes, {steps} steps, "
              f"{seconds:.1f} s")
    else:
        best = max((m for _, m in evaluations), default=None)
        print(f"not solved in {len(scores.returns)} episodes ({steps} steps, {seconds:.1f} s); best mean greedy "
              f"return over {SOLVED_WINDOW} episodes: {'none evaluated' if best is None else f'{best:.1f}'}")
    checkpoint = save_checkpoint({"q": w}, args.out)
    curve = save_returns_curve(scores.returns, args.out, "DQN on CartPole-v1", not args.no_plot)
    return {"returns": scores.returns, "solved_at": solved_at, "evaluations": evaluations, "steps": steps,
            "seconds": seconds,
            "checkpoint": checkpoint, "plot": curve}


if __name__ == "__main__":
    raise SystemExit(run_script(main))
