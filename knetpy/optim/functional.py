"""Knet's functional style: one optimizer state per array, and ``update`` over whole pytrees.

>>> w = {"W": W, "b": b}                            # raw arrays
>>> opts = kp.optim.optimizers(w, kp.optim.Adam, lr=1e-3)
>>> for x, y in data:
...     g = kp.grad(loss)(w, x, y)                   # same structure as w
...     kp.optim.update(w, g, opts)                  # arrays updated in place

The arithmetic is the optimizers' own (the object style runs the same code), so for the same
gradients both styles give the same parameters. Gradient clipping by norm takes the global norm
over all arrays updated in one call, as ``opt.step()`` does over its parameters.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor, mark_modified, run_in_place
from ..backend import is_array, weak_scalar_array
from ..tree import flatten, unflatten
from .base import ARRAY_KEY, Optimizer, prepare_gradients
from .lbfgs import LBFGS
from .registry import resolve_class
from .sgd import all_plain


def _leaf_paths(treedef, n):
    """Readable positions of the leaves ("['W']", "[1][0]") for error messages."""
    paths = []

    def walk(td, prefix):
        if td is None:
            paths.append(prefix or "<root>")
            return
        kind, keys, children, _ = td
        labels = keys if kind is dict else range(len(children))
        for label, child in zip(labels, children):
            walk(child, f"{prefix}[{label!r}]")

    walk(treedef, "")
    return paths if len(paths) == n else [f"leaf {i}" for i in range(n)]


def optimizers(params, optimizer, **hyper):
    """A pytree like ``params`` holding a fresh ``optimizer(**hyper)`` for every array.

    ``optimizer`` is a class (``kp.optim.Adam``) or a name (``"adam"``). Each instance keeps the state
    of its one array (in ``opt.state["array"]``), created at the first :func:`update`.
    """
    cls = resolve_class(optimizer)
    if issubclass(cls, LBFGS):
        raise TypeError(
            "optimizers: LBFGS needs a closure over all parameters; use kp.optim.LBFGS(params).step(closure)"
        )
    leaves, treedef = flatten(params)
    paths = _leaf_paths(treedef, len(leaves))
    for path, leaf in zip(paths, leaves):
        value = leaf.value if isinstance(leaf, Tensor) else leaf
        if not is_array(value) or value.dtype.kind != "f":
            what = value.dtype if is_array(value) else type(value).__name__
            raise TypeError(f"optimizers: parameter {path} must be a floating array, got {what}")
    return unflatten(treedef, [cls(**hyper) for _ in leaves])


def update(params, grads, opts):
    """Update every array of ``params`` in place from ``grads`` with its optimizer in ``opts``.

    The three pytrees share one structure (``opts`` from :func:`optimizers`). Leaves may be raw
    arrays or tensors (their ``.value`` is updated); a None gradient leaves its array unchanged.
    Returns ``params``.
    """
    p_leaves, treedef = flatten(params)
    g_leaves, _ = flatten(grads)
    o_leaves, _ = flatten(opts)
    if not (len(p_leaves) == len(g_leaves) == len(o_leaves)):
        raise ValueError(
            f"update: params, grads and opts must have the same structure; they have {len(p_leaves)}, "
            f"{len(g_leaves)} and {len(o_leaves)} arrays (build opts with kp.optim.optimizers(params, ...))"
        )
    paths = _leaf_paths(treedef, len(p_leaves))
    names, values, gradients, owners, updated = [], [], [], [], []
    seen = set()
    for path, p, g, opt in zip(paths, p_leaves, g_leaves, o_leaves):
        if not isinstance(opt, Optimizer):
            raise TypeError(f"update: opts{path} is a {type(opt).__name__}, not an optimizer")
        if isinstance(opt, LBFGS):
            raise TypeError("update: LBFGS needs a closure; use kp.optim.LBFGS(params).step(closure)")
        if id(opt) in seen:
            raise ValueError(
                f"update: the optimizer at opts{path} also serves another array; every array needs its "
                "own state (build opts with kp.optim.optimizers(params, ...))"
            )
        seen.add(id(opt))
        if g is None:
            continue
        value = p.value if isinstance(p, Tensor) else p
        if not is_array(value) or value.dtype.kind != "f":
            what = value.dtype if is_array(value) else type(value).__name__
            raise TypeError(f"update: params{path} must be a floating array (updated in place), got {what}")
        if not getattr(value.flags, "writeable", True):
            raise ValueError(f"update: params{path} is a read-only array and cannot be updated in place")
        names.append(path)
        values.append(value)
        gradients.append(g.value if isinstance(g, Tensor) else g)
        owners.append(opt)
        updated.append(p)
    for i, g in enumerate(gradients):
        if not is_array(g):
            raise TypeError(f"update: grads{names[i]} must be an array, got {type(g).__name__}")
    # one call that a compiled step (kp.compile) records and makes again on every replay, reading the
    # optimizers' hyper-parameters (a changed or scheduled learning rate) each time
    run_in_place(_apply, updated, names, gradients, owners)
    return params


def _apply(targets, names, gradients, owners):
    """The update of ``targets`` (tensors or arrays) from checked gradients: the optimizers' own arithmetic."""
    if _plain_arrays(targets, gradients) and _count_plain_steps(owners):
        # Plain SGD on arrays after its first step (the common case in a loop), without the general
        # pipeline's bookkeeping: the same `v -= lr * g` as SGD.update_rule.
        for t, g, opt in zip(targets, gradients, owners):
            t -= opt._lr * g
        return
    values = [t.value if isinstance(t, Tensor) else t for t in targets]
    gradients = prepare_gradients(names, values, gradients, owners)
    for value, g, opt in zip(values, gradients, owners):
        opt._update_array(ARRAY_KEY, value, g)
        opt.iterations += 1
    mark_modified(*targets)  # the tensors among them: graphs recorded before saw the old values


