"""The differentiable ops under test: each with its PyTorch twin and a strategy for its inputs.

One table serves three checks: central differences (test_gradcheck_ops.py), forward and backward
parity with PyTorch (test_torch_parity.py) and second-order parity (test_autograd.py).

A case's strategy draws ``(args, kw)``: ``args`` are float64 arrays (differentiated) or integer /
boolean arrays (labels, masks: not differentiated); ``kw`` are static settings (axis, keepdims, ...)
passed unchanged to both functions. Shapes are small and include scalars, size-1 axes and
broadcasting, so the finite-difference checks stay fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import knetpy as kp


@dataclass(frozen=True)
class Case:
    name: str
    kp_fn: Callable
    torch_fn: Callable  # called as torch_fn(torch, *tensors, **kw)
    inputs: st.SearchStrategy
    second_order: bool = True  # False where knetpy documents that second derivatives are unsupported

    def __repr__(self):
        return self.name


# -- value domains ---------------------------------------------------------------------------------
def fill(rng, shape, kind="normal"):
    """Float64 values of ``shape`` from a domain where the op is smooth."""
    if kind == "normal":
        return rng.standard_normal(shape)
    if kind == "positive":
        return rng.uniform(0.5, 2.0, shape)
    if kind == "nonzero":  # away from the kink of abs / relu / elu at 0
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)
    raise ValueError(kind)


SEEDS = st.integers(0, 2**32 - 1)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
NONSCALAR_SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3)


def _rng(draw):
    return np.random.default_rng(draw(SEEDS))


@st.composite
def unary(draw, kind="normal", shapes=SHAPES):
    return (fill(_rng(draw), draw(shapes), kind),), {}


@st.composite
def binary(draw, kinds=("normal", "normal")):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3))
    rng = _rng(draw)
    return tuple(fill(rng, s, k) for s, k in zip(shapes.input_shapes, kinds)), {}


@st.composite
def ternary_where(draw):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3))
    rng = _rng(draw)
    sc, sx, sy = shapes.input_shapes
    return (rng.random(sc) < 0.5, rng.standard_normal(sx), rng.standard_normal(sy)), {}


@st.composite
def clip_tensor_bounds(draw):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=2, max_side=3))
    rng = _rng(draw)
    sx, slo, shi = shapes.input_shapes
    lo = rng.uniform(-0.8, -0.2, slo)
    hi = rng.uniform(0.2, 0.8, shi)
    return (rng.uniform(-1.5, 1.5, sx), lo, hi), {}


@st.composite
def reduction(draw, kind="normal", min_count=1, ddof=False):
    """An array with an axis (None, int or tuple) and keepdims; ``min_count`` elements reduced."""
    shape = draw(SHAPES)
    ndim = len(shape)
    choices = [None]
    if ndim:
        choices += [draw(st.integers(-ndim, ndim - 1)), draw(hnp.valid_tuple_axes(ndim, min_size=1))]
    axis = draw(st.sampled_from(choices))
    axes = range(ndim) if axis is None else np.atleast_1d(axis)
    count = int(np.prod([shape[a] for a in axes]))
    if count < min_count:  # grow the first reduced axis so the statistic is defined
        shape = list(shape)
        if ndim == 0:
            shape, axis = [min_count], None
        else:
            shape[list(axes)[0]] = min_count
        shape = tuple(shape)
    kw = {"axis": axis, "keepdims": draw(st.booleans())}
    if ddof:
        kw["ddof"] = draw(st.sampled_from([0, 1]))
    return (fill(_rng(draw), shape, kind),), kw


@st.composite
def prod_with_zeros(draw):
    (x,), kw = draw(reduction(kind="positive", min_count=3))
    flat = x.reshape(-1)
    n_zeros = draw(st.integers(1, 2))
    flat[draw(st.permutations(range(flat.size)))[:n_zeros]] = 0.0
    return (x,), kw


# -- linear algebra ---------------------------------------------------------------------------------
MATMUL_FORMS = ["2x2", "batched", "1x2", "2x1", "1x1", "1x3", "3x1", "2x3"]


@st.composite
def matmul_inputs(draw):
    m, k, n = (draw(st.integers(1, 3)) for _ in range(3))
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=1, max_dims=2, max_side=3))
    ba, bb = batch.input_shapes
    shapes = {
        "2x2": ((m, k), (k, n)),
        "batched": ((*ba, m, k), (*bb, k, n)),
        "1x2": ((k,), (k, n)),
        "2x1": ((m, k), (k,)),
        "1x1": ((k,), (k,)),
        "1x3": ((k,), (*bb, k, n)),
        "3x1": ((*ba, m, k), (k,)),
        "2x3": ((m, k), (*bb, k, n)),
    }[draw(st.sampled_from(MATMUL_FORMS))]
    rng = _rng(draw)
    return tuple(rng.standard_normal(s) for s in shapes), {}


@st.composite
def dot_inputs(draw):
    k = draw(st.integers(1, 3))
    m, n, p = (draw(st.integers(1, 3)) for _ in range(3))
    shapes = draw(
        st.sampled_from(
            [
                ((), (m, k)),
                ((k,), (k,)),
                ((m, k), (k, n)),
                ((m, k), (k,)),
                ((p, m, k), (k, n)),
                ((p, m, k), (k,)),
                ((m, k), (p, k, n)),
            ]
        )
    )
    rng = _rng(draw)
    return tuple(rng.standard_normal(s) for s in shapes), {}


EINSUM_SPECS = [
    "ij,jk->ik",  # matmul-like
    "bij,bjk->bik",  # batched
    "...ij,...jk->...ik",  # ellipsis, broadcasting the batch axes
    "ij->i",  # a sum within one operand
    "ij,kj->i",  # k is summed within the second operand only
    "ij,ij->",  # full contraction
    "i,j->ij",  # outer product
    "ijk->kji",  # pure transpose
    "ij,jk",  # implicit output
    "ij,jk,kl->il",  # three operands
]


@st.composite
def einsum_inputs(draw):
    spec = draw(st.sampled_from(EINSUM_SPECS))
    sizes = {c: draw(st.integers(1, 3)) for c in "bijkl"}
    ins = spec.split("->")[0].split(",")
    if "..." in spec:
        batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3))
        extra = batch.input_shapes
    else:
        extra = [()] * len(ins)
    rng = _rng(draw)
    ops = tuple(
        rng.standard_normal(tuple(e) + tuple(sizes[c] for c in s.replace("...", "")))
        for s, e in zip(ins, extra)
    )
    return ops, {"spec": spec}


@st.composite
def tensordot_inputs(draw):
    s = [draw(st.integers(1, 3)) for _ in range(4)]
    forms = [
        ((s[0], s[1]), (s[1], s[2]), 1),
        ((s[0], s[1], s[2]), (s[1], s[2], s[3]), 2),
        ((s[0],), (s[1], s[2]), 0),
        ((s[0], s[1], s[2]), (s[2], s[3], s[0]), ([2, 0], [0, 2])),
        ((s[0], s[1]), (s[2], s[1]), ([1], [1])),
    ]
    sa, sb, axes = draw(st.sampled_from(forms))
    rng = _rng(draw)
    return (rng.standard_normal(sa), rng.standard_normal(sb)), {"axes": axes}


@st.composite
def outer_inputs(draw):
    rng = _rng(draw)
    return (rng.standard_normal(draw(SHAPES)), rng.standard_normal(draw(SHAPES))), {}


def torch_clamp(torch, x, lo, hi):
    """torch.clamp keeps the shape of ``x``; NumPy's clip broadcasts against the bounds too."""
    shape = torch.broadcast_shapes(x.shape, lo.shape, hi.shape)
    return torch.clamp(torch.broadcast_to(x, shape), lo, hi)


