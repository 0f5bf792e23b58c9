"""Saving and loading without pickle: arrays as ``.npy`` members of a zip, structure as JSON.

A checkpoint file is a zip archive holding ``knetpy.json`` (format version, the object's structure
with arrays replaced by references, and the SHA-256 of every array) and one ``.npy`` member per
array, written and read with ``allow_pickle=False``. Writes are atomic: the file is written beside
the target, flushed to disk, then renamed over it, so an interrupted save leaves the old file intact
(and the next save to that path removes the temporary file it left).

Loading checks the whole file before building anything from it: the zip's members (stored, never
compressed or encrypted), the JSON's form, every array's dtype and shape against its member's size
and its checksum, and the saved structure (tags, references, layer entries). Layers are rebuilt
under an allocation budget derived from the arrays the file holds, so a config declaring a huge
layer fails instead of exhausting memory. Every failure is a :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import io
import json
import math
import os
import re
import socket
import tempfile
import time
import warnings
import zipfile

import numpy as np

from .autograd import Param, Tensor, mark_modified
from .backend import device_of, get_rng_state, is_array, set_rng_state, to_device, to_numpy
from .init import AllocationRefused, allocation_budget

FORMAT = "knetpy-checkpoint"
VERSION = 1
_META = "knetpy.json"


class CheckpointError(ValueError):
    """A file that is not a valid knetpy checkpoint, or one whose content does not match."""


# -- encoding ----------------------------------------------------------------------------------------
class _Encoder:
    def __init__(self, with_compile=True):
        self.with_compile = with_compile
        self.arrays: dict[str, np.ndarray] = {}
        self._keys: dict[int, str] = {}  # id(array) -> key: an array reached twice is stored once
        self._alive = []  # keep encoded arrays alive so their ids stay unique
        self._bindings = []  # (node, optimizer's params) to resolve once everything is encoded

    def finish(self, obj):
        """The encoded ``obj``, with each optimizer's parameters named by the keys of their saved arrays."""
        tree = self.encode(obj)
        for node, params in self._bindings:
            keys = {name: self._keys.get(id(p.value)) for name, p in params.items()}
            if None not in keys.values():
                node["bound"] = keys
        return tree

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
        if is_array(obj):  # device arrays are written as host copies (array() moves them)
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
            node = {"__state__": type(obj).__name__, "state": self.encode(obj.state_dict())}
            if getattr(obj, "_params", None):  # an optimizer: bound again on load if its Params are saved too
                self._bindings.append((node, obj._params))
            return node
        raise TypeError(f"save: cannot save an object of type {type(obj).__name__}")

    def layer(self, layer):
        node = {
            "class": type(layer).__name__,
            "config": self.encode(layer.get_config()),
            "input_shape": _shape_list(layer.input_shape),
            "built": bool(layer.built),
            "params": {k: self.array(p.value) for k, p in layer.params.items()},
            "state": {k: self.array(t.value) for k, t in layer.state().items()},
            # Shapes each inner layer was built for: lazily built layers are rebuilt from them on load.
            "children": _built_shapes(layer),
        }
        if self.with_compile and getattr(layer, "compiled", False):
            node["compile"] = self.compile_config(layer)
        return node

    def compile_config(self, model):
        """What ``model.compile`` was given, as data: the loss, the metric names, the optimizer and its state."""
        from . import losses
        from . import metrics as _metrics

        try:
            loss, loss_error = losses.serialize(model._loss), None
        except (ValueError, TypeError) as e:  # a custom Python function: the model loads uncompiled
            loss, loss_error = None, str(e)
        names, dropped = [], []
        for name, fn in model._metrics:
            try:
                known = _metrics.get(name)
            except (ValueError, TypeError):
                known = None
            # 'accuracy' on logits is chosen again by compile from the loss
            ok = known is fn or (known is _metrics.accuracy and getattr(fn, "__name__", "") == "accuracy")
            (names if ok else dropped).append(name)
        opt = model.optimizer
        bound = None
        if opt is not None and opt._params is not None:
            by_id = {id(p): n for n, p in model.params.items()}
            if all(id(p) in by_id for p in opt._params.values()):
                bound = {k: by_id[id(p)] for k, p in opt._params.items()}
        out = {
            "loss": loss,
            "metrics": names,
            "optimizer": self.encode(opt) if opt is not None else None,
            "optimizer_params": bound,
        }
        if loss_error is not None:
            out["loss_error"] = loss_error
        if dropped:
            out["dropped_metrics"] = dropped
        if bound is not None and getattr(opt, "_bound_by_fit", None) == tuple(id(p) for p in opt._params.values()):
            out["bound_by_fit"] = True  # fit may rebind it (to the trainable parameters); a user's binding stays
        return out


