"""The README's code runs, and the quickstart trains to a useful accuracy."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_python_blocks_run():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README has no python examples"
    namespace = {}  # one session, as a reader following the README would run it
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)


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
