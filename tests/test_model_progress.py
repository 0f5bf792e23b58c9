"""kp.progress: the terminal bar, the one-line log form, and number formatting."""

import io

import pytest

from knetpy import progress
from knetpy.progress import ProgressBar, format_logs, format_seconds


class _TTY(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def builtin_bar(monkeypatch):
    monkeypatch.setattr(progress, "_tqdm", None)


def test_format_logs_and_seconds():
    assert format_logs({"loss": 0.123456, "accuracy": 1.0, "lr": 1e-5, "n": 3}) == (
        "loss: 0.1235 - accuracy: 1.0000 - lr: 1.000e-05 - n: 3"
    )
    assert format_logs({}) == ""
    assert format_seconds(0.25) == "250ms" and format_seconds(12.4) == "12s" and format_seconds(185) == "3m05s"


def test_line_mode_writes_one_line_at_close_only():
    out = io.StringIO()
    bar = ProgressBar(4, prefix="Epoch 1/2", file=out)  # StringIO is not a terminal
    for i in range(1, 5):
        bar.update(i, {"loss": 1.0 / i})
        assert out.getvalue() == ""
    bar.close({"loss": 0.25, "val_loss": 0.5})
    bar.close()  # closing twice writes nothing more
    text = out.getvalue()
    assert text.count("\n") == 1
    assert text.startswith("Epoch 1/2 - 4/4 - ") and text.endswith("loss: 0.2500 - val_loss: 0.5000\n")


def test_bar_mode_redraws_in_place_with_eta_and_ends_the_line(builtin_bar):
    out = _TTY()
    bar = ProgressBar(10, prefix="Epoch 1/1", file=out, interval=0.0, width=10)
    bar.update(5, {"loss": 0.5})
    first = out.getvalue()
    assert first.startswith("\rEpoch 1/1 5/10 [=====>....] ETA ") and first.endswith("loss: 0.5000")
    bar.update(10, {"loss": 0.25})
    bar.close({"loss": 0.25, "val_loss": 0.3})
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    assert "[==========]" in text and "val_loss: 0.3000" in text.splitlines()[-1].split("\r")[-1]


def test_bar_throttles_redraws(builtin_bar):
    out = _TTY()
    bar = ProgressBar(1000, file=out, interval=3600)
    for i in range(1, 1000):
        bar.update(i)
    assert out.getvalue().count("\r") <= 1  # at most the first draw


def test_mode_validation_and_forced_modes():
    with pytest.raises(ValueError, match="mode must be one of"):
        ProgressBar(3, mode="fancy")
    assert ProgressBar(3, file=_TTY(), mode="line").bar is False
    assert ProgressBar(3, file=io.StringIO(), mode="bar").bar is True


def test_progress_wraps_an_iterable(builtin_bar):
    out = io.StringIO()
    items = list(progress.progress(range(7), prefix="data", file=out))
    assert items == list(range(7))
    assert out.getvalue().startswith("data - 7/7 - ")


class _StubTqdm:
    """Records how ProgressBar drives tqdm."""

    instances = []

    def __init__(self, total, desc, file, leave):
        self.total, self.desc, self.n, self.postfix, self.closed = total, desc, 0, "", False
        _StubTqdm.instances.append(self)

    def set_postfix_str(self, text, refresh=True):
        self.postfix = text

    def update(self, n):
        self.n += n

    def close(self):
        self.closed = True


def test_terminal_bar_uses_tqdm_when_installed(monkeypatch):
    monkeypatch.setattr(progress, "_tqdm", _StubTqdm)
    bar = ProgressBar(5, prefix="Epoch 1/1", file=_TTY())
    for i in range(1, 6):
        bar.update(i, {"loss": 0.1 * i})
    bar.close({"loss": 0.5, "val_loss": 0.7})
    stub = _StubTqdm.instances[-1]
    assert (stub.total, stub.desc, stub.n, stub.closed) == (5, "Epoch 1/1", 5, True)
    assert stub.postfix == "loss: 0.5000 - val_loss: 0.7000"
    assert ProgressBar(5, file=io.StringIO())._tqdm is None  # not a terminal: no tqdm
