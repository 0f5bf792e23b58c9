"""Hyper-parameter search: Knet's ``goldensection`` and ``hyperband``, random search and a grid.

Every search calls ``getloss(config, resource)``: train ``config`` (a dict, or anything the caller
understands) with ``resource`` epochs or steps and return a loss, lower is better. A NaN or infinite
loss scores +inf, so a configuration that diverges loses to every finite one. :func:`fit_loss`
is such a function for ``Model.fit``: it builds and trains a model, watching the monitored loss with a
:class:`Reporter`, and stops a run early (score +inf) once the loss is NaN, infinite or exploding.

    getconfig = kp.tune.sampler({"lr": kp.tune.log_uniform(1e-3, 1), "hidden": [32, 64]}, seed=0)
    getloss = lambda c, epochs: kp.tune.fit_loss(build, c, epochs, (x, y, xv, yv))
    best = kp.tune.hyperband(getconfig, getloss, maxresource=27)
    print(best.config, best.loss)
    print(best.table())
"""

from __future__ import annotations

import itertools
import math
import numbers
import time
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np

from .callbacks import Callback, _monitored

GOLDEN = (1 + math.sqrt(5)) / 2


def _check_int(value, name, who, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{who}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_real(value, name, who, low, strict=True):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= low if strict else value < low):
        raise ValueError(f"{who}: {name} must be a finite number {'>' if strict else '>='} {low}, got {value!r}")
    return value


def _as_loss(value, who):
    """``value`` as a float; NaN becomes +inf, so that diverged runs sort last."""
    try:
        loss = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{who}: the loss function must return a number, got {type(value).__name__}") from None
    return math.inf if math.isnan(loss) else loss


# -- golden section ----------------------------------------------------------------------------------------
def goldensection(f, n, *, dxmin=0.1, accel=GOLDEN, verbose=False, history=None, max_evals=None):
    """Minimise a noisy function ``f`` of ``n`` numbers; returns ``(fmin, xmin)``, as Knet's ``goldensection``.

    The search starts at ``x = zeros(n)`` with a step of 1 in every dimension, so write ``f`` to map
    that range to your parameters, e.g. ``lr = 0.01 * exp(x[0])`` and ``hidden = ceil(100 * exp(x[1]))``:
    the search then starts at ``lr=0.01, hidden=100`` and moves by factors. It runs a golden-section
    line search in each dimension concurrently: it always steps in the dimension with the largest
    expected gain; a step that improves is taken and the next one in that direction is ``accel``
    times longer, a step that does not reverses direction and shrinks by ``accel``. It stops when
    every step is shorter than ``dxmin`` (or after ``max_evals`` evaluations of ``f``).

    ``f`` may return NaN for inputs out of range (a too-large model, say): such a point counts as
    worse than where the search is. ``history`` (a list) caches ``(x, f(x))`` pairs, so no point is
    evaluated twice, and after the call holds every evaluation; ``verbose`` prints each step.
    """
    who = "goldensection"
    n = _check_int(n, "n", who, 1)
    dxmin = _check_real(dxmin, "dxmin", who, 0)
    accel = _check_real(accel, "accel", who, 1)
    if max_evals is not None:
        max_evals = _check_int(max_evals, "max_evals", who, 1)
    history = [] if history is None else history
    if not isinstance(history, list):
        raise TypeError(f"{who}: history must be a list of (x, f(x)) pairs, got {type(history).__name__}")
    evals = 0

    def feval(x):
        nonlocal evals
        for xk, fk in history:
            if np.allclose(xk, x, rtol=1e-9, atol=1e-12):
                return fk
        fx = float(f(x.copy()))
        evals += 1
        history.append((x.copy(), fx))
        return fx

    x0 = np.zeros(n)
    f0 = feval(x0)
    if math.isnan(f0):
        f0 = math.inf  # nothing to compare against yet: any number beats it
    dx = np.ones(n)
    df = np.full(n, np.inf)  # expected gain of the next step in each dimension
    while np.max(np.abs(dx)) >= dxmin and (max_evals is None or evals < max_evals):
        i = int(np.argmax(df))
        x1 = x0.copy()
        x1[i] += dx[i]
        f1 = feval(x1)
        if verbose:
            print(f"(:f0, {f0:.6g}, :x0, {x0.round(4).tolist()}, :f1, {f1:.6g}, :x1, {x1.round(4).tolist()}, "
                  f":dx, {dx.round(4).tolist()}, :df, {df.round(4).tolist()})")
        if math.isnan(f1):
            f1 = f0 + df[i]  # as much worse as the step was expected to gain
        if f1 < f0:
            dx[i] *= accel
            df[i] = accel * (f0 - f1)
            x0, f0 = x1, f1
            # From the new point, dimensions whose steps had shrunk away are worth trying again.
            small = np.abs(dx) < dxmin * accel
            dx[small] = np.sign(dx[small]) * dxmin * accel
            df[small] = np.maximum(df[small], 0)
        else:
            dx[i] = -dx[i] / accel
            gap = f1 - f0
            df[i] = gap / accel if not math.isnan(gap) else math.inf  # inf - inf: nothing learnt yet
            if abs(dx[i]) < dxmin:
                df[i] = -1  # this dimension is done unless a later move reopens it
    return f0, x0


