"""Writes :mod:`knetpy.ops.fast.winograd_codelets`: each 1-D Winograd transform as straight-line code.

A codelet ``name(k, src, si, so, dst, di, do, size)`` computes, for q < size,

    dst[r, di, do + q] = Σ_u T[r, u] * src[u, si, so + q]      (every row r of the transform T)

in one loop over q that loads the a inputs once, keeps every sum in registers and stores each output
once (the loop over q runs over a block's tiles and channels together, and the compiler vectorizes it).
The coefficients come in ``k`` (a small array in the data's dtype, :data:`COEFFICIENTS` there), and
±1 take no product. Sparsity is used as in the exact matrices:

- columns of T that are equal up to the sign of each entry (Aᵀ's and B's, which come from the
  interpolation points' pairs ±p) enter as their sum and difference, so each output takes one of the two;
- otherwise rows that are equal up to the signs of every other entry (Bᵀ's and A's) are made as the
  halves of their sum and difference, which have half the nonzeros each, then added and subtracted.

Only zero products are skipped, so the results are the matrices' products up to float rounding.

    python -m knetpy.ops.fast.winograd_codegen      # writes winograd_codelets.py beside this file
"""

from __future__ import annotations

import os

import numpy as np

#: (codelet name, r, which matrix): Bᵀ and B do not depend on r (the same eight points).
CODELETS = (("transform_bt", 5, "bt"), ("transform_b", 5, "b"), ("transform_at4", 5, "at"), ("transform_a4", 5, "a"),
            ("transform_at6", 3, "at"), ("transform_a6", 3, "a"))
TARGET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "winograd_codelets.py")


def paired(mat):
    """Pairs (j, k) of columns with mat[:, k] = ±mat[:, j] entry by entry, both signs occurring."""
    pairs, used = [], set()
    for j in range(mat.shape[1]):
        for k in range(j + 1, mat.shape[1]):
            a, b = mat[:, j], mat[:, k]
            if (j not in used and k not in used and np.all((a == b) | (a == -b))
                    and np.any((a == b) & (a != 0)) and np.any((a == -b) & (a != 0))):
                pairs.append((j, k))
                used |= {j, k}
    return pairs


def matrix(r, which):
    """The exact float64 transform matrix ``which`` ("bt", "b", "at", "a") of F(8 - r + 1, r)."""
    from ..winograd import transforms

    at, _, bt = transforms(r)
    return {"bt": bt, "b": bt.T, "at": at, "a": at.T}[which]


def codelet(name, mat):
    """(source, coefficients) of the codelet ``name`` for the matrix ``mat`` (n_out, n_in)."""
    n_out, n_in = mat.shape
    coefficients = []

    def times(c, var):  # (sign, term)
        if abs(c) != 1:
            if abs(c) not in coefficients:
                coefficients.append(abs(c))
            var = f"k{coefficients.index(abs(c))} * {var}"
        return ("+" if c > 0 else "-"), var

    cols = paired(mat)
    rows = [] if cols else paired(mat.T)
    partner = dict(cols)
    second = set(partner.values())
    sparse = mat.copy()
    for p, q in rows:
        sparse[p], sparse[q] = (mat[p] + mat[q]) / 2, (mat[p] - mat[q]) / 2  # exact: one of each pair is 0

    def expr(row):
        terms = []
        for u in range(n_in):
            if u in second:
                continue
            if u in partner:
                v = partner[u]
                if row[u] == 0 and row[v] == 0:
                    continue
                terms.append(times(row[u], f"s{u}" if row[u] == row[v] else f"d{u}"))
            elif row[u] != 0:
                terms.append(times(row[u], f"i{u}"))
        if not terms:
            raise ValueError(f"{name}: a row without terms")
        text = terms[0][1] if terms[0][0] == "+" else f"-{terms[0][1]}"
        return text + "".join(f" {sign} {term}" for sign, term in terms[1:])

    loop = [f"        i{u} = x{u}[q]" for u in range(n_in)]
    for j, v in cols:
        loop += [f"        s{j} = i{j} + i{v}", f"        d{j} = i{j} - i{v}"]
    if rows:
        loop += [f"        z{r} = {expr(sparse[r])}" for r in range(n_out)]
        done = set()
        for p, q in rows:
            loop += [f"        y{p}[q] = z{p} + z{q}", f"        y{q}[q] = z{p} - z{q}"]
            done |= {p, q}
        loop += [f"        y{r}[q] = z{r}" for r in range(n_out) if r not in done]
    else:
        loop += [f"        y{r}[q] = {expr(sparse[r])}" for r in range(n_out)]
    lines = ["@numba.njit(cache=True, nogil=True, inline=\"always\")",
             f"def {name}(k, src, si, so, dst, di, do, size):",
             f'    """dst[r, di, do:do + size] = Σ_u T[r, u] src[u, si, so:so + size], T {n_out}x{n_in}."""']
    lines += [f"    k{i} = k[{i}]" for i in range(len(coefficients))]
    lines += [f"    x{u} = src[{u}, si, so : so + size]" for u in range(n_in)]
    lines += [f"    y{r} = dst[{r}, di, do : do + size]" for r in range(n_out)]
    lines += ["    for q in range(size):"] + loop
    return "\n".join(lines) + "\n", tuple(float(c) for c in coefficients)


def source():
    """The text of winograd_codelets.py."""
    parts, table = [], []
    for name, r, which in CODELETS:
        text, coefficients = codelet(name, matrix(r, which))
        parts.append(text)
        table.append(f"    {name!r}: {coefficients!r},")
    head = (
        '"""The 1-D Winograd transforms as straight-line code (see knetpy.ops.fast.winograd_codegen, which\n'
        'writes this file from the exact matrices: python -m knetpy.ops.fast.winograd_codegen).\n"""\n\n'
        "# generated: do not edit\n\nimport numba\n\n"
        "#: Each codelet's coefficients (its k), in float64; the kernels take them in the data's dtype.\n"
        "COEFFICIENTS = {\n" + "\n".join(table) + "\n}\n"
    )
    return head + "\n\n" + "\n\n".join(parts)


if __name__ == "__main__":
    text = source()
    tmp = TARGET + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, TARGET)
    print(f"wrote {TARGET}")
