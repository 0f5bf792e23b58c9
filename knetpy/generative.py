"""Building blocks of generative models: the reparameterisation trick, the contractive penalty, input
corruption for denoising autoencoders and latent interpolation.

The VAE's KL term is :func:`knetpy.losses.kl_normal`; a GAN's losses are
:func:`knetpy.losses.bce_with_logits` against ones (real) and zeros (fake).
"""

from __future__ import annotations

import numpy as np

from .autograd import Tensor, is_grad_enabled, no_grad
from .backend import as_array, rng
from .functional import grad
from .ops import exp
from .ops import sum as _sum


def _raw(x):
    return x.value if isinstance(x, Tensor) else x


def _floating(x, name, what):
    v = _raw(x) if isinstance(x, Tensor) else as_array(x)
    if v.dtype.kind != "f":
        raise TypeError(f"{name}: {what} must be floating point, got dtype {v.dtype}")
    return v


def reparameterize(mu, logvar, eps=None):
    """A sample ``z = mu + exp(logvar / 2) * eps`` of N(mu, diag(exp(logvar))), differentiable in both.

    The reparameterisation trick (Kingma & Welling, 2014): the randomness is moved into ``eps`` ~ N(0, I),
    drawn from knetpy's generator (``kp.set_seed``) in ``mu``'s dtype unless given, so gradients flow
    from ``z`` back into the encoder that produced ``mu`` and ``logvar`` (same shape).
    """
    name = "reparameterize"
    m = _floating(mu, name, "mu")
    lv = _floating(logvar, name, "logvar")
    if m.shape != lv.shape:
        raise ValueError(f"{name}: mu of shape {m.shape} and logvar of shape {lv.shape} differ")
    if eps is None:
        eps = rng().standard_normal(m.shape).astype(m.dtype)
    elif tuple(np.shape(_raw(eps))) != m.shape:
        raise ValueError(f"{name}: eps of shape {np.shape(_raw(eps))} does not match mu of shape {m.shape}")
    return mu + exp(logvar * 0.5) * eps


def contractive_penalty(encode, x, projections=None, reduction="mean"):
    """The contractive autoencoder's penalty: ||d encode(x_n) / d x_n||_F^2, the squared Frobenius norm
    of the encoder's Jacobian at each sample (Rifai et al., 2011).

    ``encode`` maps a batch (N, ...) to codes (N, ...) sample by sample (nothing mixing samples, such as
    batch norm in training mode). Exact by default: one gradient per code unit j, ``||J||_F^2 = sum_j
    ||grad_x h_j||^2``; ``projections=k`` instead averages ``||J^T v||^2`` over k random directions
    v ~ N(0, I), an unbiased estimate costing k gradients (for wide codes).

    Each gradient is taken with ``kp.grad`` on an input that requires a gradient, so it is recorded:
    the penalty is differentiable in whatever ``encode`` closes over, inside ``kp.grad`` over the
    weights or with ``Param``\\ s and ``backward()``. ``reduction``: ``"mean"`` over the batch,
    ``"sum"`` or ``"none"`` (one value per sample).
    """
    name = "contractive_penalty"
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{name}: reduction must be one of mean, sum, none, got {reduction!r}")
    if projections is not None and (isinstance(projections, bool) or not isinstance(projections, int)
                                    or projections < 1):
        raise ValueError(f"{name}: projections must be a positive int or None, got {projections!r}")
    xv = _floating(x, name, "x")
    if xv.ndim < 2:
        raise ValueError(f"{name}: x must be a batch (N, features...), got shape {xv.shape}")
    # An input requiring a gradient makes each kp.grad below record its backward pass (create_graph).
    x_in = x if isinstance(x, Tensor) and x.requires_grad else Tensor(xv, requires_grad=is_grad_enabled())
    with no_grad():
        code = np.asarray(_raw(encode(xv)))
    if code.ndim < 1 or code.shape[0] != xv.shape[0]:
        raise ValueError(f"{name}: encode must return one code per sample: {xv.shape[0]} inputs gave "
                         f"codes of shape {code.shape}")
    axes = tuple(range(1, xv.ndim))
    if projections is None:
        units = int(np.prod(code.shape[1:]))
        directions = (_unit(units, j, code) for j in range(units))
        count = 1
    else:
        directions = (rng().standard_normal(code.shape).astype(code.dtype) for _ in range(projections))
        count = projections
    total = 0.0
    for v in directions:
        g = grad(lambda xx, v=v: _sum(encode(xx) * v))(x_in)  # row n: J(x_n)^T v
        total = total + _sum(g * g, axis=axes)
    per_sample = total * (1.0 / count) if count > 1 else total
    if x_in is not x:
        x_in.requires_grad = False  # our own input: no gradient to hand back, and not a variable of an outer grad
    if reduction != "none":
        per_sample = _sum(per_sample) if reduction == "sum" else _sum(per_sample) * (1.0 / xv.shape[0])
    if isinstance(per_sample, Tensor) and not _needs_grad(per_sample):
        return per_sample.value  # nothing to differentiate (plain arrays in): a plain array out, as ops do
    return per_sample


