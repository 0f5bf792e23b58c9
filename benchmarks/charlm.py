"""Character-level LSTM language model on tinyshakespeare: knetpy against PyTorch, same run.

Model: embedding 65 -> 256, LSTM 256, dense 256 -> 65, softmax cross-entropy. The text is cut into
128 parallel streams; each training step takes the next window of 100 characters from every stream
(truncated backpropagation through time: the LSTM state is carried from one window to the next and
cut from the graph). One epoch is 87 windows of 128 x 100. SGD with learning rate 1 and gradients
clipped to global norm 5. float32 throughout; both frameworks start from the same weights.

    python benchmarks/charlm.py                 # one epoch, both frameworks
    python benchmarks/charlm.py --windows 5     # a quick profile run
    python benchmarks/charlm.py --only knetpy   # one framework, in this process (for profiling)
    python benchmarks/charlm.py --threads 1     # knetpy without its own threads (BLAS threads only)

knetpy runs at its defaults (automatic threads: the LSTM runs one part of the batch per core, and the
large GEMMs are split), as PyTorch with ``torch.set_num_threads(cores)``. JAX (a jit-compiled step,
benchmarks/peers_jax.py) runs too, in its own process, when it is installed.

Prints a markdown table (seconds, ratio to PyTorch, final loss) and the BLAS libraries that ran.
The Haswell workaround variables of the development shells slow OpenBLAS down; unset them for a
benchmark run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/charlm.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import knetpy as kp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers_jax  # noqa: E402
from common import emit, knetpy_warm_up, lstm_lm_flops  # noqa: E402

EMBED, HIDDEN, BATCH, WINDOW, LR, CLIP = 256, 256, 128, 100, 1.0, 5.0


def load_streams(path, batch):
    """The text as ``batch`` parallel streams of character ids, and the vocabulary.

    ``path`` None: tinyshakespeare as shipped with knetpy.
    """
    text = Path(path).read_text(encoding="utf-8") if path else kp.datasets.tinyshakespeare().text
    vocab = sorted(set(text))
    lookup = np.zeros(max(map(ord, vocab)) + 1, dtype=np.int64)
    lookup[[ord(ch) for ch in vocab]] = np.arange(len(vocab))
    ids = lookup[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)]
    per_stream = len(ids) // batch
    return ids[: batch * per_stream].reshape(batch, per_stream), vocab


def windows(streams, window):
    """(inputs, targets) for each consecutive window; targets are the inputs shifted by one."""
    n = (streams.shape[1] - 1) // window
    for k in range(n):
        a = k * window
        yield streams[:, a : a + window], streams[:, a + 1 : a + window + 1]


def initial_weights(vocab_size, seed=0):
    """One set of float32 weights both frameworks start from (knetpy layout: x @ w)."""
    kp.set_seed(seed)
    w_ih, w_hh, b_ih, b_hh = (p.value for p in kp.rnn_init("lstm", EMBED, HIDDEN)[0])
    r = np.random.default_rng(seed)
    return {
        "embed": r.standard_normal((vocab_size, EMBED)).astype(np.float32),
        "w_ih": w_ih,
        "w_hh": w_hh,
        "b_ih": b_ih,
        "b_hh": b_hh,
        "w_out": r.uniform(-1, 1, (HIDDEN, vocab_size)).astype(np.float32)
        / np.sqrt(HIDDEN, dtype=np.float32),
        "b_out": np.zeros(vocab_size, dtype=np.float32),
    }


def train_knetpy(streams, weights, n_windows, threads=None):
    """One pass over the windows; returns (seconds, last loss)."""
    from knetpy.layers import LSTM, Dense, Embedding

    if threads:  # else knetpy's defaults: automatic threads
        kp.set_num_threads(threads)
    embed = Embedding(*weights["embed"].shape)
    lstm = LSTM(HIDDEN, return_sequences=True, return_state=True)
    out = Dense(weights["w_out"].shape[1])
    lstm(np.zeros((1, 1, EMBED), dtype=np.float32))  # build, then load the shared weights
    out(np.zeros((1, HIDDEN), dtype=np.float32))
    for param, key in [
        (embed.w, "embed"),
        (lstm.w_ih_l0, "w_ih"),
        (lstm.w_hh_l0, "w_hh"),
        (lstm.b_ih_l0, "b_ih"),
        (lstm.b_hh_l0, "b_hh"),
        (out.w, "w_out"),
        (out.b, "b_out"),
    ]:
        param.value[...] = weights[key]
    params = embed.parameters() + lstm.parameters() + out.parameters()
    state = None
    loss = None
    knetpy_warm_up()
    start = time.perf_counter()
    for k, (x, t) in enumerate(windows(streams, WINDOW)):
        if k == n_windows:
            break
        y, h, c = lstm(embed(x), initial_state=state)
        loss = kp.nll(out(y.reshape(-1, HIDDEN)), t.reshape(-1))
        loss.backward()
        state = (h.detach(), c.detach())  # truncated BPTT: carry the state, cut the graph
        # SGD with global-norm clipping (the factor as torch.nn.utils.clip_grad_norm_ computes it)
        norm = float(np.sqrt(sum(float(np.vdot(q.grad, q.grad)) for q in params)))
        step = np.float32(LR * min(1.0, CLIP / (norm + 1e-6)))
        for q in params:
            q.grad *= step
            q.value -= q.grad
            q.grad = None
    return time.perf_counter() - start, float(loss.value)


def train_torch(streams, weights, n_windows):
    import torch

    torch.set_num_threads(os.cpu_count())
    vocab_size = weights["embed"].shape[0]

    class CharLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(vocab_size, EMBED)
            self.lstm = torch.nn.LSTM(EMBED, HIDDEN, batch_first=True)
            self.out = torch.nn.Linear(HIDDEN, vocab_size)

        def forward(self, x, state):
            y, state = self.lstm(self.embed(x), state)
            return self.out(y.reshape(-1, HIDDEN)), state

    model = CharLM()
    with torch.no_grad():  # knetpy's w is the transpose of torch's weight, gate blocks in the same order
        model.embed.weight.copy_(torch.from_numpy(weights["embed"]))
        model.lstm.weight_ih_l0.copy_(torch.from_numpy(weights["w_ih"].T.copy()))
        model.lstm.weight_hh_l0.copy_(torch.from_numpy(weights["w_hh"].T.copy()))
        model.lstm.bias_ih_l0.copy_(torch.from_numpy(weights["b_ih"]))
        model.lstm.bias_hh_l0.copy_(torch.from_numpy(weights["b_hh"]))
        model.out.weight.copy_(torch.from_numpy(weights["w_out"].T.copy()))
        model.out.bias.copy_(torch.from_numpy(weights["b_out"]))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    state = None
    loss = None
    start = time.perf_counter()
    for k, (x, t) in enumerate(windows(streams, WINDOW)):
        if k == n_windows:
            break
        scores, (h, c) = model(torch.from_numpy(x), state)
        loss = loss_fn(scores, torch.from_numpy(t.reshape(-1)))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        state = (h.detach(), c.detach())
    return time.perf_counter() - start, float(loss.detach())


def blas_report():
    """The BLAS libraries loaded (threadpoolctl), and PyTorch's own build setting when it was imported."""
    lines = []
    torch = sys.modules.get("torch")
    if torch is not None:
        blas = [
            p.split("=", 1)[1]
            for p in torch.__config__.show().replace(",", " ").split()
            if p.startswith("BLAS_INFO=")
        ]
        lines.append(
            f"PyTorch {torch.__version__}: BLAS_INFO={blas[0] if blas else '?'} (linked into torch), "
            f"{torch.get_num_threads()} threads"
        )
    if "knetpy" in sys.modules and kp.get_num_threads() > 1:
        how = ("automatic: BLAS runs 1 thread while split ops run" if kp.parallel.is_auto()
               else "kp.set_num_threads; NumPy's BLAS then runs 1 thread")
        lines.append(f"knetpy {kp.get_num_threads()} threads ({how})")
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return lines + ["threadpoolctl not installed: NumPy's BLAS unknown"]
    for info in threadpool_info():
        lines.append(
            f"{info.get('internal_api')} {info.get('version')} ({info.get('architecture', '-')} kernel, "
            f"{info.get('num_threads')} threads) from {Path(info.get('filepath', '?')).name}"
        )
    return lines


