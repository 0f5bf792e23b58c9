"""Keras-style models: ``compile``, ``fit``, ``evaluate``, ``predict`` and ``summary``.

A :class:`Model` is a :class:`~knetpy.layers.base.Layer` with a training loop attached; subclass it
and define ``forward``, or stack layers in a :class:`Sequential`::

    model = kp.Sequential(kp.layers.Dense(64, activation="relu"), kp.layers.Dense(10))
    model.compile(loss="cross_entropy", optimizer=kp.optim.SGD(lr=0.5), metrics=["accuracy"])
    history = model.fit(x, y, epochs=10, batch_size=100, validation_data=(xv, yv))
"""

from __future__ import annotations

import numbers
import os
import warnings
from contextlib import contextmanager

import numpy as np

from . import callbacks as _callbacks
from . import metrics as _metrics
from .autograd import Tensor, no_grad
from .backend import array_namespace, get_dtype, is_array, set_rng_state, to_device, to_host
from .checkpoint import (
    Checkpointer,
    read_training_state,
    restore_model_and_optimizer,
)
from .data._checks import as_data_array, check_batch_size, check_same_length, require_real
from .data.loader import DataLoader
from .data.minibatch import Minibatch
from .layers.base import Layer, sample_shape, thread_mode
from .progress import ProgressBar
from .summary import summarize


def _resolve_loss(loss):
    if isinstance(loss, str):
        from . import losses

        return losses.get(loss)
    if callable(loss):
        return loss
    raise TypeError(f"compile: loss must be a name (e.g. 'cross_entropy') or a function, got {type(loss).__name__}")


def _resolve_optimizer(optimizer):
    from . import optim

    return optim.get(optimizer)


def _takes_binary_logits(loss_fn):
    """True for the losses of one logit per sample: 'accuracy' then thresholds outputs at 0, not 0.5."""
    from . import losses

    return losses.takes_binary_logits(loss_fn)


def _metric_name(metric, index):
    if isinstance(metric, str):
        return metric.lower()
    fn = getattr(metric, "func", metric)  # functools.partial
    name = getattr(metric, "name", None) or getattr(fn, "__name__", None)
    return name if name and name != "<lambda>" else f"metric_{index}"


def _value(out):
    return out.value if isinstance(out, Tensor) else out


