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

import threading
from contextlib import contextmanager

import numpy as np

from . import parallel
from .backend import array_namespace, as_array, device_of, is_array, to_device, to_host


class _ThreadState(threading.local):
    """Per-thread engine state (class attributes are the defaults every new thread starts with)."""

    grad_enabled = True  # record ops (no_grad / enable_grad / backprop switch it)
    anomaly = False  # detect_anomaly(): check every op's output and gradient for NaN/Inf
    leaf_hook = None  # on_leaf_grad(fn): called with each leaf as soon as backward() has its gradient
    tracer = None  # kp.compile's recorder while it traces a step in this thread


_state = _ThreadState()
# One entry per thread with recording off / inside detect_anomaly(). While a list is empty an op need
# not read its thread-local flag at all (a thread-local read costs several global reads). Lists, as
# append and pop are atomic: no lock.
_off_threads = []
_anomaly_threads = []
_trace_threads = []  # one entry per thread tracing a compiled step (kp.compile)
# In-place edits are stamped from one clock; a node remembers the clock when it was recorded, so an
# argument stamped later was edited after the op saw it. One int per tensor, no per-op tuple.
_clock = 0
_lock = threading.Lock()
_EMPTY: dict = {}


class GraphFreedError(RuntimeError):
    pass


class Tensor:
    """An ndarray that can take part in automatic differentiation.

    ``value`` holds the data; ``grad`` receives the gradient after ``backward()`` (leaves only).
    Layout convention: the batch axis comes first, (N, features) or (N, C, H, W), as in PyTorch.
    """

    __slots__ = (
        "value", "grad", "requires_grad", "_prim", "_args", "_kw", "_saved", "_g",
        "_version", "_stamp", "__weakref__",
    )
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
        self._version = 0  # in-place edits so far
        self._stamp = 0  # the clock at the last in-place edit (for a node: when it was recorded)
        if requires_grad and self.value.dtype.kind not in "fc":
            raise TypeError(f"only floating tensors can require gradients, got dtype {self.value.dtype}")

    # -- data access -------------------------------------------------------------------------------
    @property
    def data(self):
        """The underlying array (the same object as ``value``)."""
        return self.value

    @data.setter
    def data(self, new):
        # Like torch's ``.data =``: swap the array (shape and dtype may change) without recording it
        # and without a version bump: the deliberate escape hatch around autograd's checks.
        new = as_array(new.value if isinstance(new, Tensor) else new)
        if self.requires_grad and new.dtype.kind not in "fc":
            raise TypeError(f"data: a tensor requiring a gradient must hold floating data, got dtype {new.dtype}")
        self.value = new

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
        if type(v) is not np.ndarray:  # on a device: to_host copies (and counts the copy as meant)
            v = to_host(v)
            copy = None if copy else copy
        # NumPy 2 passes copy=True for np.array(t) and trusts us to copy: honour it.
        return np.array(v, dtype=dtype, copy=copy)

    def numpy(self):
        """The data as a NumPy array (shares memory on the CPU, a copy from a device)."""
        return _seen(self, "numpy", to_host(self.value))

    def item(self):
        return _seen(self, "item", to_host(self.value).item())

    def __float__(self):
        return _seen(self, "float", float(to_host(self.value)))

    def __int__(self):
        return _seen(self, "int", int(to_host(self.value)))

    def __bool__(self):
        return _seen(self, "bool", bool(self.value))

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # -- devices -----------------------------------------------------------------------------------
    @property
    def device(self):
        """Where the data live: 'cpu', 'cuda:0', ... (see :func:`knetpy.device`)."""
        return device_of(self.value)

    def to(self, device):
        """This tensor on ``device`` ('cpu', 'cuda', 'cuda:N'): itself when already there, else a copy.

        A Param gives a new Param (a leaf); other tensors give a result that gradients flow back
        through, to this tensor's device.
        """
        from .devices import move

        return move(self, device)

    def __dlpack__(self, *args, **kwargs):  # np/torch/cupy.from_dlpack(t) share the data, no copy
        return self.value.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.value.__dlpack_device__()

    def __repr__(self):
        kind = type(self).__name__
        body = np.array2string(to_host(self.value), separator=", ", prefix=kind + "(")
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
        if flag and self.value.dtype.kind not in "fc":
            raise TypeError(f"only floating tensors can require gradients, got dtype {self.value.dtype}")
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
        if type(self.value) is not np.ndarray:  # the same ufunc of the array's own library
            op = getattr(array_namespace(self.value), op.__name__)
        op(self.value, other, out=self.value, casting="same_kind")
        mark_modified(self)
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
        mark_modified(self)


