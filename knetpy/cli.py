"""The command line, ``knetpy`` or ``python -m knetpy``: quickstart, train, bench and info.

    knetpy quickstart                 train a small CNN on handwritten digits, save it, show how to use it
    knetpy train NAME [options]       run an example (knetpy train --help lists them)
    knetpy lab NAME [options]         run a course lab (knetpy lab --list lists them)
    knetpy tune mlp --budget N        search an MLP's learning rate and size (hyperband, random, grid, golden)
    knetpy doctor NAME                check an example's model before a long run (loss, gradients, lr, ...)
    knetpy chat [--quick]             train (or load) a seq2seq chatbot and serve its page on localhost
    knetpy bench [--quick] [NAME ...] run the benchmark scripts of a source checkout (--report FILE: BENCHMARKS.md)
    knetpy info                       versions, BLAS, threads, GPU, optional extras and data found

Each command has its own ``--help``. Problems the user can fix (missing data, a missing saved model,
a mistyped name) are reported in one line with exit status 2.
"""

from __future__ import annotations

import argparse
import difflib
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "quickstart": "train a small CNN on an offline digits set, save it and show how to use it",
    "train": "run an example: housing, softmax, mlp, lenet, charlm, spirals, resnet, reinforce, dqn",
    "lab": "run a course lab: knetpy lab --list shows them",
    "tune": "search hyper-parameters: knetpy tune mlp --budget N",
    "doctor": "check a model before a long run: knetpy doctor mlp (lenet, charlm, ...)",
    "chat": "train (or load) a seq2seq chatbot and serve its chat page on localhost",
    "bench": "run the benchmark scripts (in a source checkout)",
    "info": "version, backend, BLAS, threads, GPU, optional extras and datasets found",
}


