"""kp.plot's pictures of a model: filters, activations, image grids, confusion matrix, lr range test,
and the learning curve redrawn during training. Each picture is rendered, and its size and content checked."""

from __future__ import annotations

import gc
import os
import sys
import weakref

import numpy as np
import pytest

import knetpy as kp
from knetpy import plot

mpl_image = pytest.importorskip("matplotlib.image", reason="the pictures need matplotlib (extra [plot])")


def _pixels(path):
    """(height, width) and the RGB pixels of a PNG, after checking that it is one."""
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rgb = mpl_image.imread(path)[..., :3]
    return rgb.shape[:2], rgb


def _assert_picture(path, size):
    """The PNG has ``size`` (width, height) in pixels and is not blank: many colours, spread out."""
    (height, width), rgb = _pixels(path)
    assert (width, height) == size
    colours = np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 20, f"{path.name}: only {len(colours)} colours"
    assert rgb.std() > 0.05, f"{path.name}: nearly uniform"
    return rgb


def _px(inches):
    return int(round(inches * 100))  # figures are drawn at 100 dots per inch


@pytest.fixture(scope="module")
def digits_cnn():
    """A small CNN trained a little on 8x8 synthetic 'digits' (a bright bar whose position is the class)."""
    kp.set_seed(0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    x = rng.normal(0, 0.2, (400, 1, 8, 8)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, 0, 2 * c:2 * c + 2, :] += 1.0  # class c: rows 2c and 2c+1 lit
    model = kp.Sequential(kp.layers.Conv2D(6, 3, padding="same", activation="relu", input_shape=(1, 8, 8)),
                          kp.layers.MaxPool2D(2), kp.layers.Flatten(), kp.layers.Dense(4))
    model.compile(loss="cross_entropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x[:300], y[:300], epochs=2, batch_size=32, verbose=0)
    return model, x, y


# -- first-layer filters ---------------------------------------------------------------------------
def test_filter_grid_of_a_conv_layer(tmp_path, digits_cnn):
    model, _, _ = digits_cnn
    path = plot.filter_grid(model, tmp_path / "filters.png")
    _assert_picture(path, (_px(3 * 0.9 + 0.4), _px(2 * 0.9 + 0.7)))  # 6 filters: 2 rows of 3


def test_filter_grid_draws_rgb_filters_in_colour(tmp_path):
    conv = kp.layers.Conv2D(16, 5, input_shape=(3, 32, 32))
    rgb = _assert_picture(plot.filter_grid(conv, tmp_path / "rgb.png"), (_px(4 * 0.9 + 0.4), _px(4 * 0.9 + 0.7)))
    saturation = rgb.max(axis=2) - rgb.min(axis=2)
    assert (saturation > 0.3).mean() > 0.1  # colour, not grey


def test_filter_grid_reads_the_conv_layout_filters_first(tmp_path, monkeypatch):
    """Weights (filters, channels, kh, kw): filter k is w[k], not a slice along another axis."""
    w = np.zeros((2, 1, 3, 5), np.float32)
    w[0, 0, 1, :] = 1.0  # filter 0: a horizontal bar
    w[1, 0, :, 2] = 1.0  # filter 1: a vertical bar
    seen, real = [], plot._mosaic
    monkeypatch.setattr(plot, "_mosaic", lambda tiles: seen.extend(tiles) or real(tiles))
    plot.filter_grid(w, tmp_path / "w.png")
    assert [t.shape for t in seen] == [(3, 5), (3, 5)]
    np.testing.assert_array_equal(seen[0], w[0, 0])  # values 0 and 1 keep their range
    np.testing.assert_array_equal(seen[1], w[1, 0])


def test_filter_grid_of_a_linear_classifier_shows_class_templates(tmp_path, monkeypatch):
    dense = kp.layers.Dense(3, n_in=64)
    dense.w.value[:] = 0
    dense.w.value[:8, 0] = 1.0  # the template of class 0 lights the top row of an 8x8 image
    seen, real = [], plot._unit_range
    monkeypatch.setattr(plot, "_unit_range", lambda tile: seen.append(tile) or real(tile))
    path = plot.filter_grid(kp.Sequential(kp.layers.Flatten(), dense), tmp_path / "templates.png",
                            class_names=["top", "b", "c"])
    _assert_picture(path, (_px(2 * 0.9 + 0.4), _px(2 * 0.9 + 0.7)))
    assert len(seen) == 3 and seen[0].shape == (8, 8)
    np.testing.assert_array_equal(seen[0][0], 1.0)
    np.testing.assert_array_equal(seen[0][1:], 0.0)
    with pytest.raises(ValueError, match=r"not a square image; pass image_shape"):
        plot.filter_grid(kp.layers.Dense(3, n_in=60), tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"image_shape \(5, 5\) holds 25 values, not the 64"):
        plot.filter_grid(dense, tmp_path / "x.png", image_shape=(5, 5))


def test_filter_grid_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no Conv2D or Dense layer"):
        plot.filter_grid(kp.Sequential(kp.layers.Flatten()), tmp_path / "x.png")
    with pytest.raises(ValueError, match="not built yet"):
        plot.filter_grid(kp.Sequential(kp.layers.Conv2D(4, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"got shape \(2, 3, 4\)"):
        plot.filter_grid(np.zeros((2, 3, 4)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="no layer named 'conv9'"):
        plot.filter_grid(kp.Sequential(kp.layers.Dense(2, n_in=4)), tmp_path / "x.png", layer="conv9")


# -- activation maps -------------------------------------------------------------------------------
def test_activation_maps_of_a_sequential_layer_by_index(tmp_path, digits_cnn):
    model, x, _ = digits_cnn
    path = plot.activation_maps(model, x[0], 0, tmp_path / "act.png")  # one sample without its batch axis
    _assert_picture(path, (_px(3 * 0.9 + 1.2), _px(2 * 0.9 + 0.7)))
    bars = plot.activation_maps(model, x[:5], -1, tmp_path / "dense.png")  # of a batch, the first sample
    _assert_picture(bars, (_px(3 + 0.12 * 4), _px(3.5)))


def test_layer_output_matches_running_the_layers_by_hand(digits_cnn):
    model, x, _ = digits_cnn
    want = model[1](model[0](x[:1])).value
    np.testing.assert_allclose(plot.layer_output(model, x[:1], 1), want)
    np.testing.assert_allclose(plot.layer_output(model, x[:1], model[1]), want)


class _TwoPath(kp.Model):
    """A subclassed model whose layers are attributes, one of them called inside a nested block."""

    def __init__(self):
        super().__init__()
        self.block = kp.Sequential(kp.layers.Conv2D(4, 3, padding="same", name="inner"), kp.relu)
        self.head = kp.layers.Dense(2)

    def forward(self, x):
        h = self.block(x)
        return self.head(kp.reshape(h, (h.shape[0], -1)))


def test_activation_maps_of_a_subclassed_model_by_layer_or_name(tmp_path):
    kp.set_seed(1)
    model = _TwoPath()
    x = np.random.default_rng(0).normal(size=(1, 1, 6, 6)).astype(np.float32)
    model(x)
    conv = model.block[0]
    want = conv(x).value
    np.testing.assert_allclose(plot.layer_output(model, x, conv), want)
    np.testing.assert_allclose(plot.layer_output(model, x, "inner"), want)
    np.testing.assert_allclose(plot.layer_output(model, x, "block.0"), want)
    assert "forward" not in vars(conv)  # the layer is left as it was
    _assert_picture(plot.activation_maps(model, x, "inner", tmp_path / "a.png"),
                    (_px(2 * 0.9 + 1.2), _px(2 * 0.9 + 0.7)))
    with pytest.raises(ValueError, match="was not called when the model ran"):
        plot.layer_output(model, x, kp.layers.Dense(3))
    with pytest.raises(TypeError, match="a layer index needs a Sequential"):
        plot.layer_output(model, x, 0)


# -- image grids and misclassified examples ---------------------------------------------------------
def test_image_grid_with_labels_and_class_names(tmp_path, digits_cnn):
    _, x, y = digits_cnn
    path = plot.image_grid(x[:10], tmp_path / "grid.png", labels=y[:10], class_names=["a", "b", "c", "d"])
    _assert_picture(path, (_px(4 * 1.1 + 0.3), _px(3 * (1.1 + 0.18) + 0.5)))
    flat = plot.image_grid(x[:3].reshape(3, 64), tmp_path / "flat.png")  # flat rows: 8x8 guessed
    _assert_picture(flat, (_px(2 * 1.1 + 0.3), _px(2 * 1.1 + 0.5)))
    with pytest.raises(ValueError, match=r"got shape \(3, 5, 8, 8\)"):
        plot.image_grid(np.zeros((3, 5, 8, 8)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="3 images but 2 predictions"):
        plot.image_grid(x[:3], tmp_path / "x.png", labels=y[:3], pred=y[:2])


def test_misclassified_indices_pick_the_wrong_ones_most_confident_first():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.1, 0.9], [0.3, 0.7]])
    labels = np.array([0, 0, 1, 1, 0])  # wrong: 1 (0.8 sure), 2 (0.6 sure), 4 (0.7 sure)
    np.testing.assert_array_equal(plot.misclassified_indices(scores, labels), [1, 4, 2])
    np.testing.assert_array_equal(plot.misclassified_indices(np.array([2, 1, 0]), np.array([2, 0, 1])), [1, 2])
    np.testing.assert_array_equal(plot.misclassified_indices(scores, np.eye(2, dtype=int)[labels]), [1, 4, 2])


def test_misclassified_draws_only_the_mistakes(tmp_path, monkeypatch):
    images = np.random.default_rng(0).random((6, 8, 8))
    labels = np.array([0, 1, 2, 0, 1, 2])
    pred = np.array([0, 2, 2, 1, 1, 0])  # wrong: 1, 3, 5
    drawn = {}
    real = plot.image_grid
    monkeypatch.setattr(plot, "image_grid", lambda imgs, path, **kw: drawn.update(imgs=imgs, **kw) or real(imgs, path, **kw))
    path = plot.misclassified(images, labels, pred, tmp_path / "mis.png", class_names=["cat", "dog", "owl"])
    np.testing.assert_array_equal(drawn["imgs"], images[[1, 3, 5]])
    np.testing.assert_array_equal(drawn["labels"], [1, 0, 2])
    np.testing.assert_array_equal(drawn["pred"], [2, 1, 0])
    assert drawn["title"] == "misclassified: 3 of 6"
    _assert_picture(path, (_px(2 * 1.1 + 0.3), _px(2 * (1.1 + 0.36) + 0.5)))
    none = plot.misclassified(images, labels, labels, tmp_path / "none.png")
    (height, width), _ = _pixels(none)
    assert (width, height) == (400, 150)


# -- confusion matrix --------------------------------------------------------------------------------
def test_confusion_matrix_counts_a_hand_example():
    y = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    want = np.array([[1, 1, 0],
                     [0, 2, 1],
                     [1, 0, 0]])
    np.testing.assert_array_equal(kp.metrics.confusion_matrix(pred, y), want)
    scores = np.eye(3)[pred] * 0.8 + 0.1  # the same predictions as scores
    np.testing.assert_array_equal(kp.metrics.confusion_matrix(scores, np.eye(3, dtype=int)[y]), want)
    np.testing.assert_allclose(kp.metrics.confusion_matrix(pred, y, normalize="true"),
                               [[0.5, 0.5, 0], [0, 2 / 3, 1 / 3], [1, 0, 0]])
    np.testing.assert_allclose(kp.metrics.confusion_matrix(pred, y, normalize="pred"),
                               [[0.5, 1 / 3, 0], [0, 2 / 3, 1], [0.5, 0, 0]])
    np.testing.assert_allclose(kp.metrics.confusion_matrix(pred, y, normalize="all"), want / 6)
    # A class never seen stays a zero row, not a division by zero; binary outputs use the threshold.
    np.testing.assert_array_equal(kp.metrics.confusion_matrix(pred, y, num_classes=4, normalize="true")[3], 0)
    np.testing.assert_array_equal(kp.metrics.confusion_matrix(np.array([0.2, 0.9, 0.7]), np.array([0, 0, 1])),
                                  [[1, 1], [0, 1]])


def test_confusion_matrix_errors_name_the_problem():
    with pytest.raises(ValueError, match="normalize must be"):
        kp.metrics.confusion_matrix(np.array([0]), np.array([0]), normalize="rows")
    with pytest.raises(ValueError, match="same number of samples"):
        kp.metrics.confusion_matrix(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="target holds label 5, outside 0..2"):
        kp.metrics.confusion_matrix(np.array([0, 1]), np.array([0, 5]), num_classes=3)
    with pytest.raises(TypeError, match="integer labels"):
        kp.metrics.confusion_matrix(np.array([0, 1]), np.array([0.0, 1.0]))


def test_confusion_matrix_picture(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)
    pred = np.where(rng.random(200) < 0.7, y, rng.integers(0, 5, 200))
    side = 0.5 * 5 + 2.5
    _assert_picture(plot.confusion_matrix(pred, y, tmp_path / "cm.png"), (_px(side + 1), _px(side)))
    names = ["zero", "one", "two", "three", "four"]
    _assert_picture(plot.confusion_matrix(pred, y, tmp_path / "cmn.png", class_names=names, normalize="true"),
                    (_px(side + 1), _px(side)))


# -- lr range test -------------------------------------------------------------------------------------
def _lr_result():
    lr = np.logspace(-5, 1, 40)
    loss = 2.3 - 1.5 / (1 + np.exp(-2 * (np.log10(lr) + 3)))
    loss[30:] += np.exp(np.arange(10))  # the loss blows up at the end
    loss[-1] = np.inf
    return {"lr": lr.tolist(), "loss": loss.tolist(), "suggested": 1e-3}


def test_lr_range_test_picture_marks_the_suggestion(tmp_path):
    rgb = _assert_picture(plot.lr_range_test(_lr_result(), tmp_path / "lr.png"), (600, 400))
    red = (rgb[..., 0] > 0.7) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)
    assert red.sum() > 200  # the dashed line and marker of the suggested rate
    plain = plot.lr_range_test({**_lr_result(), "suggested": None}, tmp_path / "plain.png")
    _, rgb = _pixels(plain)
    assert ((rgb[..., 0] > 0.7) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)).sum() == 0


def test_lr_range_test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"expected \{'lr'"):
        plot.lr_range_test({"rates": [1, 2]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="as many losses as learning rates"):
        plot.lr_range_test({"lr": [1e-3, 1e-2], "loss": [1.0]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="positive and finite"):
        plot.lr_range_test({"lr": [0.0, 1e-2], "loss": [1.0, 2.0]}, tmp_path / "x.png")


# -- learning curves during training --------------------------------------------------------------------
def test_plot_history_redraws_the_curve_after_each_epoch(tmp_path):
    x, y = kp.datasets.spirals(20, 3)
    model = kp.Sequential(kp.layers.Dense(3))
    model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.5), metrics=["accuracy"])
    path = tmp_path / "runs" / "curve.png"
    seen = []
    watch = kp.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(path.stat().st_mtime_ns))
    cb = kp.callbacks.PlotHistory(path, title="live")
    model.fit(x, y, epochs=3, batch_size=30, validation_data=(x, y), verbose=0, callbacks=[cb, watch])
    assert len(seen) == 3 and seen == sorted(seen) and len(set(seen)) == 3  # a new picture every epoch
    assert sorted(p.name for p in path.parent.iterdir()) == ["curve.png"]  # no temporary left beside it
    assert cb.drawn == path and len(cb.history["loss"]) == 3
    _assert_picture(path, (1100, 400))  # losses and accuracies side by side


