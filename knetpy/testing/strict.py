"""A second array library for tests: NumPy's functions, arrays that refuse to become NumPy arrays.

GPU code breaks in practice by taking a silent trip through NumPy: an ``np.*`` call on device data, a
NumPy temporary mixed into device arithmetic, an implicit ``float(x)`` in the middle of a step. CuPy
raises on the first two and silently synchronises on the third. This module behaves like CuPy on a
machine without a GPU, so the same mistakes fail on the CPU:

- :class:`StrictArray` wraps an ndarray. ``np.asarray(a)`` and every ``np.*`` function given one raise
  :class:`ImplicitConversionError`; so does arithmetic or a function here mixing it with a NumPy array.
- The module's functions (``strict.zeros``, ``strict.exp``, ``strict.linalg.norm``, ``strict.add.at``,
  ``strict.random.default_rng``...) are NumPy's, taking and returning StrictArrays.
- Reductions and scalar indexing give 0-d arrays, as CuPy does. Every copy to the host
  (``asnumpy``, ``.get()``, ``float(a)``, ``int(a)``, ``bool(a)``, ``.item()``, ``.tolist()``) is
  counted in :data:`transfers`, and ``asarray`` of host data counts as a copy to the device.

``import knetpy.testing.strict`` registers the library with :mod:`knetpy.backend`, so knetpy's
``array_namespace`` returns this module for its arrays, as it returns ``cupy`` for CuPy's.
"""

from __future__ import annotations

import collections
import operator
import sys
import types

import numpy as _np

from .. import backend as _backend

#: Copies between host and "device" since the last :func:`reset_transfers`: keys 'to_host', 'to_device'.
transfers = collections.Counter()
#: Where each copy to the host came from (the operation's name), for messages in tests.
transfer_log = []


class ImplicitConversionError(TypeError):
    """A strict array met NumPy: an implicit conversion or a mix of the two libraries."""


def reset_transfers():
    transfers.clear()
    transfer_log.clear()


def _to_host(what):
    transfers["to_host"] += 1
    transfer_log.append(what)


def _refuse(what):
    raise ImplicitConversionError(
        f"{what}: a strict (device) array cannot become a NumPy array implicitly; move it with "
        "knetpy.backend.to_host / .numpy(), or use the array's own namespace (array_namespace) instead of np"
    )


# -- wrapping and unwrapping -------------------------------------------------------------------------
def _wrap(x, out_map=None):
    if isinstance(x, _np.ndarray):
        if out_map and id(x) in out_map:
            return out_map[id(x)]
        return StrictArray(x)
    if isinstance(x, (_np.number, _np.bool_)):  # reductions and scalar indexing give 0-d arrays
        return StrictArray(_np.asarray(x))
    if isinstance(x, tuple):
        return type(x)(*map(_wrap, x)) if hasattr(x, "_fields") else tuple(_wrap(v, out_map) for v in x)
    if isinstance(x, list):
        return [_wrap(v, out_map) for v in x]
    return x


def _unwrap(x, what):
    if isinstance(x, StrictArray):
        return x._a
    if isinstance(x, _np.ndarray):
        raise ImplicitConversionError(
            f"{what}: got a NumPy array (shape {x.shape}, dtype {x.dtype}) where a strict (device) array "
            "belongs; mixing the two libraries is what fails on a GPU"
        )
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, what) for v in x)
    return x


def _call(fn, name, args, kwargs):
    out_map = {}
    out = kwargs.get("out")
    for o in (out if isinstance(out, tuple) else (out,)):
        if isinstance(o, StrictArray):
            out_map[id(o._a)] = o
    args = _unwrap(args, name)
    kwargs = {k: _unwrap(v, name) for k, v in kwargs.items()}
    return _wrap(fn(*args, **kwargs), out_map)


