"""Recurrent networks on the temporal-order and echo tasks: a vanilla RNN against an LSTM.

Three experiments, each printing what it measures:

1. Temporal order (Hochreiter & Schmidhuber): classify the order of two X/Y markers hidden among
   distractors. At the 'easy' level (7-8 steps) a relu RNN and an LSTM both learn it; at the harder
   'normal' level (30-40 steps, markers 15-25 steps apart) the LSTM is clearly ahead.
2. Echo with truncated backpropagation through time: one long stream cut into windows, the state
   carried from window to window (detached, so gradients stop at the window's start). The target at
   step t is the input at t - delay, so the first steps of each window are only right because the
   state was carried; starting each window from zeros leaves them at chance.
3. Gradient-norm clipping: every optimizer step rescales the gradients so their global norm is at
   most --clip (``clip_norm=``); the lab reports how often that fired.

    knetpy lab sequences --quick
"""

from __future__ import annotations

import numpy as np

import knetpy as kp
from knetpy.layers import LSTM, Dense, SimpleRNN

from .._common import make_parser, parse, positive, run_script, save_curve

NAME = "sequences"

#: The hyper-parameters shared by the lab and its tests (PyTorch runs the same ones there).
ORDER = {"hidden": 32, "lr": 1e-2, "steps": 300, "batch": 32, "clip": 1.0}
ECHO = {"hidden": 16, "lr": 1e-2, "steps": 200, "batch": 32, "clip": 1.0, "length": 20, "delay": 3}
SUCCESS = 0.95  # a run "learns" the task when its test accuracy reaches this


def order_data(n, level, seed):
    x, y = kp.datasets.temporal_order(n, level, seed=seed)
    return x.astype(np.float32), y


def echo_data(n, length, delay, seed):
    x, y = kp.datasets.echo(n, length, delay=delay, seed=seed)
    return x.astype(np.float32), y


def make_rnn(cell, hidden, return_sequences=False, return_state=False):
    """'lstm', or a vanilla RNN with activation 'relu' / 'tanh'."""
    kw = {"return_sequences": return_sequences, "return_state": return_state}
    return LSTM(hidden, **kw) if cell == "lstm" else SimpleRNN(hidden, activation=cell, **kw)


class _Stats:
    """Counts the optimizer steps whose gradient norm the clipping had to bring down."""

    def __init__(self, clip):
        self.clip, self.steps, self.clipped, self.max_norm = clip, 0, 0, 0.0

    def see(self, params):
        norm = float(kp.optim.global_norm([p.grad for p in params.values() if p.grad is not None]))
        self.steps += 1
        self.clipped += norm > self.clip
        self.max_norm = max(self.max_norm, norm)


def train_order(cell, seed, level="easy", hidden=32, lr=1e-2, steps=300, batch=32, clip=1.0, stats=None):
    """Train ``cell`` on temporal order at ``level`` with Adam and norm clipping; test accuracy."""
    kp.set_seed(seed)
    rnn, head = make_rnn(cell, hidden), Dense(4)
    xtr, ytr = order_data(steps * batch, level, 1000 + seed)
    xte, yte = order_data(1000, level, 99)
    head(rnn(xtr[:1]))  # build
    params = {**{f"rnn.{k}": p for k, p in rnn.params.items()}, **{f"head.{k}": p for k, p in head.params.items()}}
    opt = kp.optim.Adam(params, lr=lr, clip_norm=clip)
    for i in range(steps):
        rows = slice(i * batch, (i + 1) * batch)
        kp.nll(head(rnn(xtr[rows])), ytr[rows]).backward()
        if stats is not None:
            stats.see(params)
        opt.step()
        opt.zero_grad()
    with kp.no_grad():
        return float((head(rnn(xte)).value.argmax(-1) == yte).mean())


