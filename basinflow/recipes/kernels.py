"""Compiled kernels: pixel -> Q -> bin, fused, for one chunk of frames.

Per frame ``f`` the caller folds the whole diffractometer *and the grid* into a small
matrix and vector: ``u = A[f] @ p / |p| - b[f]`` is the position of a pixel in bin units
(``u_d = (q_d - lo_d) / step_d``) for the position ``p`` of the pixel at zero detector
angles (see :class:`basinflow.recipes.rsm_setup.Setup` and :mod:`basinflow.recipes.geometry`).
Pixel ``(i, j)`` sits at ``p = rows[i] + j * step2`` with ``inorm[i, j] = 1 / |p|``
precomputed once per detector geometry, so per frame and row the kernel forms
``c = A @ rows[i]`` and ``e = A @ step2`` and each pixel costs ``u = (c + j e) w - b``:
two fused multiply-adds per grid dim, no trigonometry, no square root. The kernels never
build a ``(frames, y, x, 3)`` Q array.

Binning is xrayutilities' ``Gridder`` rule, so results agree bin for bin: a value with
``lo <= q <= hi`` (here ``0 <= u <= n - 1``) goes to bin ``rint(u)`` (round half to even);
anything else, including NaN Q, is out of range. A dim of one bin has ``u`` scaled to
``0..1`` over ``[lo, hi]`` and a stride of zero. Folding ``lo`` and ``1/step`` into the
per-frame coefficients may round differently from xrayutilities' ``(q - lo) / step`` in
the last bit, which moves a pixel only when it lies within an ulp of a bin boundary.
Pixels whose (monitor-scaled) value is NaN or ±inf are not binned but counted in
``bad[group]``; masked pixels are skipped.

Layout for speed: per detector row and frame, a branch-free loop (SIMD) computes the flat
bin index and the scaled value of every pixel (invalid pixels go to one scratch bin past
the grid, so the scatter needs no test); then a scalar loop adds values run by run
(:func:`_scatter`): consecutive pixels mostly fall into the same bin, and summing a run in
registers avoids a store-to-load dependency through memory per pixel. Sums and counts are
interleaved so one cache line holds both, and a byte per block of bins records which
parts of the grid a task touched, so its partial can be sent sparse
(:func:`touched_bins`). Rows are the outer loop: a row of geometry serves every frame of
the chunk, and the bins one row touches over a chunk fit in L1. Costs on the reference
machine are in ``benchmarks/RESULTS.md`` (B1, kernel row).

All kernels release the GIL (``nogil=True``) so Dask's threads run them in parallel.
``fastmath={"contract"}`` only lets LLVM fuse multiply-adds (no reassociation, NaN and
inf semantics kept).
"""

from __future__ import annotations

import numpy as np
from numba import njit

BLOCK = 8  # bins per entry of the ``touched`` map
SCRATCH = 1  # rows of the accumulator past the grid: where invalid pixels are "added"