def test_plot_history_every_k_epochs_and_at_the_end(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(plot, "learning_curve", lambda history, path, **kw: drawn.append(len(history["loss"])))
    x, y = kp.datasets.spirals(10, 2)
    model = kp.Sequential(kp.layers.Dense(2))
    model.compile(loss="cross_entropy", optimizer="sgd")
    model.fit(x, y, epochs=5, verbose=0, callbacks=[kp.callbacks.PlotHistory(tmp_path / "c.png", every=2)])
    assert drawn == [2, 4, 5]
    with pytest.raises(ValueError, match="every must be a whole number"):
        kp.callbacks.PlotHistory(tmp_path / "c.png", every=0)


def test_plot_history_keeps_earlier_epochs_when_resumed(tmp_path):
    x, y = kp.datasets.spirals(10, 2)
    ckpt = tmp_path / "run.ckpt"

    def run(epochs, resume):
        kp.set_seed(0)
        model = kp.Sequential(kp.layers.Dense(2))
        model.compile(loss="cross_entropy", optimizer="sgd")
        cb = kp.callbacks.PlotHistory(tmp_path / "c.png")
        model.fit(x, y, epochs=epochs, verbose=0, callbacks=[cb], checkpoint=ckpt, resume=resume)
        return cb

    first = run(2, False)
    again = run(4, True)
    assert again.history["loss"][:2] == first.history["loss"] and len(again.history["loss"]) == 4


def test_plot_history_without_matplotlib_trains_on(tmp_path, monkeypatch, capsys):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    x, y = kp.datasets.spirals(10, 2)
    model = kp.Sequential(kp.layers.Dense(2))
    model.compile(loss="cross_entropy", optimizer="sgd")
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[kp.callbacks.PlotHistory(tmp_path / "c.png")])
    assert len(history["loss"]) == 3 and not (tmp_path / "c.png").exists()
    assert capsys.readouterr().err.count("matplotlib is not installed") == 1  # said once, not every epoch


