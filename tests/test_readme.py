"""The README's code runs, and the quickstart trains to a useful accuracy."""

import ast
import contextlib
import io
import pathlib
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import knetpy as kp

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _python_blocks():
    """(section heading, code) of every python block in the README."""
    text = (ROOT / "README.md").read_text()
    found = []
    for m in re.finditer(r"```python\n(.*?)```", text, re.S):
        headings = re.findall(r"^#+ (.*)$", text[: m.start()], re.M)
        found.append((headings[-1] if headings else "top", m.group(1)))
    return found


BLOCKS = _python_blocks()


def _numbers(text):
    return [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", text)]


def _check_tour(out):
    accuracy = float(re.search(r"training accuracy ([0-9.]+)", out).group(1))
    assert accuracy > 0.8  # three classes: chance is 0.33
    second = out.splitlines()[1]
    a, b = _numbers(second)[-2:]
    assert abs(a - b) < 1e-5, second


def _check_models(out):
    logs = ast.literal_eval(out.splitlines()[0])  # the dict evaluate returns
    assert logs["accuracy"] > 0.8, logs  # a class left out of training would give about 0.67 at best
    assert out.splitlines()[1] == "(2, 3)"
    labels, sums = re.findall(r"\[([^\]]*)\]", out.splitlines()[2])
    assert set(labels.split()) <= {"0", "1", "2"}
    np.testing.assert_allclose([float(v) for v in sums.split()], [1.0, 1.0], rtol=1e-5)


def _check_primitive(out):
    assert _numbers(out) == [12.0, 12.0]


def _check_rl(out):
    assert out.splitlines() == ["[2.71 1.9  1.  ]", "[2.8 0.5]"]


# What the README says each block prints, by section; every block runs, checked or not.
CHECKS = {"Reinforcement learning": _check_rl, "A short tour": _check_tour, "Models, layers, training": _check_models, "Writing a new primitive": _check_primitive}


def test_readme_has_the_checked_blocks():
    assert BLOCKS, "README has no python examples"
    assert set(CHECKS) <= {heading for heading, _ in BLOCKS}


@pytest.mark.parametrize("heading, code", BLOCKS, ids=[h for h, _ in BLOCKS])
def test_readme_python_block_runs_on_its_own(heading, code, tmp_path, monkeypatch):
    """Each block is pasted alone into a fresh interpreter namespace: it imports what it uses."""
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # e.g. a validation split holding unseen classes
            exec(compile(code, f"README.md ({heading})", "exec"), {"__name__": "__main__"})
    finally:
        kp.set_num_threads(1)  # a block may turn knetpy's threads on
    if heading in CHECKS:
        CHECKS[heading](out.getvalue())


def test_readme_commands_match_ci():
    text = (ROOT / "README.md").read_text()
    test_cmd = re.search(r"python -m pytest[^\n`]*", text).group(0)
    assert test_cmd in (ROOT / ".ci" / "run").read_text()


def test_quickstart_reports_accuracy(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "knetpy", "quickstart", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    acc = float(re.search(r"test accuracy ([0-9.]+)", out.stdout).group(1))
    assert acc > 0.9
