"""The training loop behind :meth:`knetpy.Model.fit`: epochs, batches, checkpoints, resuming, and
data-parallel training over several ranks. ``fit`` checks its arguments and prepares the data; this
module runs the loop."""

from __future__ import annotations

import math

import numpy as np

from .autograd import mark_modified, run_in_place
from .backend import get_rng_state, to_host, weak_scalar_array
from .checkpoint import Progress, restore_callbacks_and_rng
from .layers.base import thread_mode
from .model import (
    _check_loss,
    _host_sums,
    _needs_closure,
    _require_finite_batch,
    _skip_done_batches,
    _split_batch,
    _step_value,
)
from .optim.functional import subtract_line
from .optim.sgd import SGD, all_plain
from .progress import ProgressBar


def run(model, train, val, cbs, history, *, epochs, initial_epoch, verbose, saver, resumed, check_batches, dp=None,
        compile=False, blas=None):
    """Epochs ``initial_epoch`` (or the resumed one) to ``epochs - 1``; returns ``history``.

    ``dp`` (a :class:`knetpy.distributed.strategies.DataParallel`) keeps the ranks together: rank
    0's weights and generator on every rank at the start, averaged gradients or parameters, epoch
    figures over all ranks, and checkpoints written by rank 0 only. ``blas`` (a
    :class:`knetpy.blas_choice.BlasChoice`) sets BLAS's threads at each epoch's start by timing.
    """
    steps = len(train) if hasattr(train, "__len__") else None
    writes = saver is not None and (dp is None or dp.is_main)
    # Training mode for this thread only: the model's own mode, seen by other threads, is left alone.
    with thread_mode(model, True):
        cbs.on_train_begin()
        position = Progress(epoch=initial_epoch)
        if resumed is not None:
            restore_callbacks_and_rng(resumed, cbs.callbacks)
            position = resumed.progress
            history.history = {k: list(v) for k, v in position.history.items()}
            history.epoch = list(position.history_epochs)
            model.stop_training = position.stopped
        if dp is not None:
            dp.start()  # after resuming: every rank read the same checkpoint, rank 0's state wins anyway
        step = position.step
        epoch = position.epoch
        while epoch < epochs and not model.stop_training:
            cbs.on_epoch_begin(epoch)
            bar = None
            if verbose:
                bar = ProgressBar(steps or 0, prefix=f"Epoch {epoch + 1}/{epochs}", mode="auto" if verbose == 1 else "line")
            inside = resumed if resumed is not None and position.batch and epoch == position.epoch else None
            if blas is not None:
                blas.epoch_begin()  # BLAS's threads for this epoch, by timing (knetpy.blas_choice)
            logs, step = train_epoch(model, train, cbs, bar, epoch, epochs, step, saver, inside, check_batches, dp, compile,
                                     blas)
            if val is not None:
                for key, value in model._evaluate_batches(val, check_batches).items():
                    logs["val_" + key] = value
            if bar is not None:
                bar.close(logs)
            cbs.on_epoch_end(epoch, logs)
            if dp is not None:
                model.stop_training = dp.any_stop(model.stop_training)
            epoch += 1
            if saver is not None:
                done = Progress(
                    epoch=epoch, step=step, stopped=model.stop_training,
                    history=history.history, history_epochs=history.epoch,
                )
                if writes:
                    saver.save(done, cbs.callbacks)
                else:
                    saver.last = done
        cbs.on_train_end()
    return history