class Model(Layer):
    """A layer that can be trained with :meth:`fit`; subclasses define ``forward(x)``.

    Attributes set by :meth:`compile`: ``optimizer``. Set ``model.stop_training = True`` (from a
    callback) to end :meth:`fit` after the current batch.
    """

    def __init__(self, name=None):
        super().__init__(name)
        self.optimizer = None
        self.stop_training = False
        self.history = None
        self._loss = None
        self._metrics = []
        self._input_dtype = None  # dtype of the data seen by fit/evaluate/predict, for summary()
        self._bound = None  # the parameters the optimizer was bound to, to rebind only when they change

    def __getstate__(self):
        # A copy (copy.deepcopy) trains with a step of its own: fit's compiled step is bound to this model.
        state = self.__dict__.copy()
        state.pop("_compiled_step", None)
        return state

    # -- configuration -----------------------------------------------------------------------------
    def compile(self, loss, optimizer="adam", metrics=None):
        """Choose the loss, the optimizer and the metrics reported during training.

        ``loss``: a name from :mod:`knetpy.losses`, a loss object (``kp.losses.SparseCategoricalCrossentropy(
        from_logits=True)``) or a function ``loss(pred, target) -> scalar``; ``cross_entropy`` takes
        logits and Keras's names probabilities (a UserWarning flags a softmax or sigmoid last layer
        feeding a loss that takes logits). ``optimizer``: a name or an optimizer from
        :mod:`knetpy.optim`; :meth:`fit` binds it to the parameters of the layers whose ``trainable``
        is True, unless it was created over parameters of its own (to fine-tune a part of the
        model), which it keeps. ``metrics``: names from :mod:`knetpy.metrics` or functions
        ``metric(pred, target) -> float``. Returns the model.
        """
        self._loss = _resolve_loss(loss)
        _warn_double_squash(self, self._loss, "compile")
        logits = _takes_binary_logits(self._loss)
        self.optimizer = _resolve_optimizer(optimizer)
        self._bound = None
        if metrics is None:
            metrics = []
        elif isinstance(metrics, str) or callable(metrics):
            metrics = [metrics]
        resolved = []
        for i, m in enumerate(metrics):
            name = _metric_name(m, i)
            fn = _metrics.get(m)
            if fn is _metrics.accuracy and logits:
                fn = _binary_logit_accuracy
            if name == "loss" or name in [n for n, _ in resolved]:
                raise ValueError(f"compile: metric name '{name}' is used twice (or clashes with 'loss')")
            resolved.append((name, fn))
        self._metrics = resolved
        return self

    @property
    def compiled(self):
        return self._loss is not None

    @property
    def metrics_names(self):
        """``['loss', <metric names>...]``: the keys of :meth:`evaluate`'s result."""
        return ["loss"] + [name for name, _ in self._metrics]

    def _require_compiled(self, who):
        if self._loss is None:
            raise RuntimeError(
                f"{who}: the model is not compiled; call model.compile(loss=..., optimizer=..., metrics=...) first"
            )

    def build_for(self, input_shape):
        """Build every layer now by running one zero sample of ``input_shape`` (no batch axis) through the model."""
        shape = sample_shape(input_shape, type(self).__name__)
        if None in shape:
            raise ValueError(f"{type(self).__name__}: input_shape needs every size to build a model, got {shape}")
        zero = np.zeros((1,) + shape, dtype=get_dtype())
        with _inference_mode(self):
            self(zero if self._device is None else to_device(zero, self._device))
        self.input_shape = (None,) + shape
        return self

    # -- data preparation --------------------------------------------------------------------------
    def _float_dtype(self):
        params = self.params
        return next(iter(params.values())).dtype if params else get_dtype()

    def _prepare(self, x, y, who, need_y=True, check_finite=False):
        """Check and convert ``x``/``y``: numeric, same length, non-empty; floats in the model's dtype.

        With ``check_finite`` a NaN or Inf anywhere is an error naming the array and the sample.
        """
        if x is None:
            raise ValueError(f"{who}: x (the inputs) is missing")
        x = as_data_array(x, "x", who)
        require_real(x, "x", who)
        dtype = self._float_dtype()
        if x.dtype.kind == "f" and x.dtype != dtype:
            x = x.astype(dtype)  # one conversion up front, not one per batch
        self._input_dtype = x.dtype
        if y is None:
            if need_y:
                raise ValueError(f"{who}: y (the targets) is missing")
            arrays = {"x": x}
        else:
            y = as_data_array(y, "y", who)
            require_real(y, "y", who)
            if y.dtype.kind == "f" and y.dtype != dtype:
                y = y.astype(dtype)
            arrays = {"x": x, "y": y}
        n = check_same_length(arrays, who)
        if n == 0:
            raise ValueError(f"{who}: the dataset is empty (x has 0 samples)")
        if check_finite:
            for name, a in arrays.items():
                _require_finite(a, name, who)
        return x, y

    def _batches(self, x, y, batch_size, shuffle, who, need_y=True, check_finite=False, device=None):
        """A re-iterable of batches: a loader given as ``x``, or minibatches of the arrays; on ``device`` if given."""
        if _is_batch_source(x):
            if y is not None:
                raise ValueError(f"{who}: x is a {type(x).__name__} of batches, so y must not be given separately")
            return x if device is None or getattr(x, "device", None) == device else _OnDevice(x, device)
        x, y = self._prepare(x, y, who, need_y, check_finite)
        batch_size = check_batch_size(batch_size, who)
        return Minibatch(x, y, batch_size=batch_size, shuffle=shuffle, device=device)

    def _data_device(self, device):
        """Where fit/evaluate/predict put batches: ``device``, else the model's when not the CPU, else None (as they come)."""
        if device is not None:
            from .devices import check_device

            return check_device(device)
        own = self.device
        return None if own == "cpu" else own

    def _ready(self, batches, who):
        """Build the layers (one sample through them) and bind the optimizer to the parameters."""
        if not self.built or self._has_unbuilt_layers():
            if isinstance(batches, Minibatch):
                xb = batches.x if batches.device is None else to_device(batches.x[:1], batches.device)
            else:
                first = next(iter(batches))
                xb = first[0] if isinstance(first, (tuple, list)) else first
            with _inference_mode(self):  # a dry run must not update running statistics
                self(xb[:1])
        params = self.params
        if not params:
            raise RuntimeError(f"{who}: the model has no parameters to train")
        self._bind_optimizer(params, who)

    def _bind_optimizer(self, params, who):
        """Bind the optimizer to the trainable parameters, unless it was created over parameters of its own.

        An optimizer created with parameters (``Adam(model.layers()[-1].parameters())`` to fine-tune a
        head) keeps them; one given by name or without parameters trains the parameters of every
        layer whose ``trainable`` is True. The gradients of the model's other parameters are dropped
        before each step, so frozen layers never change and nothing accumulates in them.
        """
        opt = self.optimizer
        own = opt.params
        # bound by the user (not by an earlier fit, which marks what it bound): keep that binding
        if own and tuple(id(p) for p in own.values()) != getattr(opt, "_bound_by_fit", None):
            ids = {id(p) for p in params.values()}
            if not any(id(p) in ids for p in own.values()):
                raise ValueError(
                    f"{who}: none of the optimizer's parameters ({', '.join(list(own)[:4])}"
                    f"{', ...' if len(own) > 4 else ''}) belongs to this model; create it over "
                    "model.parameters() or a part of them, or without parameters to train the whole model"
                )
        else:
            trainable = self.trainable_params
            if not trainable:
                raise RuntimeError(f"{who}: every layer is frozen (trainable = False); there is nothing to train")
            ids = tuple(id(p) for p in trainable.values())
            if self._bound != ids or getattr(opt, "_bound_by_fit", None) != ids:
                opt.bind(trainable)
                self._bound = opt._bound_by_fit = ids
        frozen = {id(p) for p in params.values()} - {id(p) for p in self.trainable_params.values()}
        trained = {id(p) for p in opt.params.values()} - frozen
        self._untrained = [p for p in params.values() if id(p) not in trained]

    def to(self, device):
        """Move the parameters, layer state and the optimizer's state to ``device``; returns the model.

        ``fit``, ``evaluate`` and ``predict`` then put each batch on this device (see their ``device``).
        """
        super().to(device)
        opt = self.optimizer
        if opt is not None and getattr(opt, "state", None):
            from .devices import on_device

            opt.state = on_device(opt.state, self._device)
        return self

    def _has_unbuilt_layers(self):
        return any(isinstance(layer, Layer) and not layer.built for layer in self.layers())

    # -- training ----------------------------------------------------------------------------------
    def fit(
        self,
        x=None,
        y=None,
        epochs=1,
        batch_size=32,
        validation_data=None,
        validation_split=0.0,
        shuffle=True,
        callbacks=None,
        verbose=1,
        initial_epoch=0,
        checkpoint=None,
        resume=False,
        checkpoint_every=None,
        check_finite=False,
        distributed=False,
        plot=None,
        device=None,
        compile="auto",
    ):
        """Train for ``epochs`` passes over ``(x, y)``; returns a :class:`~knetpy.callbacks.History`.

        ``x`` and ``y`` are arrays with samples on the first axis (or ``x`` is a
        :class:`~knetpy.data.DataLoader` / :func:`~knetpy.data.minibatch` yielding ``(xb, yb)``,
        which then decides batch size and shuffling itself).
        ``validation_data=(xv, yv)`` (or ``validation_split``, the fraction taken from the end of the
        arrays before shuffling) is evaluated after every epoch, logged with a ``val_`` prefix; a
        UserWarning says when class labels (integers or one-hot) come sorted by class, or the
        validation part holds classes that the training part lacks.
        ``verbose``: 0 silent, 1 a progress bar on a terminal (one line per epoch otherwise), 2 one
        line per epoch. Epochs run from ``initial_epoch`` to ``epochs - 1``.

        ``checkpoint=path`` writes the whole training state (architecture, weights, layer state,
        optimizer and schedule state, the random generator, epoch, step and history) atomically to
        ``path`` after every epoch, and also every ``checkpoint_every`` optimizer steps if given.
        With ``resume=True`` a run continues from that file when it exists (and starts afresh when
        it does not): ``epochs`` stays the total, so a checkpoint written after epoch k runs epochs
        k+1 to ``epochs``, and the result is bit-identical to a run that was never interrupted,
        whatever the seed set before the call. Resuming needs the same model, optimizer, data and
        batch size as the interrupted run.

        A NaN or infinite loss stops training with a FloatingPointError naming the epoch, step and
        batch, before the weights are updated (with L-BFGS, which evaluates the loss inside its
        step, right after that step); the checkpoint on disk stays the last good one. On a device (a
        GPU) a step never reads the loss back, which would stall it: the loss and metrics are summed
        there and copied to the host once per epoch (and when a progress bar redraws or a callback
        asks for each batch's loss), so a NaN is reported at the end of its epoch.
        ``check_finite=True`` also refuses NaN or Inf in the data (inputs and targets, validation
        data included), naming the array and the sample, before anything trains on it.

        ``plot=path`` redraws the learning curves as a PNG at ``path`` after every epoch (a
        :class:`~knetpy.callbacks.PlotHistory` callback), so a long run can be watched while it trains.

        ``device`` ('cuda', 'cpu', ...) is where each batch goes, moved once per step: by default the
        model's device (see :meth:`to`); data already there are not copied. Without either, batches are
        used where they are.

        ``distributed=True`` trains data-parallel on every rank started by ``mpiexec`` (see
        :mod:`knetpy.distributed`): each rank takes its share of the arrays (``batch_size`` per rank,
        the same shuffled order on every rank), gradients are averaged every step, rank 0 prints the
        figures averaged over all ranks and alone writes ``checkpoint``. ``kp.distributed.LocalSGD(k)``
        or ``kp.distributed.EASGD(k, rho)`` instead average the parameters every k steps.

        ``compile=True`` records the step (forward, loss, backward) on its first batches and replays it
        afterwards without building a graph (see :func:`knetpy.compile`); the weights come out the same.
        The model's forward must not have Python side effects beyond knetpy's own layers: replay skips them.
        ``compile="auto"`` (the default) compiles when the model, every layer in it, their activations and
        the loss are knetpy's own (a subclass with its own ``forward``, a ``Lambda`` layer or a user
        function trains eagerly); ``compile=False`` always trains eagerly.
        """
        who = "fit"
        self._require_compiled(who)
        if compile not in (True, False, "auto") or isinstance(compile, (int, float)) and not isinstance(compile, bool):
            raise ValueError(f"{who}: compile must be True, False or 'auto', got {compile!r}")
        epochs = _check_int(epochs, "epochs", who, low=0)
        initial_epoch = _check_int(initial_epoch, "initial_epoch", who, low=0)
        if verbose not in (0, 1, 2):
            raise ValueError(f"{who}: verbose must be 0, 1 or 2, got {verbose!r}")
        saver = self._checkpointer(checkpoint, resume, checkpoint_every, initial_epoch, who)
        from .distributed.strategies import resolve

        strategy = resolve(distributed, who)
        check_batches = bool(check_finite) and _is_batch_source(x)  # arrays are checked once, up front
        x, y, validation_data = self._split_validation(x, y, validation_data, validation_split, who, check_finite)
        device = self._data_device(device)
        train = self._batches(x, y, batch_size, shuffle, who, check_finite=check_finite, device=device)
        val = None
        if validation_data is not None:
            val = self._validation_batches(validation_data, batch_size, who, check_finite, device)
        self._ready(train, who)
        if strategy is not None and isinstance(train, Minibatch):  # after _ready, which reads the arrays
            from .distributed import DistributedMinibatch

            train = DistributedMinibatch(train.x, train.y, train.batch_size, shuffle=bool(shuffle))
        _warn_double_squash(self, self._loss, who)
        resumed = None
        if resume and os.path.exists(saver.path):
            resumed = read_training_state(saver.path)
            restore_model_and_optimizer(resumed, self)  # checks every shape before training starts
            saver.last = resumed.progress

        if plot is not None:
            callbacks = list(callbacks or []) + [_callbacks.PlotHistory(plot)]
        history = _callbacks.History()
        steps = len(train) if hasattr(train, "__len__") else None
        dp = None
        if strategy is not None:
            from .distributed.strategies import DataParallel

            dp = DataParallel(self, strategy, who)
            callbacks, verbose = dp.prepare(train, callbacks, verbose)
        run = {"epochs": epochs, "steps": steps, "verbose": verbose}
        cbs = _callbacks.CallbackList(list(callbacks or []) + [history], self, run)
        self.history = history
        self.stop_training = False
        from .parallel import fit_threads
        from .training import compiles_by_default
        from .training import run as run_loop

        if compile == "auto" and not compiles_by_default(self):
            compile = False

        # one batch's shape decides BLAS's threads for the whole fit, or which products time them at each
        # epoch's start (automatic threads only; host data only)
        sample = train.x[: train.batch_size] if isinstance(train, Minibatch) and type(train.x) is np.ndarray else None
        # (data-parallel ranks share the cores: they keep the rule, not a choice timed by each rank)
        with fit_threads(self, sample, choose=dp is None) as blas:
            return run_loop(
                self, train, val, cbs, history, epochs=epochs, initial_epoch=initial_epoch,
                verbose=verbose, saver=saver, resumed=resumed, check_batches=check_batches, dp=dp,
                compile=compile, blas=blas if hasattr(blas, "epoch_begin") else None,
            )

    def _checkpointer(self, checkpoint, resume, every, initial_epoch, who):
        """The writer of fit's training checkpoints (None without ``checkpoint``), after checking the options."""
        if not isinstance(resume, bool):
            raise TypeError(f"{who}: resume must be True or False, got {resume!r}")
        if checkpoint is None:
            if resume:
                raise ValueError(f"{who}: resume=True needs checkpoint=path, the file to resume from (and to keep writing)")
            if every is not None:
                raise ValueError(f"{who}: checkpoint_every needs checkpoint=path, the file to write")
            return None
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError(f"{who}: checkpoint must be a file path, got {type(checkpoint).__name__}")
        if every is not None:
            every = _check_int(every, "checkpoint_every", who, low=1)
        if resume and initial_epoch:
            raise ValueError(
                f"{who}: give initial_epoch={initial_epoch} or resume=True, not both "
                "(a resumed run continues from the epoch its checkpoint records)"
            )
        return Checkpointer(checkpoint, self, every)

    def _averages(self, loss_sum, metric_sums, seen):
        logs = {"loss": loss_sum / seen}
        for (name, _), total in zip(self._metrics, metric_sums):
            logs[name] = total / seen
        return logs

    def _split_validation(self, x, y, validation_data, validation_split, who, check_finite=False):
        if not validation_split:
            return x, y, validation_data
        if validation_data is not None:
            raise ValueError(f"{who}: give validation_data or validation_split, not both")
        if not isinstance(validation_split, numbers.Real) or not 0 < validation_split < 1:
            raise ValueError(f"{who}: validation_split must be a fraction in (0, 1), got {validation_split!r}")
        if _is_batch_source(x):
            raise ValueError(f"{who}: validation_split needs arrays; with a loader pass validation_data")
        x, y = self._prepare(x, y, who, check_finite=check_finite)
        split = int(len(x) * (1 - validation_split))
        if split in (0, len(x)):
            raise ValueError(
                f"{who}: validation_split={validation_split} of {len(x)} samples leaves {split} for training "
                f"and {len(x) - split} for validation; both need at least one"
            )
        _warn_unseen_classes(y, split, validation_split, who)
        return x[:split], y[:split], (x[split:], y[split:])

    def _validation_batches(self, validation_data, batch_size, who, check_finite=False, device=None):
        if _is_batch_source(validation_data):
            return self._batches(validation_data, None, batch_size, False, who, device=device)
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError(f"{who}: validation_data must be a pair (x_val, y_val) or a loader of such batches")
        xv, yv = self._prepare(validation_data[0], validation_data[1], f"{who} (validation_data)", check_finite=check_finite)
        return Minibatch(xv, yv, batch_size=max(check_batch_size(batch_size, who), 256), device=device)

    # -- inference ---------------------------------------------------------------------------------
    def _evaluate_batches(self, batches, check_batches=False):
        loss_fn, metrics = self._loss, self._metrics
        loss_sum = 0.0
        metric_sums = [0.0] * len(metrics)
        seen = 0
        with _inference_mode(self):
            for i, batch in enumerate(batches):
                xb, yb = _split_batch(batch, "evaluate")
                if check_batches:
                    _require_finite_batch(xb, yb, "evaluate", f" of the batch at index {i}")
                n = len(xb)
                out = self(xb)
                loss_sum += _step_value(_value(loss_fn(out, yb))) * n
                pred = _value(out)
                for j, (_, fn) in enumerate(metrics):
                    metric_sums[j] += _step_value(fn(pred, yb)) * n
                seen += n
        if seen == 0:
            raise ValueError("evaluate: the data yielded no batches")
        return self._averages(*_host_sums(loss_sum, metric_sums), seen)

    def evaluate(self, x=None, y=None, batch_size=256, verbose=0, check_finite=False, device=None):
        """Loss and metrics over ``(x, y)`` in inference mode: ``{'loss': ..., 'accuracy': ...}``.

        Layers run in eval mode (dropout off, batch norm on running statistics) and nothing is
        recorded for gradients, both in the calling thread only: the model's own mode is not changed,
        so other threads may predict or train with it at the same time. ``check_finite=True``
        refuses NaN or Inf in the data, naming the array and the sample. ``device``: as for :meth:`fit`.
        """
        who = "evaluate"
        self._require_compiled(who)
        check_batches = bool(check_finite) and _is_batch_source(x)
        device = self._data_device(device)
        batches = self._batches(x, y, batch_size, False, who, check_finite=check_finite, device=device)
        logs = self._evaluate_batches(batches, check_batches)
        if verbose:
            ProgressBar(len(batches) if hasattr(batches, "__len__") else 0, prefix="Evaluate", mode="line").close(logs)
        return logs

    def predict(self, x, batch_size=256, check_finite=False, device=None):
        """The model's outputs for ``x`` (an array, in inference mode), batch by batch, as one array.

        The outputs are what the last layer returns: logits for a classifier ending in a plain
        ``Dense`` (as ``loss="cross_entropy"`` expects); :meth:`predict_proba` gives probabilities and
        :meth:`predict_classes` the predicted classes. ``check_finite=True`` refuses NaN or Inf in
        ``x``, naming the sample. ``device``: as for :meth:`fit`; the outputs stay there.
        """
        who = "predict"
        check_batches = bool(check_finite) and _is_batch_source(x)
        device = self._data_device(device)
        batches = self._batches(x, None, batch_size, False, who, need_y=False, check_finite=check_finite,
                                device=device)
        outs = []
        with _inference_mode(self):
            for i, batch in enumerate(batches):
                xb = batch[0] if isinstance(batch, (tuple, list)) else batch
                if check_batches:
                    _require_finite_batch(xb, None, who, f" of the batch at index {i}")
                outs.append(_value(self(xb)))
        if not outs:
            raise ValueError(f"{who}: the data yielded no batches")
        return array_namespace(outs[0]).concatenate(outs, axis=0) if len(outs) > 1 else outs[0]

    def predict_proba(self, x, batch_size=256, from_logits=None):
        """Class probabilities for ``x``: :meth:`predict` returns what the last layer returns (logits
        for a plain ``Dense`` last layer), and this turns them into probabilities.

        Softmax over axis 1, or the sigmoid for a single output unit (outputs of shape (N,) or (N, 1)).
        Outputs are passed through unchanged when the last layer of a :class:`Sequential` already
        applies softmax or sigmoid; ``from_logits=True``/``False`` says so explicitly (needed for a
        subclassed model whose ``forward`` ends in a probability).
        """
        out = self.predict(x, batch_size=batch_size)
        if from_logits is None:
            from_logits = _last_squash(self) is None
        if not from_logits:
            return out
        from . import ops

        return ops.sigm(out) if _single_unit(out) else ops.softmax(out, axis=1)

    def predict_classes(self, x, batch_size=256, from_logits=None):
        """Predicted class per sample, as int64 of shape (N,): the argmax over axis 1, or for a single
        output unit 1 where its probability exceeds 0.5 (0 otherwise). See :meth:`predict_proba`."""
        p = self.predict_proba(x, batch_size=batch_size, from_logits=from_logits)
        xp = array_namespace(p)
        if _single_unit(p):
            return (p.reshape(len(p)) > 0.5).astype(xp.int64)
        return xp.argmax(p, axis=1).astype(xp.int64)

    # -- weights -----------------------------------------------------------------------------------
    def get_weights(self):
        """Copies of every parameter and state array, by name (``'0.w'``, ``'1.running_mean'``, ...)."""
        return self.state_dict()

    def set_weights(self, weights):
        """Copy arrays from :meth:`get_weights` back into the parameters and state, checking names and shapes."""
        self._assign_arrays(weights, True, "set_weights")

    def save(self, path):
        """Save architecture, weights and state to ``path`` (atomic, pickle-free; see :func:`knetpy.save`)."""
        from .io import save

        save(path, self)

    def load_weights(self, path):
        """Load weights (and layer state) saved from a model of the same architecture into this one.

        ``path`` is a file written by :meth:`save` (or :func:`knetpy.save`), or a training checkpoint
        written by ``fit(..., checkpoint=path)``.
        """
        from .checkpoint import load_weights

        load_weights(self, path)
        return self

    # -- description -------------------------------------------------------------------------------
    def summary(self, input_shape=None, dtype=None, print_fn=print):
        """Print (with ``print_fn``; None for silence) and return a table of the layers.

        Columns: layer name and type, output shape (batch axis shown as None) and parameter count,
        then the total. On a model that has not seen data yet give ``input_shape`` without the batch
        axis, e.g. ``summary(input_shape=(28, 28))``, unless the first layer knows its input size.
        """
        text = summarize(self, input_shape=input_shape, dtype=dtype)
        if print_fn is not None:
            print_fn(text)
        return text


