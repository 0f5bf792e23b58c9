"""Character-level LSTM language model: learn a text one character at a time, then write like it.

Embedding -> LSTM -> Dense over the characters, as in Knet's charlm tutorial. The text is cut into
``--batch-size`` parallel streams and read in windows of ``--seq-len`` characters (truncated
backpropagation through time: the LSTM state is carried from one window to the next, the graph is
cut between them). Adam with the gradients clipped to global norm ``--clip``. The last 5% of the
text is held out: after every epoch it prints the loss (nats per character) on the training windows
and on that held-out part, (:epoch, 1, :trn, 1.62, :dev, 1.58), then a sample of generated text.

The default text is tinyshakespeare (kp.datasets.tinyshakespeare, shipped with knetpy); --path
trains on any UTF-8 text file instead. The model is saved with its vocabulary;
--generate N then writes N characters from the saved model without training:

    knetpy train charlm --epochs 3
    knetpy train charlm --generate 500 --temperature 0.7 --start "ROMEO:"
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import knetpy as kp
from knetpy.layers import LSTM, Dense, Embedding
from knetpy.progress import ProgressBar

from ._common import (
    CHECKPOINT,
    ExampleError,
    add_device_option,
    add_sized_option,
    add_threads_option,
    add_training_options,
    host_float,
    host_floats,
    knet_line,
    knetpy_threads,
    make_parser,
    on_device,
    parse,
    positive,
    run_script,
    save_checkpoint,
    save_curve,
)

NAME = "charlm"
HELD_OUT = 0.05  # the fraction of the text kept for the dev loss
MIN_HELD_OUT = 3  # characters: enough for one held-out stream of an input and its next character
QUICK_CHARS = 20_000  # --quick trains on the first this many characters


def build_parser(prog=None):
    parser = make_parser(NAME, __doc__, prog)
    parser.add_argument("--path", type=Path, default=None, help="a UTF-8 text file to learn (default: tinyshakespeare)")
    add_training_options(parser, epochs=(1, 1), batch_size=(128, 16), lr=3e-3)
    add_sized_option(parser, "--seq-len", 100, 32, help="characters per window")
    add_sized_option(parser, "--embed", 256, 32, help="embedding size")
    add_sized_option(parser, "--hidden", 256, 64, help="LSTM size")
    parser.add_argument("--clip", type=positive(float), default=5.0, help="gradient norm limit (default: %(default)s)")
    add_threads_option(parser)
    add_device_option(parser)
    parser.add_argument("--sample", type=int, default=300,
                        help="characters to generate after training (default: %(default)s; 0 for none)")
    parser.add_argument("--generate", type=positive(int), default=None, metavar="N",
                        help="do not train: write N characters from the saved model and exit")
    parser.add_argument("--model", type=Path, default=None,
                        help=f"the saved model for --generate (default: OUT/{CHECKPOINT})")
    parser.add_argument("--temperature", type=positive(float), default=1.0,
                        help="sampling temperature: below 1 safer, above 1 wilder (default: %(default)s)")
    parser.add_argument("--start", default=None,
                        help="text the generated characters continue (default: a newline, if the text has them)")
    return parser


# -- the model -----------------------------------------------------------------------------------------
def build_model(vocab_size, embed, hidden):
    """The three layers, by name (a dict, so kp.save / kp.load keep it without any custom class)."""
    return {
        "embed": Embedding(vocab_size, embed),
        "lstm": LSTM(hidden, return_sequences=True, return_state=True),
        "out": Dense(vocab_size),
    }


def forward(model, ids, state=None):
    """Scores (N*T, vocab) for character ids (N, T), and the LSTM state (h, c) after the last one."""
    y, h, c = model["lstm"](model["embed"](ids), initial_state=state)
    return model["out"](y.reshape(-1, y.shape[-1])), (h, c)


def mean_loss(model, batches, device="cpu"):
    """Mean loss per character over ``batches`` in inference mode, the state carried across windows."""
    state, means, sizes = None, [], []
    with kp.no_grad():
        for x, t in batches:
            x, t = on_device((x, t), device)
            scores, state = forward(model, x, state)
            means.append(kp.nll(scores, t.reshape(-1)).value)
            sizes.append(t.size)
    return float(host_floats(means) @ sizes) / sum(sizes)


# -- text ------------------------------------------------------------------------------------------------
def load_text(path, quick):
    """The training corpus and the held-out one (same vocabulary)."""
    if path is None:
        text = kp.datasets.tinyshakespeare().text
        source = "tinyshakespeare"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ExampleError(f"cannot read the text file {path}: {e}") from None
        source = str(path)
    if quick:
        text = text[:QUICK_CHARS]
    if not text:
        raise ExampleError(f"{source} is empty")
    vocab = sorted(set(text))
    split = int(len(text) * (1 - HELD_OUT))
    train = kp.datasets.TextCorpus(text[:split], vocab=vocab)
    dev = kp.datasets.TextCorpus(text[split:], vocab=vocab)
    return train, dev, source


def start_text(start, vocab):
    """The text generation continues: ``start`` checked against ``vocab``, by default a newline
    (or, for a text without newlines, its first vocabulary character)."""
    if start is None:
        return "\n" if "\n" in vocab else vocab[0]
    if not start:
        raise ExampleError("--start must not be empty: the model needs a character to continue from")
    unknown = sorted(set(start) - set(vocab))
    if unknown:
        raise ExampleError(f"--start has characters the model never saw: {', '.join(map(repr, unknown))}")
    return start


def generate(model, vocab, n, *, temperature=1.0, start=None, rng=None):
    """``n`` characters sampled one at a time from the model, continuing the text ``start``.

    Each character is drawn from softmax(scores / temperature) of the one before.
    """
    start = start_text(start, vocab)
    index = {c: i for i, c in enumerate(vocab)}
    rng = rng or kp.backend.rng()
    device = kp.device(model["out"])
    for layer in model.values():
        layer.eval()
    out = []
    with kp.no_grad():
        scores, state = forward(model, on_device(np.array([[index[c] for c in start]]), device))
        for _ in range(n):  # sampled on the host: one character's scores come over per step
            logits = kp.backend.to_host(scores.value[-1]).astype(np.float64) / temperature
            p = np.exp(logits - logits.max())
            nxt = rng.choice(len(vocab), p=p / p.sum())
            out.append(vocab[nxt])
            scores, state = forward(model, on_device(np.array([[nxt]]), device), state)
    return "".join(out)


def load_model(path):
    """The layers and the vocabulary saved by a training run."""
    if not Path(path).is_file():
        raise ExampleError(f"no saved model at {path}; train one first (knetpy train charlm), or pass --model")
    saved = kp.load(path)
    if not (isinstance(saved, dict) and {"layers", "vocab"} <= set(saved)):
        raise ExampleError(f"{path} is a knetpy checkpoint but not a charlm model (no layers and vocab in it)")
    return saved["layers"], saved["vocab"]


# -- the program -----------------------------------------------------------------------------------------
def main(argv=None, prog=None):
    """Train (or with --generate, sample); returns the losses, the sample and the saved files."""
    parser = build_parser(prog)
    args = parse(parser, argv)
    if args.sample < 0:
        parser.error(f"--sample must be 0 or more, got {args.sample}")
    with knetpy_threads(args.threads):
        return run(args)


def run(args):
    """What :func:`main` does once the options are parsed and checked."""
    kp.set_seed(args.seed)
    if args.generate is not None:
        model, vocab = load_model(args.model or args.out / CHECKPOINT)
        model = on_device(model, args.device)
        start = start_text(args.start, vocab)
        text = generate(model, vocab, args.generate, temperature=args.temperature, start=start)
        print(start + text)
        return {"text": text}

    train, dev, source = load_text(args.path, args.quick)
    if len(dev) < MIN_HELD_OUT or len(train) < 2 * args.batch_size:
        raise ExampleError(f"{source} is too short: {len(train) + len(dev)} characters cannot fill "
                           f"--batch-size {args.batch_size} streams and hold out {HELD_OUT:.0%} (at least "
                           f"{MIN_HELD_OUT} characters); use a longer text or a smaller --batch-size")
    start = start_text(args.start, train.vocab) if args.sample else None  # a bad --start fails before training
    batches = train.batches(args.batch_size, args.seq_len)
    dev_batches = dev.batches(min(args.batch_size, (len(dev) - 1) // 2), args.seq_len)
    print(f"{source}: {len(train)} training and {len(dev)} held-out characters, vocabulary {train.vocab_size}; "
          f"{len(batches)} windows of {args.batch_size} x {args.seq_len} per epoch")
    model = on_device(build_model(train.vocab_size, args.embed, args.hidden), args.device)
    with kp.no_grad():  # the layers create their weights on their first call (on the device)
        forward(model, on_device(train.data[None, :1], args.device))
    params = [p for layer in model.values() for p in layer.parameters()]
    opt = kp.optim.Adam(params, lr=args.lr, clip_norm=args.clip)

    losses, history = [], {"loss": [], "dev_loss": []}
    for epoch in range(1, args.epochs + 1):
        for layer in model.values():
            layer.train()
        state, total, count, window_losses, sizes = None, 0.0, 0, [], []
        with ProgressBar(len(batches), prefix=f"epoch {epoch}/{args.epochs}") as bar:
            for i, (x, t) in enumerate(batches, 1):
                x, t = on_device((x, t), args.device)  # one copy of the window per step
                scores, (h, c) = forward(model, x, state)
                loss = kp.nll(scores, t.reshape(-1))
                loss.backward()
                opt.step()
                opt.zero_grad()
                state = (h.detach(), c.detach())  # carry the state on, but not the graph
                # the losses stay where they are computed until the epoch ends (or the bar redraws):
                # reading one every step would wait for the device every step
                window_losses.append(loss.value)
                sizes.append(t.size)
                total = total + loss.value * t.size  # (for the bar only)
                count += t.size
                bar.update(i, lambda total=total, count=count: {"loss": host_float(total) / count})
        epoch_losses = host_floats(window_losses)
        losses += epoch_losses.tolist()
        for layer in model.values():
            layer.eval()
        history["loss"].append(float(epoch_losses @ sizes) / count)
        history["dev_loss"].append(mean_loss(model, dev_batches, args.device))
        print(knet_line("epoch", epoch, "trn", history["loss"][-1], "dev", history["dev_loss"][-1]), flush=True)

    sample = ""
    if args.sample:
        sample = generate(model, train.vocab, args.sample, temperature=args.temperature, start=start)
        print(f"--- {args.sample} characters sampled at temperature {args.temperature}:")
        print(start + sample)
        print("---")
    checkpoint = save_checkpoint({"layers": model, "vocab": "".join(train.vocab)}, args.out)
    curve = save_curve({"loss": losses}, args.out, title="Character LSTM: loss per window",
                       enabled=not args.no_plot, xlabel="window")
    return {"losses": losses, "loss": history["loss"], "dev_loss": history["dev_loss"], "sample": sample,
            "checkpoint": checkpoint, "plot": curve}


if __name__ == "__main__":
    raise SystemExit(run_script(main))
