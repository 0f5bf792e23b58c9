"""benchmarks/threads.py: what a split over knetpy's threads costs, in three tables."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import knetpy as kp
from knetpy.parallel import cores

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "threads.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
                          cwd=SCRIPT.parent.parent)


def ratio_fits(top, bottom, ratio, half_unit, ratio_half_unit=0.005):
    """Whether ``ratio`` (printed to 2 decimals) is top / bottom for the unrounded values that print
    as ``top`` and ``bottom`` (to within ``half_unit``)."""
    low = (top - half_unit) / (bottom + half_unit) - ratio_half_unit
    high = (top + half_unit) / (bottom - half_unit) + ratio_half_unit
    return low - 1e-9 <= ratio <= high + 1e-9


@pytest.mark.skipif(cores() < 2, reason="one core: the script says so and measures nothing (tested below)")
def test_quick_run_prints_the_three_tables_with_measured_figures():
    pytest.importorskip("threadpoolctl")
    done = run("--quick")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # 1. four splits, each a positive number of microseconds
    splits = re.findall(r"^\| (empty parts|parts of ~50 us) \| (back to back|after 1 ms idle) \| (\d+) \|$", out, re.M)
    assert len(splits) == 4 and all(int(us) > 0 for *_, us in splits)
    # 2. each way of computing the half, with its two ratios to running alone (as printed: rounded)
    ways = ["Winograd rows, NumPy transforms", "im2col GEMM"]
    if kp.ops.fast.available():
        ways.append("Winograd rows, compiled transforms")
    for name in ways:
        row = re.search(rf"^\| {name}[^|]*\| ([\d.]+) \| ([\d.]+) \(([\d.]+)\) \| ([\d.]+) \(([\d.]+)\) \|$", out, re.M)
        assert row, out
        alone, by_blas, ratio_blas, by_copy, ratio_copy = map(float, row.groups())
        assert alone > 0
        assert ratio_fits(by_blas, alone, ratio_blas, 0.005) and ratio_fits(by_copy, alone, ratio_copy, 0.005), row[0]
    # 3. both models' steps with threads off and automatic, and the ratio of the two
    for name in ("LeNet (batch 100)", "ResNet-20 (batch 128)"):
        row = re.search(rf"^\| {re.escape(name)} \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
        assert row, out
        off, auto, ratio = map(float, row.groups())
        assert off > 0 and ratio_fits(auto, off, ratio, 0.05), row[0]


def test_one_core_measures_nothing(tmp_path):
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs sched_setaffinity (Linux)")
    pytest.importorskip("threadpoolctl")
    first = sorted(os.sched_getaffinity(0))[0]
    code = (f"import os, runpy, sys; os.sched_setaffinity(0, {{{first}}}); sys.argv = ['threads.py', '--quick']; "
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "One core: knetpy never splits an op here; nothing to measure." in done.stdout
    assert "us per split" not in done.stdout


def test_rounds_must_be_positive():
    done = run("--rounds", "0")
    assert done.returncode == 2
    assert "--rounds must be at least 1, got 0" in done.stderr
