"""Gradients as higher-order functions (Knet's ``grad``, JAX's ``value_and_grad``)."""

from __future__ import annotations

import functools

from .autograd import Param, Tensor, _GradMode, backprop, is_grad_enabled
from .backend import array_namespace, as_array
from .ops.shape import identity
from .tree import flatten, unflatten


def value_and_grad(fun, argnums=0, has_aux=False):
    """Return a function computing ``(fun(*args), d fun / d args[argnums])``.

    The argument(s) may be arrays or nested lists / tuples / dicts of arrays; each gradient has the
    structure and the array type of its argument. ``fun`` must return a scalar (with ``has_aux``:
    a pair ``(scalar, aux)``, and the result is ``((value, aux), grads)``).
    A gradient of a function that does not depend on an argument is zeros of the argument's shape.
    Nested calls work: ``grad(grad(f))`` differentiates the gradient itself.
    """
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)

    @functools.wraps(fun)
    def wrapped(*args, **kwargs):
        args = list(args)
        for n in nums:
            if n >= len(args):
                raise TypeError(f"grad: argnums={argnums} but the function was called with {len(args)} arguments")
        # Inside an outer differentiation an argument is already a tensor on the outer tape: then
        # the inner pass records its own backward (create_graph) so the outer one can differentiate it.
        nested = False
        recording = is_grad_enabled()
        structures = []
        inputs = []
        for n in nums:
            leaves, treedef = flatten(args[n])
            new = []
            for leaf in leaves:
                if isinstance(leaf, Tensor):
                    # A Param is the user's parameter, differentiated here afresh; any other tensor
                    # requiring grad belongs to an outer differentiation in progress.
                    if leaf.requires_grad and recording and not isinstance(leaf, Param):
                        nested = True
                        new.append(identity(leaf))
                        continue
                    leaf = leaf.value
                v = as_array(leaf)
                if v.dtype.kind not in "fc":
                    raise TypeError(
                        f"grad: argument {n} has a leaf of dtype {v.dtype}; gradients need floating arrays"
                    )
                new.append(Tensor(v, requires_grad=True))
            structures.append((treedef, leaves, new))
            inputs.extend(new)
            args[n] = unflatten(treedef, new)
        with _GradMode(True):
            out = fun(*args, **kwargs)
        aux = None
        if has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError("grad(has_aux=True): the function must return a pair (value, aux)")
            out, aux = out
        if isinstance(out, Tensor) and out.requires_grad:
            if out.value.size != 1:
                raise TypeError(f"grad: the function must return a scalar, got an array of shape {out.shape}")
            seed = array_namespace(out.value).ones_like(out.value)
            found = backprop(out, seed, inputs, create_graph=nested, retain_graph=nested)
        else:
            if not (hasattr(out, "shape") or isinstance(out, (int, float))):
                raise TypeError(f"grad: the function must return a scalar, got {type(out).__name__}")
            shape = out.shape if hasattr(out, "shape") else ()
            if shape not in ((), (1,)):
                raise TypeError(f"grad: the function must return a scalar, got an array of shape {shape}")
            found = [None] * len(inputs)
        grads = []
        pos = 0
        for treedef, leaves, new in structures:
            gl = found[pos : pos + len(new)]
            pos += len(new)
            for j, g in enumerate(gl):
                if g is None:
                    g = array_namespace(new[j].value).zeros_like(new[j].value)
                elif not nested and isinstance(g, Tensor):
                    g = g.value
                if not nested and isinstance(leaves[j], float):
                    g = float(g)
                gl[j] = g
            grads.append(unflatten(treedef, gl))
        grads = grads[0] if single else tuple(grads)
        value = out if nested or not isinstance(out, Tensor) else out.value
        return ((value, aux) if has_aux else value), grads

    return wrapped


def grad(fun, argnums=0, has_aux=False):
    """Return a function computing the gradient of scalar ``fun`` with respect to ``args[argnums]``.

    >>> dloss = kp.grad(loss)          # same arguments as loss
    >>> dw = dloss(w, x, y)            # same structure as w
    """
    vg = value_and_grad(fun, argnums, has_aux)

    @functools.wraps(fun)
    def wrapped(*args, **kwargs):
        value, grads = vg(*args, **kwargs)
        if has_aux:
            return grads, value[1]
        return grads

    return wrapped
