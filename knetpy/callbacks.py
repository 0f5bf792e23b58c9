"""Callbacks: hooks into ``Model.fit`` at the start and end of training, epochs and batches.

Subclass :class:`Callback` and override the hooks you need. ``logs`` is a dict of the numbers known
at that point: the batch ``loss`` (and ``size``) at batch end; the epoch's ``loss``, metrics and
``val_*`` values at epoch end. Set ``self.model.stop_training = True`` to end training (after the
current batch when set in a batch hook, after the current epoch when set at epoch end).
"""

from __future__ import annotations

import csv
import difflib
import math
import os

import numpy as np

from .autograd import Tensor
from .tree import flatten


class Callback:
    """Base class: every hook does nothing. ``self.model`` is set before training starts."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        """Training settings: ``epochs``, ``steps`` (batches per epoch), ``verbose``."""
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def state_dict(self):
        """What this callback must carry over when an interrupted ``fit`` resumes (None: nothing).

        Callbacks that track something across epochs (a best value, a patience count, a schedule)
        return it as plain data (numbers, strings, lists, dicts, arrays); ``fit(..., checkpoint=...)``
        saves it and, on ``resume=True``, hands it to :meth:`load_state_dict` after ``on_train_begin``.
        """
        return None

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned."""


def _overrides(cb, hook):
    """True when ``cb`` does something in ``hook`` (a subclass method, or a function set on the instance)."""
    return hook in vars(cb) or getattr(type(cb), hook, None) is not getattr(Callback, hook)


class CallbackList:
    """Calls a hook on every callback; batch hooks only on callbacks that define them (no per-batch cost otherwise)."""

    def __init__(self, callbacks, model, params):
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(
                    f"fit: callbacks must be kp.callbacks.Callback instances, got {type(cb).__name__} "
                    "(wrap a function with kp.callbacks.LambdaCallback)"
                )
        self.callbacks = callbacks
        for cb in callbacks:
            cb.set_model(model)
            cb.set_params(params)
        self.batch_begin = [cb for cb in callbacks if _overrides(cb, "on_batch_begin")]
        self.batch_end = [cb for cb in callbacks if _overrides(cb, "on_batch_end")]

    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)


