"""The training doctor: the checks to run on a model before a long training run.

``kp.doctor(model, x, y)`` runs them on copies of the model and its optimizer (the originals, their
weights, state and the random generator are left exactly as they were) and returns a
:class:`Report`, printed as a table with a verdict and a suggestion per check:

* ``initial loss``: the loss before training against the loss of a model that knows nothing
  (log C for softmax cross-entropy over C classes; log 2 for a binary logit; mean(y²) for MSE);
* ``gradient check``: the gradient of every parameter tensor against central differences, in
  float64 on a small batch; relative error as CS231n defines it (< 1e-7 fine, > 1e-2 wrong);
* ``overfit one batch``: a few hundred steps on one small batch should bring the loss near zero;
* ``activations``: per layer, the mean and std of the outputs, dead ReLU units, saturated tanh/sigmoid;
* ``gradient norms``: per parameter tensor, ‖∇w‖ and ‖∇w‖ / ‖w‖ (none zero, none vanishing);
* ``update/weight ratio``: ‖Δw‖ / ‖w‖ of one optimizer step (about 1e-3 is healthy);
* ``learning rate``: a range test (loss against an exponentially growing learning rate) and the
  learning rate it suggests, against the optimizer's.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import activations as _activations
from .autograd import Tensor, no_grad
from .backend import get_rng_state, set_rng_state, to_numpy
from .gradcheck import relative_error
from .layers.base import Layer, thread_mode
from .layers.core import Dropout

#: The checks in the order they run, by name.
CHECKS = ("initial loss", "gradient check", "overfit one batch", "activations", "gradient norms",
          "update/weight ratio", "learning rate")
VERDICTS = ("ok", "warning", "problem", "skipped")
_RANK = {"skipped": -1, "ok": 0, "warning": 1, "problem": 2}

# CS231n's bands for the relative error of a gradient check.
GRAD_FINE, GRAD_WRONG = 1e-7, 1e-2
# ‖Δw‖ / ‖w‖ per step: about 1e-3 is healthy, within a wide band: Adam's first steps move each weight
# by about lr, so a default Adam (1e-3) on weights of std 0.01-0.1 sits at 1e-2 to 1e-1.
UPDATE_HIGH, UPDATE_TOO_HIGH, UPDATE_LOW = 0.1, 0.3, 1e-5
DEAD_WARN, DEAD_PROBLEM = 0.2, 0.5  # fraction of ReLU units that output 0 for every sample of a batch
SAT_WARN, SAT_PROBLEM = 0.2, 0.5  # fraction of tanh/sigmoid outputs within 1% of their bounds
# Overfitting one batch: the loss should fall 10x (2.3 to 0.23 for 10 classes: the right class at 0.8);
# training stops early at 100x.
OVERFIT_OK, OVERFIT_STOP, OVERFIT_SLOW = 0.1, 0.01, 0.5


@dataclass
class Check:
    """One check's result: ``verdict`` is 'ok', 'warning', 'problem' or 'skipped'; ``value`` the number
    it rests on; ``message`` what was found and what to do; ``details`` the per-layer numbers."""

    name: str
    verdict: str
    value: object
    message: str
    details: list = field(default_factory=list)

    def value_text(self):
        v = self.value
        if isinstance(v, float):
            return _num(v)
        return "" if v is None else str(v)


@dataclass
class Report:
    """What :func:`doctor` found: ``checks`` (a list of :class:`Check`), ``layers`` (activation
    statistics per layer), ``parameters`` (gradient and update statistics per parameter tensor) and
    ``lr_range`` (``{"lr": [...], "loss": [...], "suggested": lr, ...}``, the learning-rate range test,
    for :mod:`knetpy.plot`). ``verdict`` is the worst verdict; ``print(report)`` shows the table."""

    title: str
    checks: list
    layers: list = field(default_factory=list)
    parameters: list = field(default_factory=list)
    lr_range: dict | None = None
    seconds: float = 0.0

    def __getitem__(self, name):
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r} (checks: {', '.join(c.name for c in self.checks)})")

    @property
    def verdict(self):
        ranked = [c.verdict for c in self.checks if c.verdict != "skipped"]
        return max(ranked, key=_RANK.get) if ranked else "skipped"

    @property
    def ok(self):
        return self.verdict == "ok"

    @property
    def problems(self):
        return [c for c in self.checks if c.verdict == "problem"]

    @property
    def warnings(self):
        return [c for c in self.checks if c.verdict == "warning"]

    def to_dict(self):
        """The report as plain, JSON-serialisable data."""
        return {"title": self.title, "verdict": self.verdict,
                "checks": [{"name": c.name, "verdict": c.verdict, "value": _plain(c.value), "message": c.message}
                           for c in self.checks],
                "layers": _plain(self.layers), "parameters": _plain(self.parameters),
                "lr_range": _plain(self.lr_range)}

    def __str__(self):
        return format_report(self)


# -- the entry point -----------------------------------------------------------------------------------
def doctor(model, x, y, loss=None, optimizer=None, *, checks=None, batch_size=32, overfit_samples=16,
           overfit_steps=300, lr_min=1e-7, lr_max=10.0, lr_steps=100, grad_elements=8, seed=0, print_fn=print):
    """Run the checks on copies of ``model`` with data ``x``, ``y``; print and return a :class:`Report`.

    ``loss`` and ``optimizer`` default to the model's compiled ones (names work as in ``compile``).
    ``checks`` picks some of :data:`CHECKS`. ``batch_size`` samples feed each step; the overfit check
    trains ``overfit_samples`` samples for at most ``overfit_steps`` steps; the range test runs
    ``lr_steps`` steps from ``lr_min`` to ``lr_max``; the gradient check compares ``grad_elements``
    elements of each parameter tensor (the largest gradient among them). ``print_fn=None`` prints nothing.
    The model, its optimizer and knetpy's random generator are left as they were.
    """
    start = time.perf_counter()
    chosen = _chosen_checks(checks)
    for name, v in (("overfit_samples", overfit_samples), ("overfit_steps", overfit_steps),
                    ("lr_steps", lr_steps), ("grad_elements", grad_elements)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"doctor: {name} must be a positive integer, got {v!r}")
    if not (isinstance(lr_min, (int, float)) and isinstance(lr_max, (int, float)) and 0 < lr_min < lr_max):
        raise ValueError(f"doctor: the range test needs 0 < lr_min < lr_max, got lr_min={lr_min!r}, lr_max={lr_max!r}")
    rng_state = get_rng_state()
    try:
        patient = _Patient(model, x, y, loss, optimizer, batch_size, seed)
        runners = {"initial loss": _check_initial_loss, "gradient check": _check_gradients,
                   "overfit one batch": _check_overfit, "activations": _check_activations,
                   "gradient norms": _check_gradient_norms, "update/weight ratio": _check_update_ratio,
                   "learning rate": _check_lr_range}
        options = {"overfit_samples": overfit_samples, "overfit_steps": overfit_steps, "lr_min": lr_min,
                   "lr_max": lr_max, "lr_steps": lr_steps, "grad_elements": grad_elements}
        report = Report(title=patient.title(), checks=[])
        for name in chosen:
            # overflow is expected where a learning rate is too high; the checks test for NaN/Inf themselves
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                try:
                    check = runners[name](patient, report, options)
                except Exception as e:  # noqa: BLE001 - a check that cannot run is a finding of its own
                    check = Check(name, "problem", "error", f"the check could not run the model: "
                                  f"{type(e).__name__}: {e}")
            report.checks.append(check)
    finally:
        set_rng_state(rng_state)
    report.seconds = time.perf_counter() - start
    if print_fn is not None:
        print_fn(format_report(report))
    return report


def _chosen_checks(checks):
    if checks is None:
        return CHECKS
    if isinstance(checks, str):
        checks = [checks]
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ValueError(f"doctor: unknown check(s) {unknown}; the checks are {', '.join(CHECKS)}")
    return tuple(c for c in CHECKS if c in checks)


class _Patient:
    """The model, loss, optimizer and data under examination; :meth:`copy` hands out fresh copies."""

    def __init__(self, model, x, y, loss, optimizer, batch_size, seed):
        from . import optim
        from .model import Model, Sequential, _resolve_loss

        who = "doctor"
        if not isinstance(model, Layer):
            raise TypeError(f"{who}: model must be a kp.Model or a layer, got {type(model).__name__}")
        if loss is None:
            loss = getattr(model, "_loss", None)
            if loss is None:
                raise ValueError(f"{who}: the model is not compiled; pass loss=... (e.g. 'cross_entropy') "
                                 "or compile the model first")
        if optimizer is None:
            optimizer = getattr(model, "optimizer", None)
            if optimizer is None:
                raise ValueError(f"{who}: the model has no optimizer; pass optimizer=... (e.g. 'adam') or compile it")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"{who}: batch_size must be a positive integer, got {batch_size!r}")
        self.loss_fn = _resolve_loss(loss)
        opt = optim.get(optimizer)
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)
        # One deep copy of model and optimizer together, so that the copy's optimizer is bound to the
        # copy's parameters; every check then works on a copy of that copy.
        base, opt = copy.deepcopy((model, opt))
        if not isinstance(base, Model):
            base = Sequential(base)
        base._loss, base.optimizer, base._metrics, base._bound = self.loss_fn, opt, [], None
        x, y = base._prepare(x, y, who)
        self.x, self.y = x, y
        self.batch_size = min(batch_size, len(x))
        base._ready(base._batches(x[:self.batch_size], y[:self.batch_size], self.batch_size, False, who), who)
        self.base = base
        self.model_name = type(model).__name__
        self.n_params = base.count_params()

    def copy(self, float64=False):
        m = copy.deepcopy(self.base)
        if float64:
            for t in list(m.params.values()) + list(m.state().values()):
                if np.asarray(t.value).dtype.kind == "f":
                    t.data = np.asarray(to_numpy(t.value), dtype=np.float64)
        return m

    def seeded(self):
        """Put knetpy's generator in a fixed state: dropout draws the same masks every time."""
        set_rng_state(np.random.default_rng(self.seed).bit_generator.state)

    def batch(self, n=None, start=0):
        n = self.batch_size if n is None else min(n, len(self.x))
        return self.x[start:start + n], self.y[start:start + n]

    def output_and_loss(self, m, xb, yb, training=True):
        with thread_mode(m, training):
            out = m(xb)
            return out, self.loss_fn(out, yb)

    def title(self):
        opt = self.base.optimizer
        return (f"{self.model_name} ({self.n_params:,} parameters), loss {_loss_name(self.loss_fn)}, "
                f"{type(opt).__name__}(lr={_num(opt.lr)}), {len(self.x)} samples of shape {tuple(self.x.shape[1:])}")