def _top_parser():
    parser = argparse.ArgumentParser(
        prog="knetpy", description="knetpy: a small, fast deep-learning framework on NumPy.",
        epilog="Run 'knetpy COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _user_errors():
    from .examples._common import USER_ERRORS

    return USER_ERRORS


# -- quickstart ------------------------------------------------------------------------------------------
def quickstart(argv) -> int:
    """Train the quickstart model; status 0 when it reached its expected test accuracy, 1 otherwise."""
    from .examples import quickstart as qs

    result = qs.main(argv, prog="knetpy quickstart")
    return 0 if result["accuracy"] >= result["target"] else 1


# -- train and lab ---------------------------------------------------------------------------------------
def _listing(registry, title):
    width = max(map(len, registry), default=0)
    lines = [f"  {name:<{width}}  {text}" for name, text in registry.items()]
    return f"{title}:\n" + "\n".join(lines)


def _run_program(argv, command, registry, get) -> int:
    """``knetpy COMMAND NAME [options]``: run one program of ``registry`` with its own options."""
    usage = f"usage: knetpy {command} NAME [options]   (knetpy {command} NAME --help for the options of one)"
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print(usage + "\n\n" + _listing(registry, "examples" if command == "train" else "labs"))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    try:
        program = get(name)
    except ValueError as e:
        print(f"{usage}\nknetpy {command}: error: {e}", file=sys.stderr)
        return 2
    program.main(rest, prog=f"knetpy {command} {name}")
    return 0


def train(argv) -> int:
    """``knetpy train NAME [options]``: run one example with its own options."""
    from .examples import EXAMPLES, get

    return _run_program(argv, "train", EXAMPLES, get)


def lab(argv) -> int:
    """``knetpy lab NAME [options]``: run one course lab with its own options."""
    from .examples.labs import LABS, get

    return _run_program(argv, "lab", LABS, get)


# -- tune ------------------------------------------------------------------------------------------------
#: What ``knetpy tune`` can search -> its module in knetpy.examples.
TUNABLE = {"mlp": "tune_mlp"}


def tune(argv) -> int:
    """``knetpy tune NAME [options]``: a hyper-parameter search, printing its trials and the best configuration."""
    import importlib

    usage = f"usage: knetpy tune NAME [options]   (NAME: {', '.join(TUNABLE)}; knetpy tune NAME --help for options)"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in TUNABLE:
        close = difflib.get_close_matches(name, list(TUNABLE), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"{usage}\nknetpy tune: error: unknown search {name!r}{hint}", file=sys.stderr)
        return 2
    module = importlib.import_module(f".examples.{TUNABLE[name]}", __package__)
    module.main(rest, prog=f"knetpy tune {name}")
    return 0


# -- doctor ----------------------------------------------------------------------------------------------
def doctor(argv) -> int:
    """``knetpy doctor NAME``: the training doctor's report on an example's model; status 1 on a problem."""
    from .examples import _doctor

    report = _doctor.main(argv, prog="knetpy doctor")
    return 1 if report.problems else 0


# -- bench -----------------------------------------------------------------------------------------------
#: Benchmarks in the order they run, with the options of their short version (``--quick``).
BENCHMARKS = {
    "linreg": ["--steps", "500", "--repeat", "1"],
    "overhead": ["--steps", "2000"],
    "mlp": ["--quick"],
    "lenet": ["--batches", "10"],
    "charlm": ["--windows", "3"],
    "memory": ["--quick"],  # peak memory of each benchmark above, per framework
    "scaling": ["--quick"],  # ResNet-20 epoch; time per sample over batch size and width
}
#: Modules of benchmarks/ that are not benchmarks: shared code, the JAX peers the scripts import, and the
#: report driver (``--report``), which would write BENCHMARKS.md when run as one more benchmark.
NOT_BENCHMARKS = ("common", "peers_jax", "report")
#: The exit status of a benchmark whose data is not on this machine (benchmarks/common.py: SKIPPED).
BENCH_SKIPPED = 77
#: How a benchmark script prints one result, then JSON (benchmarks/common.py: RESULT_PREFIX).
BENCH_RESULT = "BENCH-RESULT "


def benchmarks_dir():
    """The benchmarks/ folder of a source checkout holding this package, or None for an installed package."""
    root = Path(__file__).resolve().parent.parent
    # A checkout has pyproject.toml beside the package; site-packages (where an installed knetpy
    # lives) might hold some other project's benchmarks/ folder.
    if (root / "pyproject.toml").is_file() and (root / "benchmarks").is_dir():
        return root / "benchmarks"
    return None


def _benchmark_scripts(folder):
    """name -> script path: the known ones in their order, then any others by name."""
    found = {p.stem: p for p in sorted(folder.glob("*.py")) if not p.stem.startswith("_") and p.stem not in NOT_BENCHMARKS}
    ordered = {name: found.pop(name) for name in BENCHMARKS if name in found}
    ordered.update(found)
    return ordered


def _quick_args(name, script):
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    return ["--quick"] if '"--quick"' in script.read_text(encoding="utf-8", errors="replace") else None


def _run_echoing(cmd, cwd):
    """Run ``cmd``, echoing its output: (exit status, the results it printed as BENCH_RESULT lines)."""
    import json

    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, text=True, bufsize=1)
    rows = []
    for line in proc.stdout:
        if line.startswith(BENCH_RESULT):
            rows.append(json.loads(line[len(BENCH_RESULT):]))
        else:
            print(line, end="", flush=True)
    return proc.wait(), rows


