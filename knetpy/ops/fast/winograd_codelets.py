"""The 1-D Winograd transforms as straight-line code (see knetpy.ops.fast.winograd_codegen, which
writes this file from the exact matrices: python -m knetpy.ops.fast.winograd_codegen).
"""

# generated: do not edit

import numba

#: Each codelet's coefficients (its k), in float64; the kernels take them in the data's dtype.
COEFFICIENTS = {
    'transform_bt': (0.19047619047619047, 0.23529411764705882, 0.1, 0.5, 0.4, 0.2, 0.8),
    'transform_b': (0.19047619047619047, 0.23529411764705882, 0.2, 0.4, 0.1, 0.8, 0.5),
    'transform_at4': (2.0, 0.5, 4.0, 0.25, 8.0, 0.125),
    'transform_a4': (4.0, 2.0, 8.0, 0.25, 0.5, 0.125),
    'transform_at6': (2.0, 0.5, 4.0, 0.25, 8.0, 0.125, 16.0, 0.0625, 32.0, 0.03125),
    'transform_a6': (4.0, 16.0, 2.0, 8.0, 32.0, 0.25, 0.0625, 0.5, 0.125, 0.03125),
}


@numba.njit(cache=True, nogil=True, inline="always")
def transform_bt(k, src, si, so, dst, di, do, size):
    """dst[r, di, do:do + size] = Σ_u T[r, u] src[u, si, so:so + size], T 8x8."""
    k0 = k[0]
    k1 = k[1]
    k2 = k[2]
    k3 = k[3]
    k4 = k[4]
    k5 = k[5]
    k6 = k[6]
    x0 = src[0, si, so : so + size]
    x1 = src[1, si, so : so + size]
    x2 = src[2, si, so : so + size]
    x3 = src[3, si, so : so + size]
    x4 = src[4, si, so : so + size]
    x5 = src[5, si, so : so + size]
    x6 = src[6, si, so : so + size]
    x7 = src[7, si, so : so + size]
    y0 = dst[0, di, do : do + size]
    y1 = dst[1, di, do : do + size]
    y2 = dst[2, di, do : do + size]
    y3 = dst[3, di, do : do + size]
    y4 = dst[4, di, do : do + size]
    y5 = dst[5, di, do : do + size]
    y6 = dst[6, di, do : do + size]
    y7 = dst[7, di, do : do + size]
    for q in range(size):
        i0 = x0[q]
        i1 = x1[q]
        i2 = x2[q]
        i3 = x3[q]
        i4 = x4[q]
        i5 = x5[q]
        i6 = x6[q]
        i7 = x7[q]
        z0 = k0 * i0 - i2 + i4 - k0 * i6
        z1 = -k1 * i2 + i4 - k1 * i6
        z2 = -k1 * i1 + i3 - k1 * i5
        z3 = k2 * i2 - k3 * i4 + k4 * i6
        z4 = k5 * i1 - i3 + k6 * i5
        z5 = k6 * i2 - i4 + k5 * i6
        z6 = k4 * i1 - k3 * i3 + k2 * i5
        z7 = -k0 * i1 + i3 - i5 + k0 * i7
        y1[q] = z1 + z2
        y2[q] = z1 - z2
        y3[q] = z3 + z4
        y4[q] = z3 - z4
        y5[q] = z5 + z6
        y6[q] = z5 - z6
        y0[q] = z0
        y7[q] = z7