def _seen(t, how, result):
    """A value Python code read from a tensor: while a step is traced, a guard its replay re-checks."""
    if _trace_threads and _state.tracer is not None:
        _state.tracer.guard(t, how, result)
    return result


def replayable(fn):
    """Mark ``fn``, array work done outside primitives (random draws, running statistics), so that a
    compiled step (:func:`knetpy.compile`) calls it again on every replay instead of reusing the
    arrays it returned while tracing."""
    import functools

    @functools.wraps(fn)
    def wrapped(*args, **kw):
        tracer = _state.tracer if _trace_threads else None
        if tracer is None:
            return fn(*args, **kw)
        _state.tracer = None  # what fn does inside is recorded as this one call
        try:
            out = fn(*args, **kw)
        finally:
            _state.tracer = tracer
        tracer.call(fn, args, kw, out)
        return out

    return wrapped


def run_in_place(fn, targets, *args):
    """``fn(targets, *args)``, which writes in place the arrays of ``targets`` (a list of tensors, whose
    ``.value`` it writes, and arrays): a compiled step (:func:`knetpy.compile`) records it as one call
    that every replay makes again on the same targets (an optimizer update folded into the step)."""
    tracer = _state.tracer if _trace_threads else None
    if tracer is None:
        return fn(targets, *args)
    _state.tracer = None  # what fn does inside (its mark_modified too) is recorded as this one call
    try:
        out = fn(targets, *args)
    finally:
        _state.tracer = tracer
    tracer.writes(fn, targets, args, out)
    return out


def mark_modified(*tensors):
    """Record that the arrays of ``tensors`` were changed in place (bumps their version).

    Code that writes into ``t.value`` directly (optimizers) calls this, so that a backward pass
    through an op that saw the old values raises instead of using the new ones.
    """
    global _clock
    if _trace_threads and _state.tracer is not None:
        _state.tracer.modified(tensors)
    with _lock:
        for t in tensors:
            if isinstance(t, Tensor):
                _clock += 1
                t._version += 1
                t._stamp = _clock


class Param(Tensor):
    """A trainable tensor (Knet's ``Param``): a leaf that requires a gradient."""

    __slots__ = ()

    def __init__(self, value, dtype=None):
        super().__init__(value, requires_grad=True, dtype=dtype)


def tensor(data, requires_grad=False, dtype=None, device=None):
    """A constant tensor (or a leaf requiring a gradient). Python floats take the default dtype.

    ``device`` ('cpu', 'cuda', 'cuda:N') puts the data there (one copy when they live elsewhere).
    """
    if device is None:
        return Tensor(data, requires_grad=requires_grad, dtype=dtype)
    from .devices import check_device

    value = data.value if isinstance(data, Tensor) else data
    value = to_device(as_array(value, dtype), check_device(device))
    return Tensor(value, requires_grad=requires_grad)


# -- recording switch ------------------------------------------------------------------------------
class _GradMode:
    """Set this thread's recording switch for a block; other threads keep their own."""

    def __init__(self, enabled):
        self.enabled = bool(enabled)
        self._prev = {}  # thread id -> stack of previous states (one object may be entered by many)

    def __enter__(self):
        self._prev.setdefault(threading.get_ident(), []).append(_set_grad_enabled(self.enabled))

    def __exit__(self, *exc):
        ident = threading.get_ident()
        stack = self._prev[ident]
        _set_grad_enabled(stack.pop())
        if not stack:
            del self._prev[ident]

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


def _set_grad_enabled(enabled):
    """Set the calling thread's recording switch; return its previous state."""
    state = _state
    prev = state.grad_enabled
    if enabled:
        if not prev:
            state.grad_enabled = True
            _off_threads.pop()
    elif prev:
        _off_threads.append(None)  # before the flag: while it is off the list is never empty
        state.grad_enabled = False
    return prev


def is_grad_enabled():
    """Whether ops are recorded in the calling thread (each thread starts with recording on)."""
    return not _off_threads or _state.grad_enabled