class Sequential(Model):
    """Layers applied one after the other: ``Sequential([l1, l2])``, ``Sequential(l1, l2)`` or ``.add(l)``.

    Parameters are named by position: ``'0.w'``, ``'0.b'``, ``'1.w'``, ... Plain functions (e.g.
    ``kp.relu``) may be stacked too; they have no parameters.
    """

    def __init__(self, layers=None, *more, name=None):
        super().__init__(name=name)
        self._layers = []
        if layers is None:
            layers = []
        elif isinstance(layers, Layer) or not isinstance(layers, (list, tuple)):
            layers = [layers]
        for layer in list(layers) + list(more):
            self.add(layer)

    def add(self, layer):
        """Append a layer (or a function of one array); returns the model."""
        if not callable(layer):
            raise TypeError(f"Sequential.add: expected a layer or a function, got {type(layer).__name__}")
        if isinstance(layer, type):
            raise TypeError(f"Sequential.add: got the class {layer.__name__}; add an instance, e.g. {layer.__name__}(...)")
        self._layers.append(layer)
        self.built = False  # the new layer builds on the next call
        self._probe_new_layer(layer)
        return self

    def _probe_new_layer(self, layer):
        """Build ``layer`` now, as Keras does, when the model's input shape is known (an ``Input`` first,
        or a first layer given ``input_shape=``): one zero sample runs through it, in eval mode."""
        shape = _known_input_shape(self._layers[0])
        if shape is None or None in shape[1:]:
            return
        steps, out = [layer], getattr(self, "_probe", None)
        if out is None or len(self._layers) == 1:  # from the start
            steps, out = self._layers, np.zeros((1, *shape[1:]), get_dtype())
            if self._device is not None:  # a model moved by .to: the probe runs there
                out = to_device(out, self._device)
        try:
            with _inference_mode(self):
                for step in steps:
                    out = _value(step(out))
        except Exception:  # e.g. integer inputs expected: the layers build on the first call instead
            out = None
        self._probe = out  # the last layer's output for one zero sample, for the next add

    def forward(self, x):
        layers, i = self._layers, 0
        while i < len(layers):
            layer = layers[i]
            after = layers[i + 1] if i + 1 < len(layers) else None
            if after is not None and getattr(layer, "fuses_with", None) and layer.fuses_with(after, x):
                # a conv + relu followed by max pooling: one op, which keeps only the pooled output
                x, i = layer.forward_pooled(x, after), i + 2
            else:
                x, i = layer(x), i + 1
        return x

    def __len__(self):
        return len(self._layers)

    def __getitem__(self, i):
        return self._layers[i]

    def __iter__(self):
        return iter(self._layers)

    def get_config(self):
        return {"layers": list(self._layers), "name": self.name}

    def __repr__(self):
        inner = ",\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self._layers))
        return f"Sequential(\n{inner}\n)" if inner else "Sequential()"