def _shape_list(shape):
    return None if shape is None else [None if d is None else int(d) for d in shape]


def _built_shapes(layer):
    """``{child name: {"input_shape", "built", "children"}}`` for the layers inside ``layer``."""
    from .layers.base import Layer

    return {
        name: {"input_shape": _shape_list(child.input_shape), "built": bool(child.built),
               "children": _built_shapes(child)}
        for name, child in layer._children()
        if isinstance(child, Layer)
    }


def _sha256(arr):
    return hashlib.sha256(arr.tobytes()).hexdigest()


def save(path, obj, *, with_compile=True):
    """Save ``obj`` to ``path`` atomically.

    ``obj`` may be an array, a Param/Tensor, a layer or model (architecture + weights + state), an
    object with ``state_dict()`` (optimizers, schedules), or any nesting of lists, tuples and dicts
    of those and of JSON scalars. A compiled model keeps its compile configuration (loss, metrics,
    optimizer with its state), so the loaded model can ``evaluate`` and go on training; optimizers
    come back as optimizers. ``with_compile=False`` leaves the compile configuration out.
    """
    enc = _Encoder(with_compile)
    tree = enc.finish(obj)
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


#: A temporary file untouched for this long is stale even if a process with its writer's pid runs
#: (pids are reused, and a writer on another machine sharing the folder cannot be asked).
STALE_AFTER_S = 3600.0


def _host_tag():
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _temp_prefix(path):
    return ".tmp-" + os.path.basename(path) + "-"


def _pid_running(pid):
    if os.name != "posix":
        return True  # no cheap, harmless check: rely on the age rule alone
    try:
        os.kill(pid, 0)  # signal 0 checks existence without signalling
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to another user
        return True
    return True


def remove_stale_temporaries(path):
    """Delete the temporary files that saves to ``path`` killed mid-way left beside it.

    Temporaries are named ``.tmp-<name>-<pid>-<host>-<random>``. One is stale when its writer (that
    pid on this machine) no longer runs, or when nobody has written to it for :data:`STALE_AFTER_S`
    seconds; a save in progress in another process is never touched, nor any other file.
    Returns the names removed.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(re.escape(_temp_prefix(path)) + r"(?:(\d+)-([0-9a-f]{8})-)?[a-z0-9_]{8}\Z")
    removed = []
    try:
        entries = os.listdir(folder)
    except OSError:
        return removed
    now, host = time.time(), _host_tag()
    for entry in entries:
        m = pattern.match(entry)
        if m is None:
            continue
        full = os.path.join(folder, entry)
        try:
            age = now - os.stat(full).st_mtime
            dead = m.group(1) is not None and m.group(2) == host and not _pid_running(int(m.group(1)))
            if dead or age > STALE_AFTER_S:
                os.unlink(full)
                removed.append(entry)
        except OSError:  # removed meanwhile by another save, or not ours to remove
            pass
    return removed


def _file_mode(path):
    """The permissions ``open(path, 'w')`` would give: the old file's, else 0o666 less the umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        pass
    try:  # the umask without os.umask(), which would change it for every thread for a moment
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Temporaries that earlier saves to ``path`` left when they were killed are removed first
    (see :func:`remove_stale_temporaries`).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(path)
    prefix = f"{_temp_prefix(path)}{os.getpid()}-{_host_tag()}-"
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))  # mkstemp's 0o600 would hide the file from the user's group
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
# Every part of a file is checked (structure, types, sizes, checksums) before anything is built from
# it, and these limits keep a small hostile file from exhausting the stack or the memory.
MAX_DEPTH = 100  # nesting of the saved structure (each nested layer adds about four levels)
MAX_META_BYTES = 1 << 28  # the JSON member
MAX_NDIM = 32
_NPY_HEADER_MAX = 1 << 16  # an .npy header of a numeric array is far shorter
_KINDS = "biufc"  # the dtypes save() writes: bool, integers, floats, complex
_ARRAY_KEY = re.compile(r"a[0-9]{1,9}\Z")
_SHA = re.compile(r"[0-9a-f]{64}\Z")
_REF_TAGS = ("__array__", "__param__", "__tensor__")
_LAYER_KEYS = {"class", "config", "input_shape", "built", "params", "state"}
_COMPILE_KEYS = {"loss", "metrics", "optimizer", "optimizer_params"}