def train_echo(cell, seed, hidden=16, lr=1e-2, steps=200, batch=32, clip=1.0, length=20, delay=3, window=None,
               carry=True):
    """Train ``cell`` on echo; test accuracy on the steps that have something to echo.

    With ``window``, each batch is one stream of ``steps`` windows of ``window`` steps (truncated
    BPTT); ``carry`` passes each window's final state, detached, to the next one.
    """
    kp.set_seed(seed)
    rnn, head = make_rnn(cell, hidden, return_sequences=True, return_state=window is not None), Dense(2)
    if window is None:
        xtr, ytr = echo_data(steps * batch, length, delay, 1000 + seed)
        xte, yte = echo_data(1000, length, delay, 99)
    else:
        xtr, ytr = echo_data(batch, steps * window, delay, 1000 + seed)
        xte, yte = echo_data(200, 20 * window, delay, 99)
    def out(y):
        return head(y[0] if isinstance(y, tuple) else y)

    out(rnn(xtr[:1, :2]))  # build
    params = {**{f"rnn.{k}": p for k, p in rnn.params.items()}, **{f"head.{k}": p for k, p in head.params.items()}}
    opt = kp.optim.Adam(params, lr=lr, clip_norm=clip)
    state = None
    for i in range(steps):
        if window is None:
            xb, yb, first = xtr[i * batch : (i + 1) * batch], ytr[i * batch : (i + 1) * batch], delay
        else:
            cols = slice(i * window, (i + 1) * window)
            xb, yb, first = xtr[:, cols], ytr[:, cols], delay if i == 0 else 0
        y = rnn(xb, initial_state=state) if window is not None else rnn(xb)
        scores = out(y)
        kp.nll(kp.reshape(scores[:, first:], (-1, 2)), yb[:, first:].reshape(-1)).backward()
        opt.step()
        opt.zero_grad()
        if window is not None and carry:
            state = tuple(s.detach() for s in y[1:]) if cell == "lstm" else y[1].detach()
    with kp.no_grad():
        if window is None:
            pred = out(rnn(xte)).value.argmax(-1)
            return float((pred[:, delay:] == yte[:, delay:]).mean())
        # The test stream runs window by window the same way; scored after the first window.
        state, hits = None, []
        for k in range(xte.shape[1] // window):
            cols = slice(k * window, (k + 1) * window)
            y = rnn(xte[:, cols], initial_state=state)
            if carry:
                state = tuple(y[1:]) if cell == "lstm" else y[1]
            if k:
                hits.append(out(y).value.argmax(-1) == yte[:, cols])
        return float(np.mean(hits))


def build_parser(prog=None):
    parser = make_parser(NAME, __doc__, prog)
    parser.add_argument("--hidden", type=positive(int), default=32, help="recurrent units (default: %(default)s)")
    parser.add_argument("--clip", type=positive(float), default=1.0,
                        help="gradient-norm clipping threshold (default: %(default)s)")
    parser.add_argument("--seeds", type=positive(int), default=None,
                        help="training seeds per model on the easy level (default: 4; 2 with --quick)")
    return parser


def main(argv=None, prog=None):
    """Run the three experiments; returns their accuracies."""
    args = parse(build_parser(prog or f"knetpy lab {NAME}"), argv)
    seeds = args.seeds or (2 if args.quick else 4)
    steps = 100 if args.quick else 400
    common = {"hidden": args.hidden, "lr": ORDER["lr"], "clip": args.clip}
    result = {"order": {}, "tbptt": {}}

    print("1. temporal order: test accuracy per training seed")
    normal = (100, 16) if args.quick else (600, 32)  # (steps, batch)
    for level, n_seeds, (n_steps, batch) in (("easy", seeds, (steps, 32)), ("normal", 1, normal)):
        for cell in ("relu", "lstm"):
            stats = _Stats(args.clip)
            accs = [train_order(cell, args.seed + s, level, steps=n_steps, batch=batch, stats=stats, **common)
                    for s in range(n_seeds)]
            result["order"][f"{level}/{cell}"] = accs
            print(f"   {level:<6} {cell:<4}: {' '.join(f'{a:.3f}' for a in accs)}   "
                  f"(clipped {stats.clipped} of {stats.steps} steps, largest gradient norm {stats.max_norm:.2f})")

    print("2. echo (delay 3) with truncated BPTT, windows of 10 steps: accuracy")
    for carry in (True, False):
        acc = train_echo("relu", args.seed, hidden=ECHO["hidden"], steps=steps, window=10, carry=carry, clip=args.clip)
        key = "carried" if carry else "reset"
        result["tbptt"][key] = acc
        print(f"   state {key:<7}: {acc:.3f}")
    history = {f"order {k}": v for k, v in result["order"].items() if k.startswith("easy")}
    save_curve(history, args.out, title="temporal order, easy: accuracy per seed", enabled=not args.no_plot,
               xlabel="seed")
    return result


if __name__ == "__main__":
    raise SystemExit(run_script(main))
