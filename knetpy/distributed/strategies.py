"""How the ranks keep their models together: synchronous SGD, local SGD, elastic averaging (EASGD);
and the same averaging for the functional style (``grad``) and for hand-written loops (``DistributedOptimizer``)."""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Tensor
from ..backend import get_rng_state, set_rng_state
from . import comm
from .reducer import DEFAULT_BUCKET_BYTES, GradientReducer


def _check_every(every, who):
    if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
        raise ValueError(f"{who}: every must be a positive int (optimizer steps between averagings), got {every!r}")
    return int(every)


class Synchronous:
    """Synchronous data-parallel SGD: each step averages the gradients over the ranks (bucketed
    all-reduce, started during backward()), so every rank applies the same update. With P ranks of
    batch B this is one process with batch P*B, up to rounding. ``fit(distributed=True)`` uses it."""

    name = "synchronous"

    def __init__(self, bucket_bytes=DEFAULT_BUCKET_BYTES):
        self.bucket_bytes = bucket_bytes

    def __repr__(self):
        return f"Synchronous(bucket_bytes={self.bucket_bytes})"


class LocalSGD:
    """Local SGD: each rank steps on its own gradients and the parameters are averaged over the ranks
    every ``every`` steps (and at the end of each epoch): ``every`` times fewer messages than
    :class:`Synchronous`, which it equals for ``every=1`` with plain SGD."""

    name = "local SGD"

    def __init__(self, every=4):
        self.every = _check_every(every, "LocalSGD")

    def __repr__(self):
        return f"LocalSGD(every={self.every})"


class EASGD:
    """Elastic averaging SGD (Zhang, Choromanska & LeCun, 2015), synchronous form: every ``every``
    steps each rank's parameters ``x_i`` are pulled towards a center variable ``c`` that every
    rank holds the same copy of, and ``c`` towards them:
    ``x_i -= a * (x_i - c)``, ``c += a * sum_i (x_i - c)``, with the moving rate ``a = lr * rho``
    (``lr`` the optimizer's rate at that step; ``alpha=`` sets ``a`` directly). ``rho`` is the
    elastic force: small values let the ranks explore further from the center. The model keeps
    its own parameters (rank 0's are saved); :attr:`center` holds ``c``.
    """

    name = "EASGD"

    def __init__(self, every=4, rho=0.1, alpha=None):
        self.every = _check_every(every, "EASGD")
        if isinstance(rho, bool) or not isinstance(rho, numbers.Real) or not rho > 0:
            raise ValueError(f"EASGD: rho (the elastic force) must be a positive number, got {rho!r}")
        if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1):
            raise ValueError(f"EASGD: alpha (the moving rate) must be in (0, 1), got {alpha!r}")
        self.rho, self.alpha = float(rho), alpha
        self.center = None

    def __repr__(self):
        return f"EASGD(every={self.every}, rho={self.rho}, alpha={self.alpha})"


def resolve(distributed, who="fit"):
    """``fit``'s ``distributed=`` argument as a strategy, or None for ordinary training."""
    if distributed is False or distributed is None:
        return None
    if distributed is True:
        return Synchronous()
    if isinstance(distributed, (Synchronous, LocalSGD, EASGD)):
        return distributed
    raise TypeError(
        f"{who}: distributed must be True, False, or kp.distributed.Synchronous(), LocalSGD(every) or "
        f"EASGD(every, rho), got {distributed!r}"
    )