# -- helpers ---------------------------------------------------------------------------------------
def _known_input_shape(layer):
    """The input shape ``layer`` was built for or declared, looking into a nested Sequential's first layer."""
    if isinstance(layer, Layer) and layer.built:
        return layer.input_shape
    if isinstance(layer, Sequential) and layer._layers:
        return _known_input_shape(layer._layers[0])
    return None


@contextmanager
def _inference_mode(model):
    """Eval mode and no gradient recording, both for the calling thread only: the model is not changed,
    so other threads may predict or train with it at the same time."""
    with no_grad(), thread_mode(model, False):
        yield


def _class_labels(y):
    """The class of each sample for integer labels (N,) or one-hot rows (N, C); None for other targets."""
    xp = array_namespace(y)
    if y.ndim == 1 and y.dtype.kind in "biu":
        return y
    if y.ndim == 2 and y.shape[1] > 1 and bool(xp.all((y == 0) | (y == 1))) and bool(xp.all(y.sum(axis=1) == 1)):
        return xp.argmax(y, axis=1)
    return None


def _warn_unseen_classes(y, split, fraction, who):
    """Warn when validation_split's last samples hold classes the training part lacks, or the
    classification targets are sorted by class, so that the two parts differ in what they hold."""
    labels = _class_labels(to_host(y))  # once per fit, before training
    if labels is None:
        return
    labels = np.asarray(labels)
    unseen = sorted(set(np.unique(labels[split:]).tolist()) - set(np.unique(labels[:split]).tolist()))
    if unseen:
        problem = f"they hold class{'es' if len(unseen) > 1 else ''} {unseen} that the training part lacks"
    elif len(np.unique(labels)) > 1 and bool(np.all(labels[1:] >= labels[:-1])):
        problem = "the targets are sorted by class, so the two parts do not hold the classes alike"
    else:
        return
    warnings.warn(
        f"{who}: validation_split={fraction} takes the last {len(labels) - split} samples for validation, "
        f"and {problem}; shuffle the data first (e.g. with a permutation, or kp.data.train_test_split)",
        UserWarning,
        stacklevel=4,  # the caller of fit
    )


