"""Attention learns to sort: a small transformer encoder sorts sequences of digits.

The input is a sequence of random digits (8 digits 0-9 by default); the target is the same digits
sorted, predicted position by position by an encoder-only model: an embedding plus a learned
position vector, transformer encoder blocks (multi-head self-attention and a feed-forward network,
each with a residual connection and LayerNorm), then a linear layer giving 10 scores per position.
Every training step draws a fresh batch; the exact-match accuracy (every position right) is measured
on held-out sequences, with a cosine-decayed learning rate for Adam.

Why one block can sort: attending evenly to all positions averages the digits' embeddings, a histogram
of the input; the feed-forward network at output position i reads the i-th smallest digit off it (the
position vector tells it i). --task reverse and --task copy need the positions instead: each output
position must attend to one input position. The attention weights of the first block on one test
sequence are saved as a heat map (attention.png, one panel per head) beside the learning curve and the
model (model.ckpt, kp.load gives it back).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import knetpy as kp
from knetpy.parallel import auto_blas_threads, largest_gemm_flops

from .._common import (
    DEFAULT_OUT,
    add_sized_option,
    choice,
    knet_line,
    make_parser,
    parse,
    positive,
    run_script,
    save_checkpoint,
    save_curve,
)

NAME = "transformer"
TASKS = {"sort": "the digits in increasing order", "reverse": "the digits back to front",
         "copy": "the digits unchanged"}
TARGET = 0.99  # exact-match accuracy the lab reaches (checked by its test)
ATTENTION = "attention.png"


def build_parser(prog=None):
    parser = make_parser(NAME, __doc__, prog or f"knetpy lab {NAME}")
    parser.set_defaults(out=DEFAULT_OUT / f"lab-{NAME}")
    parser.add_argument("--task", type=choice(TASKS, "task"), default="sort",
                        help="; ".join(f"{k}: {v}" for k, v in TASKS.items()) + " (default: %(default)s)")
    parser.add_argument("--length", type=positive(int), default=8, help="digits per sequence (default: %(default)s)")
    parser.add_argument("--digits", type=positive(int), default=10,
                        help="size of the alphabet, 0 .. digits-1 (default: %(default)s)")
    add_sized_option(parser, "--steps", 1500, 500, help="training steps (one fresh batch each)")
    add_sized_option(parser, "--layers", 2, 1, help="transformer encoder blocks")
    parser.add_argument("--batch-size", type=positive(int), default=64, help="sequences per step (default: %(default)s)")
    parser.add_argument("--d-model", type=positive(int), default=64, help="embedding size (default: %(default)s)")
    parser.add_argument("--heads", type=positive(int), default=4, help="attention heads (default: %(default)s)")
    parser.add_argument("--ff", type=positive(int), default=128,
                        help="hidden units of the feed-forward network (default: %(default)s)")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout in the blocks (default: %(default)s)")
    parser.add_argument("--norm", type=choice(("pre", "post"), "norm"), default="pre",
                        help="LayerNorm before each branch (pre) or after each residual sum (post) "
                             "(default: %(default)s)")
    parser.add_argument("--lr", type=positive(float), default=3e-3, help="peak learning rate (default: %(default)s)")
    parser.add_argument("--test-size", type=positive(int), default=1000,
                        help="held-out sequences for the accuracy (default: %(default)s)")
    return parser


def _value(x):
    return getattr(x, "value", x)


def make_batch(rng, n, length, digits, task):
    """``(x, y)``: ``n`` random sequences (n, length) of ints below ``digits`` and their targets."""
    x = rng.integers(0, digits, (n, length))
    y = {"sort": lambda: np.sort(x, axis=1), "reverse": lambda: x[:, ::-1].copy(), "copy": lambda: x.copy()}[task]()
    return x, y


def build_model(length, digits, d_model, heads, ff, layers, dropout=0.0, norm_first=True):
    """Embedding + learned positions, ``layers`` encoder blocks, (a final LayerNorm when pre-norm), scores."""
    L = kp.layers
    blocks = [L.TransformerEncoderLayer(d_model, heads, ff, dropout=dropout, norm_first=norm_first)
              for _ in range(layers)]
    final = [L.LayerNorm(d_model)] if norm_first else []
    return kp.Sequential([L.Embedding(digits, d_model, init="glorot_uniform"), L.PositionalEmbedding(length, d_model),
                          *blocks, *final, L.Dense(digits, n_in=d_model)])


def sequence_loss(model, x, y, digits):
    """Mean cross-entropy over every position of every sequence."""
    return kp.nll(kp.reshape(model(x), (-1, digits)), y.reshape(-1))


def evaluate(model, x, y):
    """``(exact-match accuracy, per-digit accuracy)``: whole sequences right, and single positions right."""
    model.eval()
    try:
        with kp.no_grad():
            pred = _value(model(x)).argmax(axis=-1)
    finally:
        model.train()
    return float((pred == y).all(axis=1).mean()), float((pred == y).mean())


def first_block_weights(model, x):
    """The per-head attention weights (heads, L, L) of the first encoder block on one sequence ``x`` (L,)."""
    h = x[None]
    model.eval()
    try:
        with kp.no_grad():
            for layer in model.layers():
                if isinstance(layer, kp.layers.TransformerEncoderLayer):
                    inp = layer.norm1(h) if layer.norm_first else h
                    _, w = layer.self_attn(inp, need_weights=True, average_attn_weights=False)
                    return _value(w)[0]
                h = layer(h)
    finally:
        model.train()
    raise ValueError("the model has no TransformerEncoderLayer")


def cosine_lr(step, steps, peak, warmup):
    """Linear warm-up over ``warmup`` steps, then a cosine decay to 0."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def main(argv=None, prog=None):
    """Train the encoder on the task; prints and returns the held-out exact-match accuracy and the files."""
    parser = build_parser(prog)
    args = parse(parser, argv)
    if not 0.0 <= args.dropout < 1.0:
        parser.error(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.d_model % args.heads:
        parser.error(f"--d-model ({args.d_model}) must be divisible by --heads ({args.heads})")
    kp.set_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    xtst, ytst = make_batch(np.random.default_rng(args.seed + 1), args.test_size, args.length, args.digits, args.task)
    model = build_model(args.length, args.digits, args.d_model, args.heads, args.ff, args.layers, args.dropout,
                        norm_first=args.norm == "pre")
    opt = kp.optim.Adam(model.parameters(), lr=args.lr)
    print(f"task {args.task}: {args.length} digits below {args.digits} -> {TASKS[args.task]}; {args.layers} "
          f"{args.norm}-norm block(s), d_model {args.d_model}, {args.heads} heads, {model.count_params()} "
          f"parameters; {args.steps} steps of {args.batch_size} fresh sequences")

    every = max(1, args.steps // 10)
    history = {"loss": [], "tst_exact": [], "tst_token": []}
    losses, window = [], []
    flops = largest_gemm_flops(model, np.zeros((args.batch_size * args.length, 1)))
    with auto_blas_threads(flops):  # small products: BLAS's threads would cost more than they save
        for step in range(args.steps):
            opt.lr = cosine_lr(step, args.steps, args.lr, warmup=max(1, args.steps // 20))
            x, y = make_batch(rng, args.batch_size, args.length, args.digits, args.task)
            loss = sequence_loss(model, x, y, args.digits)
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(float(loss.value))
            window.append(losses[-1])
            if (step + 1) % every == 0 or step + 1 == args.steps:
                exact, token = evaluate(model, xtst, ytst)
                history["loss"].append(float(np.mean(window)))
                history["tst_exact"].append(exact)
                history["tst_token"].append(token)
                window = []
                print(knet_line("step", step + 1, "loss", history["loss"][-1], "exact", exact, "token", token),
                      flush=True)

    exact, token = history["tst_exact"][-1], history["tst_token"][-1]
    print(f"exact-match accuracy on {args.test_size} held-out sequences: {exact:.4f} (per digit {token:.4f}; "
          f"target {TARGET})")
    result = {"task": args.task, "exact_match": exact, "token_accuracy": token, "target": TARGET, "loss": losses,
              "history": history, "model": model}
    result["checkpoint"] = save_checkpoint(model, args.out)
    result["plot"] = save_curve(history, args.out, title=f"Transformer, {args.task} task", enabled=not args.no_plot,
                                xlabel=f"evaluation (every {every} steps)",
                                labels={"loss": "train loss (mean since the last point)",
                                        "tst_exact": "test exact match", "tst_token": "test per-digit accuracy"})
    result["attention_map"] = None
    if not args.no_plot:
        sample = xtst[0]
        weights = first_block_weights(model, sample)
        target = " ".join(map(str, ytst[0]))
        result["attention_map"] = kp.plot.attention_map(
            weights, Path(args.out) / ATTENTION, queries=list(sample), keys=list(sample),
            title=f"first block's attention, input {' '.join(map(str, sample))} -> {target}")
        if result["attention_map"] is not None:
            print(f"saved {result['attention_map']}")
    return result


if __name__ == "__main__":
    raise SystemExit(run_script(main))