class History(Callback):
    """Records the epoch logs: ``history['loss']``, ``history['val_accuracy']``, ... and ``epoch``.

    ``Model.fit`` returns one (also kept as ``model.history``).
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


def _monitored(logs, monitor, who):
    """``logs[monitor]`` as a float, or an error listing what is there."""
    if monitor in (logs or {}):
        return float(logs[monitor])
    known = list(logs or {})
    close = difflib.get_close_matches(monitor, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    extra = "pass validation_data (or validation_split) to fit, or " if monitor.startswith("val_") else ""
    raise KeyError(f"{who}: monitored value '{monitor}' is not in the epoch logs; {hint}{extra}choose one of {known}")


def _resolve_mode(mode, monitor, who):
    """'min' or 'max': 'auto' maximises accuracy-like values and minimises the rest (losses, errors)."""
    if mode not in ("auto", "min", "max"):
        close = difflib.get_close_matches(str(mode), ["auto", "min", "max"], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}{hint}")
    if mode != "auto":
        return mode
    return "max" if any(k in monitor for k in ("acc", "auc", "precision", "recall", "f1")) else "min"


class _Monitor:
    """Tracks the best value of a monitored quantity: shared by EarlyStopping and ModelCheckpoint."""

    def __init__(self, monitor, mode, min_delta, who):
        self.monitor = monitor
        self.mode = _resolve_mode(mode, monitor, who)
        self.min_delta = abs(float(min_delta))
        self.who = who
        self.reset()

    def reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf

    def improved(self, value):
        """True (and remember ``value``) when it beats the best by more than ``min_delta``."""
        if math.isnan(value):
            return False
        if self.mode == "min":
            better = value < self.best - self.min_delta
        else:
            better = value > self.best + self.min_delta
        if better:
            self.best = value
        return better


class EarlyStopping(Callback):
    """Stop training once ``monitor`` has gone ``patience`` epochs in a row without improving.

    An improvement is a change of more than ``min_delta`` in the right direction (``mode`` 'min',
    'max', or 'auto': maximise accuracies, minimise losses); ``patience`` 0 and 1 both stop at the
    first epoch without one. With ``restore_best`` the weights (and
    layer state) of the best epoch are put back when training ends. After training,
    ``best_epoch``, ``best`` and ``stopped_epoch`` (None if it ran to the end) tell what happened.
    """

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto", restore_best=False, verbose=0):
        super().__init__()
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience}")
        self.tracker = _Monitor(monitor, mode, min_delta, "EarlyStopping")
        self.monitor = monitor
        self.patience = int(patience)
        self.restore_best = bool(restore_best)
        self.verbose = verbose

    @property
    def best(self):
        return self.tracker.best

    def on_train_begin(self, logs=None):
        self.tracker.reset()
        self.wait = 0
        self.best_epoch = None
        self.best_weights = None
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = _monitored(logs, self.monitor, "EarlyStopping")
        if self.tracker.improved(value):
            self.wait = 0
            self.best_epoch = epoch
            if self.restore_best:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def state_dict(self):
        return {
            "best": self.tracker.best,
            "wait": self.wait,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "best_weights": None if self.best_weights is None else dict(self.best_weights),
        }

    def load_state_dict(self, state):
        self.tracker.best = float(state["best"])
        self.wait = int(state["wait"])
        self.best_epoch = state["best_epoch"]
        self.stopped_epoch = state["stopped_epoch"]
        self.best_weights = state["best_weights"]

    def on_train_end(self, logs=None):
        if self.restore_best and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        if self.verbose and self.stopped_epoch is not None:
            print(
                f"EarlyStopping: stopped after epoch {self.stopped_epoch + 1}; best {self.monitor} "
                f"{self.best:.4f} at epoch {self.best_epoch + 1}"
                + (" (weights restored)" if self.restore_best else "")
            )


class ModelCheckpoint(Callback):
    """Save the model at the end of epochs: every epoch, or only when ``monitor`` improves.

    ``path`` may hold format fields: ``{epoch}`` (counting from 1, as the progress display does) and
    any log value, e.g. ``'ckpt-{epoch:02d}-{val_loss:.3f}.ckpt'``. Saving calls ``model.save(path)``
    (an atomic, pickle-free :func:`knetpy.save` checkpoint); reload it with :func:`knetpy.load` or
    into an existing model with ``model.load_weights(path)``. To make a run resumable after a crash,
    use ``fit(..., checkpoint=path, resume=True)``, which also saves the optimizer, schedules,
    random generator and progress.
    """

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto", verbose=0):
        super().__init__()
        self.path = os.fspath(path)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.tracker = _Monitor(monitor, mode, 0.0, "ModelCheckpoint")
        self.verbose = verbose
        self.saved = []  # paths written, in order

    def on_train_begin(self, logs=None):
        self.tracker.reset()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only and not self.tracker.improved(_monitored(logs, self.monitor, "ModelCheckpoint")):
            return
        try:
            path = self.path.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"ModelCheckpoint: cannot fill in path {self.path!r} ({type(e).__name__}: {e}); "
                f"available fields: epoch, {', '.join(logs)}"
            ) from None
        save = getattr(self.model, "save", None)
        if save is not None:
            save(path)
        else:
            from .io import save as save_checkpoint

            save_checkpoint(path, self.model)
        self.saved.append(path)
        if self.verbose:
            print(f"ModelCheckpoint: epoch {epoch + 1}: saved {path}")

    def state_dict(self):
        return {"best": self.tracker.best, "saved": list(self.saved)}

    def load_state_dict(self, state):
        self.tracker.best = float(state["best"])
        self.saved = list(state["saved"])


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of every epoch.

    ``schedule`` is either a function ``schedule(epoch, lr) -> new_lr`` (epoch counts from 0, ``lr``
    is the current rate) or a schedule from :mod:`knetpy.optim.schedules` (``StepLR``,
    ``CosineAnnealingLR``, ...) created on the model's optimizer: it is stepped once per epoch, so
    epoch ``e`` trains with its rate after ``e`` steps, as with ``schedule.step()`` after each epoch in
    a hand-written loop. The rate used is recorded in the epoch logs as ``lr``.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule) and not _is_schedule_object(schedule):
            raise TypeError(
                "LearningRateScheduler: schedule must be a function (epoch, lr) -> lr or a kp.optim "
                f"schedule such as StepLR, got {type(schedule).__name__}"
            )
        self.schedule = schedule
        self.verbose = verbose
        self.applied_epoch = None  # the epoch whose rate is set: a resumed epoch does not apply it twice

    def on_train_begin(self, logs=None):
        self.applied_epoch = None

    def _optimizer(self):
        opt = getattr(self.model, "optimizer", None)
        if opt is None or not hasattr(opt, "lr"):
            raise RuntimeError("LearningRateScheduler: the model has no optimizer with an lr; compile it first")
        return opt

    def on_epoch_begin(self, epoch, logs=None):
        opt = self._optimizer()
        if epoch == self.applied_epoch:
            return  # resumed inside this epoch: its rate came back with the optimizer's state
        self.applied_epoch = epoch
        if _is_schedule_object(self.schedule):
            self._advance_schedule(opt, epoch)
        else:
            lr = self.schedule(epoch, float(opt.lr))
            lr = float(lr.item() if isinstance(lr, Tensor) else np.asarray(lr))
            if not math.isfinite(lr) or lr < 0:
                raise ValueError(
                    f"LearningRateScheduler: the schedule gave lr={lr} for epoch {epoch}; it must be finite and >= 0"
                )
            # Optimizers refuse lr = 0 from users but accept it from schedules (annealing to zero).
            assign = getattr(opt, "_assign_lr", None)
            if assign is not None:
                assign(lr)
            else:
                opt.lr = lr
        if self.verbose:
            print(f"LearningRateScheduler: epoch {epoch + 1}: lr = {float(opt.lr):.6g}")

    def _advance_schedule(self, opt, epoch):
        sched = self.schedule
        owner = sched.optimizer  # one optimizer, or a pytree of them (functional style)
        targets = [owner] if hasattr(owner, "lr") else flatten(owner)[0]
        if not any(t is opt for t in targets):
            raise ValueError(
                "LearningRateScheduler: the schedule was created on a different optimizer than the model's; "
                "create it on model.optimizer after compile()"
            )
        if sched.last_step > epoch:
            raise ValueError(
                f"LearningRateScheduler: the schedule has already taken {sched.last_step} steps, past epoch {epoch}; "
                "create a fresh schedule for this run"
            )
        while sched.last_step < epoch:
            sched.step()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(self._optimizer().lr)

    def state_dict(self):
        # A function schedule keeps nothing itself: it reads the epoch and the optimizer's (saved) rate.
        schedule = self.schedule.state_dict() if _is_schedule_object(self.schedule) else None
        return {"applied_epoch": self.applied_epoch, "schedule": schedule}

    def load_state_dict(self, state):
        self.applied_epoch = state["applied_epoch"]
        if state["schedule"] is not None and _is_schedule_object(self.schedule):
            self.schedule.load_state_dict(state["schedule"])


def _is_schedule_object(schedule):
    """True for the epoch/step schedules of knetpy.optim (which are stepped, not called)."""
    try:
        from .optim.schedules import Schedule
    except ImportError:
        return False
    return isinstance(schedule, Schedule)


class CSVLogger(Callback):
    """Write the epoch logs to a CSV file: a header ``epoch,<keys...>`` then one row per epoch.

    Each row is appended and the file closed right away, so it can be watched while training runs
    and is complete even if training stops with an error. With ``append`` rows are added to an
    existing file (the header is written only if the file is empty); otherwise it starts afresh, so
    a run resumed with ``fit(..., resume=True)`` should log with ``append=True``.
    """

    def __init__(self, path, separator=",", append=False):
        super().__init__()
        self.path = os.fspath(path)
        self.separator = separator
        self.append = bool(append)
        self.keys = None

    def on_train_begin(self, logs=None):
        if not self.append:
            open(self.path, "w").close()
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f, delimiter=self.separator)
            if self.keys is None:
                self.keys = list(logs)
                if f.tell() == 0:
                    writer.writerow(["epoch", *self.keys])
            writer.writerow([epoch, *(logs.get(k, "") for k in self.keys)])


class PlotHistory(Callback):
    """Redraw the learning curves (:func:`knetpy.plot.learning_curve`) as a PNG at ``path`` every
    ``every`` epochs and once more at the end, so a long run can be watched while it trains.

    Each picture replaces the previous one atomically: a viewer never sees half a file. Extra keyword
    arguments (``title``, ``labels``, ``val_label``) go to ``learning_curve``. Without matplotlib
    it says so once on stderr and training goes on. A run resumed with ``fit(..., resume=True)``
    keeps the epochs drawn before it stopped.
    """

    def __init__(self, path, every=1, **plot_args):
        super().__init__()
        self.path = os.fspath(path)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"PlotHistory: every must be a whole number of epochs >= 1, got {every!r}")
        self.every = every
        self.plot_args = plot_args
        self.history = {}
        self.drawn = None  # the path of the last picture written
        self._pending = False
        self._enabled = True

    def on_train_begin(self, logs=None):
        from . import plot

        self.history = {}
        self._enabled = plot.available()
        if not self._enabled:
            plot._report(f"learning curve {self.path}", f"matplotlib is not installed ({plot.INSTALL_HINT})")

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self._pending = True
        if (epoch + 1) % self.every == 0:
            self._draw()

    def on_train_end(self, logs=None):
        if self._pending:
            self._draw()

    def _draw(self):
        from . import plot

        self._pending = False
        if self._enabled and self.history:
            self.drawn = plot.learning_curve(self.history, self.path, **self.plot_args)

    def state_dict(self):
        return {"history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state):
        self.history = {k: [float(v) for v in values] for k, values in state["history"].items()}


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``.

    Each argument takes the same parameters as the hook of that name.
    """

    _HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_batch_begin", "on_batch_end")

    def __init__(self, **hooks):
        super().__init__()
        for name, fn in hooks.items():
            if name not in self._HOOKS:
                close = difflib.get_close_matches(name, self._HOOKS, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise TypeError(f"LambdaCallback: unknown hook '{name}'{hint} (hooks: {', '.join(self._HOOKS)})")
            if not callable(fn):
                raise TypeError(f"LambdaCallback: {name} must be callable, got {type(fn).__name__}")
            setattr(self, name, fn)