def _bad(path, what):
    return CheckpointError(f"load: {path} {what}")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _read(path):
    """``(meta, arrays)`` of the checkpoint at ``path``, all of it checked; CheckpointError otherwise."""
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
        size = os.path.getsize(path)
        with zipfile.ZipFile(path) as z:
            members = _check_members(path, z.infolist(), size)
            if _META not in members:
                raise _bad(path, f"has no {_META}; not a knetpy checkpoint")
            if members[_META].file_size > MAX_META_BYTES:
                raise _bad(path, f"has a {members[_META].file_size}-byte {_META}, over the {MAX_META_BYTES} limit")
            meta = _parse_json(path, z.read(_META))
            _check_meta(path, meta)
            expected = {key + ".npy" for key in meta["arrays"]}
            missing = sorted(expected - set(members))
            extra = sorted(set(members) - expected - {_META})
            if missing or extra:
                raise _bad(path, f"does not hold the arrays it declares (missing members {missing}, unexpected members {extra})")
            arrays = {key: _read_array(path, z, members[key + ".npy"], key, info) for key, info in meta["arrays"].items()}
    except (CheckpointError, FileNotFoundError):
        raise
    except RecursionError:
        raise _bad(path, "is nested too deeply to be a knetpy checkpoint") from None
    except Exception as e:  # zipfile and the .npy reader raise many types on damaged input
        raise _bad(path, f"is truncated or corrupted ({type(e).__name__}: {e})") from None
    return meta, arrays


def _check_members(path, infos, size):
    """``{name: ZipInfo}``, refusing what the writer never produces: compression, encryption, repeats."""
    out, total = {}, 0
    for info in infos:
        name = info.filename
        if name in out:
            raise _bad(path, f"has two members named {name!r}")
        if info.flag_bits & 0x1:
            raise _bad(path, f"has an encrypted member {name!r}; knetpy writes and reads plain archives only")
        if info.compress_type != zipfile.ZIP_STORED:
            raise _bad(path, f"has a compressed member {name!r} (zip method {info.compress_type}); "
                             "knetpy writes and reads uncompressed archives only")
        if info.compress_size != info.file_size:
            raise _bad(path, f"member {name!r} declares {info.file_size} bytes but stores {info.compress_size}")
        total += info.file_size
        out[name] = info
    if total > size:
        raise _bad(path, f"declares members of {total} bytes in all, more than the file's {size} bytes")
    return out


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _unique_keys(pairs):
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("an object repeats a key")
    return out


def _parse_json(path, raw):
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float,
                          object_pairs_hook=_unique_keys)
    except RecursionError:
        raise _bad(path, f"has a {_META} nested too deeply") from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError included
        raise _bad(path, f"has an unreadable {_META} ({e})") from None


def _check_shape(value):
    return (isinstance(value, list) and len(value) <= MAX_NDIM
            and all(_is_int(d) and 0 <= d < 2**62 for d in value))


def _check_meta(path, meta):
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise _bad(path, f"is not a knetpy checkpoint (format {fmt!r})")
    version = meta.get("version")
    if not _is_int(version) or version < 1:
        raise _bad(path, f"has an invalid format version {version!r}")
    if version > VERSION:
        raise _bad(path, f"has format version {version}; this knetpy reads up to {VERSION}")
    keys = {"format", "version", "tree", "arrays"}
    if set(meta) != keys:
        raise _bad(path, f"has the wrong members in {_META}: missing {sorted(keys - set(meta))}, "
                         f"unexpected {sorted(set(meta) - keys)}")
    if not isinstance(meta["arrays"], dict):
        raise _bad(path, f"has no array table ('arrays' is a {type(meta['arrays']).__name__})")
    for key, info in meta["arrays"].items():
        if not _ARRAY_KEY.match(key):
            raise _bad(path, f"declares an array with the invalid name {key!r}")
        if not isinstance(info, dict) or set(info) != {"sha256", "dtype", "shape"}:
            raise _bad(path, f"describes array {key} wrongly (need exactly sha256, dtype and shape)")
        if not isinstance(info["sha256"], str) or not _SHA.match(info["sha256"]):
            raise _bad(path, f"has an invalid checksum for array {key}")
        if not _check_shape(info["shape"]):
            raise _bad(path, f"has an invalid shape {info['shape']!r} for array {key}")
        _dtype_of(path, key, info["dtype"])
    refs = set()
    _TreeCheck(path, meta["arrays"], refs).node(meta["tree"], 0)
    unused = sorted(set(meta["arrays"]) - refs)
    if unused:
        raise _bad(path, f"declares arrays that nothing uses: {unused[:10]}")