@njit(nogil=True, cache=True, inline="always")
def _flush(fl, k, v, c, touched):
    touched[k // BLOCK] = 1  # unconditional: no branch, no load
    fl[k, 0] += v
    fl[k, 1] += c


@njit(nogil=True, cache=True, fastmath={"contract"})
def _bin_row(row, wrow, mrow, jf, c, e, b, umax, stride, scale, skip, idx, vals):
    """Flat bin index (``skip`` where out of range, masked or non-finite) and scaled value
    of every pixel of one detector row; returns the number of non-finite values."""
    c0, c1, c2 = c[0], c[1], c[2]
    e0, e1, e2 = e[0], e[1], e[2]
    b0, b1, b2 = b[0], b[1], b[2]
    m0, m1, m2 = umax[0], umax[1], umax[2]
    s0, s1, s2 = stride[0], stride[1], stride[2]
    nbad = 0
    for j in range(row.shape[0]):  # branch-free: vectorises
        t = jf[j]
        w = wrow[j]
        u0 = (c0 + t * e0) * w - b0
        u1 = (c1 + t * e1) * w - b1
        u2 = (c2 + t * e2) * w - b2
        v = np.float64(row[j]) * scale
        fin = np.isfinite(v)
        ok = (u0 >= 0.0) & (u0 <= m0) & (u1 >= 0.0) & (u1 <= m1) & (u2 >= 0.0) & (u2 <= m2)
        ok = ok & fin & (not mrow[j])
        k = np.rint(u0) * s0 + np.rint(u1) * s1 + np.rint(u2) * s2
        idx[j] = np.int64(k) if ok else skip
        vals[j] = v
        nbad += not fin
    return nbad


@njit(nogil=True, cache=True)
def _scatter(idx, vals, fl, base, touched):
    """Add one row of values to the bins ``base + idx``, run by run.

    Indices are unsigned here so that numba emits no negative-index wraparound per access.
    """
    ubase = np.uint64(base)
    prev = np.uint64(idx[0])
    accv = 0.0
    accc = 0.0
    for j in range(idx.shape[0]):
        k = np.uint64(idx[j])
        if k != prev:
            _flush(fl, ubase + prev, accv, accc, touched)
            prev = k
            accv = 0.0
            accc = 0.0
        accv += vals[j]
        accc += 1.0
    _flush(fl, ubase + prev, accv, accc, touched)


@njit(nogil=True, cache=True)
def touched_bins(fl, touched):
    """The bins with pixels (``fl[:, 1] > 0``), looking only into marked blocks."""
    n = fl.shape[0]
    marked = 0
    for blk in range(touched.shape[0]):
        marked += touched[blk]
    out = np.empty(marked * BLOCK, np.int64)
    total = 0
    for blk in range(touched.shape[0]):
        if touched[blk]:
            for k in range(blk * BLOCK, min((blk + 1) * BLOCK, n)):
                if fl[k, 1] > 0.0:
                    out[total] = k
                    total += 1
    return out[:total].copy()


@njit(nogil=True, cache=True)
def merge_into(fl, bins, sums, counts, touched):
    """Add a sparse partial into the dense ``fl``, marking blocks like the kernels."""
    for n in range(bins.shape[0]):
        _flush(fl, bins[n], sums[n], counts[n], touched)


@njit(nogil=True, cache=True, fastmath={"contract"})
def grid(frames, mask, a, b, scale, group, rows, step2, inorm, jf, umax, stride, acc, bad, touched):
    """Accumulate one chunk of frames into a grid of up to 3 dims, in place.

    frames (m, n1, n2), any real dtype; mask (n1, n2) bool, True = skip the pixel;
    a (m, 3, 3) and b (m, 3) float64: ``u = a @ p/|p| - b`` in bin units, rows in grid-dim
    order (a 2-D grid has a zero third row: ``u = 0``, ``umax = 0``, stride 0); scale (m,)
    multiplies pixel values (1/monitor, or 1); group (m,) int64, -1 skips the frame;
    rows (n1, 3), step2 (3,), inorm (n1, n2), jf (n2,) = 0, 1, 2... as float64;
    umax (3,): ``n - 1`` per dim (1 for a dim of one bin); stride (3,) float64: flat-index
    stride per dim (0 for a dim of one bin); acc (G * nbins + SCRATCH, 2) float64 receives
    [sum, count] per bin (C order over the grid, group-major), its last row is scratch;
    bad (G,) float64 counts NaN/inf values; touched (len(acc) // BLOCK + 1,) uint8 marks
    the blocks of bins written to.
    """
    m, n1, n2 = frames.shape
    scratch = acc.shape[0] - SCRATCH
    nbins = scratch // bad.shape[0]
    idx = np.empty(n2, np.int64)
    vals = np.empty(n2)
    c = np.empty(3)
    e = np.empty(3)
    for i in range(n1):  # rows outer: a row of geometry serves every frame of the chunk
        wrow, mrow, p = inorm[i], mask[i], rows[i]
        for f in range(m):
            g = group[f]
            if g < 0:
                continue
            for d in range(3):
                c[d] = a[f, d, 0] * p[0] + a[f, d, 1] * p[1] + a[f, d, 2] * p[2]
                e[d] = a[f, d, 0] * step2[0] + a[f, d, 1] * step2[1] + a[f, d, 2] * step2[2]
            base = g * nbins
            bad[g] += _bin_row(
                frames[f, i],
                wrow,
                mrow,
                jf,
                c,
                e,
                b[f],
                umax,
                stride,
                scale[f],
                scratch - base,
                idx,
                vals,
            )
            _scatter(idx, vals, acc, base, touched)


@njit(nogil=True, cache=True)
def roi_sums(frames, rects, out, bad):
    """Sums of finite pixels in rectangles ``rects`` (k, 4: r0, r1, c0, c1) per frame.

    out (m, k) float64 receives the sums; bad (m, k) int64 the non-finite pixel counts.
    """
    m = frames.shape[0]
    for f in range(m):
        for r in range(rects.shape[0]):
            r0, r1, c0, c1 = rects[r, 0], rects[r, 1], rects[r, 2], rects[r, 3]
            acc = 0.0
            nbad = 0
            for i in range(r0, r1):
                for j in range(c0, c1):
                    v = np.float64(frames[f, i, j])
                    if np.isfinite(v):
                        acc += v
                    else:
                        nbad += 1
            out[f, r] = acc
            bad[f, r] = nbad