# -- searches over configurations ---------------------------------------------------------------------------
class Trial(NamedTuple):
    """One call of ``getloss``: the configuration, the resource it got, its loss and when it ran.

    ``bracket`` and ``round`` are hyperband's ``s`` and ``i`` (None for the other searches).
    """

    config: Any
    resource: Any
    loss: float
    bracket: Any = None
    round: Any = None
    seconds: float = 0.0


class SearchResult(NamedTuple):
    """The best trial's ``loss``, ``config`` and ``resource``, and every trial in the order run."""

    loss: float
    config: Any
    resource: Any
    trials: list

    def table(self, loss_name="loss", resource_name="resource"):
        """The trials as a text table, one row each, the best marked with ``*``."""
        return format_trials(self.trials, loss_name=loss_name, resource_name=resource_name, best=self)


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_trials(trials, loss_name="loss", resource_name="resource", best=None):
    """A text table of ``trials`` (:class:`Trial`): their configuration's entries, resource and loss."""
    keys = []
    for t in trials:
        for k in (t.config if isinstance(t.config, dict) else {"config": None}):
            if k not in keys:
                keys.append(k)
    hyper = any(t.bracket is not None for t in trials)
    head = ["trial"] + (["bracket", "round"] if hyper else []) + [str(k) for k in keys] + [resource_name, loss_name, "s"]
    rows = []
    for j, t in enumerate(trials, 1):
        config = t.config if isinstance(t.config, dict) else {"config": t.config}
        mark = "*" if best is not None and t.loss == best.loss and t.config is best.config else ""
        rows.append([f"{j}{mark}"] + ([str(t.bracket), str(t.round)] if hyper else [])
                    + [_fmt(config.get(k, "")) for k in keys] + [_fmt(t.resource), _fmt(t.loss), f"{t.seconds:.2f}"])
    widths = [max(len(r[c]) for r in [head] + rows) for c in range(len(head))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in [head] + rows]
    return "\n".join(lines)


def _run(getloss, config, resource, who, trials, bracket=None, round=None, verbose=False):
    start = time.perf_counter()
    loss = _as_loss(getloss(config, resource), who)
    trial = Trial(config, resource, loss, bracket, round, time.perf_counter() - start)
    trials.append(trial)
    if verbose:
        where = f"bracket {bracket} round {round}, " if bracket is not None else ""
        print(f"{who}: trial {len(trials)}, {where}resource {_fmt(resource)}: loss {loss:.6g} for {config}")
    return loss


def _result(trials, who):
    if not trials:
        raise ValueError(f"{who}: no trial ran")
    best = min(trials, key=lambda t: t.loss)  # the first of equal losses
    return SearchResult(best.loss, best.config, best.resource, trials)


def _resource(value):
    return int(value) if value.denominator == 1 else float(value)