def _dtype_of(path, key, text):
    """The NumPy dtype of a dtype string such as '<f4', if it is one the writer produces."""
    dt = None
    if isinstance(text, str) and len(text) <= 8:
        try:
            dt = np.dtype(text)
        except (TypeError, ValueError, SyntaxError):
            dt = None
    if dt is None or dt.kind not in _KINDS or dt.str != text:
        raise _bad(path, f"has an unsupported dtype {text!r} for array {key} (numeric dtypes only, e.g. '<f4')")
    return dt


def _read_array(path, z, member, key, info):
    """Array ``key``, its size checked against its declared shape and dtype before reading, then its checksum."""
    dtype, shape = np.dtype(info["dtype"]), tuple(info["shape"])
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if not nbytes <= member.file_size <= nbytes + _NPY_HEADER_MAX:
        raise _bad(path, f"declares array {key} as {info['dtype']} of shape {shape} ({nbytes} bytes), "
                         f"but its member holds {member.file_size} bytes")
    data = z.read(member)
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        header = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        header = np.lib.format.read_array_header_2_0(f)
    else:
        raise _bad(path, f"has array {key} in .npy format version {version}, which knetpy does not write")
    if header != (shape, False, dtype):
        raise _bad(path, f"has array {key} stored as {header[2]} of shape {header[0]}"
                         f"{' in Fortran order' if header[1] else ''}, not as declared ({dtype} of shape {shape})")
    offset = f.tell()
    if len(data) - offset != nbytes:
        raise _bad(path, f"has array {key} with {len(data) - offset} bytes of data for {nbytes} declared")
    if hashlib.sha256(memoryview(data)[offset:]).hexdigest() != info["sha256"]:
        raise _bad(path, f"is corrupted (array {key} does not match its checksum)")
    if count == 0:
        return np.empty(shape, dtype)
    return np.frombuffer(data, dtype, count, offset).reshape(shape).copy()


