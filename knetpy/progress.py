"""Progress display: a live bar on a terminal, one summary line per run elsewhere (logs, CI, files).

On a terminal the bar is drawn by ``tqdm`` when it is installed (the optional ``progress`` extra) and
by a small built-in bar otherwise. When the output is not a terminal nothing is written while the
work runs and a single line is written at the end, so log files get exactly one line per epoch.
"""

from __future__ import annotations

import sys
import time

try:  # optional: nicer bars when available
    from tqdm import tqdm as _tqdm
except ImportError:  # pragma: no cover - depends on the environment
    _tqdm = None

_MODES = ("auto", "bar", "line")


def format_logs(values) -> str:
    """``'loss: 0.1234 - accuracy: 0.9500'`` from a dict of numbers."""
    parts = []
    for key, v in (values or {}).items():
        if isinstance(v, float):
            text = f"{v:.4f}" if v == 0 or 1e-3 <= abs(v) < 1e4 else f"{v:.3e}"
        else:
            text = str(v)
        parts.append(f"{key}: {text}")
    return " - ".join(parts)


def format_seconds(seconds: float) -> str:
    """``'850ms'``, ``'12s'`` or ``'3m05s'``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes}m{sec:02d}s"


def _is_tty(file) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # closed or file-like without isatty
        return False


class ProgressBar:
    """Progress of ``total`` steps, with the latest values (loss, metrics) beside it.

    ``mode`` is ``'bar'`` (redraw a bar with ETA), ``'line'`` (one line at :meth:`close`) or ``'auto'``
    (a bar when ``file`` is a terminal). ``file`` defaults to ``sys.stdout``.
    """

    def __init__(self, total, prefix="", file=None, mode="auto", interval=0.1, width=30):
        if mode not in _MODES:
            raise ValueError(f"ProgressBar: mode must be one of {_MODES}, got {mode!r}")
        self.total = int(total)
        self.prefix = prefix
        self.file = file if file is not None else sys.stdout
        self.interval = interval
        self.width = width
        self.done = 0
        self.values = {}
        self.start = time.monotonic()
        self._last_draw = None  # never drawn: the first update draws (monotonic time may start near 0)
        self._closed = False
        self.bar = mode == "bar" or (mode == "auto" and _is_tty(self.file))
        self._tqdm = None
        if self.bar and _tqdm is not None:
            self._tqdm = _tqdm(total=self.total, desc=prefix or None, file=self.file, leave=True)

    def update(self, done, values=None):
        """Record that ``done`` steps (in total, not since the last call) are finished.

        ``values`` may be a function returning them: it is called only when the bar redraws (at most
        every ``interval`` seconds), so figures that live on a device are not copied every step.
        """
        step = done - self.done
        self.done = done
        now = time.monotonic()
        due = self.bar and (self._last_draw is None or now - self._last_draw >= self.interval or done >= self.total)
        if callable(values):
            values = values() if due else None
        if values is not None:
            self.values = values
        if not self.bar:
            return
        if self._tqdm is not None:
            if values is not None:
                self._tqdm.set_postfix_str(format_logs(values), refresh=False)
            self._tqdm.update(step)
            if due:
                self._last_draw = now
            return
        if due:
            self._last_draw = now
            self._draw(now, final=False)

    def _draw(self, now, final):
        elapsed = now - self.start
        if self.total > 0:
            filled = min(self.width, self.width * self.done // self.total)
            arrow = ">" if filled < self.width else ""
            bar = "[" + "=" * filled + arrow + "." * (self.width - filled - len(arrow)) + "]"
            count = f"{self.done}/{self.total}"
        else:
            bar, count = "", str(self.done)
        if final or not self.done or self.total <= 0:
            timing = format_seconds(elapsed)
        else:
            timing = "ETA " + format_seconds(elapsed / self.done * max(self.total - self.done, 0))
        text = " ".join(p for p in (self.prefix, count, bar, timing) if p)
        logs = format_logs(self.values)
        line = f"{text} - {logs}" if logs else text
        self.file.write("\r" + line + ("\n" if final else ""))
        self.file.flush()

    def close(self, values=None):
        """Finish: the final values replace the running ones (e.g. with validation results added)."""
        if self._closed:
            return
        self._closed = True
        if values is not None:
            self.values = values
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(format_logs(self.values), refresh=False)
            self._tqdm.close()
            return
        if self.bar:
            self._draw(time.monotonic(), final=True)
            return
        elapsed = format_seconds(time.monotonic() - self.start)
        count = f"{self.done}/{self.total}" if self.total > 0 else str(self.done)
        head = " - ".join(p for p in (self.prefix, count, elapsed) if p)
        logs = format_logs(self.values)
        self.file.write((f"{head} - {logs}" if logs else head) + "\n")
        self.file.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress(iterable, total=None, prefix="", file=None, mode="auto"):
    """Yield from ``iterable`` while showing a :class:`ProgressBar` (Knet's ``progress``)."""
    if total is None:
        total = len(iterable) if hasattr(iterable, "__len__") else 0
    with ProgressBar(total, prefix=prefix, file=file, mode=mode) as bar:
        for i, item in enumerate(iterable, 1):
            yield item
            bar.update(i)
