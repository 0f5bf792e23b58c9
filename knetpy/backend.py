"""Array backend: which array library holds the data, the default dtype and the random generator.

Every op asks :func:`array_namespace` for the module that owns its operands (NumPy today, CuPy when
the arrays live on a GPU), so the same op code runs on either without change.
"""

from __future__ import annotations

import difflib
import math

import numpy as np

_default_dtype = np.dtype(np.float32)
_rng = np.random.default_rng()


# Array libraries besides NumPy, by array type: CuPy (registered on first sight) and any library
# registered with :func:`register_namespace` (the strict test backend in knetpy.testing).
_namespaces: dict = {}
_devices: dict = {}


def register_namespace(array_type, module, device):
    """Make ``module`` the namespace of ``array_type`` arrays, which live on ``device`` (a name)."""
    _namespaces[array_type] = module
    _devices[array_type] = device


def _lookup(t):
    ns = _namespaces.get(t)
    if ns is None and t.__module__.startswith("cupy"):
        import cupy

        register_namespace(cupy.ndarray, cupy, "cuda")
        ns = _namespaces.get(t)
    return ns


def array_namespace(*arrays):
    """The array module (``numpy``, ``cupy``, or a registered one) that owns ``arrays``.

    NumPy for plain Python values. Arrays of two different libraries raise TypeError: mixing them is
    an implicit copy on a GPU.
    """
    found = None
    for a in arrays:
        t = type(a)
        if t is np.ndarray or not _namespaces and not t.__module__.startswith("cupy"):
            continue
        ns = _lookup(t)
        if ns is not None:
            if found is not None and ns is not found:
                raise TypeError(f"arrays of two libraries in one op: {found.__name__} and {ns.__name__}")
            found = ns
    return found if found is not None else np


def is_array(x) -> bool:
    """True for an ndarray of any supported backend."""
    return isinstance(x, np.ndarray) or _lookup(type(x)) is not None


def device_of(x) -> str:
    """'cpu' for NumPy arrays and Python values, else the device name of the array's library."""
    t = type(x)
    if t is np.ndarray or _lookup(t) is None:
        return "cpu"
    dev = _devices[t]
    if dev == "cuda":
        return f"cuda:{x.device.id}"
    return dev


#: Copies from a device to the host made through :func:`to_host` (the meant ones: logging, .numpy()).
host_transfers = 0


def to_host(x) -> np.ndarray:
    """``x`` as a NumPy array, copying it from its device if it lives on one.

    The one way knetpy moves data to the host on purpose (logging a loss, ``.numpy()``, saving), so
    tests can tell these from accidental copies.
    """
    global host_transfers
    t = type(x)
    if t is np.ndarray:
        return x
    ns = _lookup(t)
    if ns is None:
        return np.asarray(x)
    host_transfers += 1
    return ns.asnumpy(x)


to_numpy = to_host


def to_device(x, device):
    """``x`` (an array of any library, or host data) on ``device``: 'cpu', 'cuda', 'cuda:N' or a registered name."""
    name = str(device)
    if name == "cpu":
        return to_host(x)
    if name.startswith("cuda"):
        try:
            import cupy
        except ImportError:
            raise RuntimeError(f"device {name!r}: CuPy is not installed (pip install 'knetpy[gpu]')") from None
        _lookup(cupy.ndarray)
        idx = int(name.split(":")[1]) if ":" in name else None
        if idx is None:
            return cupy.asarray(x) if type(x) is not cupy.ndarray else x
        with cupy.cuda.Device(idx):
            return cupy.asarray(x)
    for t, dev in _devices.items():
        if dev == name:
            module = _namespaces[t]
            if type(x) is t:
                return x
            if not isinstance(x, np.ndarray) and _lookup(type(x)) is not None:
                x = to_host(x)
            return module.asarray(x)
    known = ["cpu", "cuda"] + sorted(set(_devices.values()) - {"cuda"})
    raise ValueError(f"unknown device {device!r}; known: {', '.join(known)}")


def set_dtype(dtype) -> None:
    """Set the floating dtype knetpy uses for what it creates itself (initializers, Python lists)."""
    global _default_dtype
    try:
        dt = np.dtype(dtype)
    except TypeError:
        close = difflib.get_close_matches(str(dtype), ["float16", "float32", "float64"], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; use 'float32' or 'float64'"
        raise TypeError(f"set_dtype: unknown dtype {dtype!r}{hint}") from None
    if dt.kind != "f":
        raise TypeError(f"set_dtype: default dtype must be a floating type, got {dt}")
    _default_dtype = dt


def get_dtype() -> np.dtype:
    """The floating dtype knetpy uses for what it creates itself (float32 unless changed)."""
    return _default_dtype


def set_seed(seed: int) -> None:
    """Seed every random draw knetpy makes (initializers, dropout, shuffling)."""
    global _rng
    try:
        _rng = np.random.default_rng(seed)
    except (TypeError, ValueError) as e:
        raise type(e)(f"set_seed: seed must be a non-negative integer, got {seed!r}") from None
    _device_rngs.clear()


# Generators of the device libraries (CuPy's draws on the GPU), by namespace; each is seeded from
# knetpy's generator when first needed, so kp.set_seed makes device draws reproducible too.
_device_rngs: dict = {}


def rng(xp=None):
    """The generator behind every random draw knetpy makes; with ``xp`` (an array namespace such as
    ``cupy``) a generator of that library, drawing arrays on its device."""
    if xp is None or xp is np:
        return _rng
    g = _device_rngs.get(xp)
    if g is None:
        g = _device_rngs[xp] = xp.random.default_rng(int(_rng.integers(2**63)))
    return g


def get_rng_state() -> dict:
    """The generator's state, JSON-serialisable, for checkpoints."""
    return _rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state returned by :func:`get_rng_state`."""
    _rng.bit_generator.state = state
    _device_rngs.clear()  # reseeded from the restored stream when next needed


def as_array(x, dtype=None):
    """``x`` as an ndarray; Python floats and float lists take the default dtype, arrays keep theirs."""
    if is_array(x):
        if dtype is None:
            return x
        if x.dtype.kind == "c" and np.dtype(dtype).kind != "c":  # astype would drop the imaginary part
            raise TypeError(f"expected real numbers for dtype {np.dtype(dtype)}, got an array of dtype {x.dtype}")
        return x.astype(dtype, copy=False)
    a = np.asarray(x, dtype=dtype)
    if dtype is None and a.dtype == np.float64 and not isinstance(x, np.generic):
        a = a.astype(_default_dtype)
    if a.dtype == object or a.dtype.kind in "USV":
        raise TypeError(f"expected numeric data, got an array of dtype {a.dtype}")
    return a


def weak_scalar_array(value, dtype):
    """The Python number ``value`` as NumPy casts it when it meets a floating array of ``dtype`` in a
    ufunc (``lr * g``), as a read-only 0-d array: the same bits, which NumPy takes without the slower
    path it follows for a Python number. None where the number is out of the dtype's range (NumPy's own
    overflow handling then applies) or NumPy would not cast it."""
    try:
        with np.errstate(all="ignore"):
            a = np.array(value, dtype)
        if math.isfinite(value) and not np.isfinite(a):
            return None
    except (OverflowError, ValueError, TypeError):
        return None
    a.flags.writeable = False
    return a

