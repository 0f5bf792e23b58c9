"""Capture and replay of a step: ``kp.compile(fn)``, the analogue of JAX's ``jit``.

``step = kp.compile(kp.grad(loss))`` runs ``loss`` eagerly on its first calls while recording every
primitive it calls (forward functions, then the vector-Jacobian products of the backward pass in the
order the eager pass ran them). Two recordings that agree become one straight-line Python function on
raw arrays, generated once, which later calls run instead: no Tensor objects, no graph walk, no
per-op dictionaries. It calls the same kernels in the same order as eager mode, so its results are
equal bit for bit.

A new trace is taken when the shapes or dtypes of the array arguments change, when a non-array
argument changes, when the train/eval mode of a layer the step read changes, when a value Python
code read from a tensor (``float(t)``, ``bool(t)``, ``t.item()``, ``t.numpy()``) comes out different,
or when knetpy's global modes change (recording on/off, default dtype, thread count). ``step.traces``
counts them. A step that cannot be replayed faithfully (it edits tensors or its array arguments in
place other than through ``kp.optim.update``, or uses arrays computed outside knetpy's primitives
that differ from one call to the next, such as a random mask drawn with NumPy) runs eagerly from then
on, with one warning. ``kp.optim.update`` (and fit's optimizer step) inside a step is recorded as one
call made again on every replay (``autograd.run_in_place``): the update is part of the compiled step.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import warnings

import numpy as np

from . import autograd as ag
from . import backend as _backend
from . import parallel
from .autograd import Tensor, _accumulate, _const, _drop_pending, _free, _take_grad, _toposort
from .backend import array_namespace, get_dtype, is_array
from .ops import fast as _fast

__all__ = ["compile", "CompileWarning"]


class CompileWarning(UserWarning):
    """A compiled step cannot be replayed and runs eagerly."""


_RETRACE = object()  # what a replay returns when a guard fails: trace the step again
_MISS = object()  # what a checked replay returns when the arguments or settings differ from the trace's
AUTO_SIGNATURES = 8  # call signatures (shapes, dtypes, modes) a quiet Compiled (fit's default) records, per thread
_PATIENCE = 8  # calls with unchanged data a step with per-call computed constants may wait for other data
_SIMPLE = (int, float, complex, str, bytes, bool, type(None), np.generic, slice, range, type(Ellipsis), np.dtype, type)


def compile(fn):
    """Compile ``fn``, a function whose array work is done by knetpy ops (``kp.grad`` inside too).

    >>> step = kp.compile(kp.grad(loss))
    >>> for _ in range(1000):
    ...     for wi, gi in zip(w, step(w, x, y)):
    ...         wi -= lr * gi

    or, the update folded into the step (``opts = kp.optim.optimizers(w, kp.optim.SGD, lr=lr)``):

    >>> @kp.compile
    ... def train_step(w, x, y):
    ...     kp.optim.update(w, kp.grad(loss)(w, x, y), opts)

    The result is called like ``fn`` and returns what ``fn`` returns (tensors come back detached).
    """
    return Compiled(fn)


class Compiled:
    """A function recorded on its first calls and replayed afterwards; see :func:`compile`."""

    def __init__(self, fn, warn=True):
        self.fn = fn
        self.warn = warn  # False: fall back to eager quietly (fit's automatic compile)
        self._local = threading.local()  # per thread: its own traces, so threads never share a replay
        self._lock = threading.Lock()
        self._traces = 0
        self.replays = 0
        functools.update_wrapper(self, fn)

    @property
    def traces(self):
        """How many times the step was run with recording (first calls and retraces), all threads."""
        return self._traces

    def __call__(self, *args, **kwargs):
        fast = getattr(self._local, "fast", None)
        if fast is not None and not kwargs:
            # the arguments and settings checked and the step replayed, or _MISS (anomaly mode and a call
            # inside another step's trace among the reasons: handled below)
            out = fast[0](args)
            if out is not _MISS and out is not _RETRACE:
                self.replays += 1
                return out
        if ag._anomaly_threads and ag._state.anomaly:  # detect_anomaly checks every op: run eagerly
            return self.fn(*args, **kwargs)
        if ag._trace_threads and ag._state.tracer is not None:  # inside another step's trace: be part of it
            return self.fn(*args, **kwargs)
        self._local.fast = None
        arrays, key = [], []
        _walk(args, arrays, key)
        if kwargs:
            _walk(kwargs, arrays, key)
        # the compiled kernels' switch too: ops choose their path by it (a switch retraces)
        key.append((ag.is_grad_enabled(), get_dtype(), parallel._threads, parallel._auto, _fast._enabled))
        key = tuple(key)
        cache = self._local.__dict__.setdefault("cache", {})
        entry = cache.get(key)
        if entry is None:
            if not self.warn and len(cache) >= AUTO_SIGNATURES:
                # fit's automatic compile: a step called with ever new shapes (batches of varying sizes
                # or lengths) would be recorded again and again, and each recording kept: run it eagerly
                return self.fn(*args, **kwargs)
            entry = cache[key] = _Entry()
        if entry.eager:
            return self.fn(*args, **kwargs)
        prog = entry.current
        if prog is not None:
            fast = None if kwargs else prog.checked(args, key)
            out = _MISS if fast is None else fast(args)
            if out is _MISS:
                out = prog.run(arrays)
            if out is not _RETRACE:
                self.replays += 1
                self._local.fast = (fast, prog) if fast is not None else None
                return out
        return self._trace(entry, args, kwargs, arrays)

    def _trace(self, entry, args, kwargs, arrays):
        with self._lock:
            self._traces += 1
        before = [a.copy() for a in arrays]
        tracer = _Tracer(arrays)
        ag._trace_threads.append(None)
        prev, ag._state.tracer = ag._state.tracer, tracer
        try:
            result = self.fn(*args, **kwargs)
        finally:
            ag._state.tracer = prev
            ag._trace_threads.pop()
        for i, (a, b) in enumerate(zip(arrays, before)):
            if id(a) not in tracer.written and not _same_array(a, b):
                tracer.refuse(f"it changes its array argument {i} in place (replay would not)")
        prog = tracer.finish(result)
        why = tracer.broken
        if prog is not None:
            prog.inputs = before
            why = _adopt(entry, prog)
            if why is None:
                return result
        entry.failures += 1
        if entry.failures >= 2:
            entry.eager = why
            if self.warn:
                warnings.warn(
                    f"kp.compile({getattr(self.fn, '__name__', 'fn')}): running eagerly, the step cannot be "
                    f"replayed: {why}",
                    CompileWarning,
                    stacklevel=3,
                )
        return result


def _adopt(entry, prog):
    """File a new trace of ``entry``'s signature; return why it cannot be replayed, or None.

    A trace becomes the replayed program when the one before it on the same path (the same guard
    values) recorded the same thing; until then it waits for the next call to compare with.
    """
    known = entry.programs.get(prog.guards)
    if known is not None:  # a path verified before (a guard came out as it did then)
        entry.current = known
        return None
    pending = entry.pending.get(prog.guards)
    entry.pending[prog.guards] = prog  # (on a mismatch too: the first call may have built the layers)
    if pending is None:
        entry.current = None
        return None
    why = pending.differs(prog)
    if why is not None:
        return why
    if prog.fresh(pending) and pending.same_inputs(prog):
        # Values computed outside the ops on every call agree, but so did the arguments: they may
        # depend on them. Wait for a call with other data before trusting them.
        entry.unverified += 1
        if entry.unverified < _PATIENCE:
            return None
        entry.failures += 1  # (no second chance: the data never changed)
        return (f"values computed outside knetpy's ops on every call could not be told apart from "
                f"constants in {_PATIENCE} calls with the same data")
    entry.programs[prog.guards] = entry.current = prog
    entry.pending.clear()
    pending.inputs = prog.inputs = ()  # the copies of the traced calls' arrays were only for this comparison
    return None


class _Entry:
    """The traces of one call signature in one thread."""

    __slots__ = ("programs", "pending", "current", "eager", "failures", "unverified")

    def __init__(self):
        self.programs = {}  # guard values -> verified program
        self.pending = {}  # guard values -> a first trace waiting for a second one to agree
        self.current = None
        self.eager = None  # why the step runs eagerly, once it does
        self.failures = 0
        self.unverified = 0


def _walk(x, arrays, key):
    """Collect the array leaves of the arguments and a hashable description of everything else."""
    t = type(x)
    if t is np.ndarray:
        arrays.append(x)
        key.append(x.shape)
        key.append(x.dtype)
    elif t is list or t is tuple:
        key.append((t, len(x)))
        for e in x:
            if type(e) is np.ndarray:  # (the common leaf, without a call)
                arrays.append(e)
                key.append(e.shape)
                key.append(e.dtype)
            else:
                _walk(e, arrays, key)
    elif t is dict:
        key.append((dict, tuple(x)))
        for e in x.values():
            _walk(e, arrays, key)
    elif isinstance(x, Tensor):
        arrays.append(x.value)
        key.append((t, x.shape, x.dtype, x.requires_grad, type(x.value)))
    elif is_array(x):
        arrays.append(x)
        key.append((t, x.shape, x.dtype))
    else:
        try:
            hash(x)
            key.append((t, x))
        except TypeError:  # an unhashable object: the same object, not an equal one
            key.append((t, id(x)))


def _checked_replay(args, key, prog):
    """A generated function of the positional arguments laid out as ``args`` (NumPy arrays, alone or in
    lists and tuples) that replays ``prog`` on their arrays, or returns _MISS when anything that
    :func:`_walk`'s key holds could differ; None where other arguments would need the key built.
    It lets a replay skip building the key: the checks and the replay's own statements are one function."""
    lines, names = [], []
    env = dict(prog.env)
    env.update({"_np": np.ndarray, "_ag": ag, "_parallel": parallel, "_backend": _backend, "_fast": _fast,
                "_MISS": _MISS, "_prog": prog, "_anomaly_threads": ag._anomaly_threads,
                "_trace_threads": ag._trace_threads, "_off_threads": ag._off_threads})

    def leaf(expr, a):
        name = f"a{len(names)}"  # (the replay's own names for its arguments)
        names.append(name)
        env[f"_s_{name}"], env[f"_d_{name}"] = a.shape, a.dtype
        lines.append(f"{name} = {expr}")
        lines.append(f"if type({name}) is not _np or {name}.shape != _s_{name} or "
                     f"({name}.dtype is not _d_{name} and {name}.dtype != _d_{name}): return _MISS")

    # anomaly mode, or a call inside another step's trace: the slow path handles them (the three lists
    # are only ever changed in place)
    lines.append(f"if len(args) != {len(args)} or _anomaly_threads or _trace_threads: return _MISS")
    for i, x in enumerate(args):
        if type(x) is np.ndarray:
            leaf(f"args[{i}]", x)
        elif type(x) is list or type(x) is tuple:
            if not all(type(e) is np.ndarray for e in x):
                return None
            lines.append(f"_x = args[{i}]")
            lines.append(f"if type(_x) is not {x.__class__.__name__} or len(_x) != {len(x)}: return _MISS")
            for j, e in enumerate(x):
                leaf(f"_x[{j}]", e)
        else:
            return None
    if names != prog.args:
        return None
    grad, dtype, threads, auto, fast_on = key[-1]
    env["_dtype"] = dtype
    lines.append(f"if _backend._default_dtype is not _dtype or _parallel._threads != {threads!r} or "
                 f"_parallel._auto is not {auto!r} or _fast._enabled is not {fast_on!r} or "
                 f"(not _off_threads or _ag._state.grad_enabled) is not {grad!r}: return _MISS")
    body = list(prog.body)
    if not prog.flat:  # (its other returns give _RETRACE, which rebuild returns as it is)
        body[-1] = f"return _prog.rebuild({body[-1][len('return '):]})"
    source = "def replay_checked(args):\n" + "".join(f"    {line}\n" for line in (*lines, *body))
    exec(source, env)  # noqa: S102 (generated above from the arguments' layout and the trace)
    return env["replay_checked"]