def torch_dot(torch, a, b):
    """``numpy.dot`` semantics written with torch."""
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if a.ndim <= 2 and b.ndim <= 2:
        return torch.matmul(a, b)
    return torch.tensordot(a, b, dims=([a.ndim - 1], [b.ndim - 2 if b.ndim > 1 else 0]))


def torch_tensordot(torch, a, b, axes):
    return torch.tensordot(a, b, dims=axes)


# -- reductions in torch ----------------------------------------------------------------------------
def torch_dims(x, axis):
    return tuple(range(x.ndim)) if axis is None else axis


def torch_prod(torch, x, axis=None, keepdims=False):
    """torch.prod over several axes: move them last, flatten them, reduce once."""
    if x.ndim == 0:
        return x
    dims = [d % x.ndim for d in np.atleast_1d(torch_dims(x, axis))]
    rest = [d for d in range(x.ndim) if d not in dims]
    moved = x.permute(*rest, *dims).reshape(*[x.shape[d] for d in rest], -1)
    out = moved.prod(-1)
    if keepdims:
        out = out.reshape([1 if d in dims else x.shape[d] for d in range(x.ndim)])
    return out


def torch_var(torch, x, axis=None, keepdims=False, ddof=0):
    return torch.var(x, dim=torch_dims(x, axis), correction=ddof, keepdim=keepdims)