# -- primitives --------------------------------------------------------------------------------------
class Primitive:
    """What the tape remembers about an op: its name and its VJPs."""

    __slots__ = ("name", "vjps", "vjp_argnum", "saves", "reads")

    def __init__(self, name, saves, reads=True):
        self.name = name
        self.vjps = ()
        self.vjp_argnum = None
        self.saves = saves
        self.reads = reads  # whether the VJPs read the arguments' values (not only their shapes)

    def __repr__(self):
        return f"<primitive {self.name}>"


_FREED = Primitive("<freed>", False)
_new = object.__new__


def _node(value, prim, args, kw, saved):
    if value.dtype.kind not in "fc":  # integer / bool results (casts, argmax) have no gradient
        return _const(value)
    t = _new(Tensor)
    t.value = value
    t.grad = None
    t.requires_grad = True
    t._prim = prim
    t._args = args
    t._kw = kw
    t._saved = saved
    t._g = None
    t._version = 0
    t._stamp = _clock
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
    t._version = 0
    t._stamp = 0
    return t


def _bad_input(name, args, err):
    """Re-raise a NumPy type error from op ``name`` as one naming the op and the offending input."""
    if str(err).startswith(f"{name}:"):  # the op's own message already says what is wrong
        raise err
    for i, a in enumerate(args):
        if isinstance(a, Tensor) or isinstance(a, (bool, int, float, complex, np.generic)):
            continue
        if a is None and i:  # an optional argument left out (clip(x, None, hi)), not the data
            continue
        if hasattr(a, "dtype") and getattr(a.dtype, "kind", "O") in "biufc":
            continue
        if isinstance(a, (list, tuple)):
            if any(isinstance(v, Tensor) or is_array(v) for v in a):  # arrays: the op's own error says more
                continue
            try:
                dt = np.asarray(a).dtype
            except (TypeError, ValueError):
                dt = np.dtype(object)
            if dt.kind in "biufc":
                continue
            what = f"dtype {dt}"
        else:
            what = f"dtype {a.dtype}" if hasattr(a, "dtype") else f"type {type(a).__name__}"
        raise TypeError(f"{name}: argument {i} must be numeric, got {what} ({a!r:.40})") from None
    raise err


def primitive(fwd=None, *, saves=False, name=None, reads=True):
    """Turn ``fwd`` (raw arrays in, raw array out) into a differentiable op.

    With ``saves=True`` the forward returns ``(value, saved)`` and the VJPs receive ``saved`` right
    after ``ans``: for data the backward pass needs that is cheap to keep (masks, argmax indices).
    ``reads=False`` declares that the VJPs use only the arguments' shapes, not their values (add,
    reshape...): editing an argument in place between forward and backward is then harmless.
    """
    if fwd is None:
        return lambda f: primitive(f, saves=saves, name=name, reads=reads)
    prim = Primitive(name or fwd.__name__, saves, reads)

    if saves:

        def op(*args, **kw):
            track = False
            for a in args:
                if isinstance(a, Tensor):
                    break
            else:
                try:
                    out = fwd(*args, **kw)
                except TypeError as e:
                    _bad_input(prim.name, args, e)
                if _trace_threads and _state.tracer is not None:
                    _state.tracer.op(prim, fwd, args, kw, out, out)
                return out[0]
            for a in args:
                if isinstance(a, Tensor) and a.requires_grad:
                    track = True
            vals = [a.value if isinstance(a, Tensor) else a for a in args]
            try:
                out, saved = fwd(*vals, **kw)
            except TypeError as e:
                _bad_input(prim.name, args, e)
            if _anomaly_threads and _state.anomaly:
                _check_finite(out, prim.name, "output")
            if track and (not _off_threads or _state.grad_enabled):
                res = _node(out, prim, args, kw or _EMPTY, saved)
            else:
                res = _const(out)
            if _trace_threads and _state.tracer is not None:
                _state.tracer.op(prim, fwd, args, kw, (out, saved), res)
            return res

    else:

        def op(*args, **kw):
            track = False
            for a in args:
                if isinstance(a, Tensor):
                    break
            else:
                try:
                    out = fwd(*args, **kw)
                except TypeError as e:
                    _bad_input(prim.name, args, e)
                if _trace_threads and _state.tracer is not None:
                    _state.tracer.op(prim, fwd, args, kw, out, out)
                return out
            for a in args:
                if isinstance(a, Tensor) and a.requires_grad:
                    track = True
            try:
                out = fwd(*[a.value if isinstance(a, Tensor) else a for a in args], **kw)
            except TypeError as e:
                _bad_input(prim.name, args, e)
            if _anomaly_threads and _state.anomaly:
                _check_finite(out, prim.name, "output")
            if track and (not _off_threads or _state.grad_enabled):
                res = _node(out, prim, args, kw or _EMPTY, None)
            else:
                res = _const(out)
            if _trace_threads and _state.tracer is not None:
                _state.tracer.op(prim, fwd, args, kw, out, res)
            return res

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