def hyperband_schedule(maxresource=81, reduction=3):
    """Hyperband's brackets (Li et al. 2017, Algorithm 1), ``s = s_max`` down to 0, as lists of ``(n_i, r_i)``.

    ``s_max = floor(log_eta R)``, ``B = (s_max + 1) R``; bracket ``s`` starts ``n = ceil(B/R * eta^s / (s+1))``
    configurations at ``r = R eta^-s`` and runs successive halving: round ``i`` trains
    ``n_i = floor(n eta^-i)`` configurations with ``r_i = r eta^i`` each and keeps the best ``1/eta`` of them.
    """
    who = "hyperband"
    _check_real(maxresource, "maxresource", who, 1, strict=False)
    eta = _check_int(reduction, "reduction", who, 2)
    big_r = Fraction(maxresource)
    smax = 0
    while eta ** (smax + 1) <= big_r:  # exact: no log() rounding at powers of eta
        smax += 1
    brackets = []
    for s in range(smax, -1, -1):
        n = math.ceil(Fraction((smax + 1) * eta ** s, s + 1))
        r = big_r / eta ** s
        brackets.append([(n // eta ** i, _resource(r * eta ** i)) for i in range(s + 1)])
    return brackets


def hyperband(getconfig, getloss, maxresource=81, reduction=3, *, verbose=False):
    """Search with hyperband (Li et al. 2017): successive halving in brackets of more or fewer configurations.

    ``getconfig()`` draws a random configuration (see :func:`sampler`); ``getloss(config, r)`` trains it
    with resource ``r`` (epochs or steps; at most ``maxresource``) and returns its loss. Each bracket of
    :func:`hyperband_schedule` draws its configurations, trains them all with a little resource, keeps
    the best ``1/reduction`` and trains those ``reduction`` times longer, until one is left. Returns a
    :class:`SearchResult`: the smallest loss seen, its configuration and resource, and every trial.
    """
    who = "hyperband"
    brackets = hyperband_schedule(maxresource, reduction)
    smax = len(brackets) - 1
    trials = []
    for b, rounds in enumerate(brackets):
        s = smax - b
        configs = [getconfig() for _ in range(rounds[0][0])]
        for i, (n_i, r_i) in enumerate(rounds):
            losses = [_run(getloss, c, r_i, who, trials, s, i, verbose) for c in configs]
            order = sorted(range(len(configs)), key=losses.__getitem__)  # stable: ties keep the drawing order
            configs = [configs[j] for j in order[: n_i // reduction]]
    return _result(trials, who)


def random_search(getconfig, getloss, n_trials, resource):
    """Train ``n_trials`` configurations drawn by ``getconfig()`` with ``resource`` each; a :class:`SearchResult`."""
    who = "random_search"
    n_trials = _check_int(n_trials, "n_trials", who, 1)
    trials = []
    for _ in range(n_trials):
        _run(getloss, getconfig(), resource, who, trials)
    return _result(trials, who)


def grid_search(grid, getloss, resource):
    """Train every combination of ``grid`` (a dict: name -> list of values) with ``resource``; a :class:`SearchResult`.

    The configurations are dicts, in the order of ``itertools.product`` over the values.
    """
    who = "grid_search"
    if not isinstance(grid, dict) or not grid:
        raise TypeError(f"{who}: grid must be a non-empty dict of name -> list of values, got {grid!r}")
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) == 0:
            raise ValueError(f"{who}: grid[{name!r}] must be a non-empty list of values, got {values!r}")
    trials = []
    for combo in itertools.product(*grid.values()):
        _run(getloss, dict(zip(grid, combo)), resource, who, trials)
    return _result(trials, who)


# -- drawing configurations ---------------------------------------------------------------------------------
def log_uniform(low, high):
    """A sampler for :func:`sampler`: numbers spread evenly in log scale between ``low`` and ``high``."""
    _check_real(low, "low", "log_uniform", 0)
    _check_real(high, "high", "log_uniform", low)
    lo, hi = math.log(low), math.log(high)
    return lambda rng: float(math.exp(rng.uniform(lo, hi)))


def uniform(low, high):
    """A sampler for :func:`sampler`: numbers drawn uniformly between ``low`` and ``high``."""
    _check_real(low, "low", "uniform", -math.inf)
    _check_real(high, "high", "uniform", low)
    return lambda rng: float(rng.uniform(low, high))


def sampler(space, seed=None):
    """A ``getconfig()`` drawing dicts from ``space``: name -> a list (one value picked), a function of a
    NumPy generator (e.g. :func:`log_uniform`), or a constant. Its own generator, seeded by ``seed``."""
    if not isinstance(space, dict):
        raise TypeError(f"sampler: space must be a dict of name -> values, got {type(space).__name__}")
    rng = np.random.default_rng(seed)

    def draw(values):
        if isinstance(values, (list, tuple)):
            if not values:
                raise ValueError("sampler: an empty list of values to pick from")
            return values[int(rng.integers(len(values)))]
        return values(rng) if callable(values) else values

    return lambda: {name: draw(values) for name, values in space.items()}


# -- Model.fit -------------------------------------------------------------------------------------------
class Reporter(Callback):
    """Records the monitored loss after every epoch of ``fit`` and stops a run that diverges.

    ``losses`` holds one value per epoch; ``report(epoch, value)``, if given, is called with each (to
    log it, or to feed a search). Training stops (``diverged`` becomes True, :attr:`score` +inf) when
    the value is NaN or infinite, or grows past ``explode`` times ``baseline`` (the loss before
    training, or the first epoch's loss when None; only checked while it is positive).
    """

    def __init__(self, monitor="val_loss", *, explode=3.0, baseline=None, report=None):
        super().__init__()
        self.monitor = monitor
        self.explode = None if explode is None else _check_real(explode, "explode", "Reporter", 1)
        self.baseline = baseline
        self.report = report
        self.losses = []
        self.diverged = False

    def on_train_begin(self, logs=None):
        self.losses = []
        self.diverged = False

    def on_epoch_end(self, epoch, logs=None):
        value = _monitored(logs, self.monitor, "Reporter")
        self.losses.append(value)
        if self.report is not None:
            self.report(epoch, value)
        ref = self.baseline if self.baseline is not None else self.losses[0]
        exploding = self.explode is not None and ref > 0 and value > self.explode * ref
        if not math.isfinite(value) or exploding:
            self.diverged = True
            self.model.stop_training = True

    @property
    def score(self):
        """The last epoch's value, or +inf when the run diverged (or never finished an epoch)."""
        return math.inf if self.diverged or not self.losses else self.losses[-1]


def fit_loss(model_fn, config, epochs, data, *, monitor="val_loss", explode=3.0, seed=0, batch_size=32,
             callbacks=(), **fit_kwargs):
    """Train ``model_fn(config)`` (a compiled model) for ``epochs`` epochs and return its final ``monitor``.

    A ``getloss`` for the searches: ``data`` is ``(x, y, x_val, y_val)`` (or ``(x, y)`` with
    ``monitor="loss"``, or ``validation_split`` among ``fit_kwargs``). ``epochs`` may be a float
    (hyperband's resource): it is rounded, at least 1. ``seed`` (unless None) is set before the model is
    built, so every configuration starts from the same weights and batch order. A run whose loss
    turns NaN or infinite, or grows past ``explode`` times its value before training, stops early and
    scores +inf.
    """
    from .backend import set_seed
    from .model import Model

    who = "fit_loss"
    _check_real(epochs, "epochs", who, 0)
    epochs = max(1, round(epochs))
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 4):
        raise ValueError(f"{who}: data must be (x, y) or (x, y, x_val, y_val), got {type(data).__name__} "
                         f"of length {len(data) if hasattr(data, '__len__') else '?'}")
    x, y = data[0], data[1]
    validation = tuple(data[2:]) or None
    if seed is not None:
        set_seed(seed)
    model = model_fn(config)
    if not isinstance(model, Model) or not model.compiled:
        raise TypeError(f"{who}: model_fn must return a compiled kp.Model, got {type(model).__name__}"
                        + (" that is not compiled (call model.compile first)" if isinstance(model, Model) else ""))
    baseline = None
    with np.errstate(all="ignore"):  # diverging runs overflow on purpose; they are scored, not reported
        if monitor in ("loss", "val_loss"):
            xb, yb = (validation if monitor == "val_loss" and validation else (x, y))
            baseline = model.evaluate(xb, yb, batch_size=max(256, batch_size))["loss"]
        reporter = Reporter(monitor, explode=explode, baseline=baseline)
        try:
            model.fit(x, y, epochs=epochs, batch_size=batch_size, validation_data=validation, verbose=0,
                      callbacks=[reporter, *callbacks], **fit_kwargs)
        except FloatingPointError:  # fit refuses a NaN/Inf batch loss before stepping on it
            return math.inf
    return reporter.score
