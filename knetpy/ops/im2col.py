"""Window gathering and scattering for convolution, in a channels-last memory layout.

Public convolution functions take and return arrays shaped (N, C, *spatial). Internally they work
on (N, *spatial, C) memory ("channels-last"): there, the kernel window of one output position is a
few long contiguous runs (kernel width x channels), so gathering windows into one matrix for a
single large GEMM ("im2col") is a fast copy. A result computed channels-last is handed back as a
transposed *view* with the (N, C, *spatial) shape; NumPy's elementwise ops keep their operand's
memory order, so a chain conv -> bias -> relu -> pool -> conv never converts between layouts.

Shapes used throughout: ``N`` batch, ``C`` channels, ``G`` groups, ``Cg = C / G``, ``K`` the number
of kernel positions (product of the kernel shape), ``L`` the number of output positions.
"""

from __future__ import annotations

import itertools
import math

from ..backend import array_namespace
from . import recycle

# Axis orders between (N, C, *S) and (N, *S, C), by number of dimensions. (A plain transpose with a
# ready-made order costs a microsecond; np.moveaxis re-validates its axes at every call.)
_TO_LAST = {n: (0, *range(2, n), 1) for n in range(2, 8)}
_TO_FIRST = {n: (0, n - 1, *range(1, n - 1)) for n in range(2, 8)}


def channels_last_view(x):
    """(N, C, *S) -> the same memory seen as (N, *S, C) (a view, contiguous or not)."""
    return x.transpose(_TO_LAST[x.ndim])


def to_channels_last(x):
    """(N, C, *S) in any memory layout -> a C-contiguous (N, *S, C) array (a view when possible)."""
    xl = x.transpose(_TO_LAST[x.ndim])
    if xl.flags.c_contiguous:
        return xl
    out = recycle.empty(array_namespace(x), xl.shape, xl.dtype)
    out[...] = xl
    return out


def from_channels_last(xl):
    """(N, *S, C) -> the same memory seen as (N, C, *S)."""
    return xl.transpose(_TO_FIRST[xl.ndim])


def is_channels_last(x):
    """True when the channel axis (1) of an (N, C, *S) array is the fastest-varying in memory."""
    return x.ndim > 2 and x.shape[1] > 1 and x.strides[1] == x.itemsize and x.strides[-1] > x.itemsize


def same_layout(x, like):
    """``x`` (N, C, *S), copied into channels-last memory if ``like`` is channels-last and x is not."""
    if is_channels_last(like) and not is_channels_last(x) and x.ndim > 2 and x.shape[1] > 1:
        return from_channels_last(to_channels_last(x))
    return x


def empty_like_layout(x, shape, dtype=None, fill=None):
    """A new (N, C, *S)-shaped array laid out in memory like ``x`` (channels-last or C-order)."""
    xp = array_namespace(x)
    dtype = x.dtype if dtype is None else dtype
    if is_channels_last(x):
        out = from_channels_last(recycle.empty(xp, (shape[0], *shape[2:], shape[1]), dtype))
    else:
        out = recycle.empty(xp, shape, dtype)
    if fill is not None:
        out[...] = fill
    return out


def pad_channels_last(x, padding, value=0):
    """(N, C, *S) -> a C-contiguous (N, *(S + 2P), C) array with ``value`` in the border."""
    if not any(padding):
        return to_channels_last(x)
    xp = array_namespace(x)
    n, c, *spatial = x.shape
    padded = recycle.empty(xp, (n, *(s + 2 * p for s, p in zip(spatial, padding)), c), x.dtype)
    padded.fill(value)
    inner = (slice(None),) + tuple(slice(p, p + s) for p, s in zip(padding, spatial))
    # One strided copy straight from the caller's layout: no intermediate channels-last array.
    padded[inner] = channels_last_view(x)
    return padded


def window_slices(offset, stride, dilation, out_spatial):
    """Per-axis slices selecting, for every output position, the input at kernel ``offset``."""
    return tuple(
        slice(k * d, k * d + s * (o - 1) + 1, s) for k, s, d, o in zip(offset, stride, dilation, out_spatial)
    )


def kernel_offsets(kernel):
    """All kernel positions in row-major order (the order of a flattened kernel)."""
    return itertools.product(*(range(k) for k in kernel))


