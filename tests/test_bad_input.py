"""The catalogue of bad input: every case raises a clear error, of the right type, from knetpy's own code.

Each entry is (call, exception type, message pattern). Besides the type and the message, the test
checks that the exception was raised by a frame inside the knetpy package: no case may end deep in
NumPy with an error that says nothing about the argument.
"""

import os
import warnings

import numpy as np
import pytest

import knetpy as kp
from knetpy.layers import Dense

KNETPY_DIR = os.path.dirname(os.path.abspath(kp.__file__))
X = np.ones((4, 3), np.float32)
Y = np.array([0, 1, 2, 0])


def _model(loss="cross_entropy", n_out=3, compiled=True, **compile_kw):
    model = kp.Sequential(Dense(8, activation="relu"), Dense(n_out))
    if compiled:
        model.compile(loss, compile_kw.pop("optimizer", kp.optim.SGD(lr=0.1)), **compile_kw)
    return model


def _fit(x=X, y=Y, model=None, **kw):
    return (model or _model()).fit(x, y, verbose=0, **kw)


def _trained():
    model = _model()
    _fit(model=model)
    return model


def _with(array, index, value):
    out = np.array(array, copy=True)
    out[index] = value
    return out


def _built(layer, x):
    layer(x)
    return layer


def _load_into_wider_model(tmp):
    path = os.path.join(tmp, "small.ckpt")
    small = _model()
    _fit(model=small)
    small.save(path)
    wide = kp.Sequential(Dense(16, activation="relu"), Dense(3))
    wide.predict(X)
    wide.load_weights(path)


def _resume_into_wider_model(tmp):
    path = os.path.join(tmp, "run.ckpt")
    _fit(checkpoint=path)
    wide = kp.Sequential(Dense(16, activation="relu"), Dense(3))
    wide.compile("cross_entropy", kp.optim.SGD(lr=0.1))
    _fit(model=wide, checkpoint=path, resume=True, epochs=2)


def _set_lr(value):
    kp.optim.Adam(lr=0.1).lr = value