def train_epoch(
    model, batches, cbs, bar, epoch, epochs, step, saver=None, resume_at=None, check_batches=False, dp=None, compile=False,
    blas=None,
):
    """One pass over the training batches: forward, loss, backward, step, zero_grad.

    ``resume_at`` (a training state read from a checkpoint written inside this epoch) makes the
    pass continue after the batches that checkpoint had done, with the same shuffled order.
    """
    loss_fn, metrics, opt = model._loss, model._metrics, model.optimizer
    batch_begin, batch_end = cbs.batch_begin, cbs.batch_end
    live = bar is not None and bar.bar
    uses_closure = _needs_closure(opt)
    replayed = compiled_step(model, warn=compile is True) if compile and not uses_closure and dp is None else None
    untrained = getattr(model, "_untrained", ())  # frozen, or outside the optimizer's parameters
    every = saver.every if saver is not None else None
    n_batches = len(batches) if hasattr(batches, "__len__") else None
    sync_stop = dp is not None and bool(batch_begin or batch_end)  # a callback may stop one rank only
    loss_sum = 0.0
    metric_sums = [0.0] * len(metrics)
    seen = 0
    first = 0
    if resume_at is not None:
        done = resume_at.progress
        epoch_rng = done.epoch_rng
        batch_iter = _skip_done_batches(batches, resume_at, "fit")
        first = done.batch
        if dp is None or dp.is_main:  # under MPI the checkpoint holds the sums over all ranks: rank 0 takes them
            loss_sum, seen = done.totals["loss"], done.totals["seen"]
            metric_sums = list(done.totals["metrics"])
    else:
        # The generator's state before the shuffled order is drawn, for checkpoints inside the epoch.
        epoch_rng = get_rng_state() if every else None
        batch_iter = iter(batches)
    for i, batch in enumerate(batch_iter, start=first):
        xb, yb = _split_batch(batch, "fit")
        if check_batches:
            _require_finite_batch(xb, yb, "fit", f" of the batch at index {i} of epoch {epoch + 1}")
        n = len(xb)
        for cb in batch_begin:
            cb.on_batch_begin(i, {"size": n})
        step += 1
        if uses_closure:
            value, out = closure_step(model, xb, yb)
            pred = out.value
        elif replayed is not None:
            value, pred = replayed(xb, yb)  # forward, loss and backward into each p.grad
            value = _step_value(value)
        else:
            out = model(xb)
            loss = loss_fn(out, yb)
            if i == first:  # once per epoch (a resumed run starts past step 1)
                _check_loss(loss)
            value = _step_value(loss.value)
            pred = out.value
        # A loss on a device is checked once per epoch, when it is read anyway (see below).
        if type(value) is float and not math.isfinite(value):
            kept = f" {saver.describe()}" if saver is not None else ""
            where = f" on rank {dp.rank}" if dp is not None and dp.size > 1 else ""
            raise FloatingPointError(
                f"fit: the loss is {value}{where} at epoch {epoch + 1}/{epochs}, step {step} (batch index {i} of the "
                f"epoch, {n} samples); {'its L-BFGS step has run' if uses_closure else 'the weights were not updated with it'}. "
                "Lower the learning rate, check the "
                f"data for NaN/Inf (fit(..., check_finite=True)), or clip the gradients (e.g. the optimizer's clip_norm).{kept}"
            )
        if not uses_closure and replayed is None:  # (the compiled step made its update itself)
            if dp is None:
                loss.backward()
            else:
                dp.backward(loss)  # averages the gradients over the ranks (synchronous SGD)
            for p in untrained:
                p.grad = None
            opt.step()
            opt.zero_grad()
            if dp is not None:
                dp.after_step(step)  # local SGD and EASGD average the parameters every few steps
        loss_sum += value * n
        seen += n
        if metrics:
            for j, (_, fn) in enumerate(metrics):
                metric_sums[j] += _step_value(fn(pred, yb)) * n
        if batch_end:
            logged = value if type(value) is float else float(to_host(value))  # these callbacks log it
            for cb in batch_end:
                cb.on_batch_end(i, {"loss": logged, "size": n})
        if every and step % every == 0 and i + 1 != n_batches:  # the last batch gets the epoch's checkpoint
            totals = *_host_sums(loss_sum, metric_sums), seen
            if dp is not None:
                dp.sync_state()
                totals = dp.totals(*totals)
            history = model.history
            position = Progress(
                epoch=epoch, batch=i + 1, step=step, history=history.history, history_epochs=history.epoch,
                epoch_rng=epoch_rng, totals={"loss": totals[0], "metrics": totals[1], "seen": totals[2]},
            )
            if dp is None or dp.is_main:
                saver.save(position, cbs.callbacks)
            else:
                saver.last = position
        if live:  # the figures are read (from a device: copied) only when the bar redraws
            bar.update(i + 1, lambda sums=(loss_sum, metric_sums), seen=seen: model._averages(*_host_sums(*sums), seen))
        elif bar is not None:
            bar.done = i + 1
        if blas is not None:
            blas.step()
        if sync_stop:
            model.stop_training = dp.any_stop(model.stop_training)
        if model.stop_training:
            break
    if seen == 0:
        raise ValueError("fit: the training data yielded no batches (all dropped, or an empty loader)")
    on_device = type(loss_sum) is not float
    loss_sum, metric_sums = _host_sums(loss_sum, metric_sums)  # one copy from a device per epoch
    if on_device and not math.isfinite(loss_sum):
        raise FloatingPointError(
            f"fit: the loss became {loss_sum} during epoch {epoch + 1}/{epochs} (up to step {step}); on a device the "
            "loss is read once per epoch, so the weights were updated with it. Lower the learning rate, check "
            "the data for NaN/Inf (fit(..., check_finite=True)), or clip the gradients (e.g. the optimizer's clip_norm)."
        )
    if dp is not None:
        loss_sum, metric_sums, seen = dp.totals(loss_sum, metric_sums, seen)
        dp.sync_state()
    return model._averages(loss_sum, metric_sums, seen), step


