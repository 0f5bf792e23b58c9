"""The Layer base class: lazy building, parameter discovery, train/eval mode."""

from __future__ import annotations

from collections import OrderedDict

from ..autograd import Param, Tensor

# Every Layer subclass by class name, so that a saved architecture can be rebuilt without pickle.
LAYER_CLASSES: dict[str, type] = {}


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

    def __init__(self, name=None):
        self.training = True
        self.built = False
        self.name = name
        self.input_shape = None  # the shape the layer was built for (batch axis included)

    # -- subclass hooks ------------------------------------------------------------------------------
    def build(self, input_shape):
        """Create parameters for inputs of ``input_shape`` (batch axis included)."""

    def forward(self, x, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, x, *args, **kwargs):
        if not self.built:
            shape = tuple(x.shape) if hasattr(x, "shape") else None
            self.build(shape)
            self.built = True
            self.input_shape = shape
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

    def parameters(self):
        """The parameters as a list (PyTorch's spelling)."""
        return list(self.params.values())

    def layers(self):
        """Direct child layers."""
        return [v for _, v in self._children() if isinstance(v, Layer)]

    def count_params(self):
        """Number of scalar parameters."""
        return int(sum(p.size for p in self.params.values()))

    # -- state -----------------------------------------------------------------------------------------
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

    def get_config(self):
        """Constructor keyword arguments (JSON-serialisable) that rebuild this layer's architecture."""
        return {}

    def __repr__(self):
        return f"{type(self).__name__}()"