def _loss_name(fn):
    from .losses import _unwrap

    f, _ = _unwrap(fn)
    return getattr(f, "__name__", type(f).__name__)


def _train_step(m, loss_fn, xb, yb):
    """One optimizer step on ``m`` (in training mode); the loss before it, or NaN/Inf without a step."""
    from .model import _needs_closure

    opt = m.optimizer
    untrained = getattr(m, "_untrained", ())
    with thread_mode(m, True):
        if _needs_closure(opt):
            def closure():
                opt.zero_grad()
                loss = loss_fn(m(xb), yb)
                loss.backward()
                return loss
            value = float(_value(opt.step(closure)))
            opt.zero_grad()
            return value
        loss = loss_fn(m(xb), yb)
        value = float(_value(loss))
        if not math.isfinite(value):
            return value
        loss.backward()
        for p in untrained:
            p.grad = None
        opt.step()
        opt.zero_grad()
        return value


def _dropout_off(m):
    """Dropout layers of ``m`` to eval mode (the checks that fit a batch want no regularising noise)."""
    stack = [m]
    while stack:
        layer = stack.pop()
        if isinstance(layer, Dropout):
            layer.eval()
        stack.extend(layer.layers())


# -- initial loss --------------------------------------------------------------------------------------
def _reference_output(loss_fn, out):
    """What a model that knows nothing outputs, for this loss: zeros (logits, regression), uniform
    probabilities, or uniform log-probabilities; and a description of the expected loss."""
    from . import losses

    fn, params = losses._unwrap(loss_fn)
    xp_out = np.asarray(to_numpy(out))
    binary = xp_out.ndim == 1 or (xp_out.ndim == 2 and xp_out.shape[1] == 1)
    classes = 2 if binary else (xp_out.shape[1] if xp_out.ndim >= 2 else 1)
    probs = fn in (losses.sparse_categorical_crossentropy, losses.categorical_crossentropy,
                   losses.binary_crossentropy, losses.kl_divergence) and not params.get("from_logits", False)
    if probs:
        ref = np.full_like(xp_out, 0.5 if binary else 1.0 / classes)
    elif fn in (losses.nll, losses.kl_div):
        ref = np.full_like(xp_out, -math.log(classes))
    else:
        ref = np.zeros_like(xp_out)
    if losses.takes_logits(loss_fn) or probs:
        what = (f"log 2 = {math.log(2):.3f} for a binary output of probability 0.5" if binary else
                f"log C = log {classes} = {math.log(classes):.3f}, the cross-entropy of uniform class probabilities")
    else:
        what = "the loss of a model that outputs zeros (e.g. mean(y²) for MSE)"
    return ref, what, (classes if (losses.takes_logits(loss_fn) or probs) else None)