def _knetpy_code(obj):
    module = getattr(obj, "__module__", None) or ""
    return module == "knetpy" or module.startswith("knetpy.")


def compiles_by_default(model):
    """``fit(compile="auto")``: whether the step holds only knetpy's own code (its model classes, layers,
    activations and losses), whose replay is tested to equal eager steps. A user-written forward, layer,
    activation or loss may have Python side effects that replay would skip: those train eagerly."""
    from .layers.core import Lambda

    if not _knetpy_code(type(model)) or not _knetpy_code(model._loss):
        return False
    stack = [model]
    while stack:
        layer = stack.pop()
        if not _knetpy_code(type(layer)) or isinstance(layer, Lambda):
            return False
        for value in vars(layer).values():
            if callable(value) and not isinstance(value, type) and not hasattr(value, "_children"):
                if not _knetpy_code(value):
                    return False
        stack.extend(layer.layers())
    return True


def compiled_step(model, warn=None):
    """``fit``'s compiled step, compiled once per model and loss: (loss value, output) of a batch, with
    the gradients accumulated into each ``p.grad`` as ``backward()`` does. ``warn``: a CompileWarning
    when it cannot be replayed (``fit(compile=True)``; the automatic default falls back quietly; None
    leaves the setting as it is)."""
    loss_fn, opt = model._loss, model.optimizer
    trained = list(opt._params.values()) if opt._params is not None else []
    key = (loss_fn, opt, [id(p) for p in trained])  # a new optimizer, or new parameters in it: a new step
    cached = getattr(model, "_compiled_step", None)
    if cached is None or cached[0][0] is not loss_fn or cached[0][1] is not opt or cached[0][2] != key[2]:

        def fit_step(xb, yb):
            out = model(xb)
            loss = loss_fn(out, yb)
            _check_loss(loss)
            loss.backward()
            run_in_place(_update, trained, loss.value, model, opt)  # replayed with the step
            return loss.value, out.value

        from .compile import Compiled

        cached = model._compiled_step = (key, Compiled(fit_step, warn=bool(warn)))
    elif warn is not None:
        cached[1].warn = warn
    return cached[1]


def _update(trained, loss_value, model, opt):
    """The compiled step's update: ``opt.step()`` and ``opt.zero_grad()``, as an eager step makes them after
    ``backward()``; left out when the loss on the host is not finite (fit then stops, the weights as they were)."""
    if isinstance(loss_value, (np.ndarray, np.generic, float)) and not math.isfinite(float(loss_value)):
        return
    for p in getattr(model, "_untrained", ()):
        p.grad = None
    opt.step()
    opt.zero_grad()