def _same_array(a, b):
    if a is b:
        return True
    if not (is_array(a) and is_array(b)) or type(a) is not type(b) or a.shape != b.shape or a.dtype != b.dtype:
        return False
    xp = array_namespace(a)
    return bool(xp.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def _same(a, b):
    """Whether two traces' constants agree (the replay then uses the second one)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, Tensor):
        return a.requires_grad == b.requires_grad and _same_array(a.value, b.value)
    if is_array(a):
        return _same_array(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, _SIMPLE):
        return a == b or (a != a and b != b)  # NaN equals NaN here
    return False  # other objects (layers, functions): only the same object


def _differs(a, b):
    """A guard's check: whether a value read on replay differs from the one read while tracing."""
    if is_array(a):
        return not _same_array(a, b)
    return not (a == b or (a != a and b != b))


def _ones_like(a):
    return array_namespace(a).ones_like(a)


def _edited(t):
    raise RuntimeError(
        f"compiled step: a {type(t).__name__} of shape {tuple(t.shape)} the step uses was modified in place "
        "while the step ran; update it (or step the optimizer) after the step returns"
    )


_READ = {
    "numpy": lambda v: np.asarray(v.get() if type(v).__module__.startswith("cupy") else v),
    "item": lambda v: v.item(),
    "float": float,
    "int": int,
    "bool": bool,
}


# -- lowering: where the op's own function would run exactly one NumPy call, the replay writes that call
# (the same kernel, so the same bits) without the Python layers around it.
def _plain(*vals):
    return all(type(v) is np.ndarray or isinstance(v, (int, float, np.generic)) for v in vals)


_SCALARS = {}  # (the number, or a float's digits and sign; dtype) -> a read-only 0-d array
_MAX_SCALARS = 4096  # then the cache starts again (the programs keep the arrays they use)


def _scalar(value, x, const):
    """The replay expression for a Python number ``value`` meeting the floating array ``x`` in a ufunc:
    a 0-d array of x's dtype (what NumPy casts the number to, so the same bits), which NumPy takes
    without the slower path it follows for a Python number; the number itself for other arrays."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or dtype.kind not in "fc" or type(value) not in (int, float):
        return repr(value)
    # (a float by its digits and sign: -0.0 equals 0.0 and NaN nothing, yet each must keep its own array)
    key = ((value.hex(), math.copysign(1.0, value)) if type(value) is float else value, dtype.str)
    a = _SCALARS.get(key)
    if a is None:
        a = _backend.weak_scalar_array(value, dtype)
        if a is None:
            return repr(value)
        if len(_SCALARS) >= _MAX_SCALARS:  # (numbers computed anew on every call would add up)
            _SCALARS.clear()
        a = _SCALARS.setdefault(key, a)
    return const(a)


def _weak_scalars(vals, exprs, const):
    """``exprs`` with a Python number meeting a floating array in a binary ufunc as :func:`_scalar`'s 0-d array."""
    x, y = vals
    if type(x) is np.ndarray and type(y) in (int, float):
        return [exprs[0], _scalar(y, x, const)]
    if type(y) is np.ndarray and type(x) in (int, float):
        return [_scalar(x, y, const), exprs[1]]
    return exprs


def _one_element_views(vals, exprs):
    """``exprs`` with a one-element array operand that broadcasts against a larger one of the same dtype
    (a (1,) bias) passed as a 0-d view of it: the same values meet the same elements, but NumPy's ufunc
    takes a 0-d operand by its fast path and a one-element array by the slow broadcasting one."""
    x, y = vals
    if type(x) is not np.ndarray or type(y) is not np.ndarray or x.dtype != y.dtype:
        return exprs
    if x.size == 1 and x.ndim and y.size > 1 and y.ndim >= x.ndim:
        return [f"{exprs[0]}.reshape(())", exprs[1]]
    if y.size == 1 and y.ndim and x.size > 1 and x.ndim >= y.ndim:
        return [exprs[0], f"{exprs[1]}.reshape(())"]
    return exprs


def _unsplit(size):
    # knetpy's threads split no elementwise op this small (and a split gives the same bits anyway)
    return parallel._threads < 2 or size < parallel.MIN_ELEMENTS


def _small_gemm(a, b):
    # parallel.matmul leaves a product under MIN_FLOPS to one plain ``a @ b``
    if type(a) is not np.ndarray or type(b) is not np.ndarray or a.ndim != 2 or b.ndim != 2:
        return False
    return parallel._threads < 2 or 2 * a.shape[0] * a.shape[1] * b.shape[1] < parallel.MIN_FLOPS


def _gemm(a, b, xa, xb, const):
    """The replay expression of ``parallel.matmul(a, b)`` where it is one plain product, or None."""
    if not _small_gemm(a, b):
        return None
    if parallel.one_blas_thread(2 * a.shape[0] * a.shape[1] * b.shape[1]):
        return f"{const(parallel.matmul_one_blas_thread)}({xa}, {xb})"
    return f"({xa} @ {xb})"


_add_reduce = np.add.reduce  # what ndarray.sum runs, without its two Python-level calls (the same bits)


def _affine(x, w, b):  # layers.core.affine on NumPy arrays, where parallel.matmul is one plain product
    y = x @ w
    y += b
    return y


def _affine_one_blas_thread(x, w, b):
    y = parallel.matmul_one_blas_thread(x, w)
    y += b
    return y


def _binary_rule(symbol):
    def rule(vals, exprs, out, const):
        x, y = vals
        if _plain(x, y) and (type(x) is np.ndarray or type(y) is np.ndarray) and _unsplit(np.size(out)):
            return f"({exprs[0]} {symbol} {exprs[1]})"
        return None

    return rule


def _same_shape_rule(template, arg):
    """A VJP ``unbroadcast(<template>, x)``: just the template where no summing back is needed."""

    def rule(vals, exprs, out, const):
        g = vals[0]
        if _plain(*vals[:1], *vals[2:]) and type(g) is np.ndarray and np.shape(vals[arg]) == g.shape:
            if np.shape(out) == g.shape and (template == "{g}" or type(out) is np.ndarray):
                return template.format(g=exprs[0], x=exprs[2], y=exprs[3])
        return None

    return rule


def _sum_to_axes(xshape, shape):
    """The axes sum_to(x, shape) sums with ``x.sum(axis, keepdims=True)`` whatever x's strides are
    (its faster path needs exactly one kept axis of size > 1), or None."""
    lead = len(xshape) - len(shape)
    if lead < 0:
        return None
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape) if s == 1 and xshape[i + lead] != 1)
    kept = [i for i in range(len(xshape)) if i not in axes and xshape[i] != 1]
    return axes if axes and len(kept) != 1 else None