def _take_grad(node, prim):
    """The gradient summed into interior ``node``'s slot, taken out of it (None where none reached it).

    Raises where the graph was freed by an earlier backward, or one of the node's inputs was edited
    in place since it was recorded.
    """
    g = node._g
    if g is None:
        return None
    node._g = None
    if prim is _FREED:
        raise GraphFreedError(_FREED_MESSAGE)
    if node._stamp < _clock and prim.reads:  # something was edited in place since recording
        _check_versions(node, prim, node._args)
    return g


#: Types that are an array's ``base`` only to hold memory the array alone uses (the buffer pool's
#: owners, :mod:`knetpy.ops.recycle`): a leaf may keep such an array as its gradient without a copy.
OWN_MEMORY = set()


def _accumulate(leaf, g):
    """Add ``g`` to ``leaf.grad``."""
    with _lock:  # threads backpropagating into shared parameters: no lost sums
        leaf.grad = g if leaf.grad is None else leaf.grad + g


def _free(node):
    """Drop what ``node`` keeps for its backward (after the pass, without retain_graph)."""
    node._prim = _FREED
    node._args = None
    node._saved = None


def _drop_pending(order):
    """After a pass stopped by an error: clear the gradients left in the slots of the nodes it did not reach."""
    for node in order:
        if node._prim is not None:
            node._g = None


def backprop(root, seed, inputs=None, create_graph=False, retain_graph=False):
    """Propagate ``seed`` = d(out)/d(root) back through the graph.

    With ``inputs`` (a list of tensors): return their gradients (None where unreached), stopping at
    them. Without: accumulate into ``.grad`` of every leaf that requires a gradient.
    Gradients are summed in each interior node's ``_g`` slot while the pass runs (no per-node
    dictionary); leaves, which other threads' graphs may share (parameters), in this pass's own dict.
    """
    if _trace_threads and _state.tracer is not None and not create_graph:
        return _state.tracer.backprop(root, seed, inputs, retain_graph)  # the same pass, recorded
    stop = set(inputs) if inputs is not None else ()
    order = _toposort(root, stop)
    g0 = _const(seed) if create_graph else seed
    acc = {}  # leaf (or input) -> its gradient so far, private to this pass
    if root._prim is None or root in stop:
        acc[root] = g0
    else:
        root._g = g0
    results = []
    handed = {id(seed)}  # arrays handed out as leaf gradients (the caller's seed counts as one)
    anomaly = bool(_anomaly_threads) and _state.anomaly
    leaf_hook = _state.leaf_hook if inputs is None else None
    prev_mode = _set_grad_enabled(create_graph)
    try:
        while order:
            # Popped, not iterated: the pass then holds no reference to a node it is done with,
            # so an intermediate value is freed as soon as its consumers' gradients are computed.
            node = order.pop()
            prim = node._prim
            if prim is None or node in stop:
                g = acc.pop(node, None)
                if g is None:
                    continue
                # A view (maybe a read-only broadcast) or an array another leaf already holds (a + b
                # passes one array to both): give each leaf its own array, writable in place. An
                # array of its own from the buffer pool is no view (its base only holds the memory).
                if not getattr(g, "requires_grad", False):  # (a gradient that is a graph stays one)
                    v = g.value if isinstance(g, Tensor) else g
                    base = getattr(v, "base", None)
                    if (base is not None and type(base) not in OWN_MEMORY) or id(g) in handed:
                        v = v.copy(order="K")  # keep the memory layout (channels-last views)
                        g = _const(v) if isinstance(g, Tensor) else v
                handed.add(id(g))
                if inputs is not None:
                    results.append((node, g))
                else:
                    _accumulate(node, g)
                    if leaf_hook is not None:
                        leaf_hook(node)
                continue
            g = _take_grad(node, prim)
            if g is None:
                continue
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
                        if anomaly:
                            _check_finite(gi, prim.name, f"gradient for argument {i}")
                        if a._prim is None or a in stop:
                            prev = acc.get(a)
                            acc[a] = gi if prev is None else prev + gi
                        else:
                            prev = a._g
                            a._g = gi if prev is None else prev + gi
            if not retain_graph:
                _free(node)
    except BaseException:
        _drop_pending(order)
        raise
    finally:
        _set_grad_enabled(prev_mode)
    if not create_graph:  # the end of an eager step: BLAS's threads for the next (knetpy.blas_steps)
        parallel._blas_steps().step_done()
    if inputs is not None:
        found = {id(t): g for t, g in results}
        return [found.get(id(t)) for t in inputs]
    return None


