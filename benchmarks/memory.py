"""Peak memory of each benchmark's training: knetpy against PyTorch (and JAX when installed).

Each (benchmark, framework) pair runs in a fresh Python process: it imports the framework, loads the
data, then resets the kernel's high-water mark of its resident memory (writing 5 to
/proc/self/clear_refs resets VmHWM to the current VmRSS), trains for a fixed number of steps with
the same code as the timing benchmark, and reports VmHWM minus that baseline: the extra memory
training needed at its peak (activations, gradients, workspaces, and for JAX its compiler).

| benchmark | steps measured | batch |
|---|---|---|
| LinReg | 500 SGD steps (full batch) | 506 |
| Softmax, MLP 64 | 300 batches (``fit``, one epoch over 30,000 images) | 100 |
| LeNet | 20 batches (knetpy built from layers + ``backward``) | 100 |
| CharLM | 20 windows (truncated BPTT) | 128 x 100 |
| ResNet-20 | 3 batches of CIFAR-format images (knetpy and PyTorch only) | 128 |

    python benchmarks/memory.py                      # all five, every framework found
    python benchmarks/memory.py --only lenet --json mem.json
    python benchmarks/memory.py --quick              # a few steps each

Prints a markdown table of MB (1 MB = 2**20 bytes); ``--json PATH`` also writes
``{"method": "...", "LinReg": {"knetpy": MB, "PyTorch": MB, "JAX": MB}, ...}``. Each framework runs
at its defaults (threads as it chooses them). Needs Linux (/proc); Fashion-MNIST for Softmax, MLP
and LeNet (those rows are skipped without it).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import SKIPPED  # noqa: E402

#: name -> (module of the timing benchmark, steps, quick steps)
BENCHMARKS = {
    "LinReg": ("linreg", 500, 20),
    "Softmax": ("mlp", 300, 10),
    "MLP 64": ("mlp", 300, 10),
    "LeNet": ("lenet", 20, 2),
    "CharLM": ("charlm", 20, 2),
    "ResNet-20": ("scaling", 3, 1),  # the network of scaling.py; no JAX version
}
FRAMEWORKS = {"knetpy": "knetpy", "PyTorch": "torch", "JAX": "jax"}
METHOD = ("peak RSS minus baseline RSS, each framework in a fresh process: VmHWM after training minus VmRSS "
          "after imports and data loading (VmHWM reset there by writing 5 to /proc/self/clear_refs); MB = 2**20 "
          "bytes; steps: LinReg {LinReg}, Softmax/MLP {Softmax} batches of 100, LeNet {LeNet} batches of 100, "
          "CharLM {CharLM} windows of 128x100, ResNet-20 {ResNet-20} batches of 128; JAX's figure includes its jit "
          "compilation, knetpy's the loading of its compiled kernels when numba is installed")


# -- measuring, inside the child process -------------------------------------------------------------------
def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(train):
    """MB of ``train()``: (peak RSS above the baseline, library files paged in meanwhile, the baseline).

    The baseline is the RSS now. The second number is how much of the peak is file-backed pages
    (mostly the framework's shared libraries, faulted in by its first ops) rather than memory it
    allocated: the growth of RssFile, an upper bound on its share at the moment of the peak.
    """
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current VmRSS, so earlier peaks (data loading) do not count
    base, files = _status_kb("VmRSS"), _status_kb("RssFile")
    train()
    return (_status_kb("VmHWM") - base) / 1024, (_status_kb("RssFile") - files) / 1024, base / 1024


def _mlp_data(steps):
    import mlp

    xtrn, ytrn, xtst, ytst = mlp.load(False)
    n = steps * 100
    # a small test set: the final evaluation must not set the peak
    return xtrn[:n], ytrn[:n], xtst[:100], ytst[:100]


def setup(bench, framework, steps):
    """``train()`` for one benchmark and framework, with its data and starting weights loaded."""
    hidden = {"Softmax": [], "MLP 64": [64]}.get(bench)
    if bench == "LinReg":
        import linreg

        x, y = linreg.load()
        run = {"knetpy": linreg.run_knetpy, "PyTorch": linreg.run_torch, "JAX": linreg.run_jax}[framework]
        return lambda: run(x, y, steps, 0.1)
    if hidden is not None:
        import mlp

        data = _mlp_data(steps)
        run = {"knetpy": mlp.run_knetpy_fit, "PyTorch": mlp.run_torch, "JAX": mlp.run_jax}[framework]
        return lambda: run(data, hidden, 1, 0.5)
    if bench == "LeNet":
        import lenet

        xtrn, ytrn = lenet.load("train")
        xtrn, ytrn = xtrn[: steps * lenet.BATCH], ytrn[: steps * lenet.BATCH]
        xtst, ytst = xtrn[: lenet.BATCH], ytrn[: lenet.BATCH]
        if framework == "knetpy":
            import knetpy as kp

            return lambda: lenet.finish(lenet.run_layers(kp, lenet_weights(), xtrn, ytrn, xtst, ytst, steps))
        if framework == "PyTorch":
            import torch

            model = lenet.torch_model(torch, seed=0)
            return lambda: lenet.finish(lenet.run_torch(torch, model, xtrn, ytrn, xtst, ytst, steps))
        import peers_jax

        return lambda: lenet.finish(peers_jax.lenet(lenet_weights(), xtrn, ytrn, xtst, ytst, steps, lenet.BATCH, lenet.LR))
    if bench == "CharLM":
        import charlm

        streams, vocab = charlm.load_streams(None, charlm.BATCH)
        weights = charlm.initial_weights(len(vocab))
        if framework == "JAX":
            import peers_jax

            return lambda: peers_jax.charlm(charlm.windows(streams, charlm.WINDOW), weights, steps, charlm.LR,
                                            charlm.CLIP, charlm.BATCH, charlm.HIDDEN)
        run = {"knetpy": charlm.train_knetpy, "PyTorch": charlm.train_torch}[framework]
        return lambda: run(streams, weights, steps)
    if bench == "ResNet-20":
        import scaling

        x, y, _ = scaling.cifar_batches(scaling.BATCH * steps)
        return lambda: scaling.train_resnet20(framework, x, y, steps)
    raise ValueError(bench)


def lenet_weights(seed=0):
    """Random LeNet weights in knetpy's layout (memory does not depend on their values)."""
    g = np.random.default_rng(seed)
    shapes = [(20, 1, 5, 5), (1, 20, 1, 1), (50, 20, 5, 5), (1, 50, 1, 1), (800, 500), (500,), (500, 10), (10,)]
    return [(g.standard_normal(s) * 0.05).astype(np.float32) for s in shapes]


# -- the driver ----------------------------------------------------------------------------------------------
def run_child(bench, framework, steps):
    """Measure one pair in a fresh process: ``measure``'s numbers, or None when its data is missing."""
    cmd = [sys.executable, __file__, "--child", bench, framework, str(steps)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode == SKIPPED:
        return None
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return tuple(float(v) for v in line.split()[1:])
    raise RuntimeError(f"{bench} / {framework} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")


def available():
    import peers_jax  # its switch KNETPY_BENCH_NO_JAX hides JAX here too

    return [name for name, module in FRAMEWORKS.items()
            if importlib.util.find_spec(module) is not None and (name != "JAX" or peers_jax.available())]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", action="append", metavar="BENCH",
                   help="measure only this benchmark (repeatable; e.g. linreg, mlp-64, lenet)")
    p.add_argument("--frameworks", default=None, help="comma-separated subset of: " + ", ".join(FRAMEWORKS))
    p.add_argument("--quick", action="store_true", help="a few steps each (a smoke test, not a measurement)")
    p.add_argument("--json", metavar="PATH", help="also write the table as JSON here")
    p.add_argument("--child", nargs=3, metavar=("BENCH", "FRAMEWORK", "STEPS"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.child:
        bench, framework, steps = a.child
        importlib.import_module(FRAMEWORKS[framework])  # imports belong to the baseline, not to training
        train = setup(bench, framework, int(steps))
        print("RESULT " + " ".join(repr(v) for v in measure(train)))
        return 0

    if not os.path.exists("/proc/self/clear_refs"):
        print("memory.py needs Linux's /proc/self/clear_refs to reset the peak-memory mark", file=sys.stderr)
        return 1
    keys = {name.lower().replace(" ", "-"): name for name in BENCHMARKS}
    unknown = [k for k in a.only or [] if k.lower() not in keys]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(keys)}")
    benches = [keys[k.lower()] for k in a.only] if a.only else list(BENCHMARKS)
    frameworks = available()
    if a.frameworks:
        wanted = [f.strip() for f in a.frameworks.split(",")]
        bad = [f for f in wanted if f not in FRAMEWORKS]
        if bad:
            p.error(f"unknown framework(s) {bad}; choose from {', '.join(FRAMEWORKS)}")
        frameworks = [f for f in frameworks if f in wanted]
    steps = {b: BENCHMARKS[b][2 if a.quick else 1] for b in BENCHMARKS}
    print(f"Peak memory of training above the baseline after imports and data loading, MB; each framework in "
          f"its own process at its defaults; {'--quick: ' if a.quick else ''}steps {steps}; {os.cpu_count()} cores\n")

    result = {"method": METHOD.format(**steps)}
    ref = "PyTorch" if "PyTorch" in frameworks else None
    print("| benchmark | " + " | ".join(frameworks) + (" | knetpy ÷ PyTorch |" if ref else " |"))
    print("|---" * (len(frameworks) + 1 + bool(ref)) + "|")
    for bench in benches:
        row, code, ran = {}, {}, False
        for fw in frameworks:
            if fw == "JAX" and bench == "ResNet-20":
                continue
            ran = True
            got = run_child(bench, fw, steps[bench])
            if got is not None:
                row[fw], code[fw] = round(got[0], 1), got[1]
        if not row:
            why = "its data is not on this machine" if ran else "no version of it for these frameworks"
            print(f"| {bench} | skipped ({why}) |")
            continue
        result[bench] = row
        cells = [f"{row[fw]:.1f} ({code[fw]:.0f})" if fw in row else "—" for fw in frameworks]
        if ref:
            ratio = row.get("knetpy", float("nan")) / row[ref] if row.get(ref) else float("nan")
            cells.append(f"{ratio:.2f}")
        print(f"| {bench} | " + " | ".join(cells) + " |", flush=True)
    print("\nIn brackets: how much of it is library code paged in by the first steps (growth of RssFile), "
          "not memory the framework allocated.")
    print(f"method: {result['method']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