class _PlainSGD(list):
    """fit's compiled update for plain SGD (``value -= lr * grad`` on every trained parameter, then
    ``zero_grad``), written into the step: called on each replay with the loss, model and optimizer, it
    does the bookkeeping of ``SGD.step`` (step counts, versions, gradients dropped) and answers the
    gradients and the rates for the step's own ``subtract(v, multiply(g, lr, scratch), v)``; or None,
    having changed nothing, and the step calls ``_update`` instead: a loss that is not finite, frozen
    parameters, another optimizer setting (momentum, decay, clipping, groups), a missing gradient.

    A list of the parameters' names: two traces' constants compare equal by them. The rates are 0-d
    arrays of the weights' dtypes, made again only when ``opt._lr`` is another object; ``lr * g``
    casts a Python float so, which gives the same bits as the eager step."""

    def __init__(self, trained, opt):
        super().__init__(opt._params)
        self.trained = trained
        self.params = opt._params
        self.lr = None
        self.rates = None

    def __call__(self, loss_value, model, opt):
        if (not math.isfinite(loss_value) or getattr(model, "_untrained", ()) or opt._params is not self.params
                or not opt._plain()):
            return None
        state = opt.state
        grads = []
        for name, p in zip(self, self.trained):
            g, v = p.grad, p.value
            if type(g) is not np.ndarray or name not in state or g.shape != v.shape or g.dtype != v.dtype:
                return None
            grads.append(g)
        lr = opt._lr
        if lr is not self.lr:
            rates = [weak_scalar_array(lr, p.value.dtype) for p in self.trained]
            self.rates = [lr if r is None else r for r in rates]
            self.lr = lr
        for name in self:
            state[name]["step"] += 1
        opt.iterations += 1
        for p in self.trained:  # zero_grad
            p.grad = None
        mark_modified(*self.trained)
        return grads, self.rates


def _inline_update(targets, args, expr, scratch):
    """The compiled step's source for :func:`_update` with plain SGD on NumPy arrays (see
    :class:`_PlainSGD`), or None (the call as it is)."""
    loss_value, model, opt = args
    if (not isinstance(loss_value, (np.ndarray, np.generic, float)) or not isinstance(opt, SGD) or not all_plain((opt,))
            or not opt._plain() or getattr(model, "_untrained", ()) or list(opt._group_names[0]) != list(opt._params)
            or len(targets) != len(opt._params) or any(p is not q for p, q in zip(targets, opt._params.values()))):
        return None
    if any(type(p.value) is not np.ndarray for p in targets):  # (the gradients, dropped by now, are checked on each replay)
        return None
    step = expr(_PlainSGD(targets, opt))
    subtract, multiply = expr(np.subtract), expr(np.multiply)
    updates = [f"    {subtract_line(expr(p), p.value, f'{multiply}(r[0][{i}], r[1][{i}], {scratch(p.value)})', subtract)}"
               for i, p in enumerate(targets)]  # v -= lr * g
    return lambda call: [f"r = {step}({expr(loss_value)}, {expr(model)}, {expr(opt)})", "if r is not None:",
                         *updates, "else:", f"    {call}"]


_update.inline = _inline_update


def closure_step(model, xb, yb):
    """One step of an optimizer that re-evaluates the loss itself (L-BFGS): the loss and output it saw first."""
    opt, loss_fn = model.optimizer, model._loss
    first = []

    def closure():
        opt.zero_grad()
        out = model(xb)
        loss = loss_fn(out, yb)
        if not first:
            _check_loss(loss)
            first.append((float(loss.value), out))
        loss.backward()
        for p in getattr(model, "_untrained", ()):
            p.grad = None
        return loss

    opt.step(closure)
    opt.zero_grad()
    return first[0]