class _TreeCheck:
    """Checks the saved structure's form (tags, references, layer entries, depth) without building anything."""

    def __init__(self, path, arrays, refs):
        self.path, self.arrays, self.refs = path, arrays, refs

    def fail(self, what):
        return _bad(self.path, what)

    def ref(self, key):
        if not isinstance(key, str) or key not in self.arrays:
            raise self.fail(f"refers to an array {key!r} it does not declare")
        self.refs.add(key)

    def node(self, node, depth):
        if depth > MAX_DEPTH:
            raise self.fail(f"has a structure nested more than {MAX_DEPTH} levels deep")
        if node is None or isinstance(node, (bool, int, float, str)):
            return
        if isinstance(node, list):
            for v in node:
                self.node(v, depth + 1)
            return
        tags = [k for k in node if k.startswith("__")]
        if not tags:
            for v in node.values():
                self.node(v, depth + 1)
            return
        if "__state__" in node:
            if not set(node) <= {"__state__", "state", "bound"} or "state" not in node:
                raise self.fail(f"has a malformed saved object (members {sorted(node)})")
            if not isinstance(node["__state__"], str):
                raise self.fail("names a saved object's class with a non-string")
            bound = node.get("bound", {})
            if not isinstance(bound, dict):
                raise self.fail("has a malformed optimizer binding")
            for key in bound.values():
                self.ref(key)
            self.node(node["state"], depth + 1)
            return
        if len(node) != 1:
            raise self.fail(f"has an object mixing the tag {tags[0]!r} with other members")
        (tag, val), = node.items()
        if tag in _REF_TAGS:
            self.ref(val)
        elif tag == "__tuple__":
            if not isinstance(val, list):
                raise self.fail("has a tuple that is not a list")
            self.node(val, depth + 1)
        elif tag == "__items__":
            if not isinstance(val, list) or not all(isinstance(kv, list) and len(kv) == 2 for kv in val):
                raise self.fail("has a mapping that is not a list of [key, value] pairs")
            for k, v in val:
                self.key(k, depth + 1)
                self.node(v, depth + 1)
        elif tag == "__float__":
            if val not in ("inf", "-inf", "nan"):
                raise self.fail(f"has an invalid special float {val!r}")
        elif tag == "__layer__":
            self.layer(val, depth + 1)
        else:
            raise self.fail(f"has an unknown tag {tag!r}")

    def key(self, node, depth):
        """A mapping key must decode to something hashable: a scalar, or a tuple/list of keys."""
        if depth > MAX_DEPTH:
            raise self.fail(f"has a structure nested more than {MAX_DEPTH} levels deep")
        if node is None or isinstance(node, (bool, int, float, str)):
            return
        if isinstance(node, dict) and set(node) == {"__float__"}:
            return self.node(node, depth)
        items = node.get("__tuple__") if isinstance(node, dict) and len(node) == 1 else node
        if not isinstance(items, list):
            raise self.fail("has a mapping key that is not a number, string or tuple")
        for v in items:
            self.key(v, depth + 1)

    def shape(self, value, what):
        if value is None:
            return
        if not (isinstance(value, list) and len(value) <= MAX_NDIM
                and all(d is None or (_is_int(d) and 0 <= d < 2**62) for d in value)):
            raise self.fail(f"has an invalid input shape {value!r} for {what}")

    def refs_by_name(self, node, what):
        if not isinstance(node, dict) or not all(
            isinstance(v, dict) and set(v) == {"__array__"} for v in node.values()
        ):
            raise self.fail(f"has malformed {what} (need name -> array references)")
        for v in node.values():
            self.ref(v["__array__"])

    def children(self, node, what, depth):
        if depth > MAX_DEPTH:
            raise self.fail(f"has a structure nested more than {MAX_DEPTH} levels deep")
        if not isinstance(node, dict):
            raise self.fail(f"has malformed inner-layer shapes in {what}")
        for name, child in node.items():
            if not isinstance(child, dict) or set(child) != {"input_shape", "built", "children"}:
                raise self.fail(f"has malformed inner-layer shapes for {name!r} in {what}")
            if not isinstance(child["built"], bool):
                raise self.fail(f"has a non-boolean 'built' for {name!r} in {what}")
            self.shape(child["input_shape"], f"{name!r} in {what}")
            self.children(child["children"], what, depth + 1)

    def layer(self, info, depth):
        if not isinstance(info, dict):
            raise self.fail("has a layer entry that is not an object")
        missing = sorted(_LAYER_KEYS - set(info))
        extra = sorted(set(info) - _LAYER_KEYS - {"children", "compile"})
        if missing or extra:
            raise self.fail(f"has a layer entry with missing members {missing} or unexpected members {extra}")
        what = f"layer {info['class']!r}" if isinstance(info["class"], str) else "a layer"
        if not isinstance(info["class"], str):
            raise self.fail("names a layer's class with a non-string")
        config = info["config"]
        if not isinstance(config, dict) or any(k.startswith("__") for k in config):
            raise self.fail(f"has a config of {what} that is not a plain object")
        self.node(config, depth + 1)
        self.shape(info["input_shape"], what)
        if not isinstance(info["built"], bool):
            raise self.fail(f"has a non-boolean 'built' for {what}")
        self.refs_by_name(info["params"], f"parameters of {what}")
        self.refs_by_name(info["state"], f"state of {what}")
        if "children" in info:
            self.children(info["children"], what, depth + 1)
        if "compile" in info:
            self.compile(info["compile"], what, depth + 1)

    def compile(self, cfg, what, depth):
        optional = {"loss_error", "dropped_metrics", "bound_by_fit"}
        if not isinstance(cfg, dict) or not _COMPILE_KEYS <= set(cfg) <= _COMPILE_KEYS | optional:
            raise self.fail(f"has a malformed compile configuration for {what}")
        if not (cfg["loss"] is None or isinstance(cfg["loss"], (str, dict))):
            raise self.fail(f"has an invalid loss {cfg['loss']!r} for {what}")
        for key in ("metrics", "dropped_metrics"):
            if not (isinstance(cfg.get(key, []), list) and all(isinstance(m, str) for m in cfg.get(key, []))):
                raise self.fail(f"has invalid metric names for {what}")
        if not isinstance(cfg.get("loss_error", ""), str) or not isinstance(cfg.get("bound_by_fit", True), bool):
            raise self.fail(f"has an invalid loss note for {what}")
        opt = cfg["optimizer"]
        if not (opt is None or (isinstance(opt, dict) and "__state__" in opt)):
            raise self.fail(f"has an invalid optimizer for {what}")
        self.node(opt, depth + 1)
        bound = cfg["optimizer_params"]
        if not (bound is None or (isinstance(bound, dict) and all(isinstance(v, str) for v in bound.values()))):
            raise self.fail(f"has invalid optimizer parameter names for {what}")
        if isinstance(cfg["loss"], dict):
            self.node(cfg["loss"], depth + 1)


def _optimizer_class(name):
    """The Optimizer subclass called ``name`` (built-in or defined by the user), or None."""
    from .optim.base import Optimizer

    stack = [Optimizer]
    while stack:
        cls = stack.pop()
        if cls.__name__ == name:
            return cls
        stack.extend(cls.__subclasses__())
    return None


def _constructor_keys(cls):
    """(names the constructor takes, whether it takes any keyword); follows wrappers to the real signature."""
    params = inspect.signature(cls.__init__).parameters.values()
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


