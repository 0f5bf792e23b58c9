"""Pictures of a model and its training, saved as PNG files: learning curves, first-layer filters,
activation maps, image grids (misclassified examples among them), confusion matrices, 2-D decision
boundaries and learning-rate range tests. Each file is written atomically (a temporary file renamed
over it), so a picture redrawn during training is never seen half-written.

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


def _new_figure(width, height, layout="constrained"):
    """A matplotlib Figure on the Agg canvas, drawn without pyplot (no GUI backend, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, what):
    """Write ``fig`` as a PNG atomically (a reader never sees half a file), then free the figure."""
    from .io import atomic_write

    path = Path(os.fspath(path))
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png"))
    except (OSError, ValueError) as e:  # unwritable folder, full disk, a path matplotlib refuses
        _report(what, f"{type(e).__name__}: {e}")
        return None
    finally:
        fig.clear()  # break the figure's reference cycles now rather than at the next garbage collection
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


# -- filters, activations, images, confusion matrix, lr range test ----------------------------------
_TILE = 0.9  # inches per tile of a grid


def _grid_shape(n, ncols=None):
    """(rows, cols) of a grid of ``n`` tiles: about square unless ``ncols`` is given."""
    cols = int(ncols) if ncols else int(np.ceil(np.sqrt(n)))
    cols = max(1, min(cols, n))
    return int(np.ceil(n / cols)), cols


def _square_side(n):
    side = int(round(np.sqrt(n)))
    return side if side * side == n else None


