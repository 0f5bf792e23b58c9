"""benchmarks/memory.py (peak memory per benchmark) and benchmarks/scaling.py (ResNet-20, batch and width sweep)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from knetpy import cli

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
linux_proc = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")


def run_script(name, *args, timeout=300):
    done = subprocess.run([sys.executable, str(BENCH / name), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=BENCH.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def memory_module(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import memory

    return memory


@linux_proc
def test_measure_counts_the_peak_of_training_not_what_came_before(memory_module):
    before = np.ones(40 * 2**20 // 8)  # a 40 MB peak before the baseline: it must not count
    del before
    block = 64 * 2**20

    def train():
        a = np.ones(block // 8)  # touched, so resident
        del a

    peak, files, base = memory_module.measure(train)
    assert 60 <= peak < 100, peak  # the 64 MB block, not the earlier 40 MB one on top
    assert base > 10 and files < 16


@linux_proc
def test_memory_script_reports_knetpy_and_pytorch_in_separate_processes(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "mem.json"
    text = run_script("memory.py", "--quick", "--only", "charlm", "--frameworks", "knetpy,PyTorch", "--json", str(out))
    result = json.loads(out.read_text())
    assert "VmHWM" in result["method"] and "clear_refs" in result["method"]
    row = result["CharLM"]
    assert set(row) == {"knetpy", "PyTorch"}
    # two windows of a 128 x 100 LSTM keep tens of MB of activations alive in either framework
    assert row["knetpy"] > 10 and row["PyTorch"] > 10
    assert "| CharLM |" in text and "knetpy ÷ PyTorch" in text


def test_memory_script_rejects_an_unknown_benchmark():
    done = subprocess.run([sys.executable, str(BENCH / "memory.py"), "--only", "resnet"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown benchmark" in done.stderr and "lenet" in done.stderr


def test_scaling_quick_runs_both_parts(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "scaling.json"
    text = run_script("scaling.py", "--quick", "--json", str(out))
    result = json.loads(out.read_text())
    resnet = result["resnet20"]
    assert resnet["batches"] == 1 and resnet["extrapolated"] and "EXTRAPOLATED" in text
    assert resnet["data"] in text
    assert all(s > 0 for s in resnet["epoch_seconds"].values())
    # both frameworks start from the same weights and see the same batch: the same first loss
    assert resnet["last_loss"]["knetpy"] == pytest.approx(resnet["last_loss"]["PyTorch"], rel=1e-3)
    points = {(r["model"], r["width"], r["batch"]) for r in result["sweep"]}
    assert points == {(m, w, b) for m in ("LeNet", "MLP") for w in (1, 2) for b in (32, 64)}
    assert all(r["us_per_sample"][fw] > 0 for r in result["sweep"] for fw in ("knetpy", "PyTorch"))


def test_bench_lists_memory_and_scaling(capsys):
    assert cli.main(["bench", "--list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names.index("memory") > names.index("charlm") and "scaling" in names
    assert cli.BENCHMARKS["memory"] == ["--quick"] and cli.BENCHMARKS["scaling"] == ["--quick"]


def test_backward_frees_an_intermediate_once_its_gradient_is_passed_on():
    import weakref

    import knetpy as kp

    refs, seen = [], []

    @kp.primitive
    def probe(x):
        return x * 1.0

    # probe's VJP runs last: by then exp's and sin's outputs, held by no variable, must be gone
    probe.defvjp(lambda g, ans, x: (seen.append([r() is None for r in refs]), g)[1])
    w = kp.Param(np.linspace(0, 1, 1000))
    a = kp.exp(probe(w))
    b = kp.sin(a)
    refs += [weakref.ref(a.value), weakref.ref(b.value)]
    loss = kp.sum(b)
    del a, b
    loss.backward()
    assert seen == [[True, True]]
    np.testing.assert_allclose(w.grad, np.cos(np.exp(w.value)) * np.exp(w.value))