def torch_std(torch, x, axis=None, keepdims=False, ddof=0):
    return torch.std(x, dim=torch_dims(x, axis), correction=ddof, keepdim=keepdims)


# -- shape ops --------------------------------------------------------------------------------------
@st.composite
def reshape_inputs(draw):
    shape = draw(SHAPES)
    size = int(np.prod(shape))
    new = draw(st.sampled_from([(-1,), (1, -1), tuple(reversed(shape)), (size, 1, 1)]))
    return (fill(_rng(draw), shape),), {"shape": new}


@st.composite
def transpose_inputs(draw):
    shape = draw(SHAPES)
    axes = draw(st.one_of(st.none(), st.permutations(range(len(shape))).map(tuple)))
    return (fill(_rng(draw), shape),), {"axes": axes}


@st.composite
def expand_dims_inputs(draw):
    shape = draw(SHAPES)
    n = len(shape) + 1
    axis = draw(st.integers(-n, n - 1))
    return (fill(_rng(draw), shape),), {"axis": axis}


@st.composite
def squeeze_inputs(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=2))
    ones = [i for i, s in enumerate(shape) if s == 1]
    axis = draw(st.one_of(st.none(), st.sampled_from(ones))) if ones else None
    return (fill(_rng(draw), shape),), {"axis": axis}


@st.composite
def broadcast_inputs(draw):
    """A shape that broadcasts *to* the target: a suffix of it with some sides set to 1."""
    target = draw(SHAPES)
    suffix = target[len(target) - draw(st.integers(0, len(target))) :]
    shape = tuple(1 if draw(st.booleans()) else s for s in suffix)
    return (fill(_rng(draw), shape),), {"shape": target}


@st.composite
def join_inputs(draw, new_axis=False):
    """2-3 arrays to concatenate (sizes may differ along ``axis``) or to stack (same shapes)."""
    shape = list(draw(NONSCALAR_SHAPES))
    ndim = len(shape)
    axis = draw(st.integers(-(ndim + 1), ndim) if new_axis else st.integers(-ndim, ndim - 1))
    rng = _rng(draw)
    arrays = []
    for _ in range(draw(st.integers(1, 3))):
        if not new_axis:
            shape[axis] = draw(st.integers(1, 3))
        arrays.append(rng.standard_normal(tuple(shape)))
    return tuple(arrays), {"axis": axis}


@st.composite
def split_inputs(draw):
    shape = list(draw(NONSCALAR_SHAPES))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    if draw(st.booleans()):
        parts = draw(st.integers(1, 3))
        shape[axis] = parts * draw(st.integers(1, 2))
        sections = parts
    else:
        shape[axis] = draw(st.integers(2, 5))
        sections = sorted(draw(st.sets(st.integers(1, shape[axis] - 1), min_size=1, max_size=2)))
    return (fill(_rng(draw), tuple(shape)),), {"sections": sections, "axis": axis}


def kp_split(x, sections, axis):
    # Weight each part differently so a gradient routed to the wrong part shows.
    parts = kp.split(x, sections, axis=axis)
    return kp.concatenate([p * (i + 1.0) for i, p in enumerate(parts)], axis=axis)


def torch_split(torch, x, sections, axis):
    n = x.shape[axis]
    if isinstance(sections, int):
        sizes = [n // sections] * sections
    else:
        bounds = [0, *sections, n]
        sizes = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    parts = torch.split(x, sizes, dim=axis)
    return torch.cat([p * (i + 1.0) for i, p in enumerate(parts)], dim=axis)


@st.composite
def flip_inputs(draw):
    shape = draw(NONSCALAR_SHAPES)
    ndim = len(shape)
    axis = draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1), hnp.valid_tuple_axes(ndim, min_size=1)))
    return (fill(_rng(draw), shape),), {"axis": axis}