class StrictArray:
    """An ndarray on the pretend device: NumPy's semantics, no implicit way back to NumPy."""

    __slots__ = ("_a", "__weakref__")

    def __init__(self, a):
        self._a = a

    # NumPy's ways in, all refused
    def __array__(self, dtype=None, copy=None):
        _refuse("np.asarray / np.array")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):  # np.exp(a), ndarray + a
        if method == "__call__" and not kwargs and any(isinstance(v, _np.generic) for v in inputs) and all(
                isinstance(v, (StrictArray, _np.generic, int, float, complex, bool)) for v in inputs):
            # np.float32(2) * a: a NumPy scalar on the left, which CuPy accepts as well
            return _call(ufunc, ufunc.__name__, inputs, {})
        _refuse(f"np.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}"))

    def __array_function__(self, func, types, args, kwargs):
        _refuse(f"np.{func.__name__}")

    def __array_namespace__(self, api_version=None):
        return sys.modules[__name__]

    # explicit and implicit copies to the host, counted
    def get(self):
        _to_host("get")
        return self._a.copy()

    def item(self, *args):
        _to_host("item")
        return self._a.item(*args)

    def tolist(self):
        _to_host("tolist")
        return self._a.tolist()

    def __float__(self):
        _to_host("float")
        return float(self._a)

    def __int__(self):
        _to_host("int")
        return int(self._a)

    def __index__(self):
        _to_host("index")
        return operator.index(self._a)

    def __bool__(self):
        _to_host("bool")
        return bool(self._a)

    def __complex__(self):
        _to_host("complex")
        return complex(self._a)

    # plain attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: StrictArray(self._a.T))
    mT = property(lambda self: StrictArray(self._a.mT))
    real = property(lambda self: StrictArray(self._a.real))
    imag = property(lambda self: StrictArray(self._a.imag))
    device = "strict"

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for i in range(len(self._a)):
            yield _wrap(self._a[i])

    def __repr__(self):
        return f"strict.{self._a!r}"  # a debugging aid, not a transfer a program relies on

    def __getattr__(self, name):  # ndarray methods: reshape, sum, astype, transpose, copy, fill...
        if name.startswith("__"):  # __array_interface__ and friends would hand NumPy the data
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)
        return lambda *args, **kwargs: _call(attr, f"ndarray.{name}", args, kwargs)

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key, "indexing")])

    def __setitem__(self, key, value):
        self._a[_unwrap(key, "item assignment")] = _unwrap(value, "item assignment")

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def _binary(fn, name, reflected=False):
    def method(self, other):
        if isinstance(other, StrictArray):
            other = other._a
        elif isinstance(other, _np.ndarray):
            _unwrap(other, f"operator {name}")  # raises: a NumPy array mixed into device arithmetic
        elif not isinstance(other, (int, float, complex, bool, _np.generic)):
            return NotImplemented  # e.g. a knetpy Tensor: let its reflected operator run
        return _wrap(fn(other, self._a) if reflected else fn(self._a, other))

    return method


def _inplace(fn, name):
    def method(self, other):
        fn(self._a, _unwrap(other, f"operator {name}"), out=self._a)
        return self

    return method