def _either(*rules):
    def rule(*a):
        for r in rules:
            found = r(*a)
            if found:
                return found
        return None

    return rule


def _lower(fn, vals, exprs, out, const):
    try:
        return _LOWERINGS[fn](vals, exprs, out, const)
    except Exception:  # noqa: BLE001 (an unforeseen argument: keep the op's own call)
        return None


_UNARY = [("exp", np.exp), ("log", np.log), ("tanh", np.tanh), ("sqrt", np.sqrt), ("square", np.square),
          ("sin", np.sin), ("cos", np.cos), ("abs", np.abs)]  # knetpy's ops that are one ufunc call


def _lowerings():
    from . import ops
    from .layers.core import affine
    from .ops import add, matmul, mul, relu, sub
    from .ops.linalg import _matmul_vjp_a, _matmul_vjp_b
    from .ops.reduce import _is_half
    from .ops.shape import sum_to, wide_rows

    def unary(ufunc):  # the _unary ops' forward is one ufunc call
        def rule(vals, exprs, out, const):
            return f"{const(ufunc)}({exprs[0]})" if type(vals[0]) is np.ndarray else None

        return rule

    def relu_fwd(vals, exprs, out, const):
        x = vals[0]
        if type(x) is np.ndarray and _unsplit(x.size):
            return f"{const(np.maximum)}({exprs[0]}, {_scalar(0, x, const)})"
        return None

    def relu_vjp(vals, exprs, out, const):  # g * (ans > 0): np.multiply(g, ans > 0), either branch
        g, ans = vals[0], vals[1]
        if type(g) is np.ndarray and type(ans) is np.ndarray and g.shape == ans.shape and _unsplit(g.size):
            return f"({exprs[0]} * ({exprs[1]} > 0))"
        return None

    def square_vjp(vals, exprs, out, const):  # (g * 2) * x
        g, x = vals[0], vals[2]
        if type(g) is np.ndarray and type(x) is np.ndarray:
            return f"(({exprs[0]} * {_scalar(2, g, const)}) * {exprs[2]})"
        return None

    def mean_vjp(vals, exprs, out, const):  # no axis: xp.full(shape, g / n, dtype=g.dtype)
        g, x = vals[0], vals[2]
        if len(vals) == 3 and type(g) is np.ndarray and type(x) is np.ndarray:
            return f"{const(np.full)}({x.shape!r}, {exprs[0]} / {x.size}, dtype={const(g.dtype)})"
        return None

    def sum_back(arg):  # add's and sub's VJPs where a broadcast operand needs the sum: sum_to itself
        def rule(vals, exprs, out, const):
            g, x = vals[0], vals[arg]
            if type(g) is not np.ndarray or g.shape == np.shape(x):
                return None
            shape = np.shape(x)
            plain = _sum_to_axes(g.shape, shape)
            if plain is not None:  # sum_to's own plain sum, where no memory layout could change its path
                if np.sum(g, axis=plain).shape == shape:  # (keepdims changes the result's shape only)
                    return f"{const(_add_reduce)}({exprs[0]}, {plain!r})"
                return f"{exprs[0]}.sum(axis={plain!r}, keepdims=True).reshape({shape!r})"
            fallback = f"{const(sum_to.__wrapped__)}({exprs[0]}, {const(shape)})"
            if g.ndim == 2 and g.flags.c_contiguous and g.shape[0] > 1 and shape == g.shape[1:] and g.shape[1] > 1:
                # sum_to's path for a dense (rows, C) matrix (ops.shape.sum_rows), its last reshape left out
                c = g.shape[1]
                k = wide_rows(g.shape[0], c)
                rows = f"{exprs[0]}.reshape(-1, {k * c}).sum(axis=0).reshape({k}, {c}).sum(axis=0)"
                return f"({rows} if {exprs[0]}.flags.c_contiguous else {fallback})"
            return fallback

        return rule

    def mean_fwd(vals, exprs, out, const):  # x.sum() / n for a floating array, no axis
        x = vals[0]
        if len(vals) == 1 and type(x) is np.ndarray and x.dtype.kind in "fc" and not _is_half(x):
            return f"({const(_add_reduce)}({exprs[0]}, None) / {x.size})"
        return None

    def gemm(ta, tb, i, j):
        def rule(vals, exprs, out, const):
            a, b = vals[i], vals[j]
            a, b = (a.T if ta else a), (b.T if tb else b)
            return _gemm(a, b, f"{exprs[i]}{'.T' if ta else ''}", f"{exprs[j]}{'.T' if tb else ''}", const)

        return rule

    def affine_fwd(vals, exprs, out, const):  # parallel.matmul(x, w), then += b
        x, w, b = vals
        if _small_gemm(x, w) and type(b) is np.ndarray:
            mm = _affine_one_blas_thread if parallel.one_blas_thread(2 * x.shape[0] * x.shape[1] * w.shape[1]) else _affine
            return f"{const(mm)}({exprs[0]}, {exprs[1]}, {exprs[2]})"
        return None

    def affine_bias_vjp(vals, exprs, out, const):  # ops.sum(g, axis=(0,)) for a 2-D g
        g = vals[0]
        if type(g) is np.ndarray and g.ndim == 2 and g.dtype.kind == "f" and not _is_half(g):
            return f"{const(_add_reduce)}({exprs[0]}, 0)"
        return None

    table = {
        add.__wrapped__: _binary_rule("+"),
        sub.__wrapped__: _binary_rule("-"),
        mul.__wrapped__: _binary_rule("*"),
        matmul.__wrapped__: gemm(False, False, 0, 1),
        _matmul_vjp_a: gemm(False, True, 0, 3),  # g @ b.T
        _matmul_vjp_b: gemm(True, False, 2, 0),  # a.T @ g
        add.prim.vjps[0]: _either(_same_shape_rule("{g}", 2), sum_back(2)),
        add.prim.vjps[1]: _either(_same_shape_rule("{g}", 3), sum_back(3)),
        sub.prim.vjps[0]: _either(_same_shape_rule("{g}", 2), sum_back(2)),
        sub.prim.vjps[1]: _same_shape_rule("(-{g})", 3),
        mul.prim.vjps[0]: _same_shape_rule("({g} * {y})", 2),
        mul.prim.vjps[1]: _same_shape_rule("({g} * {x})", 3),
        affine.__wrapped__: affine_fwd,
        affine.prim.vjps[0]: gemm(False, True, 0, 3),  # g @ w.T
        affine.prim.vjps[1]: gemm(True, False, 2, 0),  # x.T @ g (a 2-D x)
        affine.prim.vjps[2]: affine_bias_vjp,
        relu.__wrapped__: relu_fwd,
        relu.prim.vjps[0]: relu_vjp,
        ops.square.prim.vjps[0]: square_vjp,
        ops.mean.__wrapped__: mean_fwd,
        ops.mean.prim.vjps[0]: mean_vjp,
    }
    for name, ufunc in _UNARY:
        table[getattr(ops, name).__wrapped__] = unary(ufunc)
    return table