@numba.njit(cache=True, nogil=True, inline="always")
def transform_b(k, src, si, so, dst, di, do, size):
    """dst[r, di, do:do + size] = Σ_u T[r, u] src[u, si, so:so + size], T 8x8."""
    k0 = k[0]
    k1 = k[1]
    k2 = k[2]
    k3 = k[3]
    k4 = k[4]
    k5 = k[5]
    k6 = k[6]
    x0 = src[0, si, so : so + size]
    x1 = src[1, si, so : so + size]
    x2 = src[2, si, so : so + size]
    x3 = src[3, si, so : so + size]
    x4 = src[4, si, so : so + size]
    x5 = src[5, si, so : so + size]
    x6 = src[6, si, so : so + size]
    x7 = src[7, si, so : so + size]
    y0 = dst[0, di, do : do + size]
    y1 = dst[1, di, do : do + size]
    y2 = dst[2, di, do : do + size]
    y3 = dst[3, di, do : do + size]
    y4 = dst[4, di, do : do + size]
    y5 = dst[5, di, do : do + size]
    y6 = dst[6, di, do : do + size]
    y7 = dst[7, di, do : do + size]
    for q in range(size):
        i0 = x0[q]
        i1 = x1[q]
        i2 = x2[q]
        i3 = x3[q]
        i4 = x4[q]
        i5 = x5[q]
        i6 = x6[q]
        i7 = x7[q]
        s1 = i1 + i2
        d1 = i1 - i2
        s3 = i3 + i4
        d3 = i3 - i4
        s5 = i5 + i6
        d5 = i5 - i6
        y0[q] = k0 * i0
        y1[q] = -k1 * d1 + k2 * d3 + k3 * d5 - k0 * i7
        y2[q] = -i0 - k1 * s1 + k4 * s3 + k5 * s5
        y3[q] = d1 - d3 - k6 * d5 + i7
        y4[q] = i0 + s1 - k6 * s3 - s5
        y5[q] = -k1 * d1 + k5 * d3 + k4 * d5 - i7
        y6[q] = -k0 * i0 - k1 * s1 + k3 * s3 + k2 * s5
        y7[q] = k0 * i7


@numba.njit(cache=True, nogil=True, inline="always")
def transform_at4(k, src, si, so, dst, di, do, size):
    """dst[r, di, do:do + size] = Σ_u T[r, u] src[u, si, so:so + size], T 4x8."""
    k0 = k[0]
    k1 = k[1]
    k2 = k[2]
    k3 = k[3]
    k4 = k[4]
    k5 = k[5]
    x0 = src[0, si, so : so + size]
    x1 = src[1, si, so : so + size]
    x2 = src[2, si, so : so + size]
    x3 = src[3, si, so : so + size]
    x4 = src[4, si, so : so + size]
    x5 = src[5, si, so : so + size]
    x6 = src[6, si, so : so + size]
    x7 = src[7, si, so : so + size]
    y0 = dst[0, di, do : do + size]
    y1 = dst[1, di, do : do + size]
    y2 = dst[2, di, do : do + size]
    y3 = dst[3, di, do : do + size]
    for q in range(size):
        i0 = x0[q]
        i1 = x1[q]
        i2 = x2[q]
        i3 = x3[q]
        i4 = x4[q]
        i5 = x5[q]
        i6 = x6[q]
        i7 = x7[q]
        s1 = i1 + i2
        d1 = i1 - i2
        s3 = i3 + i4
        d3 = i3 - i4
        s5 = i5 + i6
        d5 = i5 - i6
        y0[q] = i0 + s1 + s3 + s5
        y1[q] = d1 + k0 * d3 + k1 * d5
        y2[q] = s1 + k2 * s3 + k3 * s5
        y3[q] = d1 + k4 * d3 + k5 * d5 + i7


@numba.njit(cache=True, nogil=True, inline="always")
def transform_a4(k, src, si, so, dst, di, do, size):
    """dst[r, di, do:do + size] = Σ_u T[r, u] src[u, si, so:so + size], T 8x4."""
    k0 = k[0]
    k1 = k[1]
    k2 = k[2]
    k3 = k[3]
    k4 = k[4]
    k5 = k[5]
    x0 = src[0, si, so : so + size]
    x1 = src[1, si, so : so + size]
    x2 = src[2, si, so : so + size]
    x3 = src[3, si, so : so + size]
    y0 = dst[0, di, do : do + size]
    y1 = dst[1, di, do : do + size]
    y2 = dst[2, di, do : do + size]
    y3 = dst[3, di, do : do + size]
    y4 = dst[4, di, do : do + size]
    y5 = dst[5, di, do : do + size]
    y6 = dst[6, di, do : do + size]
    y7 = dst[7, di, do : do + size]
    for q in range(size):
        i0 = x0[q]
        i1 = x1[q]
        i2 = x2[q]
        i3 = x3[q]
        z0 = i0
        z1 = i0 + i2
        z2 = i1 + i3
        z3 = i0 + k0 * i2
        z4 = k1 * i1 + k2 * i3
        z5 = i0 + k3 * i2
        z6 = k4 * i1 + k5 * i3
        z7 = i3
        y1[q] = z1 + z2
        y2[q] = z1 - z2
        y3[q] = z3 + z4
        y4[q] = z3 - z4
        y5[q] = z5 + z6
        y6[q] = z5 - z6
        y0[q] = z0
        y7[q] = z7