def _single_unit(out):
    """One output per sample, (N,) or (N, 1): a binary classifier's logit or probability."""
    return out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1)


def _last_squash(model):
    """``(description, "softmax" or "sigmoid")`` when a Sequential model's output goes through one last."""
    from . import activations

    kinds = {id(activations.softmax): "softmax", id(activations.sigmoid): "sigmoid"}
    path = []
    last = model
    while isinstance(last, Sequential) and len(last):
        path.append(str(len(last) - 1))
        last = last[len(last) - 1]
    if not path:
        return None  # a subclassed model: its forward cannot be inspected
    fn = (getattr(last, "_act", None) or getattr(last, "fn", None)) if isinstance(last, Layer) else last
    kind = kinds.get(id(activations._underlying(fn)))
    if kind is None:
        return None
    what = type(last).__name__ if isinstance(last, Layer) else getattr(last, "__name__", "function")
    name = f" {last.name!r}" if getattr(last, "name", None) else ""
    return f"{what}{name} at index {'.'.join(path)}", kind


def _warn_double_squash(model, loss, who):
    """Warn when a loss that takes logits gets a softmax or sigmoid output, which it would squash again."""
    from . import losses

    if not losses.takes_logits(loss):
        return
    found = _last_squash(model)
    if found is None:
        return
    layer, kind = found
    fn, _ = losses._unwrap(loss)
    instead = (
        "'binary_crossentropy'" if kind == "sigmoid"
        else "'sparse_categorical_crossentropy' (integer labels) or 'categorical_crossentropy' (one-hot)"
    )
    warnings.warn(
        f"{who}: the loss {getattr(fn, '__name__', fn)!r} takes logits (raw scores), but the model's last layer, "
        f"{layer}, applies {kind}: the probabilities would be squashed a second time, which trains slowly "
        f"and to a worse accuracy. Remove the {kind} from the last layer (apply kp.{kind} to predict's "
        f"outputs for probabilities), or use a loss that takes probabilities: loss={instead}.",
        UserWarning,
        stacklevel=3,
    )