def _check_initial_loss(p, report, opts):
    m = p.copy()
    xb, yb = p.batch(max(p.batch_size, 256))
    with no_grad():
        out, loss = p.output_and_loss(m, xb, yb, training=False)
        value = float(_value(loss))
        ref, what, classes = _reference_output(p.loss_fn, _value(out))
        expected = float(_value(p.loss_fn(ref.astype(np.asarray(_value(out)).dtype), yb)))
    name = "initial loss"
    text = f"{_num(value)} (expected {_num(expected)})"
    if not math.isfinite(value):
        return Check(name, "problem", text, "the loss is not finite before any training: look for log(0) in the loss, "
                     "NaN/Inf in the data, or overflowing activations", [{"loss": value, "expected": expected}])
    ratio = value / expected if expected > 0 else (1.0 if value == 0 else math.inf)
    details = [{"loss": value, "expected": expected, "ratio": ratio}]
    msg = f"{_num(value)} against {_num(expected)} expected: {what}"
    centred = None if classes else _loss_at_mean(p.loss_fn, _value(out), yb)
    if centred is not None and centred < 0.5 * expected:
        details[0]["loss_at_mean"] = centred
        return Check(name, "warning", text, f"{msg}; predicting the targets' mean would give {_num(centred)}: "
                     "the targets are far from 0, so the first steps only move the output bias there. "
                     "Standardise the targets, or start the output bias at mean(y)", details)
    if 0.8 <= ratio <= 1.5:
        return Check(name, "ok", text, msg, details)
    if ratio < 0.8:
        return Check(name, "warning", text, msg + ". Lower than a model that knows nothing: right for a trained "
                     "model; for a fresh one, check that the targets do not leak into the inputs"
                     + ("" if classes else ", or start the output bias at mean(y)"), details)
    verdict = "problem" if ratio > 3 else "warning"
    advice = ("the initial weights are too large, so the outputs start confident and wrong: use a smaller "
              "initialisation (Glorot/He, or scale the last layer's weights down, e.g. by 0.01)")
    if not classes:
        advice += ", or start the output bias at mean(y) (standardise the targets)"
    return Check(name, verdict, text, f"{msg}; {_num(ratio)}x too high: {advice}", details)