def _inline(targets, args, expr, scratch):
    """A compiled step's source for :func:`_apply` on plain SGD and arrays: each ``v -= lr * g`` written
    into the step, the rates read from the optimizers and the step counts kept by one call on every
    replay, which answers None, and ``_apply`` runs instead, should an optimizer no longer be plain SGD.
    ``scratch(a)`` names a zeroed array like ``a`` that the replay owns (for ``lr * g``)."""
    names, gradients, owners = args
    if not (_plain_arrays(targets, gradients) and all_plain(owners)):
        return None
    rates = expr(_PlainRates(targets))
    subtract, multiply = expr(np.subtract), expr(np.multiply)
    updates = [f"    {subtract_line(expr(t), t, f'{multiply}({expr(g)}, r[{i}], {scratch(g)})', subtract)}"
               for i, (t, g) in enumerate(zip(targets, gradients))]
    return lambda call: [f"r = {rates}({expr(tuple(owners))})", "if r is not None:", *updates, "else:",
                         f"    {call}"]


def subtract_line(name, value, step, subtract):
    """A compiled step's statement for ``value -= step`` (``name`` and ``step`` replay expressions, ``value``
    the traced array, ``subtract`` the name of np.subtract): the in-place ufunc; for a one-element float32
    or float64 array (a bias of one unit) NumPy's scalar subtraction, the same IEEE operation, since NumPy's
    in-place ufunc copies a one-element operand first."""
    if value.size == 1 and value.dtype in _SCALAR_UPDATE:
        at = f"[{(0,) * value.ndim!r}]"
        return f"{name}{at} = {name}{at} - {step}{at}"
    return f"{subtract}({name}, {step}, {name})"


_SCALAR_UPDATE = (np.dtype(np.float32), np.dtype(np.float64))  # dtypes whose scalar arithmetic is the ufunc's


class _PlainRates(list):
    """Called on each replay of a compiled plain-SGD update with the optimizers: their rates as 0-d arrays
    of their arrays' dtypes (``lr * g`` casts lr so: the same bits), one more step counted on each, or None
    (nothing counted) if one is no longer plain SGD or has not made its first update.

    A list of the rates last given, with the floats they came from: a rate is made again only when an
    optimizer's ``_lr`` is another object (a new learning rate, a schedule's step). Two traces' lists are
    equal, as a compiled step's constants must be."""

    def __init__(self, targets):
        super().__init__([None] * len(targets))
        self.dtypes = tuple(t.dtype for t in targets)
        self.rates = [None] * len(targets)

    def __call__(self, owners):
        if not _count_plain_steps(owners):
            return None
        rates = self.rates
        for i, opt in enumerate(owners):
            lr = opt._lr
            if self[i] is not lr:
                rate = weak_scalar_array(lr, self.dtypes[i])
                rates[i] = lr if rate is None else rate
                self[i] = lr
        return rates


def _plain_arrays(targets, gradients):
    """Whether every target is a NumPy array with a gradient of its own shape and dtype."""
    return all(type(t) is np.ndarray and type(g) is np.ndarray and g.shape == t.shape and g.dtype == t.dtype
               for t, g in zip(targets, gradients))


def _count_plain_steps(owners):
    """Count one more step on each optimizer if every one is plain SGD past its first update (else False)."""
    if not all_plain(owners):
        return False
    for opt in owners:
        if ARRAY_KEY not in opt.state:
            return False
    for opt in owners:
        opt.state[ARRAY_KEY]["step"] += 1
        opt.iterations += 1
    return True


_apply.inline = _inline