def test_new_pictures_without_matplotlib_are_a_message(tmp_path, monkeypatch, capsys):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    conv = kp.layers.Conv2D(2, 3, input_shape=(1, 5, 5))
    y = np.array([0, 1])
    assert plot.filter_grid(conv, tmp_path / "a.png") is None
    assert plot.activation_maps(kp.Sequential(conv), np.zeros((1, 5, 5), np.float32), 0, tmp_path / "b.png") is None
    assert plot.image_grid(np.zeros((2, 4, 4)), tmp_path / "c.png") is None
    assert plot.misclassified(np.zeros((2, 4, 4)), y, y[::-1], tmp_path / "d.png") is None
    assert plot.confusion_matrix(y, y, tmp_path / "e.png") is None
    assert plot.lr_range_test(_lr_result(), tmp_path / "f.png") is None
    assert capsys.readouterr().err.count("matplotlib is not installed") == 6
    assert not list(tmp_path.iterdir())


# -- no figure outlives its picture ----------------------------------------------------------------------
def test_figures_are_freed_after_saving(tmp_path, monkeypatch, digits_cnn):
    model, x, y = digits_cnn
    made = []
    real = plot._new_figure

    def tracked(*args, **kwargs):
        fig = real(*args, **kwargs)
        made.append(weakref.ref(fig))
        return fig

    monkeypatch.setattr(plot, "_new_figure", tracked)
    plot.filter_grid(model, tmp_path / "a.png")
    plot.activation_maps(model, x[0], 0, tmp_path / "b.png")
    plot.misclassified(x[:20], y[:20], np.zeros(20, int), tmp_path / "c.png")
    plot.confusion_matrix(y, y, tmp_path / "d.png")
    plot.lr_range_test(_lr_result(), tmp_path / "e.png")
    plot.learning_curve({"loss": [2.0, 1.0]}, tmp_path / "f.png")
    gc.collect()
    assert len(made) == 6 and all(ref() is None for ref in made)
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or not pyplot.get_fignums()  # nothing registered with pyplot either