def _loss_at_mean(loss_fn, out, y):
    """The loss of predicting the targets' mean for every sample (None where that is not defined)."""
    y = np.asarray(to_numpy(_value(y)))
    if y.dtype.kind != "f" or y.shape != np.shape(out):
        return None
    ref = np.broadcast_to(y.mean(axis=0), y.shape).astype(y.dtype)
    try:
        return float(_value(loss_fn(ref, y)))
    except (ValueError, TypeError):
        return None


# -- gradient check ------------------------------------------------------------------------------------
def _check_gradients(p, report, opts, eps=1e-5):
    m = p.copy(float64=True)
    rng = np.random.default_rng(p.seed)
    for param in m.params.values():
        # Zero-initialised biases put every ReLU fed by an all-zero input patch exactly on its kink,
        # where finite differences disagree with any gradient; check at a point slightly off it.
        zero = param.value == 0
        param.value[zero] = 1e-2 * rng.standard_normal(int(zero.sum()))
    xb, yb = p.batch(4)
    if xb.dtype.kind == "f":
        xb = xb.astype(np.float64)
    if yb.dtype.kind == "f":
        yb = yb.astype(np.float64)
    params = m.params

    def loss_value():
        p.seeded()  # the same dropout masks in every evaluation
        with no_grad():
            return float(_value(p.output_and_loss(m, xb, yb)[1]))

    p.seeded()
    m.zero_grad()
    _, loss = p.output_and_loss(m, xb, yb)
    loss.backward()
    rows, worst = [], (0.0, None, None)
    for name, param in params.items():
        ga = np.zeros(param.shape) if param.grad is None else np.asarray(to_numpy(_value(param.grad)), np.float64)
        flat = param.value.reshape(-1)
        # half the elements at random, half those of the largest gradients (where a wrong VJP shows
        # above the round-off of the finite differences)
        k = min(opts["grad_elements"], flat.size)
        largest = np.argsort(-np.abs(ga.reshape(-1)))[:max(k // 2, 1)]
        idxs = sorted(set(rng.choice(flat.size, k - len(largest), replace=False).tolist()) | set(largest.tolist()))
        gn = np.empty(len(idxs))
        for j, i in enumerate(idxs):
            old = flat[i]
            flat[i] = old + eps
            up = loss_value()
            flat[i] = old - eps
            down = loss_value()
            flat[i] = old
            gn[j] = (up - down) / (2 * eps)
        a = ga.reshape(-1)[idxs]
        err = relative_error(a, gn)
        at = idxs[int(np.argmax(np.abs(a - gn)))]
        rows.append({"parameter": name, "layer": _layer_label(m, name), "rel_error": err, "elements": len(idxs)})
        if err > worst[0] or worst[1] is None:
            worst = (err, name, (np.unravel_index(at, param.shape), ga.reshape(-1)[at],
                                 gn[idxs.index(at)]))
    _merge(report.parameters, rows, "parameter")
    check = "gradient check"
    if not rows:
        return Check(check, "skipped", None, "the model has no parameters")
    err, name, (pos, a_val, n_val) = worst
    bad = [r for r in rows if r["rel_error"] > GRAD_WRONG]
    if bad:
        names = ", ".join(f"{r['parameter']} ({r['layer']}, {_num(r['rel_error'])})" for r in bad[:4])
        return Check(check, "problem", err,
                     f"the gradient is wrong for {len(bad)} of {len(rows)} parameter tensors: {names}. Worst at "
                     f"{name}{tuple(int(i) for i in pos)}: autodiff {a_val:.6g}, finite differences {n_val:.6g}. "
                     "Look at the VJPs of the custom ops (kp.primitive ... defvjp) in the first of these layers "
                     "from the output side; kp.gradcheck(f, *args) tests one op alone", rows)
    if err > GRAD_FINE:
        return Check(check, "warning", err,
                     f"largest relative error {_num(err)} ({name}), between 1e-7 (fine) and 1e-2 (wrong): "
                     "usual where a ReLU or max-pool kink lies within the finite-difference step; "
                     "with smooth functions only, look at that layer's ops", rows)
    return Check(check, "ok", err, f"every parameter tensor's gradient agrees with finite differences in float64 "
                 f"(largest relative error {_num(err)} < 1e-7, on {len(xb)} samples)", rows)


# -- overfit one batch ---------------------------------------------------------------------------------
def _check_overfit(p, report, opts):
    m = p.copy()
    _dropout_off(m)
    xb, yb = p.batch(opts["overfit_samples"])
    p.seeded()
    losses = []
    first = None
    steps = opts["overfit_steps"]
    for _ in range(steps):
        value = _train_step(m, p.loss_fn, xb, yb)
        losses.append(value)
        first = value if first is None else first
        if not math.isfinite(value) or value <= OVERFIT_STOP * first:
            break
    with no_grad():
        final = float(_value(p.output_and_loss(m, xb, yb, training=True)[1]))
    losses.append(final)
    name, n = "overfit one batch", len(xb)
    details = [{"losses": losses, "samples": n, "steps": len(losses) - 1}]
    text = f"{_num(first)} -> {_num(final)} in {len(losses) - 1} steps"
    if not math.isfinite(final) or final > 2 * first:
        return Check(name, "problem", text, f"the loss on {n} samples diverged ({_num(first)} to {_num(final)}): "
                     "the learning rate is too high (see the learning-rate check), or the gradients are "
                     "wrong (see the gradient check)", details)
    ratio = final / first if first > 0 else 0.0
    if ratio <= OVERFIT_OK:
        return Check(name, "ok", text, f"the model fits {n} samples (loss {_num(first)} to {_num(final)} in "
                     f"{len(losses) - 1} steps): it can learn, and the loss and the labels agree", details)
    if ratio <= OVERFIT_SLOW:
        return Check(name, "warning", text, f"the loss on {n} samples fell from {_num(first)} to {_num(final)} in "
                     f"{steps} steps, not near zero: a higher learning rate, more capacity or more steps "
                     "(overfit_steps) should get there; if not, look for a bug", details)
    return Check(name, "problem", text, f"the model cannot fit {n} samples ({_num(first)} to {_num(final)} in "
                 f"{steps} steps): a bug in the model (an output that ignores its input, a wrong gradient), "
                 "the loss (does it take logits or probabilities?) or the labels, or a learning rate far off",
                 details)


# -- activations ---------------------------------------------------------------------------------------
def _activation_kind(layer):
    """'relu', 'tanh' or 'sigmoid' for a layer (or function) ending in one; None otherwise."""
    fn = getattr(layer, "_act", None) if isinstance(layer, Layer) else layer
    if fn is None:
        return None
    fn = _activations._underlying(fn)
    kinds = {id(_activations.relu): "relu", id(_activations.sigmoid): "sigmoid"}
    from . import ops

    kinds.update({id(ops.relu): "relu", id(ops.tanh): "tanh", id(ops.sigm): "sigmoid"})
    tanh = getattr(_activations, "tanh", None)
    if tanh is not None:
        kinds[id(_activations._underlying(tanh))] = "tanh"
    return kinds.get(id(fn)) or {"relu": "relu", "tanh": "tanh", "sigm": "sigmoid", "sigmoid": "sigmoid"}.get(
        getattr(fn, "__name__", None))


def _record_outputs(m):
    """Wrap the forward of every leaf layer of ``m`` (and plain functions in a Sequential) to record
    its output; returns the list the records go to, (path, label, kind, output), in call order."""
    records = []

    def wrap(fn, path, label, kind):
        def recorded(*args, **kwargs):
            out = fn(*args, **kwargs)
            records.append((path, label, kind, out))
            return out
        return recorded

    def walk(layer, path):
        children = [(k, v) for k, v in layer._children() if isinstance(v, Layer)]
        if not children:
            layer.forward = wrap(layer.forward, path, type(layer).__name__, _activation_kind(layer))
            return
        for key, child in children:
            walk(child, f"{path}.{key}" if path else key)
        seq = getattr(layer, "_layers", None)
        if isinstance(seq, list):
            for i, item in enumerate(seq):
                if not isinstance(item, Layer) and callable(item):
                    name = getattr(item, "__name__", type(item).__name__)
                    seq[i] = wrap(item, f"{path}.{i}" if path else str(i), name, _activation_kind(item))

    walk(m, "")
    return records


def _layer_stats(records):
    rows = []
    for path, label, kind, out in records:
        a = _value(out[0] if isinstance(out, tuple) else out)
        a = np.asarray(to_numpy(a))
        if a.dtype.kind != "f" or a.size == 0:
            continue
        a64 = a.astype(np.float64)
        row = {"layer": path, "type": label + (f"({kind})" if kind else ""), "shape": tuple(a.shape[1:]),
               "mean": float(a64.mean()), "std": float(a64.std()), "finite": bool(np.isfinite(a64).all())}
        if kind == "relu" and a.ndim >= 2:
            # a unit (feature or channel) is dead when it is 0 for every sample and position of the batch
            units = np.moveaxis(a64, 1, 0).reshape(a.shape[1], -1)
            row["dead"] = float(np.mean(np.all(units <= 0, axis=1)))
        elif kind == "tanh":
            row["saturated"] = float(np.mean(np.abs(a64) > 0.99))
        elif kind == "sigmoid":
            row["saturated"] = float(np.mean((a64 < 0.01) | (a64 > 0.99)))
        rows.append(row)
    return rows


def _check_activations(p, report, opts):
    m = p.copy()
    _dropout_off(m)
    records = _record_outputs(m)
    xb, yb = p.batch(max(p.batch_size, 256))  # a unit 0 for 256 samples is dead, not unlucky
    with no_grad(), thread_mode(m, True):
        m(xb)
    rows = _layer_stats(records)
    report.layers = rows
    name = "activations"
    if not rows:
        return Check(name, "skipped", None, "no layer outputs to look at")
    broken = [r for r in rows if not r["finite"]]
    if broken:
        return Check(name, "problem", "NaN/Inf", f"layer {broken[0]['layer']} ({broken[0]['type']}) outputs NaN or "
                     "Inf on the first batch: the weights or the inputs are far too large", rows)
    dead = max(rows, key=lambda r: r.get("dead", -1.0))
    sat = max(rows, key=lambda r: r.get("saturated", -1.0))
    worst_dead, worst_sat = dead.get("dead", 0.0), sat.get("saturated", 0.0)
    value = f"dead {_num(worst_dead)}, saturated {_num(worst_sat)}"
    findings, verdict = [], "ok"
    if worst_dead >= DEAD_WARN:
        verdict = "problem" if worst_dead >= DEAD_PROBLEM else "warning"
        findings.append(f"{worst_dead:.0%} of the ReLU units of layer {dead['layer']} ({dead['type']}) are dead "
                        "(0 for every sample of the batch, so they get no gradient): the layer's inputs are not "
                        "centred (all positive after a ReLU) or its biases are negative, or a too large learning "
                        "rate killed them in training. Units may come back as the layers before them change; if "
                        "not, use He initialisation, BatchNorm before the ReLU, a smaller learning rate, or "
                        "leaky_relu")
    if worst_sat >= SAT_WARN:
        v = "problem" if worst_sat >= SAT_PROBLEM else "warning"
        verdict = max(verdict, v, key=_RANK.get)
        findings.append(f"{worst_sat:.0%} of the outputs of layer {sat['layer']} ({sat['type']}) are saturated "
                        "(within 1% of ±1 or 0/1, where the derivative is near 0, so the gradient vanishes): "
                        "the weights are too large for the inputs; use Glorot initialisation, standardise "
                        "the inputs, or add BatchNorm/LayerNorm")
    if findings:
        return Check(name, verdict, value, "; ".join(findings), rows)
    return Check(name, "ok", value, f"no dead ReLU units above {DEAD_WARN:.0%} and no saturated tanh/sigmoid "
                 f"outputs above {SAT_WARN:.0%} in {len(rows)} layer outputs (means and stds in the layer table)",
                 rows)


# -- gradient norms ------------------------------------------------------------------------------------
def _check_gradient_norms(p, report, opts):
    m = p.copy()
    _dropout_off(m)
    xb, yb = p.batch()
    p.seeded()
    m.zero_grad()
    _, loss = p.output_and_loss(m, xb, yb)
    loss.backward()
    rows = []
    trained = {id(q) for q in m.optimizer.params.values()} - {id(q) for q in getattr(m, "_untrained", ())}
    for name, param in m.params.items():
        if id(param) not in trained:
            continue
        g = None if param.grad is None else np.asarray(to_numpy(_value(param.grad)), np.float64)
        gnorm = 0.0 if g is None else float(np.linalg.norm(g))
        wnorm = float(np.linalg.norm(np.asarray(to_numpy(param.value), np.float64)))
        rows.append({"parameter": name, "layer": _layer_label(m, name), "grad_norm": gnorm,
                     "grad_weight": gnorm / wnorm if wnorm else None, "ndim": param.ndim})
    _merge(report.parameters, rows, "parameter")
    name = "gradient norms"
    if not rows:
        return Check(name, "skipped", None, "no trained parameters")
    bad = [r for r in rows if not math.isfinite(r["grad_norm"])]
    if bad:
        return Check(name, "problem", "NaN/Inf", f"the gradient of {bad[0]['parameter']} is NaN or Inf: look for log(0), "
                     "division by 0 or overflow (kp.detect_anomaly() names the op)", rows)
    zero = [r for r in rows if r["grad_norm"] == 0.0]
    if zero:
        names = ", ".join(r["parameter"] for r in zero[:5])
        return Check(name, "problem", f"{len(zero)} zero", f"{len(zero)} parameter tensor(s) get a zero gradient: "
                     f"{names}. They never change: dead ReLU units, saturated activations, or a parameter the "
                     "loss does not use", rows)
    weights = [r for r in rows if r["ndim"] >= 2] or rows
    big, small = max(weights, key=lambda r: r["grad_norm"]), min(weights, key=lambda r: r["grad_norm"])
    spread = big["grad_norm"] / small["grad_norm"]
    value = f"{_num(small['grad_norm'])} .. {_num(big['grad_norm'])}"
    if spread > 1e4:
        verdict = "problem" if spread > 1e6 else "warning"
        return Check(name, verdict, value, f"the weight gradients span {_num(spread)}x, from {small['parameter']} "
                     f"({_num(small['grad_norm'])}) to {big['parameter']} ({_num(big['grad_norm'])}): gradients vanish "
                     "or explode through the depth; use ReLU with He initialisation, normalisation layers, residual "
                     "connections, or gradient clipping (clip_norm) for exploding ones", rows)
    return Check(name, "ok", value, f"every trained parameter gets a gradient; the weight gradients' norms stay "
                 f"within {_num(spread)}x of each other", rows)


# -- update / weight ratio -----------------------------------------------------------------------------
def _check_update_ratio(p, report, opts, steps=3):
    m = p.copy()
    xb, yb = p.batch()
    trained = [(n, q) for n, q in m.params.items() if id(q) in {id(o) for o in m.optimizer.params.values()}]
    before = {n: np.array(to_numpy(q.value), np.float64) for n, q in trained}
    p.seeded()
    ratios = {n: [] for n, _ in trained}
    for _ in range(steps):
        prev = {n: np.array(to_numpy(q.value), np.float64) for n, q in trained}
        value = _train_step(m, p.loss_fn, xb, yb)
        if not math.isfinite(value):
            break
        for n, q in trained:
            w = np.linalg.norm(prev[n])
            if w:
                ratios[n].append(float(np.linalg.norm(np.asarray(to_numpy(q.value), np.float64) - prev[n]) / w))
    rows = [{"parameter": n, "update_weight": float(np.mean(r)) if r else None,
             "ndim": before[n].ndim} for n, r in ratios.items()]
    _merge(report.parameters, rows, "parameter")
    opt = m.optimizer
    name = "update/weight ratio"
    measured = [r for r in rows if r["update_weight"] is not None]
    weights = [r for r in measured if r["ndim"] >= 2] or measured
    if not weights:
        return Check(name, "skipped", None, "no parameter with non-zero weights was updated")
    top = max(weights, key=lambda r: r["update_weight"])
    med = float(np.median([r["update_weight"] for r in weights]))
    value = f"median {_num(med)}, max {_num(top['update_weight'])}"
    lr = f"{type(opt).__name__}(lr={_num(opt.lr)})"
    if top["update_weight"] > UPDATE_HIGH:
        verdict = "problem" if top["update_weight"] > UPDATE_TOO_HIGH else "warning"
        factor = top["update_weight"] / 1e-3
        return Check(name, verdict, value, f"one step of {lr} changes {top['parameter']} by "
                     f"{_num(top['update_weight'])} of its norm, about {factor:.0f}x the healthy 1e-3: the learning "
                     f"rate is too high; try about {_num(opt.lr * 1e-3 / med if med else opt.lr / factor)} "
                     "(see the learning-rate range test)", weights)
    if med < UPDATE_LOW:
        return Check(name, "warning", value, f"one step of {lr} changes the weights by {_num(med)} of their norm "
                     "(median), far below the healthy 1e-3: the learning rate is too low, or the gradients vanish",
                     weights)
    return Check(name, "ok", value, f"one step of {lr} changes the weights by {_num(med)} of their norm (median; "
                 "about 1e-3 is healthy, Adam's first steps sit higher)", weights)


# -- learning-rate range test --------------------------------------------------------------------------
def lr_range_test(m, loss_fn, batches, lr_min=1e-7, lr_max=10.0, steps=100, smoothing=0.9, stop_factor=4.0):
    """Train ``m`` with a learning rate growing exponentially from ``lr_min`` to ``lr_max`` over ``steps``
    steps (one batch from ``batches``, a callable ``step -> (x, y)``, each), as in Smith's range test.

    Returns ``{"lr": [...], "loss": [...] (smoothed), "raw_loss": [...], "suggested": lr, "min_lr": lr}``;
    the test stops early when the smoothed loss exceeds ``stop_factor`` times its minimum. The suggested
    learning rate is a tenth of the one at the smoothed loss's minimum.
    """
    opt = m.optimizer
    factor = (lr_max / lr_min) ** (1.0 / max(steps - 1, 1))
    lrs, raw, smooth = [], [], []
    avg, best = 0.0, math.inf
    for i in range(steps):
        lr = lr_min * factor ** i
        opt.lr = lr
        value = _train_step(m, loss_fn, *batches(i))
        if not math.isfinite(value):
            break
        avg = smoothing * avg + (1 - smoothing) * value
        s = avg / (1 - smoothing ** (i + 1))  # bias-corrected, as fastai does
        lrs.append(lr)
        raw.append(value)
        smooth.append(s)
        best = min(best, s)
        if s > stop_factor * best:
            break
    if not smooth:
        return {"lr": [], "loss": [], "raw_loss": [], "suggested": None, "min_lr": None}
    at = int(np.argmin(smooth))
    return {"lr": lrs, "loss": smooth, "raw_loss": raw, "suggested": lrs[at] / 10, "min_lr": lrs[at]}


def _check_lr_range(p, report, opts):
    from .model import _needs_closure

    name = "learning rate"
    m = p.copy()
    opt = m.optimizer
    chosen = p.base.optimizer.lr
    if _needs_closure(opt):
        return Check(name, "skipped", None, f"{type(opt).__name__} chooses its own steps (line search)")
    n = len(p.x)
    order = np.random.default_rng(p.seed).permutation(n)
    bs = p.batch_size

    def batches(i):
        start = (i * bs) % n
        idx = order[np.arange(start, start + bs) % n]
        return p.x[idx], p.y[idx]

    p.seeded()
    result = lr_range_test(m, p.loss_fn, batches, opts["lr_min"], opts["lr_max"], opts["lr_steps"])
    result["chosen"] = chosen
    report.lr_range = result
    sugg = result["suggested"]
    if sugg is None:
        return Check(name, "problem", None, "the loss was NaN/Inf from the first step of the range test", [result])
    drop = result["loss"][0] - min(result["loss"])
    value = f"{_num(chosen)} (suggested {_num(sugg)})"
    if drop <= 0.05 * abs(result["loss"][0]):
        return Check(name, "warning", value, f"the loss hardly fell at any learning rate from {_num(opts['lr_min'])} to "
                     f"{_num(result['lr'][-1])}: the model may not learn at all (see the overfit check)", [result])
    ratio = chosen / sugg
    head = (f"the range test ({len(result['lr'])} steps, lr {_num(result['lr'][0])} to {_num(result['lr'][-1])}) "
            f"has its lowest loss at lr {_num(result['min_lr'])} and suggests {_num(sugg)}")
    if ratio > 10:
        return Check(name, "problem", value, f"{head}; the optimizer's lr {_num(chosen)} is {ratio:.0f}x that: "
                     f"too high, training will diverge or bounce; use about {_num(sugg)}", [result])
    if ratio > 3:
        return Check(name, "warning", value, f"{head}; the optimizer's lr {_num(chosen)} is {ratio:.0f}x that, on "
                     f"the high side; try {_num(sugg)}", [result])
    if ratio < 1 / 30:
        return Check(name, "warning", value, f"{head}; the optimizer's lr {_num(chosen)} is {1 / ratio:.0f}x lower: "
                     f"too low, training will be slow; try {_num(sugg)}", [result])
    return Check(name, "ok", value, f"{head}; the optimizer's lr {_num(chosen)} is within the good range", [result])


# -- printing ------------------------------------------------------------------------------------------
def format_report(report, width=100):
    """The report as text: the checks with verdicts, then the per-layer and per-parameter tables."""
    import textwrap

    lines = [f"Training doctor: {report.title}", ""]
    rows = [(c.name, c.verdict.upper() if c.verdict == "problem" else c.verdict, c.value_text()) for c in report.checks]
    w0 = max([len("check")] + [len(r[0]) for r in rows])
    w1 = max([len("verdict")] + [len(r[1]) for r in rows])
    lines.append(f"{'check':<{w0}}  {'verdict':<{w1}}  value")
    lines.append("-" * min(width, w0 + w1 + 4 + max([5] + [len(r[2]) for r in rows])))
    for (name, verdict, value), c in zip(rows, report.checks):
        lines.append(f"{name:<{w0}}  {verdict:<{w1}}  {value}")
        lines.extend(textwrap.wrap(c.message, width, initial_indent="    ", subsequent_indent="    "))
    if report.layers:
        lines += ["", "activations on one batch (training mode, dropout off):"]
        table = [("layer", "output", "mean", "std", "dead ReLU", "saturated")]
        for r in report.layers:
            table.append((f"{r['layer']} {r['type']}", str(r["shape"]), _num(r["mean"]), _num(r["std"]),
                          _pct(r.get("dead")), _pct(r.get("saturated"))))
        lines += _columns(table)
    if report.parameters:
        lines += ["", "parameters:"]
        table = [("parameter", "gradcheck err", "|grad|", "|grad|/|w|", "update/weight")]
        for r in report.parameters:
            table.append((r["parameter"], _num(r.get("rel_error")), _num(r.get("grad_norm")),
                          _num(r.get("grad_weight")), _num(r.get("update_weight"))))
        lines += _columns(table)
    lines += ["", f"verdict: {report.verdict} ({len(report.problems)} problem(s), {len(report.warnings)} "
              f"warning(s)); {report.seconds:.1f} s"]
    return "\n".join(lines)


def _columns(table):
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    out = []
    for k, row in enumerate(table):
        out.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def _num(v):
    if v is None:
        return "-"
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e4:
        return f"{v:.4g}"
    return f"{v:.2e}"


def _pct(v):
    return "-" if v is None else f"{v:.0%}"


def _value(x):
    return x.value if isinstance(x, Tensor) else x


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def _merge(rows, new, key):
    """Add the fields of ``new`` to the rows of ``rows`` with the same ``key`` (appending new rows)."""
    index = {r[key]: r for r in rows}
    for r in new:
        if r[key] in index:
            index[r[key]].update({k: v for k, v in r.items() if k not in ("ndim",)})
        else:
            row = {k: v for k, v in r.items() if k != "ndim"}
            rows.append(row)
            index[r[key]] = row


def _layer_label(model, param_name):
    """'Dense' for parameter '1.w' of a Sequential: the type of the layer holding the parameter."""
    layer = model
    for part in param_name.split(".")[:-1]:
        children = dict(layer._children())
        nxt = children.get(part)
        if not isinstance(nxt, Layer):
            break
        layer = nxt
    return type(layer).__name__


__all__ = ["doctor", "Report", "Check", "CHECKS", "lr_range_test", "format_report"]