def _print_summary(folder, measured, memory_json):
    """The table of benchmarks/report.py for the results of this run (peers, FLOP floor, ratios, memory)."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("knetpy_bench_report", folder / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    memory = json.loads(memory_json.read_text()) if memory_json.is_file() else None
    peak = report.measure_peak()
    print(f"\nSummary (SGEMM peak now {peak:.0f} GFLOP/s; FLOP floor = the run's GEMM FLOPs at that peak):\n")
    print(report.summary_table([{"results": measured}], peak, memory))


def bench(argv) -> int:
    """``knetpy bench [--quick] [--list] [NAME ...]``: run the benchmark scripts one after the other."""
    parser = argparse.ArgumentParser(
        prog="knetpy bench",
        description="Run the benchmark scripts of a source checkout (benchmarks/*.py), each timing knetpy "
                    "against PyTorch in the same run and printing a markdown table.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="which benchmarks (default: all)")
    parser.add_argument("--quick", action="store_true", help="a short version of each (a few steps or batches)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--report", metavar="FILE", help="run benchmarks/report.py instead: every benchmark --runs "
                        "times, then the tables written into FILE (e.g. BENCHMARKS.md) and each run kept")
    parser.add_argument("--runs", type=int, default=1, help="with --report: full runs (default: %(default)s)")
    args = parser.parse_args(argv)
    folder = benchmarks_dir()
    if folder is None:
        print("The benchmark scripts are not installed with the package: they are in the benchmarks/ folder of "
              "knetpy's source repository. In a clone of it run 'python -m knetpy bench', or one script "
              "alone, e.g. 'python benchmarks/linreg.py'.")
        return 1
    if args.report:
        cmd = [sys.executable, str(folder / "report.py"), "--out", args.report, "--runs", str(args.runs)]
        cmd += ["--quick"] * args.quick + [a for name in args.names for a in ("--only", name)]
        return subprocess.run(cmd, cwd=folder.parent).returncode
    scripts = _benchmark_scripts(folder)
    if args.list:
        for name, path in scripts.items():
            print(f"{name:<10} {path}")
        return 0
    for name in args.names:
        if name not in scripts:
            close = difflib.get_close_matches(name, list(scripts), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            parser.error(f"unknown benchmark {name!r}{hint} (benchmarks: {', '.join(scripts)})")
    chosen = {n: scripts[n] for n in (args.names or scripts)}
    results, measured = [], []
    scratch = tempfile.TemporaryDirectory(prefix="knetpy-bench-")
    memory_json = Path(scratch.name) / "memory.json"
    for i, (name, script) in enumerate(chosen.items(), 1):
        extra = []
        if args.quick:
            extra = _quick_args(name, script)
            if extra is None:
                print(f"[{i}/{len(chosen)}] {name}: skipped (no short version known; run it without --quick)")
                results.append((name, "skipped", 0.0))
                continue
        print(f"[{i}/{len(chosen)}] {name}: python {script.relative_to(folder.parent)} {' '.join(extra)}".rstrip(),
              flush=True)
        if name == "memory":
            extra = [*extra, "--json", str(memory_json)]  # for the memory column of the summary
        start = time.perf_counter()
        status, rows = _run_echoing([sys.executable, str(script), *extra], folder.parent)
        measured += rows
        outcome = {0: "ok", BENCH_SKIPPED: "skipped"}.get(status, f"failed (exit {status})")
        results.append((name, outcome, time.perf_counter() - start))
        print(flush=True)
    print("| benchmark | result | seconds |\n|---|---|---|")
    for name, outcome, seconds in results:
        print(f"| {name} | {outcome} | {seconds:.1f} |")
    if measured and (folder / "report.py").is_file():
        _print_summary(folder, measured, memory_json)
    scratch.cleanup()
    return 0 if all(outcome in ("ok", "skipped") for _, outcome, _ in results) else 1


# -- chat ------------------------------------------------------------------------------------------------
def chat(argv) -> int:
    """``knetpy chat``: train or load the chatbot, answer ``--ask`` questions, else serve its page."""
    from .examples._common import ExampleError, positive

    parser = argparse.ArgumentParser(
        prog="knetpy chat",
        description="Train a sequence-to-sequence chatbot with attention on knetpy's shipped dialogue pairs "
                    "(or load the one saved in --out), then serve a chat page showing its answers and their "
                    "attention weights. The page needs the extra 'chat': pip install 'knetpy[chat]'.")
    parser.add_argument("--out", type=Path, default=Path("knetpy-runs/chat"),
                        help="where the trained model is saved and looked for (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="train a smaller model for fewer epochs (about 20 seconds)")
    parser.add_argument("--retrain", action="store_true", help="train even when a saved model exists")
    parser.add_argument("--epochs", type=positive(int), default=None, help="epochs (default: 20; 10 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--ask", action="append", metavar="TEXT",
                        help="print the answer to TEXT and exit without serving (may be repeated)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s; 0 for any free one)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in 0..65535, got {args.port}")
    from . import chat as chatbot

    if not args.ask:
        try:
            chatbot.require_web()  # before training, not after
        except ImportError as e:
            raise ExampleError(f"{e} (or use --ask TEXT to chat on the command line)") from None
    try:
        bot, _ = chatbot.train_or_load(args.out, quick=args.quick, retrain=args.retrain, epochs=args.epochs,
                                       seed=args.seed, log=lambda line: print(line, flush=True))
    except ValueError as e:  # a file in --out that is not a chatbot
        raise ExampleError(f"{e}; use --retrain to replace it") from None
    if args.ask:
        for text in args.ask:
            try:
                print(f"> {text}\n{bot.reply(text)['answer']}")
            except ValueError as e:
                print(f"> {text}\n(refused: {e})")
        return 0
    try:
        chatbot.serve(bot, args.host, args.port,
                      announce=lambda url: print(f"chat page at {url} (Ctrl-C to stop)", flush=True))
    except OSError as e:
        raise ExampleError(str(e)) from None
    return 0


# -- info ------------------------------------------------------------------------------------------------
def _processor():
    """The CPU's model name (from /proc/cpuinfo on Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _package_version(name):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _blas_lines():
    """What threads knetpy and BLAS run, and the rule that chose them."""
    from . import parallel

    n, why = parallel.threads_setting()
    lines = [f"knetpy threads: {n} ({why})"]
    threads, reason = parallel.blas_setting()
    lines.append(f"BLAS threads: {threads if threads is not None else 'unknown'} now ({reason})")
    lines.append(f"BLAS rule: {parallel.BLAS_RULE}; the quickstart and the image examples apply it "
                 "(kp.parallel.auto_blas_threads)")
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return lines + ["BLAS: unknown (install threadpoolctl, the extra 'fast', to see which BLAS NumPy runs)"]
    libs = threadpool_info()
    for lib in libs:
        lines.append(f"{lib.get('user_api', '?')}: {lib.get('internal_api')} {lib.get('version')} "
                     f"({lib.get('architecture') or 'kernel unknown'}, {lib.get('num_threads')} threads)")
    return lines if libs else lines + ["BLAS: threadpoolctl found no BLAS library loaded"]


