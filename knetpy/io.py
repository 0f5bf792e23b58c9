"""Saving and loading without pickle: arrays as ``.npy`` members of a zip, structure as JSON.

A checkpoint file is a zip archive holding ``knetpy.json`` (format version, the object's structure
with arrays replaced by references, and the SHA-256 of every array) and one ``.npy`` member per
array, written and read with ``allow_pickle=False``. Writes are atomic: the file is written beside
the target, flushed to disk, then renamed over it, so an interrupted save leaves the old file intact.
Loading verifies every checksum and refuses anything that is not such an archive (pickles included).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile

import numpy as np

from .autograd import Param, Tensor
from .backend import get_rng_state, set_rng_state, to_numpy

FORMAT = "knetpy-checkpoint"
VERSION = 1
_META = "knetpy.json"


class CheckpointError(ValueError):
    """A file that is not a valid knetpy checkpoint, or one whose content does not match."""


# -- encoding ----------------------------------------------------------------------------------------
class _Encoder:
    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self._keys: dict[int, str] = {}  # id(array) -> key: an array reached twice is stored once
        self._alive = []  # keep encoded arrays alive so their ids stay unique

    def array(self, a, kind="array"):
        key = self._keys.get(id(a))
        if key is not None:
            return {f"__{kind}__": key}
        self._keys[id(a)] = key = f"a{len(self.arrays)}"
        self._alive.append(a)
        arr = np.asarray(to_numpy(a), order="C")  # (ascontiguousarray would turn 0-d arrays into shape (1,))
        if arr.dtype == object:
            raise TypeError("save: object arrays cannot be saved (they would need pickle)")
        self.arrays[key] = arr
        return {f"__{kind}__": key}

    def encode(self, obj):
        from .layers.base import Layer

        if isinstance(obj, Param):
            return self.array(obj.value, "param")
        if isinstance(obj, Tensor):
            return self.array(obj.value, "tensor")
        if isinstance(obj, np.ndarray) or type(obj).__module__.startswith("cupy"):
            return self.array(obj)
        if isinstance(obj, np.generic):
            return self.encode(obj.item())
        if isinstance(obj, Layer):
            return {"__layer__": self.layer(obj)}
        if obj is None or isinstance(obj, (bool, int, str)):
            return obj
        if isinstance(obj, float):
            if np.isfinite(obj):
                return obj
            return {"__float__": repr(obj)}
        if isinstance(obj, tuple):
            return {"__tuple__": [self.encode(v) for v in obj]}
        if isinstance(obj, list):
            return [self.encode(v) for v in obj]
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in obj):
                return {k: self.encode(v) for k, v in obj.items()}
            return {"__items__": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if hasattr(obj, "state_dict"):
            return {"__state__": type(obj).__name__, "state": self.encode(obj.state_dict())}
        raise TypeError(f"save: cannot save an object of type {type(obj).__name__}")

    def layer(self, layer):
        return {
            "class": type(layer).__name__,
            "config": self.encode(layer.get_config()),
            "input_shape": list(layer.input_shape) if layer.input_shape is not None else None,
            "built": bool(layer.built),
            "params": {k: self.array(p.value) for k, p in layer.params.items()},
            "state": {k: self.array(t.value) for k, t in layer.state().items()},
        }


def _sha256(arr):
    return hashlib.sha256(arr.tobytes()).hexdigest()


def save(path, obj):
    """Save ``obj`` to ``path`` atomically.

    ``obj`` may be an array, a Param/Tensor, a layer or model (architecture + weights + state), an
    object with ``state_dict()`` (optimizers, schedules), or any nesting of lists, tuples and dicts
    of those and of JSON scalars.
    """
    enc = _Encoder()
    tree = enc.encode(obj)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "tree": tree,
        "arrays": {k: {"sha256": _sha256(a), "dtype": a.dtype.str, "shape": list(a.shape)} for k, a in enc.arrays.items()},
    }
    atomic_write(path, lambda f: _write_zip(f, meta, enc.arrays))


def _write_zip(f, meta, arrays):
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(_META, json.dumps(meta))
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            z.writestr(key + ".npy", buf.getvalue())


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


# -- decoding ----------------------------------------------------------------------------------------
def _read(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no such file: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:1] == b"\x80":
        raise CheckpointError(f"load: {path} is a Python pickle; knetpy never loads pickles (they can run code)")
    if head != b"PK\x03\x04":
        raise CheckpointError(f"load: {path} is not a knetpy checkpoint (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if _META not in names:
                raise CheckpointError(f"load: {path} has no {_META}; not a knetpy checkpoint")
            meta = json.loads(z.read(_META))
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"load: {path} is not a knetpy checkpoint (format {meta.get('format')!r})")
            if meta.get("version", 0) > VERSION:
                raise CheckpointError(f"load: {path} has format version {meta['version']}; this knetpy reads up to {VERSION}")
            arrays = {}
            for key, info in meta["arrays"].items():
                if key + ".npy" not in names:
                    raise CheckpointError(f"load: {path} is missing array {key}")
                arr = np.lib.format.read_array(io.BytesIO(z.read(key + ".npy")), allow_pickle=False)
                if _sha256(arr) != info["sha256"] or arr.dtype.str != info["dtype"] or list(arr.shape) != info["shape"]:
                    raise CheckpointError(f"load: {path} is corrupted (array {key} does not match its checksum)")
                arrays[key] = arr
            unexpected = names - {_META} - {k + ".npy" for k in meta["arrays"]}
            if unexpected:
                raise CheckpointError(f"load: {path} has unexpected members {sorted(unexpected)}")
    except (zipfile.BadZipFile, json.JSONDecodeError, KeyError, EOFError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise CheckpointError(f"load: {path} is truncated or corrupted ({type(e).__name__}: {e})") from None
    except ValueError as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"load: {path} has unexpected content ({e})") from None
    return meta, arrays


class _Decoder:
    def __init__(self, arrays):
        self.arrays = arrays
        self._used = set()

    def _fresh(self, key):
        """The array for ``key``; a copy when it was handed out already, so loaded objects never alias."""
        if key in self._used:
            return self.arrays[key].copy()
        self._used.add(key)
        return self.arrays[key]

    def decode(self, node):
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, val), = node.items()
            if key == "__array__":
                return self._fresh(val)
            if key == "__param__":
                return Param(self._fresh(val))
            if key == "__tensor__":
                return Tensor(self._fresh(val))
            if key == "__tuple__":
                return tuple(self.decode(v) for v in val)
            if key == "__items__":
                return {_hashable(self.decode(k)): self.decode(v) for k, v in val}
            if key == "__float__":
                return float(val)
            if key == "__layer__":
                return self.layer(val)
        if "__state__" in node:
            return self.decode(node["state"])
        return {k: self.decode(v) for k, v in node.items()}

    def layer(self, info):
        from .layers.base import LAYER_CLASSES

        cls = LAYER_CLASSES.get(info["class"])
        if cls is None:
            raise CheckpointError(
                f"load: the checkpoint holds a layer of class {info['class']!r}, which is not defined; "
                "import the module that defines it before loading"
            )
        config = self.decode(info["config"])
        layer = cls(**config)
        if info.get("built") and info.get("input_shape") is not None:
            layer.build(tuple(info["input_shape"]))
            layer.built = True
            layer.input_shape = tuple(info["input_shape"])
        assign(layer, {k: self.arrays[v["__array__"]] for k, v in info["params"].items()},
               {k: self.arrays[v["__array__"]] for k, v in info["state"].items()})
        return layer


def _hashable(k):
    return tuple(_hashable(v) for v in k) if isinstance(k, (list, tuple)) else k


def assign(layer, params, state=None):
    """Copy arrays into ``layer``'s parameters (and state) by name, checking names and shapes."""
    own = layer.params
    missing = [k for k in own if k not in params]
    extra = [k for k in params if k not in own]
    if missing or extra:
        raise CheckpointError(
            f"load: parameter names differ: missing from the file {missing}, not in the model {extra}"
        )
    for name, arr in params.items():
        p = own[name]
        if p.shape != arr.shape:
            raise CheckpointError(
                f"load: parameter {name!r} has shape {tuple(arr.shape)} in the file but {tuple(p.shape)} in the model"
            )
    for name, arr in params.items():
        own[name].value = arr.astype(own[name].dtype, copy=True)
    if state:
        st = layer.state()
        for name, arr in state.items():
            if name not in st:
                raise CheckpointError(f"load: state {name!r} in the file is not in the model")
            if st[name].shape != arr.shape:
                raise CheckpointError(
                    f"load: state {name!r} has shape {tuple(arr.shape)} in the file but {tuple(st[name].shape)} in the model"
                )
            st[name].value = arr.astype(st[name].dtype, copy=True)


def load(path):
    """Load what :func:`save` wrote. Refuses pickles, foreign files and corrupted checkpoints."""
    meta, arrays = _read(path)
    # Rebuilding layers runs their initializers; their draws must not move the global generator.
    rng_state = get_rng_state()
    try:
        return _Decoder(arrays).decode(meta["tree"])
    finally:
        set_rng_state(rng_state)


def load_weights(layer, path):
    """Load the parameters (and state) saved from a layer or model of the same architecture into ``layer``."""
    meta, arrays = _read(path)
    tree = meta["tree"]
    if isinstance(tree, dict) and "__layer__" in tree:
        info = tree["__layer__"]
        assign(layer, {k: arrays[v["__array__"]] for k, v in info["params"].items()},
               {k: arrays[v["__array__"]] for k, v in info["state"].items()})
    elif isinstance(tree, dict) and all(isinstance(v, dict) and len(v) == 1 for v in tree.values()):
        assign(layer, {k: arrays[next(iter(v.values()))] for k, v in tree.items()})
    else:
        raise CheckpointError(f"load_weights: {path} holds neither a layer nor a name -> array mapping")
    return layer