def run_alone(framework, args):
    """Time one framework in a fresh Python process, so that neither pays the other's warm-up
    (first-touch page faults of a new process are slow on virtual machines) nor inherits it."""
    cmd = [sys.executable, __file__, "--only", framework, "--result-line"]
    if args.data is not None:
        cmd += ["--data", args.data]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    if args.windows is not None:
        cmd += ["--windows", str(args.windows)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            _, name, secs, loss = line.split(" ", 3)
            blas = [b[5:] for b in done.stdout.splitlines() if b.startswith("BLAS ")]
            return name.replace("_", " "), float(secs), float(loss), blas
    raise RuntimeError(f"{framework} run printed no result:\n{done.stdout}\n{done.stderr}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="a UTF-8 text file (default: tinyshakespeare, shipped with knetpy)")
    parser.add_argument(
        "--windows", type=int, default=None, help="stop after this many windows (default: one epoch)"
    )
    parser.add_argument("--only", choices=("knetpy", "torch", "jax"), default=None, help="run one framework, here")
    parser.add_argument("--threads", type=int, default=None, help="knetpy's threads (default: automatic)")
    parser.add_argument("--result-line", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    streams, vocab = load_streams(args.data, BATCH)
    total = (streams.shape[1] - 1) // WINDOW
    n = total if args.windows is None else min(args.windows, total)
    if args.only is not None:
        weights = initial_weights(len(vocab))
        if args.only == "knetpy":
            name, (secs, loss) = "knetpy", train_knetpy(streams, weights, n, args.threads)
        elif args.only == "jax":
            name = f"JAX_{peers_jax.version()}"
            secs, loss = peers_jax.charlm(windows(streams, WINDOW), weights, n, LR, CLIP, BATCH, HIDDEN)
        else:
            import torch

            name, (secs, loss) = f"PyTorch_{torch.__version__}", train_torch(streams, weights, n)
        if args.result_line:
            print(f"RESULT {name} {secs!r} {loss!r}")
            for line in blas_report():
                print(f"BLAS {line}")
        else:
            print(f"{name.replace('_', ' ')}: {secs:.2f} s, final loss {loss:.4f}")
            print("\n".join(blas_report()))
        return

    print(
        f"tinyshakespeare: {streams.size} chars as {BATCH} streams, {n} of {total} windows of {WINDOW}, "
        f"vocabulary {len(vocab)}, {os.cpu_count()} cores; each framework in its own process"
    )
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS"):
        if var in os.environ:
            print(f"note: {var}={os.environ[var]} is set")
    rows = [run_alone("knetpy", args), run_alone("torch", args)] + ([run_alone("jax", args)] if peers_jax.available() else [])
    ref = rows[1][1]
    print()
    print("| framework | seconds | ratio to PyTorch | final loss |")
    print("|---|---|---|---|")
    for name, secs, loss, _ in rows:
        print(f"| {name} | {secs:.2f} | {secs / ref:.2f} | {loss:.4f} |")
    flops = lstm_lm_flops(n * BATCH * WINDOW, EMBED, HIDDEN, len(vocab))
    for name, secs, loss, _ in rows:
        emit("CharLM", name.split()[0], secs, flops, result=f"loss {loss:.4f}")
    print()
    print("BLAS:")
    for line in dict.fromkeys(b for row in rows for b in row[3]):
        print(f"- {line}")


if __name__ == "__main__":
    main()
