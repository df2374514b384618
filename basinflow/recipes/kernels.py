"""Compiled kernels: pixel -> Q -> bin, fused, for one chunk of frames.

Per frame ``f`` the caller folds the whole diffractometer into a small matrix and vector:
``q = A[f] @ p / |p| - b[f]`` for the position ``p`` of every pixel at zero detector
angles (``A = k R_s^T R_d``, ``b = k R_s^T k_i``; see :mod:`basinflow.recipes.geometry`).
The kernels never build a ``(frames, y, x, 3)`` Q array: each pixel's Q lives in
registers, is binned, and its value is added to the partial sums and counts of its group.

Binning is xrayutilities' ``Gridder`` rule, so results agree bin for bin: with
``step = |hi - lo| / (n - 1)`` (infinite when ``n == 1``), a value ``q`` with
``lo <= q <= hi`` goes to bin ``rint((q - lo) / step)`` (round half to even); anything
else, including NaN Q, is out of range. Pixels whose (monitor-scaled) value is NaN or
±inf are not binned but counted in ``bad[group]``; masked pixels are skipped.

Layout for speed (3.2-3.6 ns per pixel and core on the reference machine, about 45x
xrayutilities' Ang2Q.area + Gridder3D): per detector row, a branch-free loop computes the
flat bin index of every pixel (SIMD), then a scalar loop adds values run by run
(:func:`_scatter`); sums and counts are interleaved so one cache line holds both, and a
byte per block of bins records which parts of the grid a task touched, so its partial
can be sent sparse (:func:`touched_bins`).

All kernels release the GIL (``nogil=True``) so Dask's threads run them in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

BLOCK = 8  # bins per entry of the ``touched`` map


@njit(nogil=True, cache=True, inline="always")
def _flush(fl, k, v, c, touched):
    touched[k // BLOCK] = 1  # unconditional: no branch, no load
    fl[k, 0] += v
    fl[k, 1] += c


@njit(nogil=True, cache=True)
def _scatter(row, idx, scale, fl, base, bad, g, touched):
    """Add one row of pixel values to the bins ``idx`` (-1: skip), run by run.

    Consecutive pixels mostly fall into the same bin; summing a run in registers and
    writing it once avoids a store-to-load dependency through memory per pixel. Every
    block of ``BLOCK`` bins written to is marked in ``touched`` (uint8).
    """
    prev = -1
    accv = 0.0
    accc = 0.0
    for j in range(row.shape[0]):
        v = np.float64(row[j]) * scale
        if not np.isfinite(v):
            bad[g] += 1.0
            continue
        k = idx[j]
        if k != prev:
            if prev >= 0:
                _flush(fl, base + prev, accv, accc, touched)
            prev = k
            accv = 0.0
            accc = 0.0
        accv += v
        accc += 1.0
    if prev >= 0:
        _flush(fl, base + prev, accv, accc, touched)


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


@njit(nogil=True, cache=True)
def grid3(
    frames,
    mask,
    a,
    b,
    scale,
    group,
    rows,
    step2,
    inorm,
    jf,
    lo,
    hi,
    step,
    sizes,
    acc,
    bad,
    touched,
):
    """Accumulate one chunk of frames into a 3-D grid, in place.

    Pixel ``(i, j)`` sits at ``p = rows[i] + j * step2`` (mm, detector angles zero) with
    ``inorm[i, j] = 1 / |p|``, so per frame ``q = (a @ rows[i] + j * a @ step2) * inorm - b``:
    a few flops per pixel and component, and only ``inorm`` read per pixel.

    frames (m, n1, n2), any real dtype; mask (n1, n2) bool, True = skip the pixel;
    a (m, 3, 3) and b (m, 3) float64 with rows in output-dim order; scale (m,) multiplies
    pixel values (1/monitor, or 1); group (m,) int64, -1 skips the frame; rows (n1, 3),
    step2 (3,), inorm (n1, n2), jf (n2,) = 0, 1, 2... as float64; lo, hi, step (3,);
    sizes (3,) int64; acc (G * nbins, 2) float64 receives [sum, count] per bin (C order
    over the grid, group-major); bad (G,) float64 counts NaN/inf values; touched
    (G * nbins // BLOCK + 1,) uint8 marks the blocks of bins written to.
    """
    m, n1, n2 = frames.shape
    nbins = sizes[0] * sizes[1] * sizes[2]
    fny, fnz = np.float64(sizes[1]), np.float64(sizes[2])
    lx, ly, lz = lo[0], lo[1], lo[2]
    hx, hy, hz = hi[0], hi[1], hi[2]
    # multiplying by the reciprocal may differ from xrayutilities' division in the last
    # bit, which changes a bin only for values within an ulp of a bin boundary
    rx, ry, rz = 1.0 / step[0], 1.0 / step[1], 1.0 / step[2]
    s0, s1, s2 = step2[0], step2[1], step2[2]
    idx = np.empty(n2, np.int32)
    for i in range(n1):  # rows outer: a row of geometry serves every frame of the chunk
        wrow, mrow = inorm[i], mask[i]
        p0, p1, p2 = rows[i, 0], rows[i, 1], rows[i, 2]
        for f in range(m):
            g = group[f]
            if g < 0:
                continue
            cx = a[f, 0, 0] * p0 + a[f, 0, 1] * p1 + a[f, 0, 2] * p2
            cy = a[f, 1, 0] * p0 + a[f, 1, 1] * p1 + a[f, 1, 2] * p2
            cz = a[f, 2, 0] * p0 + a[f, 2, 1] * p1 + a[f, 2, 2] * p2
            ex = a[f, 0, 0] * s0 + a[f, 0, 1] * s1 + a[f, 0, 2] * s2
            ey = a[f, 1, 0] * s0 + a[f, 1, 1] * s1 + a[f, 1, 2] * s2
            ez = a[f, 2, 0] * s0 + a[f, 2, 1] * s1 + a[f, 2, 2] * s2
            b0, b1, b2 = b[f, 0], b[f, 1], b[f, 2]
            for j in range(n2):  # branch-free: vectorises
                t = jf[j]
                w = wrow[j]
                qx = (cx + t * ex) * w - b0
                qy = (cy + t * ey) * w - b1
                qz = (cz + t * ez) * w - b2
                ok = (qx >= lx) & (qx <= hx) & (qy >= ly) & (qy <= hy)
                ok = ok & (qz >= lz) & (qz <= hz) & (not mrow[j])
                k = (np.rint((qx - lx) * rx) * fny + np.rint((qy - ly) * ry)) * fnz + np.rint(
                    (qz - lz) * rz
                )
                idx[j] = np.int32(k if ok else -1.0)
            _scatter(frames[f, i], idx, scale[f], acc, g * nbins, bad, g, touched)


@njit(nogil=True, cache=True)
def grid2(
    frames,
    mask,
    a,
    b,
    scale,
    group,
    rows,
    step2,
    inorm,
    jf,
    lo,
    hi,
    step,
    sizes,
    acc,
    bad,
    touched,
):
    """Like :func:`grid3` for a 2-D grid: ``a`` is (m, 2, 3), ``b`` (m, 2), sizes (2,)."""
    m, n1, n2 = frames.shape
    nbins = sizes[0] * sizes[1]
    fny = np.float64(sizes[1])
    lx, ly = lo[0], lo[1]
    hx, hy = hi[0], hi[1]
    rx, ry = 1.0 / step[0], 1.0 / step[1]
    s0, s1, s2 = step2[0], step2[1], step2[2]
    idx = np.empty(n2, np.int32)
    for i in range(n1):
        wrow, mrow = inorm[i], mask[i]
        p0, p1, p2 = rows[i, 0], rows[i, 1], rows[i, 2]
        for f in range(m):
            g = group[f]
            if g < 0:
                continue
            cx = a[f, 0, 0] * p0 + a[f, 0, 1] * p1 + a[f, 0, 2] * p2
            cy = a[f, 1, 0] * p0 + a[f, 1, 1] * p1 + a[f, 1, 2] * p2
            ex = a[f, 0, 0] * s0 + a[f, 0, 1] * s1 + a[f, 0, 2] * s2
            ey = a[f, 1, 0] * s0 + a[f, 1, 1] * s1 + a[f, 1, 2] * s2
            b0, b1 = b[f, 0], b[f, 1]
            for j in range(n2):
                t = jf[j]
                w = wrow[j]
                qx = (cx + t * ex) * w - b0
                qy = (cy + t * ey) * w - b1
                ok = (qx >= lx) & (qx <= hx) & (qy >= ly) & (qy <= hy) & (not mrow[j])
                k = np.rint((qx - lx) * rx) * fny + np.rint((qy - ly) * ry)
                idx[j] = np.int32(k if ok else -1.0)
            _scatter(frames[f, i], idx, scale[f], acc, g * nbins, bad, g, touched)


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