def _binary_logit_accuracy(pred, target):
    """Binary accuracy for logits (threshold 0)."""
    return _metrics.accuracy(pred, target, threshold=0.0)


_binary_logit_accuracy.__name__ = "accuracy"


def _step_value(v):
    """A loss or metric of one batch, to be summed: a float from NumPy (free), a float64 0-d array from
    a device (left there: reading it every step would stall the device)."""
    if type(v) is float:  # NumPy metrics already return one
        return v
    if isinstance(v, np.generic) or array_namespace(v) is np:
        return float(v)
    return v.astype("float64")


def _host_sums(loss_sum, metric_sums):
    """The loss sum and metric sums as Python floats: those on a device come over in one copy, through
    :func:`knetpy.backend.to_host` (a meant transfer: the figures are logged)."""
    values = [loss_sum, *metric_sums]
    far = [i for i, v in enumerate(values) if is_array(v) and array_namespace(v) is not np]
    if far:
        xp = array_namespace(values[far[0]])
        host = to_host(xp.stack([values[i] for i in far]))
        for i, v in zip(far, host.tolist()):
            values[i] = v
    return float(values[0]), [float(v) for v in values[1:]]


def _needs_closure(opt):
    """Optimizers whose step() re-evaluates the loss through a closure (L-BFGS)."""
    from .optim import LBFGS

    return isinstance(opt, LBFGS)