def _edited_after(t, stamp):
    """The tensor whose in-place edit after ``stamp`` changed ``t``'s data: ``t`` itself, or a tensor
    ``t`` is a view of (``reshape(w)``, ``w.T``, ``w[i]``), or None."""
    stack, seen = [t], set()
    while stack:
        a = stack.pop()
        if a._stamp > stamp:
            return a
        v = a.value
        # Only a view (``base`` set) can show another tensor's data.
        if a._args is not None and getattr(v, "base", None) is not None and id(a) not in seen:
            seen.add(id(a))
            for b in a._args:
                if isinstance(b, Tensor) and array_namespace(v).may_share_memory(v, b.value):
                    stack.append(b)
    return None


def _check_versions(node, prim, args):
    # Only reached when some tensor was edited in place since the node was recorded (rare).
    for i, a in enumerate(args):
        if not isinstance(a, Tensor):
            continue
        edited = _edited_after(a, node._stamp)
        if edited is not None:
            what = f"{type(a).__name__} of shape {tuple(a.shape)}, dtype {a.dtype}"
            if edited is not a:
                what += f", a view of a {type(edited).__name__} of shape {tuple(edited.shape)}"
            raise RuntimeError(
                "backward: one of the variables needed for gradient computation has been modified by an "
                f"in-place operation: argument {i} of op '{prim.name}' ({what}) is at version "
                f"{edited._version}, changed after the op used it. Update it (or step the optimizer) after "
                "backward(), or give the op a copy"
            )


@contextmanager
def on_leaf_grad(fn):
    """Within the block, ``backward()`` in this thread calls ``fn(leaf)`` as soon as a leaf's gradient is
    final (the leaf's ``.grad`` holds it), while the rest of the pass still runs: gradient all-reduce
    starts on the last layers' gradients before the first layers' are computed."""
    prev = _state.leaf_hook
    _state.leaf_hook = fn
    try:
        yield
    finally:
        _state.leaf_hook = prev


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

    Checks are done on every op of the calling thread while active, so it slows things down; use it to
    debug. Other threads are not affected.
    """

    def __init__(self):
        self._prev = {}  # thread id -> stack of previous states

    def __enter__(self):
        _anomaly_threads.append(None)
        self._prev.setdefault(threading.get_ident(), []).append(_state.anomaly)
        _state.anomaly = True
        return self

    def __exit__(self, *exc):
        ident = threading.get_ident()
        stack = self._prev[ident]
        _state.anomaly = stack.pop()
        if not stack:
            del self._prev[ident]
        _anomaly_threads.pop()


def nondiff(name, fn):
    """An op with no gradient (comparisons, sign, argmax): tensors in, a constant tensor out."""

    def op(*args, **kw):
        try:
            for a in args:
                if isinstance(a, Tensor):
                    out = _const(fn(*[a.value if isinstance(a, Tensor) else a for a in args], **kw))
                    break
            else:
                out = fn(*args, **kw)
        except TypeError as e:
            _bad_input(name, args, e)
        if _trace_threads and _state.tracer is not None:
            _state.tracer.op(None, fn, args, kw, out.value if isinstance(out, Tensor) else out, out)
        return out

    op.__name__ = name
    return op
