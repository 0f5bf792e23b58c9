"""Loading weights saved by PyTorch: a ``state_dict`` in safetensors or ``.npz`` form, never pickle.

Name mapping from PyTorch's layout (the model's own names with the last part renamed)::

    knetpy                       PyTorch                  array
    Conv1D/2D/3D .w  .b          .weight  .bias           the same (out, in / groups, *kernel)
    Conv2DTranspose .w  .b       .weight  .bias           the same (in, out / groups, kh, kw)
    Dense .w  .b                 Linear .weight  .bias    w is weight transposed: (in, out) vs (out, in)
    BatchNorm .gamma  .beta      .weight  .bias           the same
    BatchNorm .running_mean/var  .running_mean/var        the same
    BatchNorm .batches_seen      .num_batches_tracked     loaded when present, never required
    LayerNorm .gamma  .beta      .weight  .bias           the same
    Embedding .w                 .weight                  the same

Containers keep their names: a :class:`~knetpy.Sequential` numbers its layers as ``nn.Sequential``
does, and the zoo's networks name their layers as torchvision does (``layer1.0.conv1``,
``features.denseblock1.denselayer1.norm1``, ...), so a torchvision ``state_dict`` maps onto them
directly. ``rename`` adapts other names (e.g. strip DataParallel's ``module.``).
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict

import numpy as np

from ..autograd import Param, Tensor
from ..io import CheckpointError
from ..layers import Dense
from ..layers.base import Layer

#: knetpy's name for a tensor -> PyTorch's, for the last part of a name.
TORCH_NAMES = {"w": "weight", "b": "bias", "gamma": "weight", "beta": "bias", "batches_seen": "num_batches_tracked"}
OPTIONAL = ("num_batches_tracked",)

_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                       "I8": "i1", "U8": "u1", "BOOL": "?", "BF16": "<u2"}
MAX_HEADER = 100 * 2**20  # a safetensors header is JSON of names and shapes: far below this


def read_safetensors(path):
    """The arrays of a safetensors file, by name, as NumPy arrays (bfloat16 becomes float32).

    The format is an 8-byte little-endian header length, a JSON header of ``{name: {dtype, shape,
    data_offsets}}`` and the raw little-endian data; nothing in it is executed. A malformed file
    raises :class:`~knetpy.CheckpointError` naming what is wrong.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)

    def bad(why):
        return CheckpointError(f"read_safetensors: {path} is not a valid safetensors file: {why}")

    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad("shorter than its 8-byte header length")
        n = int.from_bytes(head, "little")
        if n > min(MAX_HEADER, size - 8):
            raise bad(f"its header claims {n} bytes, more than the file ({size} bytes) holds")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise bad(f"its header is not JSON ({e})") from None
        if not isinstance(header, dict):
            raise bad("its header is not a JSON object")
        start, data = 8 + n, size - 8 - n
        out = OrderedDict()
        for name, info in header.items():
            if name == "__metadata__":
                continue
            try:
                kind, shape, (begin, end) = info["dtype"], [int(s) for s in info["shape"]], info["data_offsets"]
                begin, end = int(begin), int(end)
            except (KeyError, TypeError, ValueError):
                raise bad(f"the entry for {name!r} lacks dtype, shape or data_offsets") from None
            if kind not in _SAFETENSORS_DTYPES:
                raise bad(f"{name!r} has dtype {kind}, which is not supported ({', '.join(_SAFETENSORS_DTYPES)})")
            dtype = np.dtype(_SAFETENSORS_DTYPES[kind])
            if any(s < 0 for s in shape) or not 0 <= begin <= end <= data:
                raise bad(f"{name!r} has shape {shape} and offsets {[begin, end]} outside the data ({data} bytes)")
            if end - begin != math.prod(shape) * dtype.itemsize:
                raise bad(f"{name!r} has {end - begin} bytes for shape {shape} of {kind}")
            f.seek(start + begin)
            arr = np.frombuffer(f.read(end - begin), dtype=dtype).reshape(shape)
            if kind == "BF16":  # the top half of a float32
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            out[name] = arr.astype(arr.dtype.newbyteorder("="), copy=True)
    return out