def test_a_failed_write_leaves_the_previous_picture_whole(tmp_path, monkeypatch, capsys):
    from matplotlib.figure import Figure

    path = plot.confusion_matrix(np.array([0, 1]), np.array([0, 1]), tmp_path / "cm.png")
    before = path.read_bytes()

    def half_written(self, f, **kwargs):
        f.write(before[:100])
        raise OSError("No space left on device")

    monkeypatch.setattr(Figure, "savefig", half_written)
    assert plot.confusion_matrix(np.array([0, 1]), np.array([1, 1]), path) is None
    assert "confusion matrix not written: OSError: No space left on device" in capsys.readouterr().err
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["cm.png"]


def test_fit_plot_writes_the_learning_curve_after_every_epoch(tmp_path):
    x, y = kp.datasets.spirals(60, 3, seed=0)
    model = kp.Sequential([kp.layers.Dense(8, activation="relu"), kp.layers.Dense(3)])
    model.compile(loss="cross_entropy", optimizer="adam")
    seen = []

    class Watch(kp.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(os.path.exists(path))

    path = tmp_path / "curve.png"
    model.fit(x, y, epochs=3, batch_size=20, verbose=0, plot=path, callbacks=[Watch()])
    assert seen[1:] == [True, True]  # written by the end of each epoch, before the next
    (height, width), rgb = _pixels(path)
    assert width > 300 and height > 200 and rgb.std() > 0.05