def _is_batch_source(x):
    return isinstance(x, (Minibatch, DataLoader, _OnDevice))


class _OnDevice:
    """The batches of a loader, each put on ``device`` as it is taken."""

    def __init__(self, batches, device):
        self.batches, self.device = batches, device

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        from .devices import on_device

        for batch in self.batches:
            yield on_device(batch, self.device)


def _split_batch(batch, who):
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        require_real(batch[1], "y", who)  # x is checked by the layers; a loss would drop y's imaginary part
        return batch
    raise ValueError(f"{who}: each batch must be a pair (x_batch, y_batch), got {type(batch).__name__}")


def _skip_done_batches(batches, state, who):
    """An iterator over ``batches`` past those done before ``state`` (a checkpoint inside an epoch) was written.

    The epoch's shuffled order is drawn again from the generator state saved at the epoch's start;
    the generator then goes back to the checkpoint's state, as if the skipped batches had been trained.
    """
    position = state.progress
    set_rng_state(position.epoch_rng)
    batch_iter = iter(batches)
    for done in range(position.batch):
        try:
            next(batch_iter)
        except StopIteration:
            raise ValueError(
                f"{who}: the checkpoint {state.path} was written after batch {position.batch} of epoch "
                f"{position.epoch + 1}, but the training data now has only {done} batches per epoch; "
                "resume with the same data and batch_size"
            ) from None
    set_rng_state(state.rng)
    return batch_iter