def _image_shape(n_values, image_shape, who):
    """The (H, W) or (C, H, W) that ``n_values`` numbers form: ``image_shape``, or a square guessed."""
    if image_shape is not None:
        image_shape = tuple(int(s) for s in image_shape)
        if int(np.prod(image_shape)) != n_values:
            raise ValueError(f"{who}: image_shape {image_shape} holds {int(np.prod(image_shape))} values, "
                             f"not the {n_values} of each row")
        return image_shape
    if _square_side(n_values):
        return (_square_side(n_values),) * 2
    if n_values % 3 == 0 and _square_side(n_values // 3):
        return (3,) + (_square_side(n_values // 3),) * 2
    raise ValueError(f"{who}: rows of {n_values} values are not a square image; pass image_shape=(H, W) or (C, H, W)")


def _as_images(images, image_shape, who):
    """``images`` as (N, H, W) grey or (N, H, W, 3) colour: from (N, H, W), (N, 1|3, H, W),
    (N, H, W, 1|3) or flat rows (N, D) with ``image_shape``."""
    a = to_numpy(getattr(images, "value", images)).astype(np.float64)
    if a.ndim == 2:
        a = a.reshape((len(a),) + _image_shape(a.shape[1], image_shape, who))
    if a.ndim == 4 and a.shape[1] in (1, 3):
        a = np.moveaxis(a, 1, -1)  # channels first, as knetpy's layers take them
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 or (a.ndim == 4 and a.shape[-1] == 3):
        return a
    raise ValueError(f"{who}: expected images (N, H, W), (N, 1 or 3, H, W) or (N, H, W, 1 or 3), "
                     f"or flat rows with image_shape; got shape {a.shape}")


def _unit_range(tile):
    """``tile`` scaled to [0, 1] (a constant tile becomes mid grey), so that each one uses the whole range."""
    lo, hi = np.nanmin(tile), np.nanmax(tile)
    return np.full_like(tile, 0.5) if hi - lo < 1e-12 else (tile - lo) / (hi - lo)


def _mosaic(tiles, ncols=None, pad=1):
    """One image of the (H, W) or (H, W, 3) ``tiles`` in a grid, ``pad`` pixels of NaN (grey) or white between."""
    rows, cols = _grid_shape(len(tiles), ncols)
    h, w = tiles[0].shape[:2]
    fill = 1.0 if tiles[0].ndim == 3 else np.nan
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, *tiles[0].shape[2:]), fill)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = tile
    return out, rows, cols


def _class_name(c, class_names):
    return str(class_names[c]) if class_names is not None and 0 <= c < len(class_names) else str(c)


def _named_layers(model, prefix=""):
    """(path, layer) of every layer inside ``model``, depth first: '0', '1.conv', ... as in parameter names."""
    from .layers.base import Layer

    for key, child in model._children():
        if isinstance(child, Layer):
            yield prefix + key, child
            yield from _named_layers(child, f"{prefix}{key}.")


def _find_layer(model, layer, who):
    """The layer ``layer`` names in ``model``: a Layer, a position in a Sequential, or a path / name."""
    from .layers.base import Layer

    if isinstance(layer, Layer):
        return layer
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if not hasattr(model, "__getitem__") or not hasattr(model, "__len__"):
            raise TypeError(f"{who}: a layer index needs a Sequential; pass the layer itself or its name "
                            f"for a {type(model).__name__}")
        if not -len(model) <= layer < len(model):
            raise ValueError(f"{who}: layer index {layer} is out of range for a model of {len(model)} layers")
        return model[int(layer)]
    if isinstance(layer, str):
        named = list(_named_layers(model))
        for path, found in named:
            if layer in (path, found.name):
                return found
        known = ", ".join(f"{p} ({type(lay).__name__})" for p, lay in named) or "none"
        raise ValueError(f"{who}: no layer named {layer!r}; the model's layers are: {known}")
    raise TypeError(f"{who}: layer must be a Layer, an index or a name, got {type(layer).__name__}")


def _weights_of(source, layer, who):
    """The weight array to draw and where it came from: a Conv2D's (F, C, kh, kw) or a Dense's (n_in, n_out)."""
    from .layers.base import Layer
    from .layers.conv import Conv2D
    from .layers.core import Dense

    if not isinstance(source, Layer):
        w = to_numpy(getattr(source, "value", source))
        if w.ndim not in (2, 4):
            raise ValueError(f"{who}: weights must be a Conv2D's (filters, channels, kh, kw) or a Dense's "
                             f"(n_in, n_out), got shape {w.shape}")
        return w, "weights"
    if layer is not None:
        found = _find_layer(source, layer, who)
    elif isinstance(source, (Conv2D, Dense)):
        found = source
    else:
        found = next((lay for _, lay in _named_layers(source) if isinstance(lay, (Conv2D, Dense))), None)
        if found is None:
            raise ValueError(f"{who}: {type(source).__name__} has no Conv2D or Dense layer whose weights could be drawn")
    if not isinstance(found, (Conv2D, Dense)):
        raise TypeError(f"{who}: can draw the weights of a Conv2D or a Dense layer, got {type(found).__name__}")
    if getattr(found, "w", None) is None:
        raise ValueError(f"{who}: the {type(found).__name__} is not built yet; call the model on data first "
                         "or give its first layer input_shape=")
    return to_numpy(found.w.value), type(found).__name__


def filter_grid(model, path, *, layer=None, image_shape=None, channel=None, class_names=None, max_filters=64,
                title=None):
    """Draw the weights of a first layer as a grid of small images and save a PNG.

    ``model`` is a model (its first Conv2D or Dense layer is drawn, or the one ``layer`` names: an
    index, a name or the layer), a layer, or a weight array. A Conv2D's weights (filters, channels,
    kh, kw) give one tile per filter, in colour when it reads 3 channels and in grey when it reads 1
    (otherwise input channel ``channel``, default 0). A Dense layer's weights (n_in, n_out) give one
    tile per output unit, its n_in weights reshaped to ``image_shape`` ((H, W) or (C, H, W); square
    images are guessed): for a linear classifier these are the class templates, titled by
    ``class_names``. Each tile is scaled to its own range. Returns the path written, or None (reason
    on stderr) when matplotlib is missing or the file cannot be written.
    """
    who = "filter_grid"
    w, source = _weights_of(model, layer, who)
    if w.ndim == 4:
        if w.shape[1] == 3 and channel is None:
            tiles = [np.moveaxis(f, 0, -1) for f in w]
            note = "RGB"
        else:
            c = 0 if channel is None else int(channel)
            if not 0 <= c < w.shape[1]:
                raise ValueError(f"{who}: channel {c} is out of range for filters of {w.shape[1]} input channels")
            tiles = list(w[:, c])
            note = "" if w.shape[1] == 1 else f"input channel {c} of {w.shape[1]}"
        labels = None
    else:
        tiles = list(_as_images(w.T, image_shape, who))  # column j: the weights into unit j
        labels = [_class_name(j, class_names) for j in range(len(tiles))]
        note = "templates"
    n_total = len(tiles)
    tiles = [_unit_range(t.astype(np.float64)) for t in tiles[:max_filters]]
    if not available():
        _report("filter grid", f"matplotlib is not installed ({INSTALL_HINT})")
        return None
    rows, cols = _grid_shape(len(tiles))
    fig = _new_figure(cols * _TILE + 0.4, rows * _TILE + 0.7)
    if labels is None:
        ax = fig.subplots()
        image, _, _ = _mosaic(tiles)
        ax.imshow(image, cmap=_with_gaps("gray"), interpolation="nearest", vmin=0, vmax=1)
        ax.set_axis_off()
    else:
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, tile, label in zip(axes, tiles, labels):
            ax.imshow(tile, cmap="gray", interpolation="nearest", vmin=0, vmax=1)
            ax.set_title(label, fontsize=8)
        for ax in axes:
            ax.set_axis_off()
    shown = f"{len(tiles)} of {n_total}" if len(tiles) < n_total else f"{n_total}"
    kind = "units" if w.ndim == 2 else "filters"
    fig.suptitle(title or f"{source}{' ' + note if note else ''}: {shown} {kind}", fontsize=10)
    return _save(fig, path, "filter grid")


def _with_gaps(name):
    """Colour map ``name`` with NaN (the gaps of a mosaic) drawn in a colour the map lacks."""
    from matplotlib import colormaps

    # A white gap would merge with the white pixels of a grey tile.
    return colormaps[name].with_extremes(bad="#9ecae1" if name == "gray" else "white")


def _one_sample(model, x):
    """``x`` as a batch of one: a sample without the batch axis gains one (when the model knows its input rank)."""
    x = to_numpy(getattr(x, "value", x))
    first = model[0] if hasattr(model, "__getitem__") and hasattr(model, "__len__") and len(model) else model
    known = getattr(first, "input_shape", None)
    if known is not None and x.ndim == len(known) - 1:
        return x[None]
    return x[:1] if x.ndim and len(x) > 1 else x


def layer_output(model, x, layer):
    """What ``layer`` (a Layer of ``model``, its index in a Sequential, or its name) outputs when
    ``model`` runs on ``x``, in eval mode without recording gradients, as a NumPy array.

    A Sequential's own layers run one after the other up to that one; any other layer is watched
    during one forward pass of the whole model (its first call is kept), so it works for subclassed
    models. While that pass runs the layer is observed through its instance, so do not train the
    same model from another thread at that moment.
    """
    from .autograd import no_grad
    from .layers.base import thread_mode

    who = "layer_output"
    target = _find_layer(model, layer, who)
    with no_grad(), thread_mode(model, False):
        steps = list(model) if hasattr(model, "__iter__") and hasattr(model, "__len__") else []
        if any(step is target for step in steps):
            out = x
            for step in steps:
                out = step(out)
                if step is target:
                    return to_numpy(getattr(out, "value", out))
        recorded = []
        own = target.__dict__.get("forward")

        def watched(*args, **kwargs):
            out = (own or type(target).forward.__get__(target))(*args, **kwargs)
            recorded.append(out)
            return out

        target.forward = watched
        try:
            model(x)
        finally:
            if own is None:
                del target.forward
            else:
                target.forward = own
    if not recorded:
        raise ValueError(f"{who}: the {type(target).__name__} given was not called when the model ran; "
                         "is it a layer of this model?")
    return to_numpy(getattr(recorded[0], "value", recorded[0]))


def activation_maps(model, x, layer, path, *, max_channels=64, title=None):
    """Draw what ``layer`` outputs for the input ``x`` (a batch, of which the first sample is used, or
    one sample without its batch axis once the model knows its input shape): one map per channel of a convolution's (1, C, H, W) output,
    all on one colour scale so that weak and dead (all-zero) channels show as dark; other outputs
    (N, F) or (N, C, L) as one heat map. ``layer`` is an index in a Sequential, a layer's name or
    path ('3', 'block.conv1'), or the layer itself (for subclassed models). Save a PNG; returns the
    path, or None (reason on stderr) when matplotlib is missing or the file cannot be written.
    """
    who = "activation_maps"
    x = _one_sample(model, x)
    out = layer_output(model, x, layer)
    name = type(_find_layer(model, layer, who)).__name__
    if not available():
        _report("activation maps", f"matplotlib is not installed ({INSTALL_HINT})")
        return None
    out = out[0].astype(np.float64)
    lo, hi = float(np.nanmin(out)), float(np.nanmax(out))
    if hi - lo < 1e-12:
        hi = lo + 1.0
    if out.ndim == 3:
        maps = list(out[:max_channels])
        image, rows, cols = _mosaic(maps)
        fig = _new_figure(cols * _TILE + 1.2, rows * _TILE + 0.7)
        shown = f"{len(maps)} of {out.shape[0]}" if len(maps) < out.shape[0] else f"{out.shape[0]}"
        heading = f"{name} output {out.shape[1]}x{out.shape[2]}: {shown} channels"
    elif out.ndim <= 1:  # one value per unit (a Dense layer): bars read better than a strip of colour
        out = out.reshape(-1)
        fig = _new_figure(min(12.0, 3 + 0.12 * out.size), 3.5)
        ax = fig.subplots()
        ax.bar(np.arange(out.size), out, color=_PALETTE[1], width=0.8)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xlabel("unit")
        ax.set_ylabel("output")
        ax.xaxis.get_major_locator().set_params(integer=True)
        fig.suptitle(title or f"{name} output: {out.size} units", fontsize=10)
        return _save(fig, path, "activation maps")
    else:
        image = out.reshape(out.shape[0], -1)
        fig = _new_figure(8, 1.5 + min(4.0, 0.15 * image.shape[0]))
        heading = f"{name} output of shape {tuple(out.shape)}"
    ax = fig.subplots()
    shown_image = ax.imshow(image, cmap=_with_gaps("viridis"), vmin=lo, vmax=hi, interpolation="nearest",
                            aspect="equal" if out.ndim == 3 else "auto")
    ax.set_axis_off()
    fig.colorbar(shown_image, ax=ax, shrink=0.8, label="activation")
    fig.suptitle(title or heading, fontsize=10)
    return _save(fig, path, "activation maps")


def image_grid(images, path, *, labels=None, pred=None, class_names=None, image_shape=None, max_images=64,
               ncols=None, title=None):
    """Draw images in a grid, each titled by its label, and save a PNG.

    ``images`` are (N, H, W), (N, 1 or 3, H, W) as knetpy's layers take them, (N, H, W, 1 or 3), or
    flat rows (N, D) with ``image_shape``. ``labels`` are the true classes (N,) (or one-hot rows);
    ``pred`` the predictions, as class scores (N, C) or labels (N,): then each title reads
    ``pred`` over ``true``, green when right and red when wrong. ``class_names`` turns class numbers
    into words. Each image is scaled to its own range. Returns the path written, or None (reason on
    stderr) when matplotlib is missing or the file cannot be written.
    """
    from .metrics import predicted_labels

    who = "image_grid"
    imgs = _as_images(images, image_shape, who)
    n = len(imgs)
    truth = None if labels is None else _true_labels(labels, n, who)
    guess = None if pred is None else predicted_labels(pred, who=who)
    if guess is not None and len(guess) != n:
        raise ValueError(f"{who}: {n} images but {len(guess)} predictions")
    if not n:
        raise ValueError(f"{who}: no images to draw")
    if not available():
        _report("image grid", f"matplotlib is not installed ({INSTALL_HINT})")
        return None
    shown = min(n, int(max_images))
    rows, cols = _grid_shape(shown, ncols)
    text_rows = (truth is not None) + (guess is not None)
    fig = _new_figure(cols * 1.1 + 0.3, rows * (1.1 + 0.18 * text_rows) + 0.5)
    if not text_rows:  # no titles: one picture of all the tiles, many times faster than an axes per tile
        mosaic, _, _ = _mosaic([_unit_range(t) for t in imgs[:shown]], cols)
        ax = fig.subplots()
        ax.set_axis_off()
        ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if title or shown < n:
            fig.suptitle(title or f"{shown} of {n} images", fontsize=10)
        return _save(fig, path, "image grid")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= shown:
            continue
        ax.imshow(_unit_range(imgs[i]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if guess is not None and truth is not None:
            right = guess[i] == truth[i]
            text = (_class_name(guess[i], class_names) if right else
                    f"pred: {_class_name(guess[i], class_names)}\ntrue: {_class_name(truth[i], class_names)}")
            ax.set_title(text, fontsize=8, color="#2ca02c" if right else "#d62728")
        elif guess is not None or truth is not None:
            ax.set_title(_class_name((guess if truth is None else truth)[i], class_names), fontsize=8)
    if title or shown < n:
        fig.suptitle(title or f"{shown} of {n} images", fontsize=10)
    return _save(fig, path, "image grid")


def _true_labels(labels, n, who):
    y = to_numpy(getattr(labels, "value", labels))
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(axis=1)
    if y.shape != (n,) or y.dtype.kind not in "iub":
        raise ValueError(f"{who}: labels must be {n} integer classes (N,) or one-hot rows, got shape {y.shape} "
                         f"of dtype {y.dtype}")
    return y.astype(np.int64)


def misclassified_indices(pred, labels):
    """The indices of the samples that ``pred`` (scores (N, C) or labels (N,)) gets wrong against the
    true ``labels``, the most confident mistakes (highest winning score) first when scores are given."""
    from .metrics import predicted_labels

    who = "misclassified_indices"
    scores = to_numpy(getattr(pred, "value", pred))
    guess = predicted_labels(scores, who=who)
    truth = _true_labels(labels, len(guess), who)
    wrong = np.flatnonzero(guess != truth)
    if scores.ndim == 2 and scores.shape[1] > 1:
        wrong = wrong[np.argsort(-scores[wrong].max(axis=1), kind="stable")]
    return wrong


def misclassified(images, labels, pred, path, *, class_names=None, image_shape=None, max_images=36, title=None):
    """Draw the images that ``pred`` (``model.predict(images)``: scores (N, C), or labels (N,)) gets
    wrong, the most confident mistakes first, each titled with the prediction and the true class;
    save a PNG. With no mistakes the picture says so. Returns the path written, or None (reason on
    stderr) when matplotlib is missing or the file cannot be written.
    """
    who = "misclassified"
    imgs = _as_images(images, image_shape, who)
    scores = to_numpy(getattr(pred, "value", pred))
    if scores.ndim == 0 or len(scores) != len(imgs):
        raise ValueError(f"{who}: {len(imgs)} images but predictions of shape {scores.shape}")
    wrong = misclassified_indices(scores, labels)
    heading = title or f"misclassified: {len(wrong)} of {len(imgs)}"
    if len(wrong) == 0:
        if not available():
            _report("misclassified examples", f"matplotlib is not installed ({INSTALL_HINT})")
            return None
        fig = _new_figure(4, 1.5)
        fig.text(0.5, 0.5, f"no misclassified examples among {len(imgs)}", ha="center", va="center")
        return _save(fig, path, "misclassified examples")
    truth = _true_labels(labels, len(imgs), who)
    if len(wrong) > max_images:
        heading += f" (the {max_images} most confident shown)" if scores.ndim == 2 else f" ({max_images} shown)"
    return image_grid(imgs[wrong], path, labels=truth[wrong], pred=scores[wrong], class_names=class_names,
                      max_images=max_images, title=heading)


def confusion_matrix(pred, labels, path, *, class_names=None, normalize=None, title=None):
    """Draw the confusion matrix of ``pred`` (scores (N, C) or labels (N,)) against the true
    ``labels``: rows are true classes, columns predicted ones, each cell showing its count (or, with
    ``normalize`` 'true' / 'pred' / 'all', the fraction; see :func:`knetpy.metrics.confusion_matrix`).
    Save a PNG; returns the path, or None (reason on stderr) when matplotlib is missing or the file
    cannot be written.
    """
    from .metrics import confusion_matrix as compute

    matrix = compute(pred, labels, num_classes=len(class_names) if class_names is not None else None,
                     normalize=normalize)
    if not available():
        _report("confusion matrix", f"matplotlib is not installed ({INSTALL_HINT})")
        return None
    c = len(matrix)
    names = [_class_name(i, class_names) for i in range(c)]
    side = min(12.0, max(4.0, 0.5 * c + 2.5))
    fig = _new_figure(side + 1.0, side)
    ax = fig.subplots()
    shown = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1 if normalize else max(1, int(matrix.max())))
    fig.colorbar(shown, ax=ax, shrink=0.8, label="fraction" if normalize else "count")
    if c <= 30:  # beyond that the numbers no longer fit in the cells
        top = matrix.max() if matrix.max() > 0 else 1
        for (i, j), v in np.ndenumerate(matrix):
            text = f"{v:.2f}" if normalize else f"{v:d}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8 if c > 12 else 10,
                    color="white" if v > 0.55 * top else "black")
    ax.set_xticks(range(c), names, rotation=45 if max(map(len, names)) > 2 else 0, ha="right" if
                  max(map(len, names)) > 2 else "center")
    ax.set_yticks(range(c), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    what = {None: "counts", "true": "each row sums to 1", "pred": "each column sums to 1", "all": "fractions of all"}
    ax.set_title(title or f"confusion matrix ({what[normalize]})", fontsize=10)
    return _save(fig, path, "confusion matrix")


def lr_range_test(result, path, *, title=None):
    """Draw a learning-rate range test: the loss against the learning rate on a log axis, with the
    suggested rate marked. ``result`` is ``{"lr": [...], "loss": [...], "suggested": lr}`` (as the
    training doctor returns; ``suggested`` may be missing or None) or an object with those
    attributes. Once the loss has blown up past twice its first value the y axis stops there, so
    the useful part stays readable. Returns the path written, or None (reason on stderr) when
    matplotlib is missing or the file cannot be written.
    """
    who = "lr_range_test"
    get = result.get if isinstance(result, dict) else lambda k, d=None: getattr(result, k, d)
    if get("lr") is None or get("loss") is None:
        raise ValueError(f"{who}: expected {{'lr': [...], 'loss': [...], 'suggested': lr}}, got "
                         f"{sorted(result) if isinstance(result, dict) else type(result).__name__}")
    lr = np.asarray(get("lr"), dtype=np.float64).ravel()
    loss = np.asarray(get("loss"), dtype=np.float64).ravel()
    suggested = get("suggested")
    if lr.shape != loss.shape or lr.size < 2:
        raise ValueError(f"{who}: needs as many losses as learning rates (at least 2), got {lr.size} rates and "
                         f"{loss.size} losses")
    if not np.all(np.isfinite(lr) & (lr > 0)):
        raise ValueError(f"{who}: learning rates must be positive and finite for a log axis")
    if not available():
        _report("lr range test", f"matplotlib is not installed ({INSTALL_HINT})")
        return None
    finite = np.isfinite(loss)
    fig = _new_figure(6, 4)
    ax = fig.subplots()
    ax.plot(lr[finite], loss[finite], marker="o" if lr.size <= 30 else None, markersize=3, color=_PALETTE[1])
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    if finite.any():
        first, lowest = loss[finite][0], loss[finite].min()
        cap = first + max(first - lowest, abs(first))  # twice the first loss, or more when it started negative
        if loss[finite].max() > cap:
            ax.set_ylim(lowest - 0.05 * (cap - lowest), cap)
    if not finite.all():
        ax.axvline(lr[~finite][0], color="#7f7f7f", linestyle=":", label=f"loss not finite from {lr[~finite][0]:.2g}")
    if suggested is not None:
        s = float(suggested)
        order = np.argsort(lr[finite])
        at = np.interp(np.log(s), np.log(lr[finite][order]), loss[finite][order]) if finite.sum() >= 2 else None
        ax.axvline(s, color=_PALETTE[0], linestyle="--", label=f"suggested lr {s:.2g}")
        if at is not None:
            ax.plot([s], [at], marker="o", color=_PALETTE[0], markersize=7)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax.set_title(title or "learning-rate range test", fontsize=10)
    return _save(fig, path, "lr range test")


# -- attention --------------------------------------------------------------------------------------------
def attention_map(weights, path, *, queries=None, keys=None, titles=None, title=None):
    """Draw attention weights as heat maps, one per head: rows are queries, columns keys; save a PNG.

    ``weights`` is (Lq, Lk) or (heads, Lq, Lk) (one sample's weights, as
    ``kp.layers.MultiHeadAttention`` returns them averaged or with ``average_attn_weights=False``);
    ``queries`` and ``keys`` label the rows and columns (the tokens, say), ``titles`` the panels.
    Colours run from 0 to 1. Returns the path written, or None (reason on stderr) when matplotlib is
    missing or the file cannot be written.
    """
    who = "attention_map"
    w = to_numpy(getattr(weights, "value", weights)).astype(np.float64)
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3 or 0 in w.shape:
        raise ValueError(f"{who}: weights must be (Lq, Lk) or (heads, Lq, Lk), got shape {w.shape}")
    heads, lq, lk = w.shape
    for labels, size, what in ((queries, lq, "queries"), (keys, lk, "keys")):
        if labels is not None and len(labels) != size:
            raise ValueError(f"{who}: {len(labels)} {what} labels for {size} {what}")
    if titles is not None and len(titles) != heads:
        raise ValueError(f"{who}: {len(titles)} titles for {heads} heads")
    if not available():
        _report("attention map", f"matplotlib is not installed ({INSTALL_HINT})")
        return None
    rows, cols = _grid_shape(heads)
    side = min(4.0, max(2.0, 0.3 * max(lq, lk)))
    fig = _new_figure(cols * side + 1.0, rows * side + 0.6)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    shown = None
    for h, ax in enumerate(axes):
        if h >= heads:
            ax.axis("off")
            continue
        shown = ax.imshow(w[h], cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(lk), [str(k) for k in keys] if keys is not None else range(lk), fontsize=7)
        ax.set_yticks(range(lq), [str(q) for q in queries] if queries is not None else range(lq), fontsize=7)
        ax.set_xlabel("key", fontsize=8)
        ax.set_ylabel("query", fontsize=8)
        if titles is not None or heads > 1:
            ax.set_title(str(titles[h]) if titles is not None else f"head {h}", fontsize=9)
    fig.colorbar(shown, ax=list(axes[:heads]), shrink=0.8, label="weight")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, "attention map")


# -- generative models: latent codes and sample distributions --------------------------------------------
def latent_scatter(points, labels, path, *, class_names=None, title=None, max_points=5000):
    """Draw 2-D codes (an encoder's latent means, an embedding) as points coloured by class; save a PNG.

    ``points`` is (N, 2), ``labels`` (N,) integer classes (or None for one colour); at most
    ``max_points`` of them are drawn (the first ones). Returns the path written, or None (reason on
    stderr) when matplotlib is missing or the file cannot be written.
    """
    who = "latent_scatter"
    p = to_numpy(getattr(points, "value", points)).astype(np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or not len(p):
        raise ValueError(f"{who}: points must be (N, 2) with N > 0, got shape {p.shape}")
    y = None if labels is None else _true_labels(labels, len(p), who)
    if not available():
        _report("latent scatter", f"matplotlib is not installed ({INSTALL_HINT})")
        return None
    n = min(len(p), int(max_points))
    fig = _new_figure(5.5, 4.5)
    ax = fig.subplots()
    if y is None:
        ax.scatter(p[:n, 0], p[:n, 1], s=4, color=_PALETTE[1])
    else:
        for c in np.unique(y[:n]):
            at = y[:n] == c
            ax.scatter(p[:n][at, 0], p[:n][at, 1], s=4, color=_PALETTE[int(c) % len(_PALETTE)],
                       label=_class_name(int(c), class_names))
        ax.legend(fontsize=7, markerscale=3, loc="best")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.grid(True, alpha=0.3)
    ax.set_title(title or f"{n} codes", fontsize=10)
    return _save(fig, path, "latent scatter")


def sample_histogram(samples, path, *, pdf=None, bins=50, title=None):
    """Histograms (as densities) of 1-D samples, optionally over a known density; save a PNG.

    ``samples`` maps a legend text to an array of values (or is one array); ``pdf`` is a function of
    an array of x values returning the density to draw on top (say, the target a GAN should match).
    Returns the path written, or None (reason on stderr) when matplotlib is missing or the file
    cannot be written.
    """
    who = "sample_histogram"
    series = samples if isinstance(samples, dict) else {"samples": samples}
    arrays = {str(k): to_numpy(getattr(v, "value", v)).astype(np.float64).ravel() for k, v in series.items()}
    if not arrays or any(a.size == 0 or not np.isfinite(a).all() for a in arrays.values()):
        raise ValueError(f"{who}: every series needs finite values, got sizes {[a.size for a in arrays.values()]}")
    if not available():
        _report("sample histogram", f"matplotlib is not installed ({INSTALL_HINT})")
        return None
    lo = min(a.min() for a in arrays.values())
    hi = max(a.max() for a in arrays.values())
    edges = np.linspace(lo, hi + 1e-9, int(bins) + 1)
    fig = _new_figure(6, 4)
    ax = fig.subplots()
    for i, (name, a) in enumerate(arrays.items()):
        ax.hist(a, bins=edges, density=True, alpha=0.45, color=_PALETTE[(i + 1) % len(_PALETTE)], label=name)
    if pdf is not None:
        xs = np.linspace(lo, hi, 400)
        ax.plot(xs, np.asarray(pdf(xs), dtype=np.float64), color=_PALETTE[0], label="target density")
    ax.set_ylabel("density")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "samples", fontsize=10)
    return _save(fig, path, "sample histogram")


def predictive_band(x, mean, std, path, *, x_train=None, y_train=None, truth=None, k=2.0, title=None):
    """A 1-D regression's predictive mean with a band of ``k`` standard deviations; save a PNG.

    ``x``, ``mean`` and ``std`` are 1-D (or (N, 1)) arrays over a grid; the training points, if given,
    are drawn as dots and ``truth`` (a function of x) as a dashed line. Returns the path written, or
    None (reason on stderr) when matplotlib is missing or the file cannot be written.
    """
    who = "predictive_band"
    xs, mu, sd = (to_numpy(getattr(a, "value", a)).astype(np.float64).ravel() for a in (x, mean, std))
    if not (xs.size == mu.size == sd.size) or xs.size == 0:
        raise ValueError(f"{who}: x, mean and std need the same number of points, got {xs.size}, {mu.size}, {sd.size}")
    if not available():
        _report("predictive band", f"matplotlib is not installed ({INSTALL_HINT})")
        return None
    order = np.argsort(xs)
    xs, mu, sd = xs[order], mu[order], sd[order]
    fig = _new_figure(6, 4)
    ax = fig.subplots()
    ax.fill_between(xs, mu - k * sd, mu + k * sd, color=_lighten(_PALETTE[0], 0.6), label=f"mean ± {k:g} std")
    ax.plot(xs, mu, color=_PALETTE[0], label="predictive mean")
    if truth is not None:
        ax.plot(xs, np.asarray(truth(xs), dtype=np.float64), "--", color="#555555", label="truth")
    if x_train is not None and y_train is not None:
        ax.plot(to_numpy(x_train).ravel(), to_numpy(y_train).ravel(), ".", color=_PALETTE[1], markersize=3,
                label="training data")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "predictive uncertainty", fontsize=10)
    return _save(fig, path, "predictive band")