def _gpu_lines():
    if _package_version("cupy") is None and not any(
            _package_version(n) for n in ("cupy-cuda12x", "cupy-cuda11x", "cupy-cuda13x")):
        return ["GPU: none (CuPy is not installed, so knetpy runs on the CPU; pip install 'knetpy[gpu]' for CUDA GPUs)"]
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
        names = [cupy.cuda.runtime.getDeviceProperties(i)["name"] for i in range(count)]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    except Exception as e:  # noqa: BLE001 - any CUDA failure means: no usable GPU, and why
        return [f"GPU: none usable (CuPy is installed; {type(e).__name__}: {e})"]
    if not count:
        return ["GPU: none (CuPy is installed but sees no GPU)"]
    lines = [f"GPU: {count} device(s): {', '.join(f'cuda:{i} {n}' for i, n in enumerate(names))}"]
    mib, gib = 1 << 20, 1 << 30
    try:
        rt = cupy.cuda.runtime
        version = lambda v: f"{v // 1000}.{v % 1000 // 10}"  # noqa: E731 - CUDA encodes 12.4 as 12040
        lines.append(f"CUDA: runtime {version(rt.runtimeGetVersion())}, driver {version(rt.driverGetVersion())}; "
                     f"CuPy {cupy.__version__}")
        free, total = rt.memGetInfo()
        pool = cupy.get_default_memory_pool()
        limit = pool.get_limit()
        lines.append(
            f"GPU memory (cuda:{cupy.cuda.Device().id}): {free / gib:.1f} of {total / gib:.1f} GiB free; CuPy memory "
            f"pool: {pool.used_bytes() / mib:.1f} MiB in use, {pool.total_bytes() / mib:.1f} MiB held, "
            f"limit {f'{limit / gib:.1f} GiB' if limit else 'none'}; pinned pool: "
            f"{cupy.get_default_pinned_memory_pool().n_free_blocks()} free blocks")
    except Exception as e:  # noqa: BLE001 - the device is listed; its details are a bonus
        lines.append(f"GPU details unavailable ({type(e).__name__}: {e})")
    return lines