def _require_finite(a, name, who, where=""):
    """A ValueError naming ``name``, the first sample holding NaN or Inf and how many do, if any does."""
    a = _value(a)
    if getattr(a, "dtype", None) is None or a.dtype.kind not in "fc":
        return  # integer labels cannot hold NaN
    xp = array_namespace(a)
    finite = xp.isfinite(a)
    if bool(to_host(finite.all())):  # from a device: one flag comes over, asked for by check_finite
        return
    a, finite, xp = to_host(a), to_host(finite), np  # the error path: find the samples on the host
    bad = ~finite.reshape(len(a), -1).all(axis=1) if a.ndim else ~finite.reshape(1)
    first = int(xp.argmax(bad))
    kind = "NaN" if bool(xp.isnan(a[first] if a.ndim else a).any()) else "Inf"
    count = int(bad.sum())
    holds = "holds" if count == 1 else "hold"
    raise ValueError(
        f"{who}: {name} has {kind} in sample {first}{where} ({count} of its {bad.size} samples {holds} NaN or Inf); "
        "clean or drop those samples (check_finite=True found them)"
    )


def _require_finite_batch(xb, yb, who, where):
    _require_finite(xb, "x", who, where)
    if yb is not None:
        _require_finite(yb, "y", who, where)


def _check_int(value, name, who, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{who}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_loss(loss):
    """On the first step: the loss must be a scalar that depends on the parameters."""
    if not isinstance(loss, Tensor) or not loss.requires_grad:
        raise RuntimeError(
            "fit: the loss does not depend on any parameter (it is not a Tensor requiring a gradient); "
            "does the model's forward use its kp.Param weights, and is the loss built from kp ops?"
        )
    if loss.size != 1:
        raise ValueError(f"fit: the loss function must return a scalar, got shape {tuple(loss.shape)}")
