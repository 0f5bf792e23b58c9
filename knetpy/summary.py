"""``Model.summary()``: a table of layers, output shapes and parameter counts.

Output shapes come from each layer's ``compute_output_shape`` when it has one, otherwise from a dry
run of one zero sample in eval mode without gradient recording (so no statistics are updated).
Layers still unbuilt are built for that shape, so the counts are those training will use.
"""

from __future__ import annotations

import numbers

import numpy as np

from .autograd import Param, no_grad
from .backend import get_dtype, to_device
from .layers.base import Layer, thread_mode

_MISSING = object()


def _format_shape(shape):
    if shape is None:
        return "?"
    if isinstance(shape, list):  # several outputs
        return ", ".join(_format_shape(s) for s in shape)
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _output_shape(out):
    """(None, ...) shape of an output, or a list of them for a tuple of outputs."""
    if isinstance(out, (tuple, list)):
        return [_output_shape(o) for o in out]
    return (None,) + tuple(out.shape[1:])


def _sample_shape(model, input_shape):
    """The input shape without the batch axis: given, seen before, or the first layer's ``n_in``."""
    if input_shape is not None:
        shape = (input_shape,) if isinstance(input_shape, numbers.Integral) else tuple(input_shape)
        if not all(isinstance(d, numbers.Integral) and d > 0 for d in shape):
            raise ValueError(f"summary: input_shape must be positive integers without the batch axis, got {input_shape!r}")
        return tuple(int(d) for d in shape)
    if model.input_shape is not None:
        return tuple(model.input_shape[1:])
    first = next(iter(getattr(model, "_layers", [])), None)
    if first is not None:
        n_in = getattr(first, "n_in", None)
        if isinstance(n_in, numbers.Integral):
            return (int(n_in),)
        if getattr(first, "input_shape", None) is not None:
            return tuple(first.input_shape[1:])
    raise ValueError(
        "summary: the model has not seen any input, so its shapes are unknown; pass the shape of one "
        "sample without the batch axis, e.g. model.summary(input_shape=(28, 28))"
    )


def _dry_run(fn, shape, dtype, what):
    x = np.zeros((1,) + tuple(shape[1:]), dtype=dtype)
    where = fn.device if isinstance(fn, Layer) else "cpu"
    try:
        with no_grad():
            return fn(x if where == "cpu" else to_device(x, where))  # a model moved by .to: the zeros go there
    except Exception as e:
        raise ValueError(
            f"summary: running {what} on a zero input of shape {x.shape} and dtype {x.dtype} failed "
            f"({type(e).__name__}: {e}); check input_shape, or pass dtype= (e.g. int64 for embeddings)"
        ) from e


def _layer_output(layer, shape, dtype, what):
    """Output shape (batch None) and dtype of ``layer`` for inputs of ``shape``."""
    one = (1,) + tuple(shape[1:])
    compute = getattr(layer, "compute_output_shape", None)
    if isinstance(layer, Layer) and compute is not None:
        if not layer.built:
            layer.build(one)
            layer.built = True
            layer.input_shape = one
        out = tuple(compute(one))
        params = list(layer.params.values())
        return (None,) + out[1:], (params[0].dtype if params else dtype)
    out = _dry_run(layer, shape, dtype, what)
    first = out[0] if isinstance(out, (tuple, list)) else out
    return _output_shape(out), getattr(first, "dtype", dtype)


def _kind(layer):
    return type(layer).__name__ if isinstance(layer, Layer) else getattr(layer, "__name__", type(layer).__name__)


def _count(layer):
    return layer.count_params() if isinstance(layer, Layer) else 0


def _sequential_rows(layers, shape, dtype):
    rows = []
    for i, layer in enumerate(layers):
        name = getattr(layer, "name", None) or str(i)
        what = f"layer {name} ({_kind(layer)})"
        shape, dtype = _layer_output(layer, shape, dtype, what)
        rows.append((f"{name} ({_kind(layer)})", _format_shape(shape), _count(layer)))
        if isinstance(shape, list):
            break  # several outputs: the next layer's input is not a single shape
    return rows


def _traced_rows(model, shape, dtype):
    """Rows for a model with its own ``forward`` (child layers in the order it calls them), and its output shape."""
    children = [(key, val) for key, val in model._children() if isinstance(val, Layer)]
    shapes = {}
    order = []
    saved = []
    for key, child in children:
        saved.append((child, vars(child).get("forward", _MISSING)))

        def traced(*args, _child=child, _forward=child.forward, _key=key, **kwargs):
            out = _forward(*args, **kwargs)
            if _key not in shapes:
                order.append(_key)
                shapes[_key] = _output_shape(out)
            return out

        child.forward = traced
    try:
        out = _dry_run(model, shape, dtype, type(model).__name__)
    finally:
        for child, original in saved:
            if original is _MISSING:
                del child.forward
            else:
                child.forward = original
    by_key = dict(children)
    rows = []
    for key in order + [k for k, _ in children if k not in shapes]:
        child = by_key[key]
        rows.append((f"{key} ({_kind(child)})", _format_shape(shapes.get(key)), _count(child)))
    own = sum(p.size for _, p in model._children() if isinstance(p, Param))
    if own:
        rows.append(("(own parameters)", "", int(own)))
    return rows, _output_shape(out)


def summarize(model, input_shape=None, dtype=None):
    """The summary table of ``model`` as text (see ``Model.summary``)."""
    shape = (None,) + _sample_shape(model, input_shape)
    if dtype is None:
        dtype = getattr(model, "_input_dtype", None)
    dtype = np.dtype(dtype) if dtype is not None else get_dtype()
    with thread_mode(model, False):  # eval mode for this thread only; the model itself is left alone
        layers = getattr(model, "_layers", None)
        output = None
        if layers is not None:
            rows = _sequential_rows(layers, shape, dtype)
        else:
            rows, output = _traced_rows(model, shape, dtype)
    header = ("Layer (type)", "Output shape", "Params")
    cells = [(name, out, f"{count:,}") for name, out, count in rows]
    w0 = max(len(header[0]), *(len(c[0]) for c in cells)) if cells else len(header[0])
    w1 = max(len(header[1]), *(len(c[1]) for c in cells)) if cells else len(header[1])
    w2 = max(len(header[2]), *(len(c[2]) for c in cells)) if cells else len(header[2])
    width = w0 + w1 + w2 + 4
    lines = [f'Model: "{model.name or type(model).__name__}"', "_" * width]
    lines.append(f"{header[0]:<{w0}}  {header[1]:<{w1}}  {header[2]:>{w2}}")
    lines.append("=" * width)
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c:>{w2}}" for a, b, c in cells]
    lines.append("=" * width)
    if output is not None:
        lines.append(f"Model output shape: {_format_shape(output)}")
    lines.append(f"Total params: {model.count_params():,}")
    state = sum(t.size for t in model.state().values())
    if state:
        lines.append(f"Non-trainable state: {state:,} values")
    return "\n".join(lines)
