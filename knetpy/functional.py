"""Derivatives as higher-order functions: Knet's ``grad``, JAX's ``value_and_grad``, ``jacobian``,
``hessian`` and ``hvp``.

They nest freely: a gradient computed inside another differentiation (``grad`` of a function that calls
``grad``, ``jacobian``, ...) stays differentiable with respect to every tensor it depends on, including
variables the inner function closes over.
"""

from __future__ import annotations

import functools
import threading

from . import autograd as _autograd
from .autograd import Param, Tensor, _GradMode, backprop, is_grad_enabled
from .backend import array_namespace, as_array
from .ops.shape import identity, reshape, stack
from .tree import flatten, unflatten

# Per thread: how many differentiations (grad, jacobian, ...) are running their function right now.
# Inside one, an inner gradient must record its own backward pass so the outer one can differentiate it.
_state = threading.local()


def _depth():
    return getattr(_state, "depth", 0)


class _Differentiating:
    def __enter__(self):
        _state.depth = _depth() + 1

    def __exit__(self, *exc):
        _state.depth -= 1


def _prepare(name, args, argnums, nums):
    """Replace ``args[n]`` (n in ``nums``) by fresh tensors to differentiate against.

    Returns the new args, per argument ``(treedef, leaves, tensors)``, all the tensors, and whether an
    argument is itself a tensor on an outer tape (then the derivative must be recorded).
    """
    args = list(args)
    for n in nums:
        if n >= len(args):
            raise TypeError(
                f"{name}: argnums={argnums} but the function was called with {len(args)} arguments"
            )
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
                if _autograd._trace_threads and _autograd._state.tracer is not None:
                    # a compiled step reads the tensor's array from it on each replay, not from this call's
                    # fresh tensor below (a new object each call, which replay could not tell from data)
                    _autograd._state.tracer.read(leaf)
                leaf = leaf.value
            v = as_array(leaf)
            if v.dtype.kind not in "fc":
                raise TypeError(
                    f"{name}: argument {n} has a leaf of dtype {v.dtype}; gradients need floating arrays"
                )
            new.append(Tensor(v, requires_grad=True))
        structures.append((treedef, leaves, new))
        inputs.extend(new)
        args[n] = unflatten(treedef, new)
    return args, structures, inputs, nested


def _retire(inputs):
    """After a differentiation, its fresh input leaves are constants.

    So an outer differentiation neither mistakes them for its own variables (they look like tensors of
    an outer tape) nor propagates into them.
    """
    for t in inputs:
        if t._prim is None:
            t.requires_grad = False


def _reaches_outer(roots, inputs):
    """Whether the graph of ``roots`` reaches a tensor of an outer differentiation.

    That is a leaf requiring grad that is neither one of ``inputs`` nor a Param (Params are the user's
    parameters: gradients with respect to them are taken afresh, as ``backward()`` does).
    """
    stop = set(inputs)
    seen = set()
    stack_ = [r for r in roots if isinstance(r, Tensor) and r.requires_grad]
    while stack_:
        t = stack_.pop()
        if t in seen or t in stop:
            continue
        seen.add(t)
        if t._prim is None:
            if not isinstance(t, Param):
                return True
            continue
        for a in t._args or ():  # (None for a freed node: backprop reports it)
            if isinstance(a, Tensor) and a.requires_grad:
                stack_.append(a)
    return False


def _split_aux(name, out, has_aux):
    if not has_aux:
        return out, None
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"{name}(has_aux=True): the function must return a pair (value, aux)")
    return out


def _result(g, like, nested):
    """A gradient as handed to the user: zeros where unreached, a tensor only where it is differentiable."""
    if g is None:
        return array_namespace(like.value).zeros_like(like.value)
    if isinstance(g, Tensor) and not (nested and g.requires_grad):
        return g.value
    return g