class DataParallel:
    """What ``fit`` calls to train one model on every rank: the chosen strategy's messages."""

    def __init__(self, model, strategy, who="fit"):
        comm.init()
        self.model, self.strategy = model, strategy
        self.size, self.rank = comm.world_size(), comm.rank()
        self.is_main = self.rank == 0
        opt = model.optimizer
        self.params = [p for p in opt.params.values() if id(p) not in {id(q) for q in model._untrained}]
        self.reducer = None
        if isinstance(strategy, Synchronous) and self.size > 1:
            self.reducer = GradientReducer(self.params, strategy.bucket_bytes)

    def prepare(self, train, callbacks, verbose):
        """Check that the ranks can train together; the callbacks and verbosity of this rank."""
        from ..model import _needs_closure

        if _needs_closure(self.model.optimizer) and self.size > 1:
            raise ValueError(
                "fit: L-BFGS re-evaluates the loss inside its step, which distributed training does not "
                "average; use a first-order optimizer (SGD, Adam, ...) with distributed=True"
            )
        steps = len(train) if hasattr(train, "__len__") else -1
        lo, hi = comm.all_reduce(np.array([steps, -steps], np.int64), op="max")
        if self.size > 1 and (lo != -hi or steps < 0):
            raise ValueError(
                f"fit: the ranks have different numbers of batches per epoch (rank {self.rank}: {steps}, "
                f"most {lo}, fewest {-hi}), so they would wait for each other forever; give every rank the "
                "same number of batches, e.g. kp.distributed.DistributedMinibatch, or pass arrays"
            )
        callbacks = list(callbacks or [])
        if not self.is_main:  # files and printing belong to rank 0; the others still see every callback's stop
            callbacks = [cb for cb in callbacks if not getattr(cb, "main_only", isinstance(cb, _file_writers()))]
            verbose = 0
        return callbacks, verbose

    # -- at the start, at epoch ends ---------------------------------------------------------------
    def start(self):
        """Rank 0's parameters, layer state and random generator on every rank."""
        if self.size == 1:
            return
        comm.broadcast_into(_all_tensors(self.model))
        set_rng_state(comm.broadcast_json(get_rng_state()))
        if isinstance(self.strategy, EASGD):
            self.strategy.center = [p.value.copy() for p in self.params]

    def sync_state(self):
        """Average the layers' float state (BatchNorm's running statistics), so that every rank evaluates
        and saves the same model; with LocalSGD and EASGD the parameters are averaged as well."""
        if self.size == 1:
            return
        tensors = [t for t in _state_tensors(self.model) if t.value.dtype.kind == "f"]
        if isinstance(self.strategy, LocalSGD):
            tensors += self.params
        if tensors:
            averaged = comm.all_reduce([t.value for t in tensors])
            for t, v in zip(tensors, averaged):
                t.value = v.astype(t.value.dtype, copy=False)

    def totals(self, loss_sum, metric_sums, seen):
        """The epoch's sums over every rank (so rank 0 prints the average over all the data)."""
        if self.size == 1:
            return loss_sum, metric_sums, seen
        both = comm.all_reduce(np.array([loss_sum, seen, *metric_sums], np.float64), op="sum")
        return float(both[0]), [float(v) for v in both[2:]], int(round(both[1]))

    def any_stop(self, flag):
        """True when ``stop_training`` is set on some rank: every rank then stops at the same step."""
        if self.size == 1:
            return bool(flag)
        return bool(comm.all_reduce(np.array([1 if flag else 0], np.int64), op="max")[0])

    # -- every step --------------------------------------------------------------------------------
    def backward(self, loss):
        if self.reducer is None:
            loss.backward()
            return
        with self.reducer.during_backward():
            loss.backward()
        self.reducer.finish()

    def after_step(self, step):
        s = self.strategy
        if self.size == 1 or isinstance(s, Synchronous) or step % s.every:
            return
        if isinstance(s, LocalSGD):
            averaged = comm.all_reduce([p.value for p in self.params])
            for p, v in zip(self.params, averaged):
                p.value = v
            return
        alpha = s.alpha if s.alpha is not None else self.model.optimizer.lr * s.rho
        diffs = [p.value - c for p, c in zip(self.params, s.center)]
        total = comm.all_reduce(diffs, op="sum")
        for p, c, d, t in zip(self.params, s.center, diffs, total):
            p.value = (p.value - alpha * d).astype(p.value.dtype, copy=False)
            c += (alpha * t).astype(c.dtype, copy=False)


def _file_writers():
    from ..callbacks import CSVLogger, ModelCheckpoint, PlotHistory

    return (CSVLogger, ModelCheckpoint, PlotHistory)


def _all_tensors(model):
    """Parameters and state tensors (running statistics), in a fixed order."""
    return list(model.params.values()) + _state_tensors(model)


def _state_tensors(model):
    """The layers' state tensors (BatchNorm's running statistics), not parameters."""
    return list(model.state().values())


# -- the functional style and hand-written loops ---------------------------------------------------------
def grad(fun, argnums=0):
    """``kp.grad(fun, argnums)`` whose gradient is averaged over the ranks (one bucketed all-reduce
    per call): with each rank passing its own batch, every rank gets the gradient of the mean
    loss over all the batches, and ``kp.optim.update(w, dw, opts)`` keeps the ranks in step
    (start from the same ``w``: ``w = kp.distributed.broadcast(w)``)."""
    from ..functional import grad as _grad

    return _averaged(_grad(fun, argnums=argnums))


def value_and_grad(fun, argnums=0):
    """``kp.value_and_grad`` with the value and the gradient averaged over the ranks."""
    from ..functional import value_and_grad as _vg

    inner = _vg(fun, argnums=argnums)

    def wrapped(*args, **kwargs):
        value, g = inner(*args, **kwargs)
        value_avg, g_avg = comm.all_reduce((_plain(value), g))
        return value_avg, g_avg

    return wrapped


def _plain(v):
    return v.value if isinstance(v, Tensor) else v


def _averaged(gfun):
    def wrapped(*args, **kwargs):
        return comm.all_reduce(gfun(*args, **kwargs))

    wrapped.__wrapped__ = gfun
    return wrapped


class DistributedOptimizer:
    """Wrap an optimizer so that :meth:`step` first averages the bound parameters' gradients over the
    ranks (bucketed all-reduce), as Horovod's DistributedOptimizer does: a PyTorch-style loop
    (``loss.backward(); opt.step(); opt.zero_grad()``) then trains data-parallel. Call
    :meth:`broadcast_parameters` once before training so that every rank starts from rank 0's weights.
    """

    def __init__(self, optimizer, bucket_bytes=DEFAULT_BUCKET_BYTES):
        if not hasattr(optimizer, "step") or not hasattr(optimizer, "params"):
            raise TypeError(f"DistributedOptimizer: expected a kp.optim optimizer, got {type(optimizer).__name__}")
        if not optimizer.params:
            raise ValueError("DistributedOptimizer: the optimizer has no parameters; create it over model.parameters()")
        self.optimizer = optimizer
        self.reducer = GradientReducer(list(optimizer.params.values()), bucket_bytes)

    def broadcast_parameters(self, root=0):
        comm.broadcast_into(self.optimizer.params.values(), root)

    def step(self):
        self.reducer.average()
        return self.optimizer.step()

    def zero_grad(self):
        self.optimizer.zero_grad()

    def __getattr__(self, name):  # lr, state_dict, ... of the wrapped optimizer
        return getattr(self.optimizer, name)