class _Decoder:
    """Builds objects from a checked structure; any constructor's complaint becomes a CheckpointError."""

    def __init__(self, arrays, path="<checkpoint>"):
        self.arrays = arrays
        self.path = path
        self._used = set()
        self._params_by_key = {}
        self._pending = []  # (optimizer, {name: array key}) to bind once the Params exist

    def fail(self, what):
        return _bad(self.path, what)

    def _fresh(self, key):
        """The array for ``key``; a copy when it was handed out already, so loaded objects never alias."""
        if key in self._used:
            return self.arrays[key].copy()
        self._used.add(key)
        return self.arrays[key]

    def top(self, node):
        """Decode the whole saved structure, then bind optimizers to the Params saved with them."""
        out = self.decode(node)
        for opt, bound in self._pending:
            if all(k in self._params_by_key for k in bound.values()):
                try:
                    opt.bind({name: self._params_by_key[k] for name, k in bound.items()})
                except (TypeError, ValueError) as e:
                    raise self.fail(f"has an optimizer whose state does not fit its parameters ({e})") from None
        return out

    def decode(self, node):
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict):
            return node
        if "__state__" in node:
            return self.saved_object(node)
        if len(node) == 1:
            (key, val), = node.items()
            if key == "__array__":
                return self._fresh(val)
            if key == "__param__":
                return self.param(val)
            if key == "__tensor__":
                return self.wrap(Tensor, val)
            if key == "__tuple__":
                return tuple(self.decode(v) for v in val)
            if key == "__items__":
                return {_hashable(self.decode(k)): self.decode(v) for k, v in val}
            if key == "__float__":
                return float(val)
            if key == "__layer__":
                return self.layer(val)
        return {k: self.decode(v) for k, v in node.items()}

    def wrap(self, cls, key):
        try:
            return cls(self._fresh(key))
        except (TypeError, ValueError) as e:
            raise self.fail(f"has array {key} that cannot be a {cls.__name__} ({e})") from None

    def param(self, key):
        p = self.wrap(Param, key)
        self._params_by_key.setdefault(key, p)
        return p

    def saved_object(self, node):
        """An optimizer rebuilt from its saved state; other objects (schedules) come back as their state."""
        state = self.decode(node["state"])
        cls = _optimizer_class(node["__state__"])
        if cls is None:
            return state
        opt = self.optimizer(cls, state)
        if node.get("bound"):
            self._pending.append((opt, node["bound"]))
        return opt

    def optimizer(self, cls, state):
        from .optim.base import COMMON_OPTIONS

        name = cls.__name__
        meta = state.get("meta") if isinstance(state, dict) else None
        hyper = meta.get("hyper") if isinstance(meta, dict) else None
        if not isinstance(hyper, dict):
            raise self.fail(f"has a {name} optimizer without its hyper-parameters")
        try:
            takes, any_keyword = _constructor_keys(cls)
            # The constructor checks the values; hyper-parameters it does not take are set by load_state_dict.
            kwargs = {k: v for k, v in hyper.items() if k in takes or (any_keyword and k in COMMON_OPTIONS)}
            opt = cls(**kwargs)
            opt.load_state_dict(state)
        except Exception as e:  # constructors and load_state_dict judge values from the file
            raise self.fail(f"has a {name} optimizer that cannot be restored ({type(e).__name__}: {e})") from None
        return opt

    def layer(self, info):
        from .layers.base import LAYER_CLASSES

        cls = LAYER_CLASSES.get(info["class"])
        if cls is None:
            raise self.fail(
                f"holds a layer of class {info['class']!r}, which is not defined; "
                "import the module that defines it before loading"
            )
        config = self.decode(info["config"])
        takes, any_keyword = _constructor_keys(cls)
        unknown = sorted(k for k in config if k not in takes)
        if unknown and not any_keyword:
            raise self.fail(f"gives {cls.__name__} the config keys {unknown}, which it does not take "
                            f"(it takes {sorted(takes)})")
        try:
            layer = cls(**config)
        except Exception as e:  # the constructor judges the config's values
            raise self.fail(f"has a {cls.__name__} config that its constructor refuses ({type(e).__name__}: {e})") from None
        if info["built"] and info["input_shape"] is not None and not layer.built:
            _build(layer, tuple(info["input_shape"]), self.path)
        _build_inner(layer, info.get("children", {}), self.path)
        assign(layer, self.refs(info["params"]), self.refs(info["state"]), self.path)
        if "compile" in info:
            self.compile(layer, info["compile"])
        return layer

    def refs(self, node):
        return {k: self.arrays[v["__array__"]] for k, v in node.items()}

    def compile(self, model, cfg):
        """Compile ``model`` as it was when saved, optimizer state included; warn when the loss was not saved."""
        from . import losses
        from .model import Model

        if not isinstance(model, Model):
            raise self.fail(f"has a compile configuration for {type(model).__name__}, which is not a Model")
        opt = self.decode(cfg["optimizer"]) if cfg["optimizer"] is not None else None
        if opt is not None and not hasattr(opt, "bind"):
            raise self.fail(f"has a compile configuration whose optimizer is a {type(opt).__name__}")
        if cfg["loss"] is None:
            warnings.warn(
                f"load: {self.path}: the model was compiled with a loss that could not be saved "
                f"({cfg.get('loss_error', 'a custom function')}); it comes back uncompiled: call compile() again",
                stacklevel=2,
            )
            return
        for name in cfg.get("dropped_metrics", []):
            warnings.warn(f"load: {self.path}: metric {name!r} is a custom function that was not saved; "
                          "the model is compiled without it", stacklevel=2)
        try:
            loss = losses.get(cfg["loss"])
            model.compile(loss=loss, optimizer=opt if opt is not None else "adam", metrics=cfg["metrics"])
        except (TypeError, ValueError) as e:
            raise self.fail(f"has a compile configuration that compile() refuses ({e})") from None
        bound = cfg["optimizer_params"]
        if opt is not None and bound:
            own = model.params
            if not all(v in own for v in bound.values()):
                raise self.fail("has an optimizer bound to parameters the model does not have")
            try:
                opt.bind({k: own[v] for k, v in bound.items()})
            except (TypeError, ValueError) as e:
                raise self.fail(f"has an optimizer whose state does not fit the model ({e})") from None
            if cfg.get("bound_by_fit"):
                model._bound = opt._bound_by_fit = tuple(id(p) for p in opt.params.values())


