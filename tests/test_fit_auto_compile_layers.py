"""fit's default compile across knetpy's layers: every model trains exactly as fit(compile=False), and the
step was replayed (not silently eager)."""

import numpy as np
import pytest

import knetpy as kp
from knetpy import training

L = kp.layers


def images(n=48, c=2, h=8, w=8):
    g = np.random.default_rng(0)
    return g.standard_normal((n, c, h, w)).astype("f"), g.integers(0, 3, n)


def sequences(n=48, t=6, d=4):
    g = np.random.default_rng(1)
    return g.standard_normal((n, t, d)).astype("f"), g.integers(0, 3, n)


def tokens(n=48, t=5, vocab=11):
    g = np.random.default_rng(2)
    return g.integers(0, vocab, (n, t)), g.integers(0, 3, n)


def cube(n=48):
    g = np.random.default_rng(3)
    return g.standard_normal((n, 1, 4, 4, 4)).astype("f"), g.integers(0, 3, n)


CASES = {
    "conv_pools": (images, lambda: [L.Conv2D(4, 3, padding="same", activation="relu"), L.MaxPool2D(), L.AvgPool2D(),
                                    L.Flatten(), L.Dense(3)]),
    "conv_transpose_upsample": (images, lambda: [L.Conv2DTranspose(3, 2, strides=2), L.UpSampling2D(), L.ZeroPadding2D(),
                                                 L.LPPool2D(2), L.GlobalAvgPool2D(), L.Dense(3)]),
    "dropout2d_prelu_batchnorm": (images, lambda: [L.Conv2D(4, 3), L.BatchNorm(), L.PReLU(), L.Dropout2D(0.3),
                                                   L.GlobalMaxPool2D(), L.Dense(3)]),
    "conv3d": (cube, lambda: [L.Conv3D(2, 2, activation="relu"), L.MaxPool3D(), L.Flatten(), L.Dense(3)]),
    "conv1d": (sequences, lambda: [L.Reshape((4, 6)), L.Conv1D(5, 3, activation="tanh"), L.MaxPool1D(),
                                   L.GlobalAvgPool1D(), L.Dense(3)]),
    "maxout_alpha_dropout_layernorm": (sequences, lambda: [L.Flatten(), L.Maxout(8, 3), L.LayerNorm(),
                                                           L.AlphaDropout(0.2), L.Dense(3)]),
    "gru_bidirectional": (sequences, lambda: [L.GRU(6, bidirectional=True, dropout=0.2, num_layers=2), L.Dense(3)]),
    "embedding_lstm": (tokens, lambda: [L.Embedding(11, 6), L.LSTM(7, return_sequences=True), L.SimpleRNN(5),
                                        L.Dense(3)]),
    "transformer": (tokens, lambda: [L.Embedding(11, 8), L.PositionalEmbedding(5, 8),
                                     L.TransformerEncoderLayer(8, 2, dim_feedforward=16), L.GlobalMaxPool1D(),
                                     L.Dense(3)]),
}


def _fit(case, compile, optimizer):
    data, layers = CASES[case]
    x, y = data()
    kp.set_seed(0)
    model = kp.Sequential(layers())
    model.compile(loss="cross_entropy", optimizer=optimizer(), metrics=["accuracy"])
    hist = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0, compile=compile)
    state = {k: t.value.copy() for layer in model.layers() for k, t in layer.state().items()}
    return model, hist.history, {k: p.value.copy() for k, p in model.params.items()}, state


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("optimizer", [lambda: kp.optim.SGD(lr=0.05, momentum=0.9), lambda: kp.optim.Adam(lr=0.01)],
                         ids=["sgd_momentum", "adam"])
def test_default_fit_equals_eager_fit_bit_for_bit(case, optimizer):
    auto = _fit(case, "auto", optimizer)
    assert training.compiles_by_default(auto[0])
    step = training.compiled_step(auto[0])
    assert step.replays > 0, "the default fit did not replay its step"
    eager = _fit(case, False, optimizer)
    assert auto[1] == eager[1]
    for a, b in zip(auto[2:], eager[2:]):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k