@numba.njit(cache=True, nogil=True, inline="always")
def transform_at6(k, src, si, so, dst, di, do, size):
    """dst[r, di, do:do + size] = Σ_u T[r, u] src[u, si, so:so + size], T 6x8."""
    k0 = k[0]
    k1 = k[1]
    k2 = k[2]
    k3 = k[3]
    k4 = k[4]
    k5 = k[5]
    k6 = k[6]
    k7 = k[7]
    k8 = k[8]
    k9 = k[9]
    x0 = src[0, si, so : so + size]
    x1 = src[1, si, so : so + size]
    x2 = src[2, si, so : so + size]
    x3 = src[3, si, so : so + size]
    x4 = src[4, si, so : so + size]
    x5 = src[5, si, so : so + size]
    x6 = src[6, si, so : so + size]
    x7 = src[7, si, so : so + size]
    y0 = dst[0, di, do : do + size]
    y1 = dst[1, di, do : do + size]
    y2 = dst[2, di, do : do + size]
    y3 = dst[3, di, do : do + size]
    y4 = dst[4, di, do : do + size]
    y5 = dst[5, di, do : do + size]
    for q in range(size):
        i0 = x0[q]
        i1 = x1[q]
        i2 = x2[q]
        i3 = x3[q]
        i4 = x4[q]
        i5 = x5[q]
        i6 = x6[q]
        i7 = x7[q]
        s1 = i1 + i2
        d1 = i1 - i2
        s3 = i3 + i4
        d3 = i3 - i4
        s5 = i5 + i6
        d5 = i5 - i6
        y0[q] = i0 + s1 + s3 + s5
        y1[q] = d1 + k0 * d3 + k1 * d5
        y2[q] = s1 + k2 * s3 + k3 * s5
        y3[q] = d1 + k4 * d3 + k5 * d5
        y4[q] = s1 + k6 * s3 + k7 * s5
        y5[q] = d1 + k8 * d3 + k9 * d5 + i7


@numba.njit(cache=True, nogil=True, inline="always")
def transform_a6(k, src, si, so, dst, di, do, size):
    """dst[r, di, do:do + size] = Σ_u T[r, u] src[u, si, so:so + size], T 8x6."""
    k0 = k[0]
    k1 = k[1]
    k2 = k[2]
    k3 = k[3]
    k4 = k[4]
    k5 = k[5]
    k6 = k[6]
    k7 = k[7]
    k8 = k[8]
    k9 = k[9]
    x0 = src[0, si, so : so + size]
    x1 = src[1, si, so : so + size]
    x2 = src[2, si, so : so + size]
    x3 = src[3, si, so : so + size]
    x4 = src[4, si, so : so + size]
    x5 = src[5, si, so : so + size]
    y0 = dst[0, di, do : do + size]
    y1 = dst[1, di, do : do + size]
    y2 = dst[2, di, do : do + size]
    y3 = dst[3, di, do : do + size]
    y4 = dst[4, di, do : do + size]
    y5 = dst[5, di, do : do + size]
    y6 = dst[6, di, do : do + size]
    y7 = dst[7, di, do : do + size]
    for q in range(size):
        i0 = x0[q]
        i1 = x1[q]
        i2 = x2[q]
        i3 = x3[q]
        i4 = x4[q]
        i5 = x5[q]
        z0 = i0
        z1 = i0 + i2 + i4
        z2 = i1 + i3 + i5
        z3 = i0 + k0 * i2 + k1 * i4
        z4 = k2 * i1 + k3 * i3 + k4 * i5
        z5 = i0 + k5 * i2 + k6 * i4
        z6 = k7 * i1 + k8 * i3 + k9 * i5
        z7 = i5
        y1[q] = z1 + z2
        y2[q] = z1 - z2
        y3[q] = z3 + z4
        y4[q] = z3 - z4
        y5[q] = z5 + z6
        y6[q] = z5 - z6
        y0[q] = z0
        y7[q] = z7