class WindowGather:
    """Gather windows ("im2col"): the windows of every output position of a padded (N, *Sp, C)
    input, as a strided view, copied into GEMM-ready rows for any range of samples (all at once, or
    a few at a time into a small buffer that stays in cache).

    The rows, (N*L, G, K*Cg) in (n, *out) order, hold for each group the window of one output
    position in (kernel..., channel) order, so each group's block is a plain 2-D matrix (row stride
    G*K*Cg) ready for one GEMM. The buffer is contiguous, except for one input channel, where the
    rows are the transpose of a contiguous (K, N*L) array.
    """

    def __init__(self, xpad, kernel, stride, dilation, out_spatial, groups):
        xp = array_namespace(xpad)
        n, c = xpad.shape[0], xpad.shape[-1]
        nd = len(kernel)
        self.xp, self.dtype, self.groups = xp, xpad.dtype, groups
        self.kernel, self.out_spatial = tuple(kernel), tuple(out_spatial)
        self.per_sample = math.prod(out_spatial)
        self.cg = c // groups
        reach = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        windows = xp.lib.stride_tricks.sliding_window_view(xpad, reach, axis=tuple(range(1, nd + 1)))
        # windows: (N, *positions, C, *reach) -> keep the strided positions and the dilated taps.
        pick = (
            (slice(None),)
            + tuple(slice(0, s * (o - 1) + 1, s) for s, o in zip(stride, out_spatial))
            + (slice(None),)
            + tuple(slice(None, None, d) for d in dilation)
        )
        windows = windows[pick]
        # One channel (e.g. a grayscale first layer): a window row would be runs of a kernel width
        # only, so gather kernel-position-major instead, (K, N*L), copying whole output rows, and
        # hand the GEMM the transposed view (BLAS reads it without a copy).
        self.kernel_major = c == 1
        if self.kernel_major:
            self.source = windows.transpose((nd + 1, *range(nd + 2, 2 * nd + 2), 0, *range(1, nd + 1)))
            self.lead = (slice(None),) * (nd + 1)  # the batch axis comes after (1, *kernel)
        else:
            windows = windows.reshape(n, *out_spatial, groups, self.cg, *kernel)
            # (N, *O, G, Cg, *K) -> (N, *O, G, *K, Cg): each window's runs of (kernel width x Cg) stay contiguous.
            self.source = windows.transpose(tuple(range(nd + 2)) + tuple(range(nd + 3, 2 * nd + 3)) + (nd + 2,))
            self.lead = ()

    @property
    def width(self):
        """Elements per sample in the gathered rows: L * G * K * Cg."""
        return self.per_sample * self.groups * math.prod(self.kernel) * self.cg

    def buffer(self, m):
        """A pooled buffer for the windows of ``m`` samples (give it back with ``buffer_pool.give``)."""
        if self.kernel_major:
            shape = (1, *self.kernel, m, *self.out_spatial)
        else:
            shape = (m, *self.out_spatial, self.groups, *self.kernel, self.cg)
        return recycle.take_buffer(self.xp, shape, self.dtype)

    def fill(self, buffer, lo, hi, at=0):
        """Copy the windows of samples lo..hi-1 into ``buffer``'s samples at, at+1, ..."""
        dst = self.lead + (slice(at, at + hi - lo),)
        buffer[dst] = self.source[self.lead + (slice(lo, hi),)]

    def cols(self, buffer, m):
        """``buffer`` (from :meth:`buffer`) as the (m*L, G, K*Cg) matrix of gathered rows."""
        rows, k = m * self.per_sample, math.prod(self.kernel)
        if self.kernel_major:
            return buffer.reshape(k, rows).T.reshape(rows, 1, k)
        return buffer.reshape(rows, self.groups, k * self.cg)


def col2im_into(out, blocks, kernel, stride, dilation, out_spatial):
    """Scatter-add windows back: blocks (K, G, N*L, Cg) -> ``out`` (N, *Sp, G, Cg) (padded,
    channels-last), overwritten.

    ``blocks[k]`` holds every output position's contribution at kernel position ``k``; each is
    added into a strided slice of ``out`` (no ``add.at``, no loop over windows).
    """
    _, groups, rows, cg = blocks.shape
    batch = rows // math.prod(out_spatial)
    out.fill(0)
    for k, offset in enumerate(kernel_offsets(kernel)):
        # (G, N*L, Cg) seen as (N, *O, G, Cg), the order of the target slice
        block = blocks[k].reshape(groups, batch, *out_spatial, cg)
        block = block.transpose(*range(1, len(out_spatial) + 2), 0, len(out_spatial) + 2)
        out[(slice(None),) + window_slices(offset, stride, dilation, out_spatial)] += block


def weight_matrix(w, groups, flip):
    """(C_out, Cg, *K) -> contiguous (G, K*Cg, C_out/G): rows in im2col's (kernel..., channel) order."""
    xp = array_namespace(w)
    nd = w.ndim - 2
    if flip:
        w = w[(slice(None), slice(None)) + (slice(None, None, -1),) * nd]
    cout, cg, *kernel = w.shape
    w = w.reshape(groups, cout // groups, cg, *kernel)
    w = w.transpose(0, *range(3, nd + 3), 2, 1)
    return xp.ascontiguousarray(w).reshape(groups, math.prod(kernel) * cg, cout // groups)


def weight_by_offset(w, groups, flip):
    """(C_out, Cg, *K) -> contiguous (K, G, C_out/G, Cg): one (out, in) matrix per kernel position."""
    xp = array_namespace(w)
    nd = w.ndim - 2
    if flip:
        w = w[(slice(None), slice(None)) + (slice(None, None, -1),) * nd]
    cout, cg, *kernel = w.shape
    w = w.reshape(groups, cout // groups, cg, *kernel)
    w = w.transpose(*range(3, nd + 3), 0, 1, 2)
    return xp.ascontiguousarray(w).reshape(math.prod(kernel), groups, cout // groups, cg)


def weight_from_matrix(wm, kernel, flip):
    """The inverse of :func:`weight_matrix`: (G, K*Cg, C_out/G) -> contiguous (C_out, Cg, *K)."""
    xp = array_namespace(wm)
    groups, _, og = wm.shape
    nd = len(kernel)
    cg = wm.shape[1] // math.prod(kernel)
    w = wm.reshape(groups, *kernel, cg, og)
    w = w.transpose(0, nd + 2, nd + 1, *range(1, nd + 1))
    if flip:
        w = w[(slice(None), slice(None), slice(None)) + (slice(None, None, -1),) * nd]
    # A fresh array, not a view of one: gradients handed to leaves need no further copy.
    out = xp.empty((groups * og, cg, *kernel), dtype=wm.dtype)
    out.reshape(w.shape)[...] = w
    return out
