"""The reverse-mode engine: tensors, primitives, the tape and backpropagation.

A :class:`Tensor` wraps an ndarray. When an op is applied to a tensor that requires a gradient, the
result remembers the op and its arguments; that chain of results *is* the tape. ``backward`` walks it
from the output to the inputs, calling each op's vector-Jacobian product (VJP).

Each primitive is defined once, as a forward function on raw arrays plus one VJP per argument::

    @primitive
    def exp(x):
        return np.exp(x)

    exp.defvjp(lambda g, ans, x: g * ans)

A VJP receives the output gradient ``g``, the op's output ``ans`` and its arguments. In an ordinary
backward pass they are raw arrays, so the VJP is plain array arithmetic. With ``create_graph=True``
they are tensors, so the same VJP code records a new graph: that is how gradients of gradients work.
"""

from __future__ import annotations

import numpy as np

from .backend import array_namespace, as_array

_grad_enabled = True
_anomaly = False  # detect_anomaly(): check every op's output and gradient for NaN/Inf
_EMPTY: dict = {}


class GraphFreedError(RuntimeError):
    pass


class Tensor:
    """An ndarray that can take part in automatic differentiation.

    ``value`` holds the data; ``grad`` receives the gradient after ``backward()`` (leaves only).
    Layout convention: the batch axis comes first, (N, features) or (N, C, H, W), as in PyTorch.
    """

    __slots__ = ("value", "grad", "requires_grad", "_prim", "_args", "_kw", "_saved", "_g", "__weakref__")
    # Let NumPy hand mixed expressions (ndarray + Tensor) to the tensor instead of broadcasting objects.
    __array_priority__ = 1000

    def __init__(self, value, requires_grad=False, dtype=None):
        if isinstance(value, Tensor):
            value = value.value
        self.value = as_array(value, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._prim = None
        self._args = None
        self._kw = _EMPTY
        self._saved = None
        self._g = None
        if requires_grad and self.value.dtype.kind not in "fc":
            raise TypeError(f"only floating tensors can require gradients, got dtype {self.value.dtype}")

    # -- data access -------------------------------------------------------------------------------
    @property
    def shape(self):
        return self.value.shape

    @property
    def dtype(self):
        return self.value.dtype

    @property
    def ndim(self):
        return self.value.ndim

    @property
    def size(self):
        return self.value.size

    @property
    def is_leaf(self):
        return self._prim is None

    def __len__(self):
        return len(self.value)

    def __array__(self, dtype=None, copy=None):
        v = self.value
        if type(v).__module__.startswith("cupy"):
            v = v.get()
        # NumPy 2 passes copy=True for np.array(t) and trusts us to copy: honour it.
        return np.array(v, dtype=dtype, copy=copy)

    def numpy(self):
        """The data as a NumPy array (shares memory on the CPU)."""
        return self.__array__()

    def item(self):
        return self.value.item()

    def __float__(self):
        return float(self.value)

    def __int__(self):
        return int(self.value)

    def __bool__(self):
        return bool(self.value)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self):
        kind = type(self).__name__
        body = np.array2string(np.asarray(self), separator=", ", prefix=kind + "(")
        extra = ", requires_grad=True" if self.requires_grad and type(self) is Tensor else ""
        return f"{kind}({body}, dtype={self.dtype}{extra})"

    __hash__ = object.__hash__

    # -- autograd ----------------------------------------------------------------------------------
    def detach(self):
        """A tensor sharing this one's data, cut from the graph."""
        return Tensor(self.value)

    def requires_grad_(self, flag=True):
        if not self.is_leaf:
            raise RuntimeError("requires_grad_ can only change leaf tensors; use detach() for results")
        self.requires_grad = bool(flag)
        return self

    def zero_grad(self):
        self.grad = None

    def backward(self, grad=None, retain_graph=False, create_graph=False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires a gradient."""
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not depend on any tensor that requires a gradient "
                "(create parameters with kp.Param, or compute it outside kp.no_grad())"
            )
        if grad is None:
            if self.value.size != 1:
                raise RuntimeError(
                    f"backward: output has shape {self.shape}; backward() without a gradient "
                    "argument needs a scalar (call .sum() first, or pass grad=...)"
                )
            seed = array_namespace(self.value).ones_like(self.value)
        else:
            seed = grad.value if isinstance(grad, Tensor) else as_array(grad, self.dtype)
            if seed.shape != self.shape:
                raise ValueError(f"backward: grad has shape {seed.shape}, output has shape {self.shape}")
        backprop(self, seed, None, create_graph, retain_graph or create_graph)

    # In-place updates are allowed on leaves only (parameter updates); they are never recorded.
    def _inplace(self, other, op):
        if self._prim is not None:
            raise RuntimeError("in-place update of a tensor computed by an op would corrupt its graph")
        other = other.value if isinstance(other, Tensor) else other
        op(self.value, other, out=self.value, casting="same_kind")
        return self

    def __iadd__(self, other):
        return self._inplace(other, np.add)

    def __isub__(self, other):
        return self._inplace(other, np.subtract)

    def __imul__(self, other):
        return self._inplace(other, np.multiply)

    def __itruediv__(self, other):
        return self._inplace(other, np.true_divide)

    def __setitem__(self, idx, val):
        if self._prim is not None:
            raise RuntimeError("item assignment on a tensor computed by an op would corrupt its graph")
        if isinstance(idx, Tensor):
            idx = idx.value
        self.value[idx] = val.value if isinstance(val, Tensor) else val


class Param(Tensor):
    """A trainable tensor (Knet's ``Param``): a leaf that requires a gradient."""

    __slots__ = ()

    def __init__(self, value, dtype=None):
        super().__init__(value, requires_grad=True, dtype=dtype)


def tensor(data, requires_grad=False, dtype=None):
    """A constant tensor (or a leaf requiring a gradient). Python floats take the default dtype."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


# -- recording switch ------------------------------------------------------------------------------
class _GradMode:
    def __init__(self, enabled):
        self.enabled = enabled

    def __enter__(self):
        global _grad_enabled
        self.prev = _grad_enabled
        _grad_enabled = self.enabled

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self.prev

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapped(*a, **k):
            with _GradMode(self.enabled):
                return fn(*a, **k)

        return wrapped


def no_grad():
    """Context manager (or decorator) inside which nothing is recorded."""
    return _GradMode(False)


def enable_grad():
    """Context manager (or decorator) that turns recording back on."""
    return _GradMode(True)


def is_grad_enabled():
    return _grad_enabled


# -- primitives --------------------------------------------------------------------------------------
class Primitive:
    """What the tape remembers about an op: its name and its VJPs."""

    __slots__ = ("name", "vjps", "vjp_argnum", "saves")

    def __init__(self, name, saves):
        self.name = name
        self.vjps = ()
        self.vjp_argnum = None
        self.saves = saves

    def __repr__(self):
        return f"<primitive {self.name}>"


_FREED = Primitive("<freed>", False)
_new = object.__new__


def _node(value, prim, args, kw, saved):
    t = _new(Tensor)
    t.value = value
    t.grad = None
    t.requires_grad = True
    t._prim = prim
    t._args = args
    t._kw = kw
    t._saved = saved
    t._g = None
    return t


def _const(value):
    t = _new(Tensor)
    t.value = value
    t.grad = None
    t.requires_grad = False
    t._prim = None
    t._args = None
    t._kw = _EMPTY
    t._saved = None
    t._g = None
    return t


def primitive(fwd=None, *, saves=False, name=None):
    """Turn ``fwd`` (raw arrays in, raw array out) into a differentiable op.

    With ``saves=True`` the forward returns ``(value, saved)`` and the VJPs receive ``saved`` right
    after ``ans``: for data the backward pass needs that is cheap to keep (masks, argmax indices).
    """
    if fwd is None:
        return lambda f: primitive(f, saves=saves, name=name)
    prim = Primitive(name or fwd.__name__, saves)

    if saves:

        def op(*args, **kw):
            track = False
            for a in args:
                if isinstance(a, Tensor):
                    break
            else:
                return fwd(*args, **kw)[0]
            for a in args:
                if isinstance(a, Tensor) and a.requires_grad:
                    track = True
            vals = [a.value if isinstance(a, Tensor) else a for a in args]
            out, saved = fwd(*vals, **kw)
            if _anomaly:
                _check_finite(out, prim.name, "output")
            if track and _grad_enabled:
                return _node(out, prim, args, kw or _EMPTY, saved)
            return _const(out)

    else:

        def op(*args, **kw):
            track = False
            for a in args:
                if isinstance(a, Tensor):
                    break
            else:
                return fwd(*args, **kw)
            for a in args:
                if isinstance(a, Tensor) and a.requires_grad:
                    track = True
            out = fwd(*[a.value if isinstance(a, Tensor) else a for a in args], **kw)
            if _anomaly:
                _check_finite(out, prim.name, "output")
            if track and _grad_enabled:
                return _node(out, prim, args, kw or _EMPTY, None)
            return _const(out)

    def defvjp(*vjps):
        """One VJP per positional argument, ``vjp(g, ans, *args, **kw)``; None where not differentiable."""
        prim.vjps = vjps
        return op

    def defvjp_argnum(fn):
        """A single VJP ``fn(argnum, g, ans, *args, **kw)`` for ops with a variable number of arguments."""
        prim.vjp_argnum = fn
        return op

    op.__name__ = op.__qualname__ = prim.name
    op.__doc__ = fwd.__doc__
    op.__wrapped__ = fwd
    op.prim = prim
    op.defvjp = defvjp
    op.defvjp_argnum = defvjp_argnum
    return op


# -- backpropagation ---------------------------------------------------------------------------------
def _toposort(root, stop):
    """Nodes reachable from ``root`` through tensors requiring grad, parents before children."""
    order = []
    seen = {root}
    stack = [(root, 0)]
    while stack:
        node, i = stack.pop()
        args = node._args if node._prim is not None and node not in stop else None
        if args is not None:  # (None also for a freed node: the caller reports it)
            n = len(args)
            while i < n:
                a = args[i]
                i += 1
                if isinstance(a, Tensor) and a.requires_grad and a not in seen:
                    seen.add(a)
                    stack.append((node, i))
                    stack.append((a, 0))
                    break
            else:
                order.append(node)
        else:
            order.append(node)
    return order


_FREED_MESSAGE = (
    "backward through a graph a second time: its intermediate values were freed by the first "
    "backward; pass retain_graph=True to the first call, or detach() a carried state"
)


def backprop(root, seed, inputs=None, create_graph=False, retain_graph=False):
    """Propagate ``seed`` = d(out)/d(root) back through the graph.

    With ``inputs`` (a list of tensors): return their gradients (None where unreached), stopping at
    them. Without: accumulate into ``.grad`` of every leaf that requires a gradient.
    Gradients are summed in each node's ``_g`` slot while the pass runs (no dictionaries).
    """
    global _grad_enabled
    stop = set(inputs) if inputs is not None else ()
    order = _toposort(root, stop)
    root._g = _const(seed) if create_graph else seed
    results = []
    handed = {id(seed)}  # arrays handed out as leaf gradients (the caller's seed counts as one)
    prev_mode = _grad_enabled
    _grad_enabled = create_graph
    try:
        for node in reversed(order):
            g = node._g
            if g is None:
                continue
            node._g = None
            prim = node._prim
            if prim is None or node in stop:
                if not create_graph and (getattr(g, "base", None) is not None or id(g) in handed):
                    # A view (maybe a read-only broadcast) or an array another leaf already holds
                    # (a + b passes one array to both): give each leaf its own, modifiable in place.
                    g = g.copy(order="K")  # keep the memory layout (channels-last views)
                handed.add(id(g))
                if inputs is not None:
                    results.append((node, g))
                elif node.grad is None:
                    node.grad = g
                else:
                    node.grad = node.grad + g
                continue
            if prim is _FREED:
                raise GraphFreedError(_FREED_MESSAGE)
            args = node._args
            kw = node._kw
            if create_graph:
                ans, gargs = node, args
            else:
                ans = node.value
                gargs = [a.value if isinstance(a, Tensor) else a for a in args]
            head = (ans, node._saved) if prim.saves else (ans,)
            vjps = prim.vjps
            by_argnum = prim.vjp_argnum
            for i, a in enumerate(args):
                if isinstance(a, Tensor) and a.requires_grad:
                    if by_argnum is not None:
                        gi = by_argnum(i, g, *head, *gargs, **kw)
                    else:
                        gi = vjps[i](g, *head, *gargs, **kw)
                    if gi is not None:
                        if _anomaly:
                            _check_finite(gi, prim.name, f"gradient for argument {i}")
                        prev = a._g
                        a._g = gi if prev is None else prev + gi
            if not retain_graph:
                node._prim = _FREED
                node._args = None
                node._saved = None
    except BaseException:
        for node in order:
            node._g = None
        raise
    finally:
        _grad_enabled = prev_mode
    if inputs is not None:
        found = {id(t): g for t, g in results}
        return [found.get(id(t)) for t in inputs]
    return None


class AnomalyError(FloatingPointError):
    """An op produced NaN or Inf while :func:`detect_anomaly` was active."""


def _check_finite(x, name, what):
    v = x.value if isinstance(x, Tensor) else x
    if hasattr(v, "dtype") and v.dtype.kind in "fc":
        xp = array_namespace(v)
        if not bool(xp.isfinite(v).all()):
            kind = "NaN" if bool(xp.isnan(v).any()) else "Inf"
            raise AnomalyError(f"detect_anomaly: the {what} of op '{name}' contains {kind} (shape {v.shape})")


class detect_anomaly:
    """Context manager: raise :class:`AnomalyError` naming the first op whose output or gradient is NaN/Inf.

    Checks are done on every op while active, so it slows things down; use it to debug.
    """

    def __enter__(self):
        global _anomaly
        self.prev = _anomaly
        _anomaly = True
        return self

    def __exit__(self, *exc):
        global _anomaly
        _anomaly = self.prev


def nondiff(name, fn):
    """An op with no gradient (comparisons, sign, argmax): tensors in, a constant tensor out."""

    def op(*args, **kw):
        for a in args:
            if isinstance(a, Tensor):
                return _const(fn(*[a.value if isinstance(a, Tensor) else a for a in args], **kw))
        return fn(*args, **kw)

    op.__name__ = name
    return op