CASES = {
    # -- layers: input rank and feature size ------------------------------------------------------------
    "dense-rank-first-call": (lambda t: Dense(2)(np.ones(4, np.float32)), ValueError,
                              r"Dense expects inputs of shape \(N, n_in\), got \(4,\)"),
    "dense-rank": (lambda t: _built(Dense(2), X)(np.ones(4, np.float32)), ValueError,
                   r"Dense expects inputs of shape \(N, 3\), got \(4,\)"),
    "dense-features": (lambda t: _built(Dense(2), X)(np.ones((4, 5), np.float32)), ValueError,
                       r"Dense expects inputs of shape \(N, 3\), got \(N, 5\)"),
    "dense-features-in-predict": (lambda t: _trained().predict(np.ones((2, 5), np.float32)), ValueError, r"Dense expects inputs of shape \(N, 3\), got \(N, 5\)"),
    "conv2d-rank": (lambda t: kp.layers.Conv2D(4, 3)(np.ones((2, 8, 8), np.float32)), ValueError,
                    r"Conv2D expects inputs of shape \(N, C, X, Y\), got \(N, 8, 8\)"),
    "conv2d-channels": (lambda t: _built(kp.layers.Conv2D(4, 3), np.ones((2, 3, 8, 8), np.float32))(
                        np.ones((2, 5, 8, 8), np.float32)), ValueError, r"Conv2D .*3 input channels.*\(N, 5, 8, 8\)"),
    "lstm-rank": (lambda t: kp.layers.LSTM(4)(np.ones((2, 3), np.float32)), ValueError,
                  r"LSTM expects batch-first sequences \(N, T, F\), got shape \(2, 3\)"),
    "lstm-features": (lambda t: _built(kp.layers.LSTM(4), np.ones((2, 5, 3), np.float32))(np.ones((2, 5, 6), np.float32)),
                      ValueError, r"LSTM .*3 input features.*6|w_ih of layer 0 has shape \(3, 16\), expected \(6, 16\)"),
    # -- class labels ----------------------------------------------------------------------------------
    "labels-above-range": (lambda t: kp.losses.cross_entropy(np.zeros((3, 4), np.float32), np.array([0, 1, 4])),
                           ValueError, r"cross_entropy: label 4 is out of range for 4 classes \(0..3\)"),
    "labels-negative": (lambda t: kp.losses.cross_entropy(np.zeros((3, 4), np.float32), np.array([0, -1, 2])),
                        ValueError, r"cross_entropy: label -1 is out of range for 4 classes \(0..3\)"),
    "labels-float": (lambda t: kp.losses.cross_entropy(np.zeros((3, 4), np.float32), np.array([0.0, 1.0, 2.0])),
                     TypeError, r"class labels must be integers, got dtype float64"),
    "labels-out-of-range-in-fit": (lambda t: _fit(y=np.array([0, 1, 5, 0])), ValueError,
                                   r"cross_entropy: label 5 is out of range for 3 classes"),
    "labels-float-in-fit": (lambda t: _fit(y=Y.astype(np.float32)), TypeError,
                            r"class labels must be integers, got dtype float32"),
    # -- NaN / Inf ---------------------------------------------------------------------------------------
    "nan-in-x-checked": (lambda t: _fit(x=_with(X, (2, 1), np.nan), check_finite=True), ValueError,
                         r"fit: x has NaN in sample 2 \(1 of its 4 samples holds NaN or Inf\)"),
    "inf-in-y-checked": (lambda t: _fit(y=_with(np.ones((4, 1), np.float32), 3, np.inf), model=_model("mse", 1),
                                        check_finite=True), ValueError, r"fit: y has Inf in sample 3"),
    "nan-in-validation-checked": (lambda t: _fit(validation_data=(_with(X, 1, np.nan), Y), check_finite=True),
                                  ValueError, r"fit \(validation_data\): x has NaN in sample 1"),
    "nan-in-a-loader-batch-checked": (lambda t: _fit(x=kp.data.DataLoader((_with(X, 3, np.nan), Y), batch_size=2),
                                                     y=None, check_finite=True), ValueError,
                                      r"fit: x has NaN in sample 1 of the batch at index 1 of epoch 1"),
    "nan-in-evaluate-checked": (lambda t: _model().evaluate(_with(X, 0, np.nan), Y, check_finite=True),
                                ValueError, r"evaluate: x has NaN in sample 0"),
    "nan-in-predict-checked": (lambda t: _model().predict(_with(X, 3, np.inf), check_finite=True),
                               ValueError, r"predict: x has Inf in sample 3"),
    "nan-loss": (lambda t: _fit(x=_with(X, 2, np.nan), batch_size=2, shuffle=False), FloatingPointError,
                 r"fit: the loss is nan at epoch 1/1, step 2 \(batch index 1 of the epoch, 2 samples\)"),
    "inf-loss": (lambda t: _fit(y=np.full((4, 1), 3e38, np.float32), model=_model("mse", 1)), FloatingPointError,
                 r"fit: the loss is inf at epoch 1/1, step 1 \(batch index 0"),
    # -- data shape and type -----------------------------------------------------------------------------
    "empty-dataset": (lambda t: _fit(x=np.zeros((0, 3), np.float32), y=np.zeros(0, np.int64)), ValueError,
                      r"fit: the dataset is empty \(x has 0 samples\)"),
    "empty-loader": (lambda t: kp.data.DataLoader(np.zeros((0, 3), np.float32)), ValueError,
                     r"DataLoader: the data is empty \(0 samples\)"),
    "batch-size-zero": (lambda t: _fit(batch_size=0), ValueError, r"fit: batch_size must be a positive integer, got 0"),
    "batch-size-negative": (lambda t: _fit(batch_size=-3), ValueError,
                            r"fit: batch_size must be a positive integer, got -3"),
    "batch-size-float": (lambda t: _fit(batch_size=2.5), TypeError, r"fit: batch_size must be a positive integer, got 2.5"),
    "lengths-differ": (lambda t: _fit(y=Y[:3]), ValueError, r"fit: every array needs the same number of samples .*x has 4, y has 3"),
    "string-x": (lambda t: _fit(x=np.array([["a"] * 3] * 4)), TypeError, r"fit: x must hold numbers, got an array of dtype <U1"),
    "string-y": (lambda t: _fit(y=np.array(list("abca"))), TypeError, r"fit: y must hold numbers, got an array of dtype <U1"),
    "object-x": (lambda t: _fit(x=np.array([[1, None, 2]] * 4, dtype=object)), TypeError,
                 r"fit: x must hold numbers, got an array of dtype object"),
    "ragged-list-x": (lambda t: _fit(x=[[1, 2, 3], [1, 2]], y=[0, 1]), TypeError, r"fit: x could not be turned into an array"),
    "scalar-x": (lambda t: _fit(x=3.0), ValueError, r"fit: x must have a sample axis first, got a scalar"),
    # -- names ---------------------------------------------------------------------------------------------
    "unknown-activation": (lambda t: Dense(3, activation="rellu"), ValueError,
                           r"unknown activation 'rellu'; did you mean 'relu'\?"),
    "unknown-loss": (lambda t: _model("cross_entropi"), ValueError,
                     r"unknown loss 'cross_entropi'; did you mean 'cross_entropy'\?"),
    "unknown-optimizer": (lambda t: _model(optimizer="sgdd"), ValueError,
                          r"unknown optimizer 'sgdd' .*did you mean 'sgd'\?"),
    "unknown-initializer": (lambda t: Dense(3, init="glorot_unifrom"), ValueError,
                            r"unknown initializer 'glorot_unifrom'; did you mean 'glorot_uniform'\?"),
    "unknown-metric": (lambda t: _model(metrics=["acuracy"]), ValueError,
                       r"unknown metric 'acuracy'; did you mean 'accuracy'\?"),
    "unknown-reduction": (lambda t: kp.losses.mse(X, X, reduction="meen"), ValueError,
                          r"mse: reduction must be one of mean, sum, none, got 'meen'; did you mean 'mean'\?"),
    # -- training setup --------------------------------------------------------------------------------------
    "fit-before-compile": (lambda t: _fit(model=_model(compiled=False)), RuntimeError,
                           r"fit: the model is not compiled; call model.compile\(loss=..., optimizer=..., metrics=...\) first"),
    "evaluate-before-compile": (lambda t: _model(compiled=False).evaluate(X, Y), RuntimeError,
                                r"evaluate: the model is not compiled"),
    "lr-zero": (lambda t: kp.optim.SGD(lr=0), ValueError, r"SGD: lr must be finite and > 0, got 0"),
    "lr-negative": (lambda t: kp.optim.Adam(lr=-0.1), ValueError, r"Adam: lr must be finite and > 0, got -0.1"),
    "lr-nan": (lambda t: kp.optim.Adam(lr=float("nan")), ValueError, r"Adam: lr must be finite and > 0, got nan"),
    "lr-inf-by-name": (lambda t: kp.optim.get("rmsprop", lr=float("inf")), ValueError,
                       r"RMSprop: lr must be finite and > 0, got inf"),
    "lr-negative-set-later": (lambda t: _set_lr(-1.0), ValueError, r"Adam: lr must be finite and >= 0, got -1.0"),
    "lr-nan-from-a-schedule": (lambda t: _fit(callbacks=[kp.callbacks.LearningRateScheduler(lambda e, lr: float("nan"))]),
                               ValueError, r"LearningRateScheduler: the schedule gave lr=nan for epoch 0"),
    "seed-not-an-integer": (lambda t: kp.set_seed("a"), TypeError, r"set_seed: seed must be a non-negative integer, got 'a'"),
    # -- checkpoints ---------------------------------------------------------------------------------------
    "load-weights-other-shape": (_load_into_wider_model, kp.CheckpointError,
                                 r"parameter '0.w' has shape \(3, 8\) in the file but \(3, 16\) in the model"),
    "resume-other-shape": (_resume_into_wider_model, kp.CheckpointError,
                           r"parameter '0.w' has shape \(3, 8\) in the file but \(3, 16\) in the model"),
}


def _raising_file(excinfo):
    tb = excinfo.tb
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.abspath(tb.tb_frame.f_code.co_filename)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_a_clear_error_from_knetpy(case, tmp_path):
    call, error, pattern = CASES[case]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN arithmetic before the check fires
        with pytest.raises(error, match=pattern) as excinfo:
            call(str(tmp_path))
    assert type(excinfo.value) is error  # not merely a subclass
    where = _raising_file(excinfo)
    assert where.startswith(KNETPY_DIR + os.sep), f"raised outside knetpy, in {where}: {excinfo.value!r}"
