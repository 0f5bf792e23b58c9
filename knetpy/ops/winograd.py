"""Winograd convolution F(m x m, r x r): the same 2-D convolution with fewer multiplications.

A direct convolution makes r*r multiply-adds per output and channel pair. Winograd's algorithm
computes an m x m tile of outputs from an a x a tile of input (a = m + r - 1) as

    Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A

with small constant matrices A, B, G: a*a products per tile instead of m*m*r*r. Summed over input
channels, the products become a*a independent GEMMs, one per tile position p:
M[p] (tiles, C_out) = V[p] (tiles, C_in) @ U[p] (C_in, C_out). Here a = 8: 5x5 kernels take 4x4
tiles (64 products against 400, 6.25 times fewer) and 3x3 kernels 6x6 tiles (64 against 324).
The gradients are the adjoints of the same bilinear map, with the same matrices:

    input gradient:   dV[p] = dM[p] @ U[p]ᵀ, then B dV Bᵀ added back over the (overlapping) tiles
    filter gradient:  dU[p] = V[p]ᵀ @ dM[p], then Gᵀ dU G                     (dM = A dY Aᵀ)

The matrices are built here exactly (rational arithmetic) from the interpolation points 0, ±1, ±2,
±1/2 and infinity. Each transform is separable (Bᵀ d B = Bᵀ (d B)), so it runs as two small GEMMs
over every tile of a few samples at once.

In exact arithmetic the result equals the direct convolution (the tests hold them equal to 1e-12 in
float64). In float32 the transforms add rounding of a few units in 1e-6 of the outputs' scale (the
direct GEMM's is a few in 1e-7), which training does not notice. One difference beyond rounding: an
infinite or NaN input spreads NaN over the whole output tile it falls in, where a direct convolution
limits it to the outputs whose windows cover it.

When knetpy takes it (:func:`plan`): float32 NumPy arrays, 3x3 or 5x5 kernels, stride 1, no
dilation, one group, at least ``MIN_CHANNELS`` channels in and out, and tiles that waste little
(``MAX_WORK``). With the compiled transforms (:mod:`knetpy.ops.fast.winograd`, the ``[fast]`` extra)
it is taken whatever knetpy's threads are, and split over them, each thread taking its samples: each
part is then three GIL-free calls per run of samples (two transforms and one batched GEMM). With the
NumPy transforms it is taken only with knetpy's threads off (one core, or ``kp.set_num_threads(1)``):
each part would be a loop of NumPy calls with Python between them, and two threads running such
loops take turns at the GIL (half of LeNet's second convolution took 1.7-2.3 times as long beside
a second copy of itself as alone, ``benchmarks/threads.py``).

The backward pass makes both gradients in one pass (:func:`backward`): the output gradient's tiles
dM serve the input gradient and the filter gradient, and the input's tiles that the forward pass made
(kept, :class:`Tiles`) serve the filter gradient again.

float64 (and so gradient checks) always stays direct. ``KNETPY_WINOGRAD=0`` in the environment or
:func:`set_winograd` turns the path off.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from fractions import Fraction

import numpy as np

from .. import parallel
from . import fast, recycle

ALPHA = 8
KERNELS = (3, 5)
MIN_CHANNELS = 8
#: Winograd when it makes at most this share of the direct convolution's multiplications.
MAX_WORK = 0.4
#: The tile buffers of one part of the batch, about this many bytes at a time. Fewer, larger runs pay
#: more than keeping them in L2: each run is a batched GEMM of 64 small products, which grow with the run,
#: and a few calls with Python between them (LeNet's second convolution, forward and backward, 2-core AMD
#: EPYC: 11.4 ms at 4 MB against 12.2 at 1 MB on one thread, 8.9 against 9.6 on two).
CHUNK_BYTES = 1 << 22
#: The forward pass keeps the input's tiles for the filter gradient when they take at most this many bytes
#: (about twice the input's size); larger layers make them again in the backward pass, so that a deep
#: network's peak memory does not grow by its tiles.
KEEP_BYTES = 1 << 22
#: A convolution is split over knetpy's threads when its tiles (input and output channels) hold at least
#: this many values.
SPLIT_VALUES = 1 << 18

_enabled = os.environ.get("KNETPY_WINOGRAD", "1") != "0"


def set_winograd(on: bool) -> bool:
    """Let float32 convolutions take the Winograd path where it pays (the default), or not; returns
    the previous setting."""
    global _enabled
    prev, _enabled = _enabled, bool(on)
    return prev


def winograd_enabled() -> bool:
    """Whether the Winograd path is on (it is still taken only where :func:`plan` allows)."""
    return _enabled


# -- the matrices ---------------------------------------------------------------------------------------------
def _evaluation(points, n):
    """(len(points) + 1, n): row i evaluates a polynomial of degree < n (coefficients, lowest first)
    at points[i]; the last row, the point at infinity, takes its leading coefficient."""
    rows = [[p**k for k in range(n)] for p in points]
    rows.append([Fraction(0)] * (n - 1) + [Fraction(1)])
    return rows


def _inverse(rows):
    """The exact inverse of a square matrix of Fractions (Gauss-Jordan)."""
    n = len(rows)
    aug = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(rows)]
    for c in range(n):
        pivot = next(i for i in range(c, n) if aug[i][c] != 0)
        aug[c], aug[pivot] = aug[pivot], aug[c]
        aug[c] = [v / aug[c][c] for v in aug[c]]
        for i in range(n):
            if i != c and aug[i][c] != 0:
                f = aug[i][c]
                aug[i] = [u - f * v for u, v in zip(aug[i], aug[c])]
    return [row[n:] for row in aug]


@functools.cache
def transforms(r, dtype="float64"):
    """(Aᵀ (m, a), G (a, r), Bᵀ (a, a)) of F(m, r) with a = 8, as arrays of ``dtype``.

    Toom-Cook: a linear convolution of lengths r and m is evaluated at the a points, multiplied
    pointwise and interpolated back (C = the inverse of the evaluation matrix); the correlation a
    convolution layer computes is its transpose in the data, so Aᵀ evaluates the output side, Bᵀ = Cᵀ.
    Each column of C is scaled to largest entry 1 and the scale moved into G's rows (better rounding).
    """
    m = ALPHA - r + 1
    points = [Fraction(p) for p in (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))][: ALPHA - 1]
    interpolate = _inverse(_evaluation(points, ALPHA))
    scale = [max(abs(interpolate[i][j]) for i in range(ALPHA)) for j in range(ALPHA)]
    g = [[v * scale[i] for v in row] for i, row in enumerate(_evaluation(points, r))]
    bt = [[interpolate[i][j] / scale[j] for i in range(ALPHA)] for j in range(ALPHA)]
    at = [list(col) for col in zip(*_evaluation(points, m))]
    out = tuple(np.array([[float(v) for v in row] for row in mat], dtype=dtype) for mat in (at, g, bt))
    for mat in out:
        mat.flags.writeable = False  # shared by every call (cached)
    return out


# -- when it applies ------------------------------------------------------------------------------------------
class Plan:
    """The tiling of one convolution: tile size m, kernel r, tiles per sample th x tw, padding, and
    the matrices in the arrays' dtype."""

    __slots__ = ("r", "m", "th", "tw", "ph", "pw", "oh", "ow", "at", "g", "bt", "gg")

    def __init__(self, r, padding, out_spatial, dtype):
        self.r, self.m = r, ALPHA - r + 1
        self.ph, self.pw = padding
        self.oh, self.ow = out_spatial
        self.th, self.tw = -(-self.oh // self.m), -(-self.ow // self.m)
        self.at, self.g, self.bt = transforms(r, np.dtype(dtype).name)
        self.gg = _kron_g(r, np.dtype(dtype).name)

    @property
    def tiles(self):
        return self.th * self.tw


def plan(wshape, geom, out_spatial, *arrays):
    """A :class:`Plan` when the Winograd path takes this convolution (see the module's docstring),
    else None: ``wshape`` (C_out, C_in, r, r) is the filter's shape, out_spatial the output's, and
    ``arrays`` the operands, which must be float32 NumPy arrays."""
    if (not _enabled or (parallel.get_num_threads() > 1 and not fast.enabled())
            or any(type(a) is not np.ndarray or a.dtype != np.float32 for a in arrays)):
        return None
    return plan_for(wshape, geom, out_spatial, np.float32)


def plan_for(wshape, geom, out_spatial, dtype):
    """:func:`plan` without the dtype and on/off checks (tests run the path in float64 too)."""
    if len(wshape) != 4 or geom.groups != 1 or geom.stride != (1, 1) or geom.dilation != (1, 1):
        return None
    cout, cin, kh, kw = wshape
    if kh != kw or kh not in KERNELS or min(cin, cout) < MIN_CHANNELS:
        return None
    p = Plan(kh, geom.padding, out_spatial, dtype)
    if work_ratio(p) > MAX_WORK:
        return None
    return p


@functools.cache
def _kron_g(r, dtype):
    """G ⊗ G (a*a, r*r) of F(m, r): vec(G g Gᵀ) = (G ⊗ G) vec(g), made once per kernel size and dtype."""
    g = transforms(r, dtype)[1]
    gg = np.kron(g, g)
    gg.flags.writeable = False  # shared by every call (cached)
    return gg


def work_ratio(plan):
    """Winograd's multiplications over the direct convolution's, for this tiling."""
    return ALPHA * ALPHA * plan.tiles / (plan.r * plan.r * plan.oh * plan.ow)


# -- filters in and out of the tile domain --------------------------------------------------------------------
def filter_tiles(w, plan, flip):
    """U (a*a, C_in, C_out) = G g Gᵀ for every filter g of w (C_out, C_in, r, r); ``flip`` (a true
    convolution) turns each kernel around first, since the tiles compute a correlation."""
    cout, cin, r, _ = w.shape
    if flip:
        w = w[:, :, ::-1, ::-1]
    wk = np.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(r * r, cin * cout)
    return parallel.matmul(plan.gg, wk).reshape(ALPHA * ALPHA, cin, cout)


def filter_from_tiles(du, plan, flip):
    """The filter gradient (C_out, C_in, r, r) from its tile-domain form dU (a*a, C_in, C_out):
    Gᵀ dU G, the adjoint of :func:`filter_tiles`."""
    _, cin, cout = du.shape
    r = plan.r
    dw = parallel.matmul(plan.gg.T, du.reshape(ALPHA * ALPHA, cin * cout)).reshape(r, r, cin, cout).transpose(3, 2, 0, 1)
    if flip:
        dw = dw[:, :, ::-1, ::-1]
    return np.ascontiguousarray(dw)


# -- scratch memory ---------------------------------------------------------------------------------------------
_local = threading.local()


def _scratch(slot, shape, dtype):
    """This thread's scratch array for ``slot``, the same memory from call to call (grown when too small).

    A convolution's tile buffers are the same every training step; taken fresh (or from the shared
    pool, which keeps only a few of one size) they are page-faulted in again and again, which cost more
    than the transforms themselves with two threads. Each slot holds one live array at a time.
    """
    cache = getattr(_local, "buffers", None)
    if cache is None:
        cache = _local.buffers = {}
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    buffer = cache.get(slot)
    if buffer is None or buffer.nbytes < nbytes:
        buffer = cache[slot] = np.empty(max(nbytes, 1), np.uint8)
    return buffer[:nbytes].view(dtype).reshape(shape)


# -- the tile transforms ----------------------------------------------------------------------------------------
def _sandwich(mat, src, out):
    """out[i, j] = Σ_u,s mat[i, u] mat[j, s] src[u, s] for src (p, p, n) and out (q, q, n): mat · d · matᵀ
    for every column of tiles at once, as two GEMMs with long rows (the transform is separable)."""
    q, p = mat.shape
    n = src.shape[-1]
    half = _scratch("half", (q, p * n), src.dtype)
    with np.errstate(invalid="ignore"):  # inf - inf in a tile holding an inf: NaN, as documented above
        np.matmul(mat, src.reshape(p, p * n), out=half)
        np.matmul(mat, half.reshape(q, p, n), out=out.reshape(q, q, n))


def _input_tiles(xl, plan, lo, hi, out):
    """out (a, a, T*C) = Bᵀ d B for the tiles d of samples lo..hi-1 of xl (N, H, W, C), tile t =
    (sample, tile row, tile column); outside xl reads as zeros."""
    n, h, w, c = xl.shape
    nb = hi - lo
    hp, wp = plan.th * plan.m + plan.r - 1, plan.tw * plan.m + plan.r - 1
    src = xl[lo:hi]
    pad = (plan.ph, plan.pw, hp, wp) != (0, 0, h, w)
    if pad:
        padded = _scratch("pad", (nb, hp, wp, c), xl.dtype)
        padded.fill(0)
        rows, cols = min(h, hp - plan.ph), min(w, wp - plan.pw)
        padded[:, plan.ph : plan.ph + rows, plan.pw : plan.pw + cols] = src[:, :rows, :cols]
        src = padded
    s = src.strides
    view = np.lib.stride_tricks.as_strided(
        src, (ALPHA, ALPHA, nb, plan.th, plan.tw, c), (s[1], s[2], s[0], plan.m * s[1], plan.m * s[2], s[3]))
    d = _scratch("tiles in", (ALPHA, ALPHA, nb, plan.th, plan.tw, c), xl.dtype)
    np.copyto(d, view)
    _sandwich(plan.bt, d.reshape(ALPHA, ALPHA, -1), out)


def _output_tiles(mm, plan, nb, y):
    """y (nb, oh, ow, K) = Aᵀ M A per tile of M (a, a, T*K), the tiles' rows and columns past
    (oh, ow) dropped."""
    k = y.shape[-1]
    m = plan.m
    tiles = _scratch("tiles out", (m, m, nb, plan.th, plan.tw, k), mm.dtype)
    _sandwich(plan.at, mm.reshape(ALPHA, ALPHA, -1), tiles.reshape(m, m, -1))
    arranged = tiles.transpose(2, 3, 0, 4, 1, 5)  # (nb, th, m, tw, m, K)
    if (plan.th * m, plan.tw * m) == (plan.oh, plan.ow):
        y.reshape(arranged.shape)[...] = arranged
    else:
        full = _scratch("pad", arranged.shape, mm.dtype)
        full[...] = arranged
        y[...] = full.reshape(nb, plan.th * m, plan.tw * m, k)[:, : plan.oh, : plan.ow]


def _output_tiles_adjoint(gy, plan, out):
    """out (a, a, T*K) = A g Aᵀ for the m x m tiles g of gy (nb, oh, ow, K), zeros past (oh, ow):
    the adjoint of :func:`_output_tiles`."""
    nb, oh, ow, k = gy.shape
    m = plan.m
    if (plan.th * m, plan.tw * m) != (oh, ow):
        padded = _scratch("pad", (nb, plan.th * m, plan.tw * m, k), gy.dtype)
        padded.fill(0)
        padded[:, :oh, :ow] = gy
        gy = padded
    g = _scratch("tiles out", (m, m, nb, plan.th, plan.tw, k), gy.dtype)
    np.copyto(g, gy.reshape(nb, plan.th, m, plan.tw, m, k).transpose(2, 4, 0, 1, 3, 5))
    _sandwich(plan.at.T, g.reshape(m, m, -1), out)


def _input_tiles_adjoint(dv, plan, dx):
    """dx (nb, H, W, C), overwritten, = the sum over the tiles of B dV Bᵀ (dv (a, a, T*C)) put back where
    :func:`_input_tiles` read them, the padding's share dropped: the adjoint of :func:`_input_tiles`."""
    nb, h, w, c = dx.shape
    m, th, tw = plan.m, plan.th, plan.tw
    tiles = _scratch("tiles in", (ALPHA, ALPHA, nb, th, tw, c), dx.dtype)
    _sandwich(plan.bt.T, dv, tiles.reshape(ALPHA, ALPHA, -1))
    # The tiles overlap by r - 1 <= m rows and columns: split each into its first m rows (columns) and
    # the rest, which fall into the next block of m. Four strided adds over m x m blocks.
    blocks = _scratch("pad", (nb, th + 1, m, tw + 1, m, c), dx.dtype)
    blocks[:, th].fill(0)
    blocks[:, :th, :, tw].fill(0)
    parts = ((slice(0, m), 0), (slice(m, ALPHA), 1))
    for rows, down in parts:
        for cols, right in parts:
            piece = tiles[rows, cols].transpose(2, 3, 0, 4, 1, 5)  # (nb, th, rows, tw, cols, C)
            target = blocks[:, down : down + th, : piece.shape[2], right : right + tw, : piece.shape[4]]
            if down == right == 0:
                target[...] = piece
            else:
                target += piece
    padded = blocks.reshape(nb, (th + 1) * m, (tw + 1) * m, c)
    dx[...] = padded[:, plan.ph : plan.ph + h, plan.pw : plan.pw + w]


# -- the three convolutions -------------------------------------------------------------------------------------
# With the compiled transforms (:mod:`knetpy.ops.fast.winograd`) each is split over knetpy's threads, every
# thread taking its samples; with the NumPy transforms it runs on the calling thread, and :func:`plan` takes
# this path only when knetpy's threads are off. Either way a part goes a few samples at a time (:func:`_chunks`).
def _compiled(*arrays):
    """The compiled transforms when they are on and take these arrays, else None."""
    if fast.enabled() and all(a.dtype in fast.FLOATS for a in arrays):
        from .fast import winograd as kernels

        return kernels
    return None


@functools.cache
def _coefficients(r, dtype):
    """The coefficients of Bᵀ, Aᵀ, A and B of F(m, r) for the compiled transforms
    (:func:`fast.winograd.coefficients`), in ``dtype`` (a NumPy dtype: cached by it, since asking a dtype
    its name takes microseconds, several times a step)."""
    from .fast.winograd import coefficients

    k = coefficients(np.dtype(dtype))
    m = ALPHA - r + 1
    return k["transform_bt"], k[f"transform_at{m}"], k[f"transform_a{m}"], k["transform_b"]


def _over_samples(part, plan, channels, n, kernels):
    """``part(lo, hi)`` over the samples 0..n-1: split over knetpy's threads with the compiled transforms
    when the tile-domain arrays hold at least SPLIT_VALUES values."""
    if kernels is None:
        part(0, n)
    else:
        parallel.for_rows(part, n, n * plan.tiles * ALPHA * ALPHA * channels, minimum=SPLIT_VALUES)


def _chunks(plan, channels, lo, hi):
    """Consecutive runs a..b-1 of the samples lo..hi-1 whose tile buffers take about CHUNK_BYTES."""
    per_sample = ALPHA * ALPHA * plan.tiles * channels * 4
    step = max(1, CHUNK_BYTES // per_sample)
    for a in range(lo, hi, step):
        yield a, min(hi, a + step)


def _runs_like(tiles, plan, channels, lo, hi):
    """The runs of the samples lo..hi-1 for a backward pass: the forward pass's runs (``tiles.made``) cut
    to lo..hi, so that their kept tiles are used again, else :func:`_chunks`. (The passes cut their runs
    alike only when both split or neither does: the timed choices pick each pass's way on its own.)"""
    a = lo
    for ra, rb in sorted(tiles.made) if tiles is not None else ():  # (none made when none kept)
        if rb <= a or ra >= hi:
            continue
        if ra > a:  # a gap before this run: runs of its own
            yield from _chunks(plan, channels, a, ra)
            a = ra
        b = min(rb, hi)
        yield a, b  # (a..b-1 lies inside the run ra..rb-1)
        a = b
    if a < hi:
        yield from _chunks(plan, channels, a, hi)


def _tiles_in(kernels, xl, plan, a, b, v):
    if kernels is None:
        _input_tiles(xl, plan, a, b, v.reshape(ALPHA, ALPHA, -1))
    else:
        bt = _coefficients(plan.r, xl.dtype)[0]
        kernels.input_tiles(xl, bt, a, b, plan.th, plan.tw, plan.m, plan.ph, plan.pw, v)


def _tiles_out(kernels, mm, plan, y):
    if kernels is None:
        _output_tiles(mm, plan, y.shape[0], y)
    else:
        kernels.output_tiles(mm, _coefficients(plan.r, mm.dtype)[1], plan.m, plan.th, plan.tw, y)


def _tiles_in_adjoint(kernels, dv, plan, dx):
    if kernels is None:
        _input_tiles_adjoint(dv.reshape(ALPHA, ALPHA, -1), plan, dx)
    else:
        b_adj = _coefficients(plan.r, dv.dtype)[3]
        kernels.input_tiles_adjoint(dv, b_adj, plan.th, plan.tw, plan.m, plan.ph, plan.pw, dx)


def _tiles_out_adjoint(kernels, gy, plan, dm):
    if kernels is None:
        _output_tiles_adjoint(gy, plan, dm.reshape(ALPHA, ALPHA, -1))
    else:
        kernels.output_tiles_adjoint(gy, _coefficients(plan.r, gy.dtype)[2], plan.m, plan.th, plan.tw, dm)


class Tiles:
    """The input's tiles as a forward pass made them, kept for the filter gradient (:func:`backward`):
    one array, the tiles of the samples a..b-1 of each run (a, b) the pass made at its offset
    a * ``per``, laid out (a*a, (b-a)*tiles, C_in) as the pass used them; ``flat`` is None when the
    pass kept none (too large)."""

    __slots__ = ("flat", "per", "shape", "made")

    def __init__(self, flat, per, shape):
        self.flat, self.per, self.shape, self.made = flat, per, shape, set()

    def view(self, a, b):
        tiles, cin = self.shape
        return self.flat[a * self.per : b * self.per].reshape(ALPHA * ALPHA, (b - a) * tiles, cin)

    def get(self, a, b):
        """The tiles of the samples a..b-1 (a view), or None when no run the forward pass made holds them all."""
        for ra, rb in self.made:
            if ra <= a and b <= rb:
                tiles = self.shape[0]
                return self.view(ra, rb)[:, (a - ra) * tiles : (b - ra) * tiles]
        return None


def conv_rows(w, xl, plan, flip, y, epilogue=None, keep=False):
    """The convolution of xl (N, H, W, C_in) channels-last with w into the rows y (N*oh*ow, C_out);
    ``epilogue(rows, a, b)`` runs on the rows of samples a..b-1 right after they are made. With
    ``keep`` a :class:`Tiles` is returned (else None), which holds the input's tiles, made in one pooled
    array, when they take at most KEEP_BYTES."""
    n, _, _, cin = xl.shape
    cout = w.shape[0]
    u = filter_tiles(w, plan, flip).astype(xl.dtype, copy=False)
    per_sample = plan.oh * plan.ow
    kernels = _compiled(xl, y)
    per = ALPHA * ALPHA * plan.tiles * cin
    if keep:  # (over KEEP_BYTES: an empty Tiles, which still tells the backward pass that this ran)
        big = n * per * xl.dtype.itemsize > KEEP_BYTES
        kept = Tiles(None if big else recycle.empty(np, (n * per,), xl.dtype), per, (plan.tiles, cin))
    else:
        kept = None

    def part(lo, hi):
        for a, b in _chunks(plan, cin + cout, lo, hi):
            t = (b - a) * plan.tiles
            v = _scratch("v", (ALPHA * ALPHA, t, cin), xl.dtype) if kept is None or kept.flat is None else kept.view(a, b)
            mm = _scratch("m", (ALPHA * ALPHA, t, cout), xl.dtype)
            _tiles_in(kernels, xl, plan, a, b, v)
            if kept is not None and kept.flat is not None:
                kept.made.add((a, b))
            np.matmul(v, u, out=mm)
            rows = y[a * per_sample : b * per_sample]
            out = rows.reshape(b - a, plan.oh, plan.ow, cout)
            _tiles_out(kernels, mm, plan, out)
            if epilogue is not None:
                epilogue(rows, a, b)

    _over_samples(part, plan, cin + cout, n, kernels)
    return kept


def _transposed_tiles(w, plan, flip, dtype):
    """Uᵀ (a*a, C_out, C_in) for the input gradient's products dV[p] = dM[p] @ U[p]ᵀ, made contiguous: a
    transposed view as the second operand ran LeNet's second layer's 64 products at 61-64 GFLOP/s on one
    core, the contiguous copy (64K values) at 93-94."""
    return np.ascontiguousarray(filter_tiles(w, plan, flip).astype(dtype, copy=False).transpose(0, 2, 1))


def conv_transpose(w, gyl, plan, flip, dx):
    """The input gradient: dx (N, H, W, C_in) channels-last, overwritten, from the output gradient
    gyl (N, oh, ow, C_out) channels-last."""
    n, _, _, cout = gyl.shape
    cin = w.shape[1]
    ut = _transposed_tiles(w, plan, flip, gyl.dtype)
    kernels = _compiled(gyl, dx)

    def part(lo, hi):
        for a, b in _chunks(plan, cin + cout, lo, hi):
            t = (b - a) * plan.tiles
            dm = _scratch("m", (ALPHA * ALPHA, t, cout), gyl.dtype)
            dv = _scratch("v", (ALPHA * ALPHA, t, cin), gyl.dtype)
            _tiles_out_adjoint(kernels, gyl[a:b], plan, dm)
            np.matmul(dm, ut, out=dv)
            _tiles_in_adjoint(kernels, dv, plan, dx[a:b])

    _over_samples(part, plan, cin + cout, n, kernels)


def filter_grad(xl, gyl, plan, flip):
    """The filter gradient (C_out, C_in, r, r) from the input xl (N, H, W, C_in) and the output
    gradient gyl (N, oh, ow, C_out), both channels-last."""
    return backward(None, xl, gyl, plan, flip)


def backward(w, xl, gyl, plan, flip, dx=None, tiles=None, prologue=None):
    """Both gradients in one pass over the output gradient gyl (N, oh, ow, C_out): the filter
    gradient (returned) and, when ``dx`` (N, H, W, C_in) is given, the input gradient into it
    (overwritten; w is needed only then). Each run's dM = A dY Aᵀ is made once and used by both
    products; with ``tiles`` (:func:`conv_rows` kept them) the input's tiles are not made again.
    ``prologue(lo, hi)``, when given, makes gyl's samples lo..hi-1 first, in the same part (on the
    same thread) as their gradients: the op before this one in the backward pass, with no hand-off
    to threads of its own."""
    n, _, _, cin = xl.shape
    cout = gyl.shape[-1]
    kernels = _compiled(xl, gyl)
    ut = None if dx is None else _transposed_tiles(w, plan, flip, gyl.dtype)
    sums = {}

    def part(lo, hi):
        if prologue is not None:
            prologue(lo, hi)
        du = np.zeros((ALPHA * ALPHA, cin, cout), xl.dtype)
        term = np.empty_like(du)
        for a, b in _runs_like(tiles, plan, cin + cout, lo, hi):
            t = (b - a) * plan.tiles
            dm = _scratch("m", (ALPHA * ALPHA, t, cout), xl.dtype)
            _tiles_out_adjoint(kernels, gyl[a:b], plan, dm)
            v = None if tiles is None else tiles.get(a, b)
            if v is None:
                v = _scratch("v", (ALPHA * ALPHA, t, cin), xl.dtype)
                _tiles_in(kernels, xl, plan, a, b, v)
            np.matmul(v.transpose(0, 2, 1), dm, out=term)
            du += term
            if dx is not None:
                dv = _scratch("v", (ALPHA * ALPHA, t, cin), xl.dtype)  # (the input's tiles are used up)
                np.matmul(dm, ut, out=dv)
                _tiles_in_adjoint(kernels, dv, plan, dx[a:b])
        sums[lo] = du

    _over_samples(part, plan, cin + cout, n, kernels)
    du = None
    for lo in sorted(sums):  # the parts in order of their samples, so a split sums alike every time
        du = sums[lo] if du is None else np.add(du, sums[lo], out=du)
    if du is None:  # an empty batch
        du = np.zeros((ALPHA * ALPHA, cin, cout), xl.dtype)
    return filter_from_tiles(du, plan, flip).astype(xl.dtype, copy=False)