def value_and_grad(fun, argnums=0, has_aux=False):
    """Return a function computing ``(fun(*args), d fun / d args[argnums])``.

    The argument(s) may be arrays or nested lists / tuples / dicts of arrays; each gradient has the
    structure and the array type of its argument. ``fun`` must return a scalar (with ``has_aux``:
    a pair ``(scalar, aux)``, and the result is ``((value, aux), grads)``).
    A gradient of a function that does not depend on an argument is zeros of the argument's shape.

    Nested calls work: ``grad(grad(f))`` differentiates the gradient itself, and a gradient taken
    inside another differentiation stays differentiable with respect to the variables it closes over:
    ``kp.grad(lambda w: kp.grad(lambda x: w * x * x)(3.0))(1.5) == 6.0``. A gradient that depends on
    such a variable (or on any tensor created with ``requires_grad=True``) is a tensor you can
    differentiate again or call ``backward()`` on; others are plain arrays. Params reached through a
    closure are not differentiated through: as with ``backward()``, their gradients are taken afresh.
    """
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)

    @functools.wraps(fun)
    def wrapped(*args, **kwargs):
        recording = is_grad_enabled()
        args, structures, inputs, nested = _prepare("grad", args, argnums, nums)
        with _GradMode(True), _Differentiating():
            out = fun(*args, **kwargs)
        out, aux = _split_aux("grad", out, has_aux)
        if isinstance(out, Tensor) and out.requires_grad:
            if out.value.size != 1:
                raise TypeError(f"grad: the function must return a scalar, got an array of shape {out.shape}")
            # A variable of an outer differentiation (or a tensor requiring grad) reached through a
            # closure: record this backward pass too, so the gradient stays differentiable.
            if recording and not nested:
                nested = _reaches_outer([out], inputs)
            inside = _depth() > 0
            seed = array_namespace(out.value).ones_like(out.value)
            # Inside an outer differentiation keep the graph: it may share nodes with the outer one.
            found = backprop(out, seed, inputs, create_graph=nested, retain_graph=nested or inside)
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
                g = _result(g, new[j], nested)
                if isinstance(leaves[j], float) and not isinstance(g, Tensor):
                    g = float(g)
                gl[j] = g
            grads.append(unflatten(treedef, gl))
        _retire(inputs)
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


def jacobian(fun, argnums=0, has_aux=False):
    """Return a function computing the Jacobian of ``fun`` with respect to ``args[argnums]``.

    For an array output and an array argument the Jacobian has shape ``out.shape + arg.shape``
    (``J[i..., j...] = d out[i...] / d arg[j...]``), as ``torch.autograd.functional.jacobian`` and
    ``jax.jacrev``. Arguments may be pytrees (each leaf gets its own block, in the argument's
    structure), the output too (the result has the output's structure, each leaf holding the argument
    blocks); a tuple ``argnums`` gives a tuple of blocks. With ``has_aux`` the function returns
    ``(out, aux)`` and the result is ``(jacobian, aux)``.

    Computed in reverse mode, one backward pass per output element. Inside another differentiation
    the blocks are tensors, differentiable in turn (``hessian`` is ``jacobian`` of ``grad``).

    >>> kp.jacobian(lambda x: kp.tanh(A @ x))(x)    # shape (m, n) for A of shape (m, n)
    """
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)

    @functools.wraps(fun)
    def wrapped(*args, **kwargs):
        recording = is_grad_enabled()
        args, structures, inputs, nested = _prepare("jacobian", args, argnums, nums)
        with _GradMode(True), _Differentiating():
            out = fun(*args, **kwargs)
        out, aux = _split_aux("jacobian", out, has_aux)
        outs, out_def = flatten(out)
        for o in outs:
            if not (isinstance(o, (Tensor, int, float)) or hasattr(o, "shape")):
                raise TypeError(f"jacobian: the function must return arrays, got {type(o).__name__}")
        if recording and not nested:
            nested = _reaches_outer(outs, inputs)
        blocks = [_jacobian_blocks(o, inputs, nested) for o in outs]
        _retire(inputs)
        result = []
        for block in blocks:  # one per output leaf: the arguments' structures around its blocks
            per_arg, pos = [], 0
            for treedef, _, new in structures:
                per_arg.append(unflatten(treedef, block[pos : pos + len(new)]))
                pos += len(new)
            result.append(per_arg[0] if single else tuple(per_arg))
        jac = unflatten(out_def, result)
        return (jac, aux) if has_aux else jac

    return wrapped