def _hashable(k):
    return tuple(_hashable(v) for v in k) if isinstance(k, (list, tuple)) else k


def _build(layer, shape, path):
    """``layer.build(shape)`` on behalf of the loader: a refusal (or a config too large) is a CheckpointError."""
    try:
        layer.build(shape)
    except Exception as e:  # the layer's own code judges a shape read from the file
        raise _bad(path, f"records input shape {shape} for a {type(layer).__name__}, which cannot be built for it "
                         f"({type(e).__name__}: {e})") from None
    layer.built = True
    layer.input_shape = shape


def _build_inner(layer, shapes, path):
    """Build the lazily built layers inside ``layer`` for the input shapes recorded when it was saved."""
    from .layers.base import Layer

    for name, child in list(layer._children()):
        info = shapes.get(name)
        if not isinstance(child, Layer) or info is None:
            continue
        if not child.built and info["built"] and info["input_shape"] is not None:
            _build(child, tuple(info["input_shape"]), path)
        _build_inner(child, info["children"], path)


def _needs_build(layer, info):
    """True when the file records shapes for layers that are not built in ``layer``."""
    from .layers.base import Layer

    if not layer.built and info.get("built") and info.get("input_shape") is not None:
        return True
    shapes = info.get("children", {})
    return any(
        isinstance(child, Layer) and name in shapes and _needs_build(child, shapes[name])
        for name, child in layer._children()
    )


def _budget(arrays):
    """How many values layers may create while being rebuilt: what the file holds, with some slack."""
    return 2 * sum(a.size for a in arrays.values()) + (1 << 20)


def _check_names(kind, own, given, path):
    missing = [k for k in own if k not in given]
    extra = [k for k in given if k not in own]
    if missing or extra:
        parts = []
        if extra:
            parts.append(f"the file has {kind} {extra} that the model lacks")
        if missing:
            parts.append(f"the model has {kind} {missing} that the file lacks")
        raise _bad(path, f"does not fit the model: {'; '.join(parts)}")


def _check_arrays(kind, own, given, kinds, path):
    for name, arr in given.items():
        t = own[name]
        if tuple(t.shape) != tuple(arr.shape):
            raise _bad(path, f"does not fit the model: {kind} {name!r} has shape {tuple(arr.shape)} in the file "
                             f"but {tuple(t.shape)} in the model")
        if arr.dtype.kind not in kinds:
            raise _bad(path, f"has {kind} {name!r} of dtype {arr.dtype}; the model's is {t.dtype}")


def check_assign(layer, params, state=None, path="<checkpoint>"):
    """Check that :func:`assign` would succeed (names, shapes, dtypes) without changing anything."""
    own = layer.params
    _check_names("parameters", own, params, path)
    _check_arrays("parameter", own, params, "f", path)
    if state is not None:
        st = layer.state()
        _check_names("state", st, state, path)
        _check_arrays("state", st, state, "biuf", path)