def _read(source):
    """``source`` (a path, or a dict of arrays / torch tensors) as a dict name -> NumPy array."""
    if isinstance(source, dict):
        out = OrderedDict()
        for name, value in source.items():
            if hasattr(value, "detach"):  # a torch tensor
                value = value.detach().cpu()
                value = value.float() if str(value.dtype) == "torch.bfloat16" else value
                value = value.numpy()
            out[str(name)] = np.asarray(value)
        return out
    path = os.fspath(source)
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                return OrderedDict((k, data[k]) for k in data.files)
        except (ValueError, OSError) as e:
            raise CheckpointError(f"load_torch_state: {path} is not a readable .npz of arrays ({e})") from None
    if path.endswith(".safetensors"):
        return read_safetensors(path)
    raise ValueError(f"load_torch_state: {path} is neither .safetensors nor .npz (pickled .pt/.pth files are "
                     "not read: they can run code; save the state_dict with safetensors.torch.save_file)")


def _entries(layer, prefix=""):
    """(knetpy name, PyTorch name, owning layer, tensor) for every parameter and state tensor of ``layer``."""
    for key, val in layer._children():
        if isinstance(val, Layer):
            yield from _entries(val, f"{prefix}{key}.")
        elif isinstance(val, Param):
            yield prefix + key, prefix + TORCH_NAMES.get(key, key), layer, val
    for key, val in vars(layer).items():
        if isinstance(val, Tensor) and not isinstance(val, Param) and not key.startswith("_"):
            yield prefix + key, prefix + TORCH_NAMES.get(key, key), layer, val


def torch_names(model):
    """``{knetpy name: PyTorch name}`` for every tensor :func:`load_torch_state` fills in ``model``."""
    return OrderedDict((name, torch) for name, torch, _, _ in _entries(model))


def load_torch_state(model, source, strict=True, rename=None):
    """Load a PyTorch ``state_dict`` into ``model`` (built), in place; returns ``model``.

    ``source``: a ``.safetensors`` file (``safetensors.torch.save_file(net.state_dict(), path)``),
    an ``.npz`` of named arrays (``np.savez(path, **{k: v.numpy() for k, v in sd.items()})``), or
    a dict of arrays or tensors. Names map as the module docstring lists; ``Dense`` weights are
    transposed. With ``strict`` every tensor of the model must be given and every given one used
    (``num_batches_tracked`` may be missing). ``rename(name)`` may change each source name first,
    or return None to drop it. Shapes are checked before anything changes.
    """
    if not isinstance(model, Layer):
        raise TypeError(f"load_torch_state: expected a knetpy model or layer, got {type(model).__name__}")
    if not model.built or any(not layer.built for layer in model.layers()):
        raise ValueError("load_torch_state: the model is not built yet: give it input_shape=, or call it on data first")
    arrays = _read(source)
    if rename is not None:
        renamed = OrderedDict()
        for name, arr in arrays.items():
            new = rename(name)
            if new is not None:
                renamed[new] = arr
        arrays = renamed
    entries = list(_entries(model))
    known = {torch for _, torch, _, _ in entries}
    missing = [torch for _, torch, _, _ in entries if torch not in arrays and torch.rsplit(".", 1)[-1] not in OPTIONAL]
    unused = [name for name in arrays if name not in known]
    if strict and (missing or unused):
        raise ValueError(f"load_torch_state: names differ: missing from the checkpoint {_few(missing)}; "
                         f"in the checkpoint but not the model {_few(unused)} (strict=False skips them; "
                         "kp.models.torch_names(model) lists the names the model expects)")
    state = OrderedDict()
    for name, torch, owner, tensor in entries:
        if torch not in arrays:
            continue
        arr = arrays[torch]
        transposed = isinstance(owner, Dense) and name.rsplit(".", 1)[-1] == "w"
        if transposed:
            arr = arr.T  # Linear keeps (out, in); Dense (in, out)
        if tuple(arr.shape) != tuple(tensor.shape):
            note = " (a Linear weight, (out, in), transposed to Dense's (in, out))" if transposed else ""
            raise ValueError(f"load_torch_state: {torch!r} has shape {tuple(arrays[torch].shape)}{note}, but the "
                             f"model's {name!r} ({type(owner).__name__}) has shape {tuple(tensor.shape)}")
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"load_torch_state: {torch!r} has dtype {arr.dtype}, not a number")
        state[name] = np.asarray(arr, dtype=tensor.value.dtype, order="C")  # (ascontiguousarray makes 0-d 1-d)
    model.load_state_dict(state, strict=False)
    return model


def _few(names, n=6):
    return "none" if not names else ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")

