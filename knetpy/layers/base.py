"""The Layer base class: lazy building, parameter discovery, train/eval mode."""

from __future__ import annotations

import functools
import inspect
import numbers
import threading
from collections import OrderedDict, namedtuple
from contextlib import contextmanager

import numpy as np

from ..autograd import Param, Tensor, _seen, mark_modified
from ..backend import array_namespace, device_of, is_array, to_device
from ..data._checks import require_real

# Every Layer subclass by class name, so that a saved architecture can be rebuilt without pickle.
LAYER_CLASSES: dict[str, type] = {}

# Modes forced on layers for the calling thread only (id(layer) -> training flag): predict, evaluate
# and fit run a model in the mode they need without changing what other threads see.
_forced = threading.local()


@contextmanager
def thread_mode(layer, training):
    """Run ``layer`` and every layer inside it in training (True) or eval (False) mode in the calling
    thread only, for the duration of the ``with`` block; other threads keep seeing the layers' own mode.
    """
    previous = getattr(_forced, "modes", None)
    modes = dict(previous or {})
    stack, seen = [layer], set()
    while stack:
        current = stack.pop()
        if id(current) not in seen:
            seen.add(id(current))
            modes[id(current)] = bool(training)
            stack.extend(current.layers())
    _forced.modes = modes
    try:
        yield layer
    finally:
        _forced.modes = previous


