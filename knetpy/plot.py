"""Pictures of a training run: learning curves and 2-D decision boundaries, saved as PNG files.

Drawing needs matplotlib, the optional extra ``plot`` (``pip install 'knetpy[plot]'``). Without it
(or when the file cannot be written) each function prints one line saying why to stderr and returns
None instead of a path: a missing picture never stops the run that asked for it.
The figures are drawn with matplotlib's object interface, not ``pyplot``, so no window opens and the
caller's own matplotlib state (backend, open figures) is left alone.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from .backend import to_numpy

INSTALL_HINT = "pip install 'knetpy[plot]'"
_PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")


def _lighten(hex_color, amount=0.7):
    """``hex_color`` mixed with white (``amount`` 1 is white)."""
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float64)
    mixed = rgb + (255 - rgb) * amount
    return "#" + "".join(f"{int(round(v)):02x}" for v in mixed)


def available() -> bool:
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _report(what, reason):
    print(f"knetpy: {what} not written: {reason}", file=sys.stderr)


def _new_figure(width, height):
    """A matplotlib Figure drawn without pyplot (no GUI backend, no global state)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path, what):
    path = Path(os.fspath(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    except (OSError, ValueError) as e:  # unwritable folder, full disk, a path matplotlib refuses
        _report(what, f"{type(e).__name__}: {e}")
        return None
    return path


def _series(history):
    """``name -> list of floats`` from a History, a dict of lists, or ``fit``'s return value."""
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict):
        raise TypeError(f"learning_curve: expected a History or a dict of name -> values, got {type(history).__name__}")
    out = {}
    for name, values in logs.items():
        arr = np.asarray([float(v) for v in values], dtype=np.float64)
        if arr.size:
            out[str(name)] = arr
    if not out:
        raise ValueError("learning_curve: the history has no values to draw")
    return out


def _is_loss(name):
    """Loss-like series share the left panel; the others (accuracies) get the right one."""
    key = name.lower()
    return "loss" in key or "mse" in key or "error" in key


def _legend_label(name, labels, val_label):
    """The legend text of series ``name``: ``labels[name]``, else the name with ``val_`` renamed."""
    if labels and name in labels:
        return labels[name]
    if name.startswith("val_") and val_label != "val":
        return f"{val_label}_{name[4:]}"
    return name


def learning_curve(history, path, *, title=None, xlabel="epoch", labels=None, val_label="val"):
    """Draw every series of ``history`` against the epoch (or step) and save a PNG at ``path``.

    ``history`` is what ``Model.fit`` returns (a History) or a dict such as ``{"loss": [...],
    "val_loss": [...], "accuracy": [...]}``. Losses go in the left panel (on a log scale when they span
    more than a factor of 20), accuracies and other metrics in the right one; a learning rate logged
    as ``lr`` is left out. The x axis counts epochs (or steps) 1, 2, ... with whole-number ticks; up
    to 30 values are drawn with a marker on each, so a one-epoch run shows as points.

    What the curves of ``fit`` mean: ``loss`` and the training metrics (``accuracy``, ...) are running
    means over the epoch's batches, measured while the weights were still changing and with dropout
    on, so they lag behind the model at the epoch's end; the ``val_*`` series are measured after the
    epoch, in eval mode. ``val_label`` renames ``val_*`` in the legend: pass ``"test"`` when the
    ``validation_data`` was the test set. ``labels`` maps series names to legend texts of your own.

    Returns the path written, or None (with the reason on stderr) when matplotlib is missing or the
    file cannot be written.
    """
    series = _series(history)
    series.pop("lr", None)  # a learning-rate schedule is not a learning curve
    if not series:
        raise ValueError("learning_curve: the history has no values to draw besides the learning rate")
    if not available():
        _report("learning curve", f"matplotlib is not installed ({INSTALL_HINT})")
        return None
    fig = _learning_curve_figure(series, title, xlabel, labels, val_label)
    return _save(fig, path, "learning curve")


def _learning_curve_figure(series, title, xlabel, labels, val_label):
    """The Figure of :func:`learning_curve` for ``series`` (name -> values)."""
    from matplotlib.ticker import MaxNLocator

    losses = {k: v for k, v in series.items() if _is_loss(k)}
    others = {k: v for k, v in series.items() if not _is_loss(k)}
    panels = [p for p in (losses, others) if p]
    fig = _new_figure(5.5 * len(panels), 4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        for name, values in panel.items():
            steps = np.arange(1, len(values) + 1)
            ax.plot(steps, values, marker="o" if len(values) <= 30 else None, markersize=4 if len(values) > 1 else 6,
                    label=_legend_label(name, labels, val_label))
        longest = max(len(v) for v in panel.values())
        ax.set_xlim(0.5, longest + 0.5)  # one epoch: the point at 1 in the middle, not a range of width 0.1
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # epoch 1, 2, ...; never 1.5
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
        if panel is losses:
            ax.set_ylabel("loss")
            positive = np.concatenate(list(panel.values()))
            positive = positive[np.isfinite(positive) & (positive > 0)]
            if positive.size and positive.max() > 20 * positive.min():
                ax.set_yscale("log")
        else:
            ax.set_ylabel("metric")
    if title:
        fig.suptitle(title)
    return fig


def decision_boundary(classifiers, x, y, path, *, title=None, resolution=200):
    """Draw how each 2-D classifier splits the plane, with the points ``(x, y)`` on top; save a PNG.

    ``classifiers`` maps a panel title to a function of an (N, 2) float array returning class scores
    (N, C) (or labels (N,)). One panel per classifier. Returns the path written, or None (reason on
    stderr) when matplotlib is missing or the file cannot be written.
    """
    x = to_numpy(getattr(x, "value", x))
    y = to_numpy(getattr(y, "value", y))
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"decision_boundary: x must be (N, 2) points, got shape {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(f"decision_boundary: y must be (N,) labels for x of shape {x.shape}, got shape {y.shape}")
    if not classifiers:
        raise ValueError("decision_boundary: no classifier given")
    if not available():
        _report("decision-boundary plot", f"matplotlib is not installed ({INSTALL_HINT})")
        return None
    margin = 0.1 * (x.max(axis=0) - x.min(axis=0))
    lo, hi = x.min(axis=0) - margin, x.max(axis=0) + margin
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(x.dtype)
    fig = _new_figure(4.5 * len(classifiers), 4.2)
    axes = fig.subplots(1, len(classifiers), squeeze=False)[0]
    n_classes = int(y.max()) + 1
    # One hue per class: light for the regions, strong for the points.
    strong = [_PALETTE[c % len(_PALETTE)] for c in range(n_classes)]
    light = [_lighten(c) for c in strong]
    for ax, (name, classify) in zip(axes, classifiers.items()):
        out = classify(grid)
        scores = to_numpy(getattr(out, "value", out))
        labels = scores.argmax(axis=1) if scores.ndim == 2 else scores
        ax.contourf(gx, gy, labels.reshape(gx.shape), levels=np.arange(n_classes + 1) - 0.5, colors=light)
        ax.scatter(x[:, 0], x[:, 1], c=[strong[int(c)] for c in y], s=8)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return _save(fig, path, "decision-boundary plot")
