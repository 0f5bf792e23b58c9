"""Linear algebra: batched matmul, dot, einsum, tensordot, outer."""

from __future__ import annotations

import string

import numpy as np

from .. import parallel
from ..autograd import Tensor, primitive
from ..backend import array_namespace
from .elementwise import mul
from .shape import broadcast_to, expand_dims, reshape, squeeze, sum_to, swapaxes


def _shape(x):
    return x.shape if hasattr(x, "shape") else np.shape(x)


def _ndim(x):
    return x.ndim if hasattr(x, "ndim") else np.ndim(x)


@primitive
def matmul(a, b):
    """Matrix product with NumPy's batching rules (``a @ b``)."""
    try:
        return parallel.matmul(a, b)  # a @ b, split over knetpy's threads when they are on and it pays
    except ValueError:
        sa, sb = _shape(a), _shape(b)
        raise ValueError(
            f"matmul: shapes {sa} and {sb} are not aligned "
            f"(inner dimensions {sa[-1] if sa else None} and {sb[-2] if len(sb) > 1 else (sb[0] if sb else None)})"
        ) from None


def _mT(x):
    return x.T if _ndim(x) == 2 else swapaxes(x, -1, -2)


def _matmul_vjp_a(g, ans, a, b):
    an, bn = _ndim(a), _ndim(b)
    if an == 2 and bn == 2:
        return parallel.matmul(g, _mT(b))  # tensors (higher order) record as a @ b
    if bn == 1:  # (..., k) @ (k,) -> (...)
        return sum_to(expand_dims(g, -1) * b, _shape(a))
    if an == 1:  # (k,) @ (..., k, n) -> (..., n)
        return sum_to(squeeze(matmul(expand_dims(g, -2), _mT(b)), -2), _shape(a))
    return sum_to(matmul(g, _mT(b)), _shape(a))


def _matmul_vjp_b(g, ans, a, b):
    an, bn = _ndim(a), _ndim(b)
    if an == 2 and bn == 2:
        return parallel.matmul(_mT(a), g)
    if an == 1:
        if bn == 1:
            return g * a
        return sum_to(expand_dims(a, -1) * expand_dims(g, -2), _shape(b))
    if bn == 1:  # (..., m, k) @ (k,) -> (..., m)
        return sum_to(squeeze(matmul(_mT(a), expand_dims(g, -1)), -1), _shape(b))
    return sum_to(matmul(_mT(a), g), _shape(b))


matmul.defvjp(_matmul_vjp_a, _matmul_vjp_b)
Tensor.__matmul__ = matmul
Tensor.__rmatmul__ = lambda self, other: matmul(other, self)


# -- einsum ------------------------------------------------------------------------------------------
def _parse_einsum(subscripts, shapes):
    """Explicit per-operand subscripts and output, with '...' expanded into letters."""
    subscripts = subscripts.replace(" ", "")
    if "->" in subscripts:
        ins, out = subscripts.split("->")
    else:
        ins, out = subscripts, None
    ins = ins.split(",")
    if len(ins) != len(shapes):
        raise ValueError(f"einsum: {len(ins)} operand subscripts for {len(shapes)} operands")
    used = set("".join(ins) + (out or ""))
    free = [c for c in string.ascii_letters if c not in used]
    n_ell = 0
    for s, shape in zip(ins, shapes):
        if "..." in s:
            n_ell = max(n_ell, len(shape) - (len(s) - 3))
    ell = "".join(free[:n_ell])
    expanded = []
    for s, shape in zip(ins, shapes):
        if "..." in s:
            k = len(shape) - (len(s) - 3)
            s = s.replace("...", ell[n_ell - k :])
        if len(s) != len(shape):
            raise ValueError(f"einsum: subscripts '{s}' do not match an operand of shape {shape}")
        expanded.append(s)
    if out is None:
        letters = "".join(expanded)
        out = ell + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in ell))
    else:
        out = out.replace("...", ell)
    return expanded, out