def _jacobian_blocks(o, inputs, nested):
    """``d o / d x`` for each x of ``inputs``, shaped ``o.shape + x.shape``."""
    ov = o.value if isinstance(o, Tensor) else as_array(o)
    rows = []  # rows[k][j]: gradient of element k of o with respect to inputs[j]
    if isinstance(o, Tensor) and o.requires_grad:
        xp = array_namespace(ov)
        for k in range(ov.size):
            seed = xp.zeros(ov.size, dtype=ov.dtype)
            seed[k] = 1
            rows.append(backprop(o, seed.reshape(ov.shape), inputs, create_graph=nested, retain_graph=True))
    blocks = []
    for j, x in enumerate(inputs):
        xv = x.value
        xp = array_namespace(xv)
        shape = ov.shape + xv.shape
        if not rows:  # the output does not depend on the arguments
            blocks.append(xp.zeros(shape, dtype=xp.result_type(ov.dtype, xv.dtype)))
            continue
        col = [_result(r[j], x, nested) for r in rows]
        if any(isinstance(g, Tensor) for g in col):
            blocks.append(reshape(stack(col), shape))
        else:
            blocks.append(xp.stack(col).reshape(shape))
    return blocks


def hessian(fun, argnums=0, has_aux=False):
    """Return a function computing the Hessian of scalar ``fun`` with respect to ``args[argnums]``.

    For an array argument the Hessian has shape ``arg.shape + arg.shape``; a tuple ``argnums`` gives
    the blocks ``H[i][j] = d2 fun / d args[i] d args[j]`` (as ``jax.hessian``). ``jacobian(grad(fun))``.
    """
    return jacobian(grad(fun, argnums, has_aux), argnums, has_aux)


def hvp(fun, primals, tangents):
    """Hessian-vector product of scalar ``fun``: returns ``(fun(*primals), H @ tangents)``.

    As ``torch.autograd.functional.hvp``: ``primals`` is the argument, or a tuple of arguments (all
    differentiated; each may be a pytree); ``tangents`` has the same structure and shapes, and so has
    the product. Costs two backward passes, without forming the Hessian. Works inside another
    differentiation too (then the results are tensors).

    >>> value, hv = kp.hvp(f, x, v)                # hv = (d2f/dx2) @ v, shape of x
    """
    single = not isinstance(primals, tuple)
    if single:
        primals, tangents = (primals,), (tangents,)
    if not isinstance(tangents, tuple) or len(tangents) != len(primals):
        raise TypeError(f"hvp: tangents must match primals: {len(primals)} arguments")
    p_leaves = flatten(primals)[0]
    t_leaves = flatten(tangents)[0]
    if len(p_leaves) != len(t_leaves):
        raise ValueError(f"hvp: primals have {len(p_leaves)} arrays but tangents have {len(t_leaves)}")
    for i, (p, t) in enumerate(zip(p_leaves, t_leaves)):
        ps, ts = _shape_of(p), _shape_of(t)
        if ps != ts:
            raise ValueError(f"hvp: tangent {i} has shape {ts} but its primal has shape {ps}")
    nums = tuple(range(len(primals)))
    outer = is_grad_enabled() and _depth() > 0
    value_grad = value_and_grad(fun, nums)

    def directional(*xs):  # <grad fun(xs), tangents>, whose gradient is H @ tangents
        value, gs = value_grad(*xs)
        total = 0.0
        for g, t in zip(flatten(gs)[0], t_leaves):
            total = total + (g * t).sum()  # (a tangent may itself depend on an outer variable)
        return total, value

    (_, value), hv = value_and_grad(directional, nums, has_aux=True)(*primals)
    if isinstance(value, Tensor) and not outer:
        value = value.value
    return value, (hv[0] if single else hv)


def _shape_of(a):
    return tuple(a.shape) if hasattr(a, "shape") else ()
