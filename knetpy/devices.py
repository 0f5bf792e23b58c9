"""Devices: where a tensor's data lives ('cpu', 'cuda:0', ...), moving it, and sharing it through DLPack.

The array library decides the device: NumPy arrays are on the CPU, CuPy arrays on a GPU, and a
library registered with :func:`knetpy.backend.register_namespace` (the strict test backend) on its own
named device. Moving data between devices is always explicit: :meth:`Tensor.to`, ``model.to``,
``DataLoader(..., device=)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import backend
from .autograd import Param, Tensor, primitive

_GPU_EXTRA = "pip install 'knetpy[gpu]'"


def check_device(device) -> str:
    """``device`` as a name ('cpu', 'cuda', 'cuda:N' or a registered one), or an error saying what exists.

    Anything whose ``str()`` is such a name works too (``torch.device('cuda:0')``).
    """
    name = str(device)
    if name == "cpu":
        return name
    if name == "cuda" or name.startswith("cuda:"):
        index = name[5:]
        if index and not index.isdigit():
            raise ValueError(f"device {device!r}: a GPU is named 'cuda' or 'cuda:N' with N its index")
        try:
            import cupy  # noqa: F401
        except ImportError:
            raise RuntimeError(f"device {name!r} needs CuPy, which is not installed ({_GPU_EXTRA})") from None
        return name
    if name in backend._devices.values():
        return name
    known = ["cpu", "cuda"] + sorted(set(backend._devices.values()) - {"cuda"})
    raise ValueError(f"unknown device {device!r}; known: {', '.join(known)}")


def device(x) -> str:
    """The device of a tensor, an array or a layer: 'cpu', 'cuda:0', ... ('cpu' for Python values)."""
    from .layers.base import Layer

    if isinstance(x, Layer):
        return x.device
    if isinstance(x, Tensor):
        x = x.value
    return backend.device_of(x)


@primitive(reads=False)
def _move(x, device):
    return backend.to_device(x, device)


def _move_grad(g, ans, x, device):
    where = backend.device_of(x.value if isinstance(x, Tensor) else x)
    if isinstance(g, Tensor):  # create_graph: the move back is recorded too
        return _move(g, where)
    return backend.to_device(g, where)


_move.defvjp(_move_grad, None)


def move(t, device):
    """``t`` on ``device`` (see :meth:`Tensor.to`)."""
    name = check_device(device)
    if backend.device_of(t.value) == name or (name == "cuda" and backend.device_of(t.value).startswith("cuda")):
        return t
    if isinstance(t, Param):
        return Param(backend.to_device(t.value, name))
    return _move(t, name)


def on_device(obj, device):
    """``obj`` with every array, tensor and layer in it (through dicts, lists and tuples) on ``device``.

    Arrays and tensors already there are returned as they are; values that are not arrays are kept.
    ``device`` must be a checked name (:func:`check_device`).
    """
    from .layers.base import Layer

    if isinstance(obj, (Tensor, Layer)):
        return obj.to(device)
    if backend.is_array(obj):
        return backend.to_device(obj, device)
    if isinstance(obj, dict):
        return type(obj)((k, on_device(v, device)) for k, v in obj.items())
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple
        return type(obj)(*(on_device(v, device) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(on_device(v, device) for v in obj)
    return obj


@dataclass(frozen=True)
class GPU:
    """The GPU CuPy would use: its index, name, memory in bytes, and the CUDA and CuPy versions."""

    index: int
    name: str
    total_memory: int
    free_memory: int
    cuda_version: str
    cupy_version: str

    def __str__(self):
        gib = 1 << 30
        return (f"cuda:{self.index} {self.name}, {self.free_memory / gib:.1f} of {self.total_memory / gib:.1f} GiB "
                f"free, CUDA {self.cuda_version}, CuPy {self.cupy_version}")


def _cuda_version(v):
    return f"{v // 1000}.{v % 1000 // 10}"


def gpu():
    """The usable GPU (a :class:`GPU`: which, memory, versions), or None without CuPy or a working GPU."""
    try:
        import cupy

        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        free, total = cupy.cuda.runtime.memGetInfo()
        name = props["name"]
        return GPU(
            index=dev.id, name=name.decode() if isinstance(name, bytes) else str(name),
            total_memory=int(total), free_memory=int(free),
            cuda_version=_cuda_version(cupy.cuda.runtime.runtimeGetVersion()), cupy_version=cupy.__version__,
        )
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device: all mean no usable GPU
        return None


def from_dlpack(obj):
    """A :class:`Tensor` sharing memory with ``obj`` (any DLPack producer: a torch, JAX, NumPy or CuPy array).

    The data stay in the producer's memory: CPU data become a NumPy array, GPU data a CuPy array; an
    array of a registered library (the strict test backend) stays in that library.
    """
    if isinstance(obj, Tensor):
        obj = obj.value
    module = backend._lookup(type(obj))
    if module is not None:
        return Tensor(module.from_dlpack(obj))
    if not hasattr(obj, "__dlpack__"):
        raise TypeError(f"from_dlpack: {type(obj).__name__} does not support DLPack (it has no __dlpack__)")
    kind = obj.__dlpack_device__()[0]
    if kind == 1:  # kDLCPU
        return Tensor(np.from_dlpack(obj))
    if kind in (2, 3, 13):  # kDLCUDA, kDLCUDAHost, kDLCUDAManaged
        try:
            import cupy
        except ImportError:
            raise RuntimeError(f"from_dlpack: the data are on a GPU and CuPy is not installed ({_GPU_EXTRA})") from None
        backend._lookup(cupy.ndarray)
        return Tensor(cupy.from_dlpack(obj))
    raise ValueError(f"from_dlpack: data on DLPack device type {kind}; knetpy takes CPU (1) and CUDA (2) memory")