@primitive
def _einsum(subscripts, *operands):
    xp = array_namespace(*operands)
    try:
        return xp.einsum(subscripts, *operands, optimize=len(operands) > 2)
    except ValueError as e:
        shapes = ", ".join(str(_shape(o)) for o in operands)
        raise ValueError(f"einsum '{subscripts}': operands of shapes {shapes} do not fit: {e}") from None


@_einsum.defvjp_argnum
def _einsum_vjp(i, g, ans, subscripts, *operands):
    k = i - 1
    shapes = [_shape(o) for o in operands]
    ins, out = _parse_einsum(subscripts, shapes)
    target = ins[k]
    if len(set(target)) != len(target):
        raise NotImplementedError(f"einsum: gradient for repeated subscripts '{target}' (diagonals)")
    others = [s for j, s in enumerate(ins) if j != k]
    available = set(out).union(*others) if others else set(out)
    reduced = "".join(c for c in target if c in available)
    spec = ",".join([out, *others]) + "->" + reduced
    gk = _einsum(spec, g, *[o for j, o in enumerate(operands) if j != k])
    if reduced != target:  # letters summed within this operand alone: broadcast back over them
        gk = reshape(gk, tuple(s if c in available else 1 for c, s in zip(target, shapes[k])))
        gk = broadcast_to(gk, shapes[k])
    # Size-1 axes that broadcast against other operands: sum back.
    return sum_to(gk, shapes[k]) if _shape(gk) != shapes[k] else gk


def einsum(subscripts, *operands):
    """Einstein summation (``numpy.einsum`` notation, including '...')."""
    return _einsum(subscripts, *operands)


def tensordot(a, b, axes=2):
    """Sum products over the last ``axes`` axes of ``a`` and the first of ``b`` (or explicit lists)."""
    na, nb = _ndim(a), _ndim(b)
    if isinstance(axes, int):
        if not 0 <= axes <= min(na, nb):
            raise ValueError(
                f"tensordot: cannot contract {axes} axes of operands of shapes {_shape(a)} and {_shape(b)}"
            )
        axa, axb = list(range(na - axes, na)), list(range(axes))
    else:
        axa, axb = axes
        axa = [axa] if isinstance(axa, int) else list(axa)
        axb = [axb] if isinstance(axb, int) else list(axb)
    sa_, sb_ = _shape(a), _shape(b)
    if len(axa) != len(axb) or not all(-na <= x < na for x in axa) or not all(-nb <= y < nb for y in axb):
        raise ValueError(f"tensordot: axes {axes} do not fit operands of shapes {sa_} and {sb_}")
    axa = [x % na for x in axa]
    axb = [x % nb for x in axb]
    for x, y in zip(axa, axb):
        if sa_[x] != sb_[y]:
            raise ValueError(
                f"tensordot: axis {x} of shape {sa_} (size {sa_[x]}) cannot contract with "
                f"axis {y} of shape {sb_} (size {sb_[y]})"
            )
    letters = iter(string.ascii_letters)
    sa = [next(letters) for _ in range(na)]
    sb = [next(letters) for _ in range(nb)]
    for x, y in zip(axa, axb):
        sb[y] = sa[x]
    out = [c for i, c in enumerate(sa) if i not in axa] + [c for i, c in enumerate(sb) if i not in axb]
    return _einsum("".join(sa) + "," + "".join(sb) + "->" + "".join(out), a, b)


def dot(a, b):
    """``numpy.dot``: inner product of vectors, matrix product of matrices, tensordot beyond."""
    na, nb = _ndim(a), _ndim(b)
    if na == 0 or nb == 0:
        return mul(a, b)
    if na <= 2 and nb <= 2:
        return matmul(a, b)
    return tensordot(a, b, axes=([-1], [-2 if nb > 1 else -1]))


def outer(a, b):
    """Outer product of two vectors (inputs are flattened, like ``numpy.outer``)."""
    return reshape(a, (-1, 1)) * reshape(b, (1, -1))


def inner(a, b):
    """Sum of products over the last axis."""
    return tensordot(a, b, axes=([-1], [-1]))


Tensor.dot = dot