def _dataset_lines():
    from .datasets import download
    from .datasets.cifar import ARCHIVE, CIFAR10_SOURCE, FOLDER
    from .datasets.mnist import FASHION_MNIST_SOURCE, MNIST_SOURCE

    images = ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz")
    sources = [(FASHION_MNIST_SOURCE, images, False), (MNIST_SOURCE, images, False),
               (CIFAR10_SOURCE, (FOLDER, ARCHIVE), True)]
    lines = [f"data folders: ${download.ENV_DATA}={os.environ.get(download.ENV_DATA, '(unset)')}, "
             f"cache {download.cache_dir()}"]
    for source, names, dir_ok in sources:
        found = download.find_file(source, names, dir_ok=dir_ok)
        lines.append(f"  {source.title}: {found.parent if found else 'not found (downloaded on first use)'}")
    lines.append("  UCI housing, tinyshakespeare: shipped with knetpy")
    digits = "available (scikit-learn)" if _package_version("scikit-learn") else "needs scikit-learn (extra 'data')"
    lines.append(f"  digits: {digits}")
    return lines


def info(argv) -> int:
    """``knetpy info``: what knetpy runs on."""
    argparse.ArgumentParser(prog="knetpy info", description=COMMANDS["info"]).parse_args(argv)
    import numpy as np

    import knetpy as kp

    print(f"knetpy {kp.__version__} ({Path(kp.__file__).parent})")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.system()} {platform.machine()}")
    print(f"CPU: {_processor()}, {os.cpu_count()} cores")
    print(f"backend: NumPy on the CPU (CuPy arrays run on a GPU); default dtype {kp.get_dtype()}")
    for line in _blas_lines():
        print(line)
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                       "OPENBLAS_CORETYPE") if k in os.environ}
    print("thread settings: " + (", ".join(f"{k}={v}" for k, v in env.items()) or "none set in the environment"))
    for line in _gpu_lines():
        print(line)
    extras = {"data": "scikit-learn", "plot": "matplotlib", "progress": "tqdm", "bench": "threadpoolctl",
              "rl": "gymnasium", "chat": "starlette", "test": "torch"}
    print("optional extras: " + ", ".join(
        f"{extra} ({pkg} {_package_version(pkg) or 'missing'})" for extra, pkg in extras.items()))
    for line in _dataset_lines():
        print(line)
    return 0


HANDLERS = {"quickstart": quickstart, "train": train, "lab": lab, "tune": tune, "doctor": doctor, "chat": chat, "bench": bench, "info": info}


def main(argv=None) -> int:
    """Run one command; its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _top_parser()
    if argv and argv[0] in HANDLERS:
        try:
            return HANDLERS[argv[0]](argv[1:])
        except _user_errors() as e:
            from .examples._common import explain

            print(f"knetpy {argv[0]}: error: {explain(e)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    if argv and not argv[0].startswith("-"):
        close = difflib.get_close_matches(argv[0], list(HANDLERS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        parser.error(f"unknown command {argv[0]!r}{hint} (commands: {', '.join(HANDLERS)})")
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"knetpy {__version__}")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