def torch_flip(torch, x, axis):
    dims = tuple(range(x.ndim)) if axis is None else tuple(np.atleast_1d(axis).tolist())
    return torch.flip(x, dims)


@st.composite
def pad_inputs(draw):
    shape = draw(NONSCALAR_SHAPES)
    widths = st.integers(0, 2)
    form = draw(st.sampled_from(["int", "pair", "per_axis"]))
    if form == "int":
        pad_width = draw(widths)
    elif form == "pair":
        pad_width = (draw(widths), draw(widths))
    else:
        pad_width = tuple((draw(widths), draw(widths)) for _ in shape)
    value = draw(st.sampled_from([0.0, 1.5]))
    return (fill(_rng(draw), shape),), {"pad_width": pad_width, "constant_values": value}


def torch_pad(torch, x, pad_width, constant_values):
    pairs = np.broadcast_to(np.asarray(pad_width), (x.ndim, 2))
    flat = [int(v) for pair in pairs[::-1] for v in pair]  # torch lists the last axis first
    return torch.nn.functional.pad(x, flat, value=constant_values)


# -- indexing ---------------------------------------------------------------------------------------
@st.composite
def getitem_inputs(draw):
    """Basic slices (forward steps only: torch has no negative steps), integer arrays with repeats,
    boolean masks, and mixtures of them."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    rng = _rng(draw)
    x = rng.standard_normal(shape)
    form = draw(st.sampled_from(["basic", "int", "int_repeat", "mask", "mask_full", "mixed", "int_2d"]))
    n0 = shape[0]
    if form == "basic":
        index = tuple(
            draw(
                st.one_of(
                    st.integers(-s, s - 1),
                    st.builds(slice, st.integers(-s, s), st.integers(-s, s), st.integers(1, 2)),
                )
            )
            for s in shape[: draw(st.integers(1, len(shape)))]
        )
    elif form in ("int", "int_repeat"):
        idx = rng.integers(-n0, n0, size=draw(st.integers(1, 5)))
        if form == "int_repeat":
            idx = np.concatenate([idx, idx[:1], idx[:1]])  # repeated rows must accumulate
        index = idx
    elif form == "int_2d":
        index = rng.integers(0, n0, size=(2, 3))
    elif form == "mask":
        index = rng.random(shape[:1]) < 0.6
    elif form == "mask_full":
        index = rng.random(shape) < 0.6
    else:  # an integer array on the first axis, a slice on the second
        index = (
            (rng.integers(0, n0, size=4), slice(None, None, 2))
            if len(shape) > 1
            else (rng.integers(0, n0, size=4),)
        )
    return (x,), {"index": index}


def kp_getitem(x, index):
    return x[index]


def torch_getitem(torch, x, index):
    def conv(i):
        return torch.as_tensor(i) if isinstance(i, np.ndarray) else i

    return x[tuple(conv(i) for i in index)] if isinstance(index, tuple) else x[conv(index)]


# -- the Knet set -----------------------------------------------------------------------------------
@st.composite
def axis_inputs(draw, kind="normal"):
    shape = draw(NONSCALAR_SHAPES)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return (fill(_rng(draw), shape, kind),), {"axis": axis}


@st.composite
def logsumexp_inputs(draw):
    (x,), kw = draw(reduction())
    return (x,), kw


def torch_logsumexp(torch, x, axis=None, keepdims=False):
    return torch.logsumexp(x, dim=torch_dims(x, axis), keepdim=keepdims)


@st.composite
def nll_inputs(draw):
    rng = _rng(draw)
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if draw(st.booleans()):
        scores, axis = rng.standard_normal((n, c)) * 3, 1
        labels = rng.integers(0, c, size=n)
    else:  # a sequence layout (N, T, C) with the classes last
        t = draw(st.integers(1, 3))
        scores, axis = rng.standard_normal((n, t, c)) * 3, -1
        labels = rng.integers(0, c, size=(n, t))
    return (scores, labels), {"axis": axis, "average": draw(st.booleans())}


def torch_nll(torch, scores, labels, axis, average):
    if axis != 1:
        scores = scores.movedim(axis, 1)
    return torch.nn.functional.cross_entropy(scores, labels, reduction="mean" if average else "sum")


@st.composite
def bce_inputs(draw):
    shape = draw(NONSCALAR_SHAPES)
    rng = _rng(draw)
    return (rng.standard_normal(shape) * 3, rng.uniform(0, 1, shape)), {"average": draw(st.booleans())}


@st.composite
def logistic_inputs(draw):
    shape = draw(NONSCALAR_SHAPES)
    rng = _rng(draw)
    targets = rng.choice([-1.0, 1.0], shape)
    return (rng.standard_normal(shape) * 3, targets), {"average": draw(st.booleans())}


def _reduce_torch(loss, average):
    return loss.mean() if average else loss.sum()


@st.composite
def elu_inputs(draw):
    (x,), _ = draw(unary("nonzero"))
    return (x,), {"alpha": draw(st.sampled_from([1.0, 0.5, 2.0]))}


def _t(name):
    return lambda torch, *a, **kw: getattr(torch, name)(*a, **kw)


CASES = [
    # elementwise
    Case("add", kp.add, _t("add"), binary()),
    Case("sub", kp.sub, _t("sub"), binary()),
    Case("mul", kp.mul, _t("mul"), binary()),
    Case("div", kp.div, _t("div"), binary(("normal", "nonzero"))),
    Case("pow", kp.pow, _t("pow"), binary(("positive", "normal"))),
    Case("pow_int_exponent", lambda x: x**3, lambda torch, x: x**3, unary()),
    Case("pow_square", lambda x: kp.pow(x, 2), lambda torch, x: x**2, unary()),
    Case("pow_half", lambda x: x**0.5, lambda torch, x: x**0.5, unary("positive")),
    Case("rpow", lambda x: 2.0**x, lambda torch, x: 2.0**x, unary()),
    Case("neg", kp.neg, _t("neg"), unary()),
    Case("exp", kp.exp, _t("exp"), unary()),
    Case("log", kp.log, _t("log"), unary("positive")),
    Case("log1p", kp.log1p, _t("log1p"), unary("positive")),
    Case("expm1", kp.expm1, _t("expm1"), unary()),
    Case("sqrt", kp.sqrt, _t("sqrt"), unary("positive")),
    Case("abs", kp.abs, _t("abs"), unary("nonzero")),
    Case("square", kp.square, _t("square"), unary()),
    Case("sin", kp.sin, _t("sin"), unary()),
    Case("cos", kp.cos, _t("cos"), unary()),
    Case("tanh", kp.tanh, _t("tanh"), unary()),
    Case("maximum", kp.maximum, _t("maximum"), binary()),
    Case("minimum", kp.minimum, _t("minimum"), binary()),
    Case("where", kp.where, _t("where"), ternary_where()),
    Case("clip", lambda x: kp.clip(x, -0.5, 0.8), lambda torch, x: torch.clamp(x, -0.5, 0.8), unary()),
    Case(
        "clip_upper_only", lambda x: kp.clip(x, None, 0.3), lambda torch, x: torch.clamp(x, max=0.3), unary()
    ),
    Case("clip_tensor_bounds", kp.clip, torch_clamp, clip_tensor_bounds()),
    # reductions
    Case(
        "sum",
        kp.sum,
        lambda torch, x, axis, keepdims: torch.sum(x, dim=torch_dims(x, axis), keepdim=keepdims),
        reduction(),
    ),
    Case(
        "mean",
        kp.mean,
        lambda torch, x, axis, keepdims: torch.mean(x, dim=torch_dims(x, axis), keepdim=keepdims),
        reduction(),
    ),
    Case(
        "max",
        kp.max,
        lambda torch, x, axis, keepdims: torch.amax(x, dim=torch_dims(x, axis), keepdim=keepdims),
        reduction(),
    ),
    Case(
        "min",
        kp.min,
        lambda torch, x, axis, keepdims: torch.amin(x, dim=torch_dims(x, axis), keepdim=keepdims),
        reduction(),
    ),
    Case("var", kp.var, torch_var, reduction(min_count=2, ddof=True)),
    Case("std", kp.std, torch_std, reduction(min_count=2, ddof=True)),
    Case("prod", kp.prod, torch_prod, reduction("positive")),
    Case("prod_with_zeros", kp.prod, torch_prod, prod_with_zeros(), second_order=False),
    # linear algebra
    Case("matmul", kp.matmul, _t("matmul"), matmul_inputs()),
    Case("dot", kp.dot, torch_dot, dot_inputs()),
    Case(
        "einsum",
        lambda *ops, spec: kp.einsum(spec, *ops),
        lambda torch, *ops, spec: torch.einsum(spec, *ops),
        einsum_inputs(),
    ),
    Case("tensordot", kp.tensordot, torch_tensordot, tensordot_inputs()),
    Case("outer", kp.outer, lambda torch, a, b: torch.outer(a.reshape(-1), b.reshape(-1)), outer_inputs()),
    # shapes
    Case("reshape", kp.reshape, lambda torch, x, shape: torch.reshape(x, shape), reshape_inputs()),
    Case(
        "transpose",
        kp.transpose,
        lambda torch, x, axes: x.permute(tuple(range(x.ndim - 1, -1, -1)) if axes is None else axes),
        transpose_inputs(),
    ),
    Case(
        "expand_dims", kp.expand_dims, lambda torch, x, axis: torch.unsqueeze(x, axis), expand_dims_inputs()
    ),
    Case(
        "squeeze",
        kp.squeeze,
        lambda torch, x, axis: torch.squeeze(x) if axis is None else torch.squeeze(x, axis),
        squeeze_inputs(),
    ),
    Case(
        "broadcast_to",
        kp.broadcast_to,
        lambda torch, x, shape: torch.broadcast_to(x, shape),
        broadcast_inputs(),
    ),
    Case(
        "concatenate",
        lambda *xs, axis: kp.concatenate(xs, axis=axis),
        lambda torch, *xs, axis: torch.cat(xs, dim=axis),
        join_inputs(),
    ),
    Case(
        "stack",
        lambda *xs, axis: kp.stack(xs, axis=axis),
        lambda torch, *xs, axis: torch.stack(xs, dim=axis),
        join_inputs(new_axis=True),
    ),
    Case("split", kp_split, torch_split, split_inputs()),
    Case("flip", kp.flip, torch_flip, flip_inputs()),
    Case("pad", kp.pad, torch_pad, pad_inputs()),
    Case("getitem", kp_getitem, torch_getitem, getitem_inputs()),
    Case("mat", kp.mat, lambda torch, x: x.reshape(x.shape[0], -1), unary(shapes=NONSCALAR_SHAPES)),
    # the Knet set
    Case("relu", kp.relu, _t("relu"), unary("nonzero")),
    Case("sigm", kp.sigm, _t("sigmoid"), unary()),
    Case("invx", kp.invx, _t("reciprocal"), unary("nonzero")),
    Case("logp", kp.logp, lambda torch, x, axis: torch.log_softmax(x, dim=axis), axis_inputs()),
    Case("logsumexp", kp.logsumexp, torch_logsumexp, logsumexp_inputs()),
    Case("softmax", kp.softmax, lambda torch, x, axis: torch.softmax(x, dim=axis), axis_inputs()),
    Case("nll", kp.nll, torch_nll, nll_inputs()),
    Case(
        "bce",
        kp.bce,
        lambda torch, s, t, average: torch.nn.functional.binary_cross_entropy_with_logits(
            s, t, reduction="mean" if average else "sum"
        ),
        bce_inputs(),
    ),
    Case(
        "logistic",
        kp.logistic,
        lambda torch, s, t, average: _reduce_torch(torch.nn.functional.softplus(-(s * t)), average),
        logistic_inputs(),
    ),
    Case("elu", kp.elu, lambda torch, x, alpha: torch.nn.functional.elu(x, alpha), elu_inputs()),
    Case("selu", kp.selu, lambda torch, x: torch.nn.functional.selu(x), unary("nonzero")),
    Case("softplus", kp.softplus, lambda torch, x: torch.nn.functional.softplus(x), unary()),
]

CASE_IDS = [c.name for c in CASES]