def _square_vjp():
    from .ops import square

    return square.prim.vjps[0]


def _nll_fn():
    """nll's primitive function (its VJP is ``_nll_fn.vjp``)."""
    from .ops.nn import _nll, _nll_vjp

    _nll_fn.vjp = _nll_vjp
    return _nll.__wrapped__


_nll_fn.vjp = None


from .ops.nn import _nll_fast_ok, _nll_grad_fast, _nll_rows_fast, check_label_range  # noqa: E402


def _nll_plain(x, labels, kw):
    """Whether nll's arguments take the path that :func:`_logp_rows` and :func:`_nll_grad` repeat."""
    return (type(x) is np.ndarray and x.ndim == 2 and x.dtype.kind == "f" and x.dtype.itemsize >= 4
            and type(labels) is np.ndarray and labels.shape == x.shape[:1] and kw.get("axis") == 1
            and set(kw) == {"axis", "average"})


# nll on NumPy (N, C) scores with the same kernels as ops.nn._nll (the same bits), fewer Python layers:
def _logp_rows(x):
    """logp(x, axis=1) as ops.nn.logp computes it."""
    m = x.max(axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    shifted = x - m
    s = np.exp(shifted).sum(axis=1, keepdims=True)
    return np.subtract(shifted, np.log(s, out=s), out=shifted)


def _nll_loss(lp, rows, labels, average):  # (the replay checked the labels' range before)
    total = -lp[rows, labels].sum()  # (take_along_axis picks the same values into an (N, 1) array)
    return total / labels.size if average else total


def _nll_grad(lp, rows, labels, scale):
    """_nll_vjp: softmax minus the one-hot labels, times ``scale`` (the replay checked the labels' range)."""
    grad = np.exp(lp)
    grad[rows, labels] -= 1
    grad *= scale
    return grad


class _LazyTable(dict):
    """A table of knetpy's op functions, built on first use (the ops import this module's package)."""

    def __init__(self, build):
        super().__init__()
        self.build = build

    def _filled(self):
        if not dict.__len__(self):
            self.update(self.build())
        return self

    def __contains__(self, fn):
        return dict.__contains__(self._filled(), fn)

    def get(self, fn, default=None):
        return dict.get(self._filled(), fn, default)

    def __getitem__(self, fn):
        return dict.__getitem__(self._filled(), fn)


def _shape_only():
    """The VJPs whose result depends on the incoming gradient and on shapes only (mean's, sum's)."""
    from . import ops

    return dict.fromkeys([ops.mean.prim.vjps[0], ops.sum.prim.vjps[0]])


def _binary_ufuncs():
    from .ops import add, mul, sub

    return {add.__wrapped__: ("+", np.add), sub.__wrapped__: ("-", np.subtract), mul.__wrapped__: ("*", np.multiply)}


def _fresh_vjps():
    """The lowered VJPs whose replay expression makes a new array, and where an operand could take it."""
    from . import ops
    from .layers.core import affine
    from .ops import mul, relu
    from .ops.linalg import _matmul_vjp_a, _matmul_vjp_b

    gemms = {_matmul_vjp_a: None, _matmul_vjp_b: None, affine.prim.vjps[0]: None, affine.prim.vjps[1]: None}
    return {mul.prim.vjps[0]: "g*other", mul.prim.vjps[1]: "g*other", relu.prim.vjps[0]: "g*other",
            ops.square.prim.vjps[0]: "square", **gemms}


def _unary_ufuncs():
    from . import ops

    table = {ops.relu.__wrapped__: (np.maximum, 0)}
    for name, ufunc in _UNARY:
        table[getattr(ops, name).__wrapped__] = (ufunc, None)
    return table


_LOWERINGS = _LazyTable(_lowerings)  # op or VJP function -> the rule writing its replay expression
_SHAPE_ONLY = _LazyTable(_shape_only)
_BINARY_UFUNCS = _LazyTable(_binary_ufuncs)  # add, sub, mul -> (the operator, its ufunc)
_UNARY_UFUNCS = _LazyTable(_unary_ufuncs)  # the lowered one-argument ops -> (ufunc, a number after x or None)
_FRESH_VJPS = _LazyTable(_fresh_vjps)  # VJP -> how an operand may take its result (None: it cannot)


def _safe(hook):
    """A recording hook that never breaks the eager run it watches: what it cannot record, refuses."""

    @functools.wraps(hook)
    def wrapped(self, *args):
        try:
            hook(self, *args)
        except Exception as e:  # noqa: BLE001
            self.refuse(f"knetpy could not record it ({type(e).__name__}: {e})")

    return wrapped


class _Tracer:
    """Records one eager run of a step as Python statements on raw arrays."""

    def __init__(self, arrays):
        self.names = {}  # id(array or tensor) -> the variable holding it on replay
        self.keep = []  # everything named, kept alive so that ids stay unique while tracing
        self.saved = {}  # id(node) -> the variable holding what its forward saved for the VJPs
        self.lines = []
        self.env = {"_RETRACE": _RETRACE, "_differs": _differs, "_ones_like": _ones_like,
                    "_accumulate": _accumulate, "_const": _const,
                    "_edited": _edited}
        self.fixed = len(self.env)
        self.consts = {}  # id(object) -> its name in env (functions, constants)
        self.prologue = []  # checks run before anything else (layer modes, parameter shapes)
        self.guards = []
        self.epilogue = []
        self.pure_lines = set()
        self.frozen_ids = set()  # id() of the arrays _frozen made
        self.frozen_names = set()  # the variables holding them
        self.effects = False  # a statement with a side effect was recorded: no guard may follow
        self.written = set()  # id() of the argument arrays the step updates in place itself (run_in_place)
        self.fresh = set()  # variables holding an array the replay itself makes anew on every call
        self.reuse = []  # (line, variable, expression, the expression writing into that variable's array)
        self.written_into = []  # the variables whose arrays the replay writes a later result into
        self.broken = None
        self.n = 0
        self.args = []
        for i, a in enumerate(arrays):
            self.args.append(self._bind(a, f"a{i}"))

    # -- naming ----------------------------------------------------------------------------------
    def _bind(self, obj, name):
        self.names[id(obj)] = name
        self.keep.append(obj)
        return name

    def _var(self, value, prefix="v"):
        self.n += 1
        name = f"{prefix}{self.n}"
        if isinstance(value, (Tensor, np.generic)) or is_array(value):  # (reductions may give NumPy scalars)
            self._bind(value, name)
        return name

    def _const(self, obj):
        name = self.consts.get(id(obj))
        if name is None:
            name = self.consts[id(obj)] = f"c{len(self.env)}"
            self.env[name] = obj
            self.keep.append(obj)
        return name

    def _frozen(self, value):
        """A name in env for an array made while tracing that every replay reads and none may write:
        never handed out (what reaches a result is copied), not compared as a per-call constant."""
        name = f"k{len(self.env)}"
        self.env[name] = value
        self.keep.append(value)
        self.frozen_ids.add(id(value))
        return name

    def _scratch(self, like):
        """A name for a zeroed array like ``like`` that only the replay's own statements write and read."""
        return self._frozen(np.zeros_like(like))

    def pure(self, line):
        """A statement that only assigns (dropped on replay when nothing uses what it assigns)."""
        self.lines.append(line)
        self.pure_lines.add(len(self.lines) - 1)

    def refuse(self, why):
        if self.broken is None:
            self.broken = why

    def _may_reuse(self, line, name, value, result, expr, in_place):
        """Note that ``expr`` in ``line`` may write its result into the array of variable ``name`` (as
        ``in_place``, the same ufunc on the same operands in the same order: the same bits), should that
        array be one the replay made itself, of the result's shape and dtype, and used nowhere else."""
        if (name in self.fresh and type(value) is np.ndarray and type(result) is np.ndarray
                and value.shape == result.shape and value.dtype == result.dtype):
            self.reuse.append((line, name, expr, in_place))

    def expr(self, a):
        """The replay expression for an argument seen while tracing."""
        name = self.names.get(id(a))
        if name is not None:
            return name
        if isinstance(a, Tensor):
            name = self.names.get(id(a.value))
            if name is not None:  # a tensor wrapping an argument (kp.grad's fresh inputs)
                return self._bind(a, name)
            if a._prim is not None:
                self.refuse(f"it uses a tensor computed before the step ({a.shape}) that the step depends on")
            # A leaf (a parameter): its current array is read on every replay.
            t = self._const(a)
            name = self._var(a)
            self._bind(a.value, name)
            self.pure(f"{name} = {t}.value")
            self.prologue.append(
                f"if {t}.value.shape != {a.value.shape!r} or {t}.value.dtype != {self._const(a.value.dtype)}: "
                "return _RETRACE"
            )
            self.prologue.append(f"k{t} = {t}._version")
            # An in-place edit while the step ran (another thread, a callback): eager mode would reject it.
            self.epilogue.append(f"if {t}._version != k{t}: _edited({t})")
            return name
        if type(a) is list or type(a) is tuple:
            inner = ", ".join(self.expr(e) for e in a)
            return f"[{inner}]" if type(a) is list else f"({inner}{',' if len(a) == 1 else ''})"
        return self._const(a)

    def call_expr(self, fn, args, kw, head=()):
        parts = [*head, *(self.expr(a) for a in args), *(f"{k}={self.expr(v)}" for k, v in kw.items())]
        return f"{self._const(fn)}({', '.join(parts)})"

    # -- hooks called by the engine --------------------------------------------------------------
    @_safe
    def op(self, prim, fn, args, kw, raw, res):
        """A primitive (or a non-differentiable op) ran: ``raw`` is what ``fn`` returned."""
        saves = prim is not None and prim.saves
        value = raw[0] if saves else raw
        if saves and fn is _nll_fn() and self._nll(args, kw, raw, res):
            return
        call, fresh = None, False
        if not saves and fn in _LOWERINGS and not kw:
            vals = [a.value if isinstance(a, Tensor) else a for a in args]
            exprs = [self.expr(a) for a in args]
            if fn in _BINARY_UFUNCS and len(vals) == 2:
                exprs = _one_element_views(vals, _weak_scalars(vals, exprs, self._const))
            call = _lower(fn, vals, exprs, value, self._const)
            # (the forward lowerings all make a new array; not yet named: checked before _var names it)
            fresh = call is not None and type(value) is np.ndarray and value.base is None and id(value) not in self.names
        call = call or self.call_expr(fn, args, kw)
        out = self._var(value)
        if saves:
            saved = f"s{self.n}"
            self.pure(f"{out}, {saved} = {call}")
        else:
            self.pure(f"{out} = {call}")
            if fresh:
                self.fresh.add(out)
                binary, unary = _BINARY_UFUNCS.get(fn), _UNARY_UFUNCS.get(fn)
                # (out= given by position: a ufunc parses it faster than the keyword)
                if binary is not None and call == f"({exprs[0]} {binary[0]} {exprs[1]})":
                    self._may_reuse(self.lines[-1], exprs[0], vals[0], value, call,
                                    f"{self._const(binary[1])}({exprs[0]}, {exprs[1]}, {exprs[0]})")
                elif unary is not None:
                    more = "" if unary[1] is None else f", {_scalar(unary[1], vals[0], self._const)}"
                    out_arg = exprs[0] if unary[1] is None else f"out={exprs[0]}"  # (NumPy: maximum's by keyword)
                    if call == f"{self._const(unary[0])}({exprs[0]}{more})":
                        self._may_reuse(self.lines[-1], exprs[0], vals[0], value, call,
                                        f"{self._const(unary[0])}({exprs[0]}{more}, {out_arg})")
        if isinstance(res, Tensor):
            self._bind(res, out)
            if saves:
                self.saved[id(res)] = saved

    def _nll(self, args, kw, raw, res):
        """Record ``nll`` of (N, C) scores as two statements: the log-probabilities its VJP reads, then the
        loss (left out of the replay when only the seed of the backward pass read it). False: not lowered."""
        x, labels = (a.value if isinstance(a, Tensor) else a for a in args)
        if not _nll_plain(x, labels, kw):
            return False
        out, saved = self._var(raw[0]), f"s{self.n}"
        if _nll_fast_ok(x, labels, kw["axis"]):  # as the op ran: loss, log-probabilities and check in one call
            self.lines.append(f"{out}, {saved} = {self._const(_nll_rows_fast)}({self.expr(args[0])}, "
                              f"{self.expr(args[1])}, {bool(kw['average'])})")
        else:
            rows = self._frozen(np.arange(len(labels)))
            # the labels' range is checked once per replay, here (never left out), not by the loss and its gradient
            self.lines.append(f"{self._const(check_label_range)}({self.expr(args[1])}, {x.shape[1]}, 'nll')")
            self.pure(f"{saved} = {self._const(_logp_rows)}({self.expr(args[0])})")
            self.pure(f"{out} = {self._const(_nll_loss)}({saved}, {rows}, {self.expr(args[1])}, "
                      f"{bool(kw['average'])})")
        if isinstance(res, Tensor):
            self._bind(res, out)
            self.saved[id(res)] = saved
        return True

    @_safe
    def call(self, fn, args, kw, out):
        """A function marked ``replayable`` ran (a random draw, running statistics)."""
        call = self.call_expr(fn, args, kw)
        if out is None:
            self.lines.append(call)
            self.effects = True
        elif isinstance(out, tuple):
            names = [self._var(o) for o in out]
            self.lines.append(f"{', '.join(names)}{',' if len(names) == 1 else ''} = {call}")
        else:
            self.lines.append(f"{self._var(out)} = {call}")

    @_safe
    def read(self, t):
        """A tensor whose array the step uses under another tensor's name (kp.grad's fresh inputs)."""
        self.expr(t)

    @_safe
    def writes(self, fn, targets, args, out):
        """``fn(targets, *args)`` ran and wrote the arrays of ``targets`` in place (see ``run_in_place``)."""
        exprs = []
        for t in targets:
            if isinstance(t, Tensor):
                exprs.append(self._const(t))  # the tensor itself: the replay writes its array of the moment
                self.written.add(id(t.value))
            else:
                exprs.append(self.expr(t))
                self.written.add(id(t))
        call = f"{self._const(fn)}([{', '.join(exprs)}], {', '.join(self.expr(a) for a in args)})"
        inline = getattr(fn, "inline", None)  # the call written out, where fn has a short form for this case
        lines = inline(targets, args, self.expr, self._scratch) if inline is not None and out is None else None
        if lines is not None:
            self.lines.extend(lines(call))
        elif out is None:
            self.lines.append(call)
        else:
            self.lines.append(f"{self._var(out)} = {call}")
        for t in targets:
            if isinstance(t, Tensor):  # the step's own edit: the check after the step must not take it for another's
                name = self._const(t)
                self.lines.append(f"k{name} = {name}._version")
        self.effects = True

    @_safe
    def guard(self, obj, how, result):
        """Python read a value: a layer's mode, or a tensor's data (control flow may depend on it)."""
        expected = self._const(result)
        if how == "training":
            if ("training", id(obj), result) not in self.guards:  # (a layer may read its mode often)
                self.prologue.append(f"if {self._const(obj)}.training != {expected}: return _RETRACE")
                self.guards.append(("training", id(obj), result))
            return
        name = self.names.get(id(obj))
        if name is None:
            return  # a constant tensor: its data is the same on every call
        if self.effects:
            self.refuse(f"it reads a tensor's value ({how}) after a side effect, so a retrace would repeat it")
        self.lines.append(f"if _differs({self._const(_READ[how])}({name}), {expected}): return _RETRACE")
        self.guards.append((how, name, result if not is_array(result) else result.tobytes()))

    def modified(self, tensors):
        self.refuse("it edits a tensor in place (an optimizer step or `w -= ...` inside the step)")

    def backprop(self, root, seed, inputs, retain_graph):
        """autograd.backprop without create_graph, recording each VJP and each sum as a statement."""
        saved_tracer = ag._state.tracer
        ag._state.tracer = None  # what the VJPs compute inside is recorded as their one call
        try:
            return self._backprop(root, seed, inputs, retain_graph)
        finally:
            ag._state.tracer = saved_tracer

    def _backprop(self, root, seed, inputs, retain_graph):
        stop = set(inputs) if inputs is not None else ()
        order = _toposort(root, stop)
        root_name = self.names.get(id(root))
        if root_name is None:
            self.refuse("backward() from a tensor computed before the step")
            root_name = self.expr(root)
        seed_name = self.names.get(id(seed))
        if seed_name is None:
            if _same_array(seed, _ones_like(root.value)):
                seed_name = self._var(seed)
                if type(seed) is np.ndarray:
                    # The seed's shape and dtype are fixed by the trace: one array of ones, made now, serves
                    # every replay, and the forward pass is left out where only the seed read the loss.
                    self.pure(f"{seed_name} = {self._frozen(seed)}")
                    self.frozen_names.add(seed_name)
                else:
                    self.pure(f"{seed_name} = _ones_like({root_name})")
            else:
                seed_name = self.expr(seed)
        gname = {}  # id(node) -> the variable holding its gradient so far
        acc = {}
        if root._prim is None or root in stop:
            acc[root] = seed
        else:
            root._g = seed
        gname[id(root)] = seed_name
        results = []
        handed = {id(seed)} | self.frozen_ids
        leaf_hook = ag._state.leaf_hook if inputs is None else None
        if leaf_hook is not None:
            self.refuse("a hook on leaf gradients (on_leaf_grad) is active")
        prev_mode = ag._set_grad_enabled(False)
        try:
            for node in reversed(order):
                prim = node._prim
                if prim is None or node in stop:
                    g = acc.pop(node, None)
                    if g is None:
                        continue
                    name = gname[id(node)]
                    if id(g) in handed:
                        g = g.copy(order="K")
                        new = self._var(g)
                        self.lines.append(f"{new} = {name}.copy(order='K')")
                        name = new
                    elif getattr(g, "base", None) is not None:  # (a lowered call may give a fresh array)
                        g = g.copy(order="K")
                        new = self._var(g)
                        self.lines.append(f"{new} = {name}.copy(order='K') if {name}.base is not None else {name}")
                        name = new
                    else:  # the same test on replay, should a kernel return a view there
                        self.lines.append(f"if {name}.base is not None: {name} = {name}.copy(order='K')")
                    handed.add(id(g))
                    self._bind(g, name)
                    if inputs is not None:
                        results.append((node, g))
                    else:
                        _accumulate(node, g)
                        self.lines.append(f"_accumulate({self._const(node)}, {name})")
                        self.effects = True
                        if leaf_hook is not None:
                            leaf_hook(node)
                    continue
                g = _take_grad(node, prim)
                if g is None:
                    continue
                args = node._args
                kw = node._kw
                gargs = [a.value if isinstance(a, Tensor) else a for a in args]
                head = (node.value, node._saved) if prim.saves else (node.value,)
                ans = self.names.get(id(node))
                if ans is None:
                    self.refuse("the backward pass reaches ops recorded before the step")
                    ans = "None"
                head_names = [gname[id(node)], ans] + ([self.saved.get(id(node), "None")] if prim.saves else [])
                for i, a in enumerate(args):
                    if not (isinstance(a, Tensor) and a.requires_grad):
                        continue
                    if prim.vjp_argnum is not None:
                        gi = prim.vjp_argnum(i, g, *head, *gargs, **kw)
                        call = self.call_expr(prim.vjp_argnum, args, kw, [str(i), *head_names])
                    else:
                        gi = prim.vjps[i](g, *head, *gargs, **kw)
                        call = self.call_expr(prim.vjps[i], args, kw, head_names)
                    if gi is None:
                        continue
                    fn = prim.vjps[i] if prim.vjp_argnum is None else None
                    if fn is not None and fn is _nll_fn.vjp and _nll_plain(*gargs, kw) and type(g) is np.ndarray:
                        scale = f"{head_names[0]} / {gargs[1].size}" if kw["average"] else head_names[0]
                        if g.ndim == 0 and _nll_fast_ok(gargs[0], gargs[1], kw["axis"]):  # as the VJP ran
                            call = f"{self._const(_nll_grad_fast)}({head_names[2]}, {self.expr(args[1])}, {scale})"
                        else:
                            rows = self._frozen(np.arange(len(gargs[1])))
                            call = f"{self._const(_nll_grad)}({head_names[2]}, {rows}, {self.expr(args[1])}, {scale})"
                    elif fn in _LOWERINGS and not kw:
                        exprs = head_names + [self.expr(a) for a in args]
                        call = _lower(fn, [g, *head, *gargs], exprs, gi, self._const) or call
                        if fn is _square_vjp() and head_names[0] in self.frozen_names:
                            # the gradient reaching square is the same array on every call (a mean's): its
                            # g * 2 is made once, now, as the VJP computes it (the same bits)
                            lead = f"(({head_names[0]} * {_scalar(2, g, self._const)}) * "
                            if call.startswith(lead) and type(g) is np.ndarray:
                                call = f"({self._frozen(g * 2)} * {call[len(lead):]}"
                    gi_name = self._var(gi)
                    if fn in _SHAPE_ONLY and head_names[0] in self.frozen_names and type(gi) is np.ndarray:
                        # what it computes depends on the seed and on shapes alone: the same array every time
                        call = self._frozen(gi)
                        handed.add(id(gi))
                        self.frozen_names.add(gi_name)
                    self.pure(f"{gi_name} = {call}")
                    if fn in _FRESH_VJPS and call.startswith("(") and type(gi) is np.ndarray:
                        self._reuse_in_vjp(_FRESH_VJPS[fn], call, gi_name, gi, head_names[0], g, args, gargs)
                    leafish = a._prim is None or a in stop
                    prev = acc.get(a) if leafish else a._g
                    if prev is None:
                        total, total_name = gi, gi_name
                    else:
                        total = prev + gi
                        total_name = self._var(total)
                        self.pure(f"{total_name} = {gname[id(a)]} + {gi_name}")
                    gname[id(a)] = total_name
                    if leafish:
                        acc[a] = total
                    else:
                        a._g = total
                if not retain_graph:
                    _free(node)
        except BaseException:
            _drop_pending(order)
            raise
        finally:
            ag._set_grad_enabled(prev_mode)
        if inputs is not None:
            found = {id(t): g for t, g in results}
            return [found.get(id(t)) for t in inputs]
        return None

    def _reuse_in_vjp(self, kind, call, name, gi, g_name, g, args, gargs):
        """A lowered VJP makes a new array (``name``): note where it may write into a dead operand instead."""
        self.fresh.add(name)
        if kind is None:  # (a product into a new array)
            return
        line, mul = self.lines[-1], self._const(np.multiply)
        if kind == "g*other":  # mul's VJPs, relu's: (g * other)
            other = call[len(g_name) + 4 : -1]
            if call == f"({g_name} * {other})":
                self._may_reuse(line, g_name, g, gi, call, f"{mul}({g_name}, {other}, {g_name})")
        elif kind == "square":  # ((g * 2) * x), or (k * x) where g * 2 was made once (k)
            x_name, x = self.expr(args[0]), gargs[0]
            two = _scalar(2, g, self._const)
            if call == f"(({g_name} * {two}) * {x_name})":
                # into g's array where nothing else holds it, else into x's
                self._may_reuse(line, g_name, g, gi, call, f"{mul}({mul}({g_name}, {two}, {g_name}), {x_name}, {g_name})")
                self._may_reuse(line, x_name, x, gi, call, f"{mul}({mul}({g_name}, {two}), {x_name}, {x_name})")
            elif call.endswith(f" * {x_name})") and call[1:].startswith("k"):
                k = call[1 : -len(f" * {x_name})")]
                self._may_reuse(line, x_name, x, gi, call, f"{mul}({k}, {x_name}, {x_name})")

    def _reuse_buffers(self, lines, others):
        """``lines`` with each noted expression writing into its operand's array where that operand is used
        by that expression only (an array nobody else holds: no alias, no saved copy, not returned)."""
        uses = {}
        for text in (*lines, *others):
            for n in _NAME.findall(text):
                uses[n] = uses.get(n, 0) + 1
        at = {line: i for i, line in enumerate(lines)}
        out = list(lines)
        for line, name, expr, in_place in self.reuse:
            i = at.get(line)
            # two uses: where it is made, and here
            if i is not None and uses.get(name) == 2 and out[i].count(expr) == 1 and not out[i].startswith(f"{name} "):
                out[i] = out[i].replace(expr, in_place)
                self.written_into.append(name)
        return out

    # -- the program -------------------------------------------------------------------------------
    def finish(self, result):
        """The replay program for the traced call that returned ``result`` (None if it cannot replay)."""
        from .tree import flatten

        leaves, treedef = flatten(result)
        outs = []
        for leaf in leaves:
            name = self.names.get(id(leaf)) or (self.names.get(id(leaf.value)) if isinstance(leaf, Tensor) else None)
            if name is not None:
                outs.append(f"_const({name})" if isinstance(leaf, Tensor) else name)
            elif isinstance(leaf, Tensor):  # never hand out the same array twice: the caller may edit it
                outs.append(f"_const({self._const(leaf)}.value.copy())")
            elif is_array(leaf):
                outs.append(f"{self._const(leaf)}.copy()")
            else:
                outs.append(self._const(leaf))
        if self.broken is not None:
            return None
        if treedef is None:  # one leaf: itself
            ret = f"return {outs[0]}"
        elif _flat_kind(treedef) is tuple:  # a tuple of leaves, made as it is (fit's step returns one)
            ret = f"return ({', '.join(outs)}{',' if len(outs) == 1 else ''})"
        else:
            ret = f"return [{', '.join(outs)}]"
        live = _live(self.lines, self.pure_lines, ret)
        if self.reuse:
            live = self._reuse_buffers(live, [*self.prologue, *self.epilogue, ret])
        body = self.prologue + live + self.epilogue + [ret]
        return _Program(self.args, body, self.env, self.fixed, tuple(self.guards), treedef, tuple(self.written_into))


def _flat_kind(treedef):
    """list or tuple for a list or tuple of leaves (the replay returns it as it is), else None."""
    if treedef[0] is list and treedef[3] in (list, tuple) and all(c is None for c in treedef[2]):
        return treedef[3]
    return None


_NAME = re.compile(r"\b[vsa]\d+\b")


def _live(lines, pure, ret):
    """``lines`` without the pure statements whose results nothing uses (e.g. the ops an op's own
    forward called, recorded beside it)."""
    used = set(_NAME.findall(ret))
    kept = []
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        if i in pure:
            lhs, rhs = line.split(" = ", 1)
            if not any(n in used for n in _NAME.findall(lhs)):
                continue
            used.update(_NAME.findall(rhs))
        else:
            used.update(_NAME.findall(line))
        kept.append(line)
    return kept[::-1]


class _Program:
    """One verified trace, as a generated function ``replay(a0, a1, ...)`` on raw arrays."""

    def __init__(self, args, body, env, fixed, guards, treedef, written_into=()):
        self.args = list(args)
        self.body = body
        self.source = f"def replay({', '.join(args)}):\n" + "".join(f"    {line}\n" for line in body)
        self.env = env
        self.fixed = fixed
        self.guards = guards
        self.treedef = treedef
        self.written_into = written_into  # the variables whose arrays a later result is written into
        # a single leaf, a flat list or a flat tuple: what the replay returns needs no rebuilding
        self.flat = treedef is None or _flat_kind(treedef) is not None
        self._fn = None
        self._checked = None
        self.const_names = [n for n in env if n.startswith("c")]
        self.inputs = ()

    def differs(self, other):
        """Why two traces of the same call signature disagree (None when they agree)."""
        if self.source != other.source:
            return "two calls ran different sequences of operations (Python control flow that knetpy cannot see)"
        for name, value in self.env.items():
            if not _same(value, other.env[name]):
                what = "an array" if is_array(value) or isinstance(value, Tensor) else f"the value {value!r:.40}"
                return (f"{what} computed outside knetpy's ops (e.g. a random mask drawn with NumPy) differs "
                        "from one call to the next")
        return None

    def fresh(self, other):
        """Whether some array or float constant was a new object in each trace (computed on each call)."""
        for name in self.const_names:
            a, b = self.env[name], other.env[name]
            if a is not b and (is_array(a) or isinstance(a, (Tensor, float, complex, np.generic))):
                return True
        return False

    def same_inputs(self, other):
        return all(_same_array(a, b) for a, b in zip(self.inputs, other.inputs))

    def function(self):
        """The replay as a Python function of the argument arrays (compiled on first use)."""
        fn = self._fn
        if fn is None:
            namespace = dict(self.env)
            exec(self.source, namespace)  # noqa: S102 (source generated above from the trace)
            fn = self._fn = namespace["replay"]
        return fn

    def checked(self, args, key):
        """The replay with its argument checks (:func:`_checked_replay`) for calls laid out as ``args``,
        the call signature ``key`` that this program was traced for; made once; None where there is none."""
        fn = self._checked
        if fn is None:
            fn = self._checked = _checked_replay(args, key, self) or False
        return fn or None

    def run(self, arrays):
        out = self.function()(*arrays)
        return out if self.flat else self.rebuild(out)

    def rebuild(self, out):
        """The step's result in its own structure, from the replay's flat list (_RETRACE as it is)."""
        if out is _RETRACE:
            return out
        from .tree import unflatten

        return unflatten(self.treedef, out)