for _name, _fn in [("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                   ("truediv", operator.truediv), ("floordiv", operator.floordiv), ("mod", operator.mod),
                   ("pow", operator.pow), ("matmul", operator.matmul), ("and", operator.and_),
                   ("or", operator.or_), ("xor", operator.xor), ("lshift", operator.lshift),
                   ("rshift", operator.rshift)]:
    setattr(StrictArray, f"__{_name}__", _binary(_fn, _name))
    setattr(StrictArray, f"__r{_name}__", _binary(_fn, _name, reflected=True))
for _name, _fn in [("lt", operator.lt), ("le", operator.le), ("gt", operator.gt), ("ge", operator.ge),
                   ("eq", operator.eq), ("ne", operator.ne)]:
    setattr(StrictArray, f"__{_name}__", _binary(_fn, _name))
for _name, _fn in [("iadd", _np.add), ("isub", _np.subtract), ("imul", _np.multiply),
                   ("itruediv", _np.true_divide), ("ipow", _np.power), ("iand", _np.bitwise_and),
                   ("ior", _np.bitwise_or), ("imatmul", _np.matmul)]:
    setattr(StrictArray, f"__{_name}__", _inplace(_fn, _name))
StrictArray.__neg__ = lambda self: StrictArray(-self._a)
StrictArray.__pos__ = lambda self: StrictArray(+self._a)
StrictArray.__abs__ = lambda self: StrictArray(abs(self._a))
StrictArray.__invert__ = lambda self: StrictArray(~self._a)
StrictArray.__hash__ = None


# -- the namespace -------------------------------------------------------------------------------------
class _Ufunc:
    """A NumPy ufunc over strict arrays, with its methods (``add.at``, ``maximum.reduce``...)."""

    def __init__(self, ufunc):
        self._u = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kwargs):
        return _call(self._u, self._u.__name__, args, kwargs)

    def __getattr__(self, name):
        attr = getattr(self._u, name)
        if callable(attr):
            return lambda *args, **kwargs: _call(attr, f"{self._u.__name__}.{name}", args, kwargs)
        return attr


class _Generator:
    """numpy.random.Generator drawing strict arrays."""

    def __init__(self, g):
        self._g = g

    def __getattr__(self, name):
        attr = getattr(self._g, name)
        if callable(attr):
            return lambda *args, **kwargs: _call(attr, f"random.Generator.{name}", args, kwargs)
        return attr


def _host_in(fn, name):
    """asarray and friends: host data in is a copy to the device (counted); strict arrays pass through."""

    def wrapped(a, *args, **kwargs):
        if isinstance(a, StrictArray):
            return _wrap(fn(a._a, *args, **kwargs))
        if isinstance(a, (list, tuple)) and any(isinstance(v, StrictArray) for v in a):
            return _wrap(fn(_unwrap(a, name), *args, **kwargs))
        transfers["to_device"] += 1
        return _wrap(fn(a, *args, **kwargs))

    wrapped.__name__ = name
    return wrapped


class _Namespace(types.ModuleType):
    """NumPy (or one of its submodules) with every function taking and giving strict arrays."""

    def __init__(self, name, module):
        super().__init__(name)
        self._module = module

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self._module, name)
        if isinstance(attr, _np.ufunc):
            value = _Ufunc(attr)
        elif isinstance(attr, types.ModuleType):
            value = _Namespace(f"{self.__name__}.{name}", attr)
        elif isinstance(attr, type) or not callable(attr):
            value = attr  # dtypes, finfo, constants: shared with NumPy, as CuPy shares them
        else:
            fn = attr
            value = lambda *args, **kwargs: _call(fn, name, args, kwargs)  # noqa: E731
            value.__name__ = name
        setattr(self, name, value)  # cached: later lookups skip __getattr__
        return value


_random = _Namespace(f"{__name__}.random", _np.random)
_random.default_rng = lambda seed=None: _Generator(_np.random.default_rng(seed))

ndarray = StrictArray
random = _random
asarray = _host_in(_np.asarray, "asarray")
array = _host_in(_np.array, "array")
ascontiguousarray = _host_in(_np.ascontiguousarray, "ascontiguousarray")


def asnumpy(a):
    """Copy to the host (``cupy.asnumpy``): the one explicit way out, counted."""
    if isinstance(a, StrictArray):
        return a.get()
    return _np.asarray(a)


def from_dlpack(x):
    """A strict array sharing memory with any DLPack producer (``cupy.from_dlpack``)."""
    if isinstance(x, StrictArray):
        return x
    return StrictArray(_np.from_dlpack(x))


_namespace = _Namespace(__name__, _np)


def __getattr__(name):  # every other NumPy name, wrapped on first use
    return getattr(_namespace, name)


_backend.register_namespace(StrictArray, sys.modules[__name__], device="strict")