def _unit(size, j, code):
    """The j-th basis vector of one sample's code space, shaped like one code."""
    v = np.zeros(size, dtype=code.dtype)
    v[j] = 1
    return v.reshape(code.shape[1:])


def _needs_grad(t):
    """Whether the graph of ``t`` reaches a leaf that requires a gradient."""
    stack, seen = [t], set()
    while stack:
        node = stack.pop()
        if id(node) in seen or not node.requires_grad:
            continue
        seen.add(id(node))
        if node._prim is None:
            return True
        stack.extend(a for a in (node._args or ()) if isinstance(a, Tensor))
    return False


def corrupt(x, noise="gaussian", level=0.3, low=0.0, high=1.0):
    """``x`` corrupted for a denoising autoencoder (a new array; knetpy's generator draws the noise).

    ``noise="gaussian"`` adds N(0, level^2) noise, ``"mask"`` zeroes each value with probability
    ``level``, ``"salt_pepper"`` sets each value with probability ``level`` to ``low`` or ``high``.
    Gaussian noise is clipped back into [low, high] (pass None for either to leave that side open).
    """
    name = "corrupt"
    xv = _floating(x, name, "x")
    if isinstance(level, bool) or not isinstance(level, (int, float, np.number)) or not level >= 0:
        raise ValueError(f"{name}: level must be a number >= 0, got {level!r}")
    g = rng()
    if noise == "gaussian":
        out = xv + (level * g.standard_normal(xv.shape)).astype(xv.dtype)
        if low is not None or high is not None:
            out = np.clip(out, low, high)
    elif noise in ("mask", "salt_pepper"):
        if level > 1:
            raise ValueError(f"{name}: level is a probability for {noise!r} noise, got {level}")
        hit = g.random(xv.shape) < level
        if noise == "mask":
            out = np.where(hit, xv.dtype.type(0), xv)
        else:
            out = np.where(hit, np.where(g.random(xv.shape) < 0.5, low, high).astype(xv.dtype), xv)
    else:
        raise ValueError(f"{name}: noise must be 'gaussian', 'mask' or 'salt_pepper', got {noise!r}")
    return out.astype(xv.dtype, copy=False)


def interpolate(a, b, steps):
    """``steps`` points on the straight line from ``a`` to ``b`` (included), stacked on a new first axis."""
    av, bv = _floating(a, "interpolate", "a"), _floating(b, "interpolate", "b")
    if av.shape != bv.shape:
        raise ValueError(f"interpolate: a of shape {av.shape} and b of shape {bv.shape} differ")
    if not (isinstance(steps, int) and steps >= 2):
        raise ValueError(f"interpolate: steps must be an int >= 2, got {steps!r}")
    t = np.linspace(0.0, 1.0, steps).reshape((steps,) + (1,) * av.ndim)
    return (av + t * (bv - av)).astype(np.result_type(av.dtype, bv.dtype))


__all__ = ["reparameterize", "contractive_penalty", "corrupt", "interpolate"]
