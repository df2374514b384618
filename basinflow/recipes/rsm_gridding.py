"""The ``rsm`` map-reduce: frame chunks -> sparse partial grids -> one dense grid.

Kept apart from the recipe because it is the Dask half: how frames become tasks (groups of
consecutive storage chunks, about ``target`` bytes each, see
:mod:`basinflow.recipes.chunking`), what one task returns (the *sparse* partial of the bins
it touched, from the compiled kernel in :mod:`basinflow.recipes.kernels`), how partials are
merged in a tree of ``SPLIT_EVERY`` and densified once at the root, and how a dense
``[sum, count]`` pair becomes intensity and counts. Memory per task is its frames plus one
dense grid buffer (``16 bytes x bins x groups``), whatever the scan length.
"""

from __future__ import annotations

import functools

import dask.array as da
import numpy as np

from basinflow.errors import RecipeError
from basinflow.recipes.chunking import grouped_tasks, tree_reduce
from basinflow.recipes.grid import BinUnits
from basinflow.recipes.rsm_setup import detector_pixels

SPLIT_EVERY = 8  # partials summed per reduction task


def folded(p: np.ndarray, nd: int, units: BinUnits) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame kernel coefficients ``(a, b)`` with ``u = a @ p/|p| - b`` in bin units.

    ``q = A p/|p| - B`` (rows in grid-dim order) becomes ``u = (q - lo) * scale``: the grid
    is folded into the 3x3 matrix and the vector of every frame, so the kernel spends no
    flops per pixel on it. A 2-D grid gets a zero third row (``u = 0``, always in range).
    """
    m = p.shape[0]
    a = np.zeros((m, 3, 3))
    b = np.zeros((m, 3))
    a[:, :nd] = p[:, : nd * 3].reshape(m, nd, 3) * units.scale[:nd, None]
    b[:, :nd] = (p[:, nd * 3 : nd * 4] + units.lo[:nd]) * units.scale[:nd]
    return a, b


def _padded(v: np.ndarray, fill: float) -> np.ndarray:
    return np.concatenate([v, np.full(3 - len(v), fill)])


def grid_chunks(chunks, params, mask, *, nd, ngroups, nbins, units, dirs_key):
    """One task: grid a list of frame chunks; returns a sparse partial.

    The kernel accumulates into a dense ``[sum, count]`` buffer (group-major, C order;
    pages never touched are never faulted in; one scratch row past the grid takes the
    pixels that fall nowhere), which is then compacted to the bins that received pixels:
    ``(bins, sums, counts, bad)``. A chunk of a rocking scan touches a few percent of a
    3-D grid, so partials are small to keep, send and add.
    """
    from basinflow.recipes import kernels

    size = ngroups * nbins
    acc = np.zeros((size + kernels.SCRATCH, 2))
    bad = np.zeros(ngroups)
    touched = np.zeros(len(acc) // kernels.BLOCK + 1, dtype=np.uint8)
    rows, step2, inorm, jf = detector_pixels(dirs_key)
    umax, stride = _padded(units.umax, 0.0), _padded(units.stride, 0.0)
    start = 0
    for frames in chunks:
        m = frames.shape[0]
        p = params[start : start + m]
        start += m
        a, b = folded(p, nd, units)
        kernels.grid(
            frames,
            mask,
            a,
            b,
            np.ascontiguousarray(p[:, nd * 4]),
            p[:, nd * 4 + 1].astype(np.int64),
            rows,
            step2,
            inorm,
            jf,
            umax,
            stride,
            acc,
            bad,
            touched,
        )
    bins = _touched_bins(acc[:size], touched)
    return bins, acc[bins, 0], acc[bins, 1], bad


def _touched_bins(acc: np.ndarray, touched: np.ndarray) -> np.ndarray:
    """Bins with pixels, found through the block map (no scan of the whole grid)."""
    from basinflow.recipes import kernels

    return kernels.touched_bins(acc, touched)


def _merge(*parts, nbins: int):
    """Add sparse partials (their bins may overlap) into one sparse partial."""
    from basinflow.recipes import kernels

    acc = np.zeros((nbins, 2))
    touched = np.zeros(nbins // kernels.BLOCK + 1, dtype=np.uint8)
    for bins, sums, counts, _ in parts:
        kernels.merge_into(acc, bins, sums, counts, touched)
    bins = _touched_bins(acc, touched)
    return bins, acc[bins, 0], acc[bins, 1], np.sum([p[3] for p in parts], axis=0)


def _densify(part, nbins: int) -> np.ndarray:
    """The flat dense result: ``[sum, count]`` per bin, then NaN/inf counts per group."""
    bins, sums, counts, bad = part
    out = np.zeros(2 * nbins + len(bad))
    pairs = out[: 2 * nbins].reshape(nbins, 2)
    pairs[bins, 0] = sums
    pairs[bins, 1] = counts
    out[2 * nbins :] = bad
    return out


def total_grid(
    frames: da.Array, params: np.ndarray, mask: np.ndarray, ngroups: int, *, target: int, **kw
):
    """The summed grid of every frame, as a flat one-chunk Dask array (see :func:`_densify`).

    ``target`` is the bytes of frames one task grids (the recipe's ``TARGET_CHUNK_BYTES``).
    """
    frames = frames.rechunk({1: -1, 2: -1})
    nbins = ngroups * kw["nbins"]
    dsk, keys, _, deps = grouped_tasks(
        functools.partial(grid_chunks, ngroups=ngroups, **kw),
        frames,
        target=target,
        group_args=lambda rows: (params[rows],),
        shared=[da.from_array(mask, chunks=-1)],
        name="rsm-partial",
    )
    return tree_reduce(
        dsk,
        keys,
        deps,
        combine=functools.partial(_merge, nbins=nbins),
        finalize=functools.partial(_densify, nbins=nbins),
        length=2 * nbins + ngroups,
        split_every=SPLIT_EVERY,
        name="rsm-total",
    )


def mean(pairs: np.ndarray) -> np.ndarray:
    """sum / count per bin; NaN where no pixel fell."""
    sums, counts = pairs[..., 0], pairs[..., 1]
    filled = counts > 0
    out = np.full(sums.shape, np.nan)
    np.divide(sums, counts, out=out, where=filled)
    return out


def count(pairs: np.ndarray) -> np.ndarray:
    return pairs[..., 1].astype(np.int64)


def raise_on_bad(total: np.ndarray, ngroups: int) -> np.ndarray:
    bad = total[-ngroups:]
    if bad.sum() > 0:
        raise RecipeError(
            f"{int(bad.sum())} pixel values are NaN or inf (rsm spice nonfinite='raise'); "
            "set nonfinite='mask' to skip and count them"
        )
    return total