class Layer:
    """A callable building block ``y = layer(x)``.

    Subclasses create their parameters in ``build(input_shape)``, called once on the first call (so
    input sizes are inferred), and compute in ``forward``. Any attribute that is a :class:`Param`, a
    Layer, or a list/tuple/dict of them is discovered by :attr:`params` and :meth:`layers`.
    Layers start in training mode; ``eval()`` switches them (and their children) to inference.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        LAYER_CLASSES[cls.__name__] = cls
        init = vars(cls).get("__init__")
        if init is not None and "input_shape" not in inspect.signature(init).parameters:
            cls.__init__ = _accepting_input_shape(init)

    #: True once the parameters live on a device (moved there by the first call on device data, or by .to).
    _on_device = False
    #: The device given to :meth:`to` (None until then); parameters built later are created there too.
    _device = None

    def __init__(self, name=None):
        self._training = True
        self.built = False
        self.name = name
        self.input_shape = None  # the shape the layer was built for (batch axis included)

    def build_for(self, input_shape):
        """Build now for samples of ``input_shape`` (without the batch axis; ``None`` for a size that varies).

        Every layer's constructor takes ``input_shape=`` and calls this, as Keras's do, so that a
        model's ``summary()`` and ``state_dict()`` work before it has seen data.
        """
        shape = (None,) + sample_shape(input_shape, type(self).__name__)
        self.build(shape)
        self.built = True
        self.input_shape = shape
        return self

    # -- subclass hooks ------------------------------------------------------------------------------
    def build(self, input_shape):
        """Create parameters for inputs of ``input_shape`` (batch axis included)."""

    def forward(self, x, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, x, *args, **kwargs):
        require_real(x, "the input", type(self).__name__)
        if not self.built:
            shape = tuple(x.shape) if hasattr(x, "shape") else None
            self.build(shape)
            self.built = True
            self.input_shape = shape
            if self._device is not None:  # moved by .to before it was built: its parameters go there too
                self.to(self._device)
        if not self._on_device:
            value = x.value if isinstance(x, Tensor) else x
            if type(value) is not np.ndarray and is_array(value):
                # initializers draw on the host: the layer follows its first device input there, once
                _place(self, value)
        return self.forward(x, *args, **kwargs)

    # -- parameters and children ---------------------------------------------------------------------
    def _children(self):
        """(name, value) for attributes holding Params or Layers, in definition order."""
        for key, val in vars(self).items():
            if key.startswith("_") and key != "_layers":
                continue
            if isinstance(val, (Param, Layer)):
                yield key, val
            elif isinstance(val, (list, tuple)):
                for i, v in enumerate(val):
                    if isinstance(v, (Param, Layer)):
                        yield (str(i) if key == "_layers" else f"{key}.{i}"), v
            elif isinstance(val, dict):
                for k, v in val.items():
                    if isinstance(v, (Param, Layer)):
                        yield f"{key}.{k}", v

    @property
    def params(self):
        """Ordered dict ``name -> Param`` of every parameter, nested layers included."""
        out = OrderedDict()
        seen = set()
        for key, val in self._children():
            if isinstance(val, Param):
                if id(val) not in seen:
                    seen.add(id(val))
                    out[key] = val
            else:
                for sub, p in val.params.items():
                    if id(p) not in seen:
                        seen.add(id(p))
                        out[f"{key}.{sub}"] = p
        return out

    #: Set to False to freeze the layer (Keras's ``trainable``): ``fit`` then leaves its parameters, and
    #: those of every layer inside it, unchanged.
    trainable = True

    @property
    def trainable_params(self):
        """The part of :attr:`params` that ``fit`` trains: none from a layer whose ``trainable`` is False."""
        if not self.trainable:
            return OrderedDict()
        frozen = set()
        stack = [self]
        while stack:
            for child in stack.pop().layers():
                if child.trainable:
                    stack.append(child)
                else:
                    frozen.update(id(p) for p in child.params.values())
        return OrderedDict((k, p) for k, p in self.params.items() if id(p) not in frozen)

    def parameters(self):
        """The parameters as a list (PyTorch's spelling)."""
        return list(self.params.values())

    def named_parameters(self):
        """An iterator of ``(name, Param)`` pairs (PyTorch's spelling of :attr:`params`)."""
        return iter(self.params.items())

    def layers(self):
        """Direct child layers."""
        return [v for _, v in self._children() if isinstance(v, Layer)]

    def count_params(self):
        """Number of scalar parameters."""
        return int(sum(p.size for p in self.params.values()))

    # -- state -----------------------------------------------------------------------------------------
    @property
    def training(self):
        """True in training mode (dropout active, batch norm on batch statistics); set by train()/eval().

        Inside :func:`thread_mode` (used by ``predict``, ``evaluate`` and ``fit``) the calling thread
        sees the mode forced there instead.
        """
        forced = getattr(_forced, "modes", None)
        mode = forced.get(id(self)) if forced else None
        # A compiled step that read the mode replays only while the mode stays the same.
        return _seen(self, "training", self._training if mode is None else mode)

    @training.setter
    def training(self, mode):
        self._training = bool(mode)
        forced = getattr(_forced, "modes", None)
        if forced and id(self) in forced:
            forced[id(self)] = bool(mode)  # an explicit switch inside a forced block is seen by this thread

    def train(self, mode=True):
        self.training = mode
        for child in self.layers():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.params.values():
            p.grad = None

    def state(self):
        """Non-trainable tensors a layer keeps (e.g. BatchNorm running statistics): name -> Tensor.

        Any attribute holding a plain :class:`Tensor` (not a Param) counts, in nested layers too;
        checkpoints save and restore these beside the parameters.
        """
        out = OrderedDict()
        for key, val in vars(self).items():
            if isinstance(val, Tensor) and not isinstance(val, Param) and not key.startswith("_"):
                out[key] = val
        for key, val in self._children():
            if isinstance(val, Layer):
                for sub, t in val.state().items():
                    out[f"{key}.{sub}"] = t
        return out

    def state_dict(self):
        """Copies of every parameter and state array (e.g. BatchNorm running statistics), by name."""
        out = OrderedDict()
        for name, p in self.params.items():
            out[name] = p.value.copy()
        for name, t in self.state().items():
            # array(), not .copy(): a 0-d state may be held as a NumPy scalar, and must come back an array
            out[name] = array_namespace(t.value).array(t.value, copy=True)
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy the arrays of a :meth:`state_dict` into the parameters and state, in place.

        With ``strict`` every name must match; otherwise names on one side only are skipped. Names,
        shapes and dtypes are all checked before anything is changed. Returns
        ``(missing_keys, unexpected_keys)``, as PyTorch does.
        """
        return self._assign_arrays(state_dict, strict, "load_state_dict")

    def _assign_arrays(self, arrays, strict, who):
        if not isinstance(arrays, dict):
            raise TypeError(f"{who}: expected a dict of name -> array, got {type(arrays).__name__}")
        targets = OrderedDict(self.params)
        targets.update(self.state())
        missing = [k for k in targets if k not in arrays]
        extra = [k for k in arrays if k not in targets]
        if strict and (missing or extra):
            hint = ""
            if not self.built or any(not c.built for c in self.layers()):
                hint = " (the model is not built yet: give the first layer input_shape=, or call it on data first)"
            raise ValueError(f"{who}: names differ: missing {missing}, not in the model {extra}{hint}")
        pairs = []
        for name, t in targets.items():
            if name not in arrays:
                continue
            arr = arrays[name]
            xp = array_namespace(t.value)
            arr = arr.value if isinstance(arr, Tensor) else arr if hasattr(arr, "dtype") else xp.asarray(arr)
            if type(arr) is not type(t.value) and is_array(arr):  # e.g. host weights for a model on a GPU
                arr = to_device(arr, device_of(t.value))
            if tuple(arr.shape) != tuple(t.shape):
                raise ValueError(f"{who}: {name!r} has shape {tuple(arr.shape)}, the model's has {tuple(t.shape)}")
            if not xp.can_cast(arr.dtype, t.value.dtype, "same_kind"):
                raise TypeError(f"{who}: {name!r} has dtype {arr.dtype}, which does not convert to the model's {t.value.dtype}")
            pairs.append((t, arr))
        for t, arr in pairs:
            xp = array_namespace(t.value)
            if isinstance(t.value, xp.ndarray):
                # In place, so anything holding the array (an optimizer) sees the restored values.
                xp.copyto(t.value, arr, casting="same_kind")
            else:  # a 0-d state kept as a NumPy scalar (a counter updated out of place)
                t.value = xp.array(arr, dtype=t.value.dtype)
            mark_modified(t)  # a backward through ops that saw the old values must refuse
        return IncompatibleKeys(missing, extra)

    def get_config(self):
        """Constructor keyword arguments (JSON-serialisable) that rebuild this layer's architecture."""
        return {}

    # -- devices -------------------------------------------------------------------------------------
    @property
    def device(self):
        """Where the parameters live: the device given to :meth:`to`, else the first parameter's, else 'cpu'."""
        if self._device is not None:
            return self._device
        for p in self.params.values():
            return device_of(p.value)
        return "cpu"

    def to(self, device):
        """Move every parameter, gradient and state array (nested layers' too) to ``device``; returns the layer.

        In place, as torch's ``module.to``: the Param objects stay the same, so an optimizer bound to
        them keeps working. Layers not built yet create their parameters on ``device`` when they build.
        """
        from ..devices import check_device

        device = check_device(device)
        stack, seen = [self], set()
        while stack:
            layer = stack.pop()
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            layer._device = device
            layer._on_device = True  # placed on purpose: a later input does not move it elsewhere
            for key, val in list(vars(layer).items()):
                if isinstance(val, Tensor):
                    _move_tensor(val, device)
                elif is_array(val):  # a buffer kept as a plain array
                    setattr(layer, key, to_device(val, device))
            stack.extend(layer.layers())
        for p in self.params.values():  # Params held in lists and dicts
            _move_tensor(p, device)
        return self

    def __repr__(self):
        return f"{type(self).__name__}()"


def _move_tensor(t, device):
    t.value = to_device(t.value, device)
    if t.grad is not None:
        t.grad = to_device(t.grad, device)


def _place(layer, like):
    """Move ``layer``'s parameters and state (nested layers' too) onto the device of the array ``like``."""
    device = device_of(like)
    for t in list(layer.params.values()) + list(layer.state().values()):
        if type(t.value) is not type(like):
            t.value = to_device(t.value, device)
    stack = [layer]
    while stack:
        current = stack.pop()
        if current.built:  # a layer built later places its parameters on its own first call
            current._on_device = True
        stack.extend(current.layers())


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def sample_shape(shape, who):
    """``shape`` (an int or a sequence of positive ints or None, without the batch axis) as a tuple."""
    dims = (shape,) if isinstance(shape, numbers.Integral) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        dims = None
    if dims is None or not all(d is None or (isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0)
                               for d in dims):
        raise ValueError(
            f"{who}: input_shape is the shape of one sample without the batch axis, a tuple of positive "
            f"integers (None for a size that varies), e.g. (28, 28); got {shape!r}"
        )
    return tuple(None if d is None else int(d) for d in dims)


def _accepting_input_shape(init):
    """``init`` taking the keyword ``input_shape`` too: the layer is then built right after construction."""

    @functools.wraps(init)
    def __init__(self, *args, input_shape=None, **kwargs):
        init(self, *args, **kwargs)
        if input_shape is not None:
            self.build_for(input_shape)

    return __init__