def assign(layer, params, state=None, path="<checkpoint>"):
    """Copy arrays into ``layer``'s parameters (and state) by name; everything is checked before anything changes.

    Names must match both ways (the message says which side lacks which names), and so must shapes.
    """
    check_assign(layer, params, state, path)
    # The weights go to the layer's device: the one given to .to (layers built just now have host
    # parameters), else where each parameter already lives.
    device = getattr(layer, "_device", None)
    own = layer.params
    for name, arr in params.items():
        own[name].value = _onto(arr, own[name], device)
        mark_modified(own[name])  # a backward through ops that saw the old values must refuse
    if state is not None:
        st = layer.state()
        for name, arr in state.items():
            st[name].value = _onto(arr, st[name], device)
            mark_modified(st[name])


def _onto(arr, t, device):
    """A copy of the host array ``arr`` in the dtype of tensor ``t``, on ``device`` (or ``t``'s device)."""
    arr = arr.astype(t.dtype, copy=True)
    device = device or device_of(t.value)
    return arr if device == "cpu" else to_device(arr, device)


def load_into(layer, info, arrays, path):
    """Put a saved layer entry's weights into ``layer``, first building its lazily built layers from the
    shapes the file records. Nothing in ``layer`` changes when the file does not fit it."""
    params, state = (
        {k: arrays[v["__array__"]] for k, v in info[part].items()} for part in ("params", "state")
    )
    if _needs_build(layer, info):
        rng_state = get_rng_state()  # initializers draw from the global generator
        try:
            with allocation_budget(_budget(arrays)):
                try:
                    probe = copy.deepcopy(layer)
                except Exception:  # something in it cannot be copied: build in place
                    probe = None
                if probe is not None:  # a failed build or a mismatch must not leave the layer half built
                    _build_top(probe, info, path)
                    check_assign(probe, params, state, path)
                _build_top(layer, info, path)
        except AllocationRefused as e:
            raise _bad(path, f"describes layers larger than the arrays it holds ({e})") from None
        finally:
            set_rng_state(rng_state)
    assign(layer, params, state, path)


def _build_top(layer, info, path):
    if not layer.built and info["built"] and info["input_shape"] is not None:
        _build(layer, tuple(info["input_shape"]), path)
    _build_inner(layer, info.get("children", {}), path)


def load(path, device=None):
    """Load what :func:`save` wrote. Refuses pickles, foreign files and corrupted checkpoints.

    Arrays come back as NumPy arrays, on the CPU, wherever they were saved from; ``device`` ('cuda',
    ...) moves what was loaded there (a model with ``model.to(device)``, tensors and arrays with it).

    Every malformed file raises :class:`CheckpointError` naming the file and what is wrong; layers
    are rebuilt only after the whole file was checked, and never larger than the arrays it holds.
    """
    if device is not None:
        from .devices import check_device

        device = check_device(device)
    meta, arrays = _read(path)
    # Rebuilding layers runs their initializers; their draws must not move the global generator.
    rng_state = get_rng_state()
    try:
        with allocation_budget(_budget(arrays)):
            obj = _Decoder(arrays, os.fspath(path)).top(meta["tree"])
    except AllocationRefused as e:
        raise _bad(path, f"describes layers larger than the arrays it holds ({e})") from None
    finally:
        set_rng_state(rng_state)
    if device is None:
        return obj
    from .devices import on_device

    return on_device(obj, device)


def load_weights(layer, path):
    """Load the parameters (and state) saved from a layer or model of the same architecture into ``layer``.

    Lazily built layers of ``layer`` are built first, for the input shapes recorded in the file.
    """
    meta, arrays = _read(path)
    return weights_from(layer, meta["tree"], arrays, os.fspath(path))


def weights_from(layer, tree, arrays, path):
    """``load_weights`` for a file already read: a saved layer, or a mapping of names to arrays."""
    if isinstance(tree, dict) and set(tree) == {"__layer__"}:
        load_into(layer, tree["__layer__"], arrays, path)
    elif isinstance(tree, dict) and all(
        isinstance(v, dict) and len(v) == 1 and next(iter(v)) in _REF_TAGS for v in tree.values()
    ):
        given = {k: arrays[next(iter(v.values()))] for k, v in tree.items()}
        st = layer.state()
        state = {k: v for k, v in given.items() if k in st} or None
        assign(layer, {k: v for k, v in given.items() if k not in st}, state, path)
    else:
        raise CheckpointError(f"load_weights: {path} holds neither a layer nor a name -> array mapping")
    return layer
