"""The ``rsm`` recipe: reciprocal space maps from area-detector angle scans.

Spice type ``rsm`` (:class:`~basinflow.recipes.rsm_spice.RsmSpice`, importable from here)
uses the field names of nx5d's ``QMapper.init_experiment`` (so nx5d spice reads unchanged)
plus the grid. Geometry conventions are xrayutilities'
(``QConversion`` + ``Ang2Q.init_area``), see :mod:`basinflow.recipes.geometry`; Q is in
the goniometer (sample) frame, 1/Å. ``sampleFaceUp`` and ``sampleNormal`` are accepted
and checked but, exactly as for ``Ang2Q.area``, they do not change Q (they orient HKL).

How it runs: the 1-D positioner columns are read to build, per frame, one 3x3 matrix and
one vector (``q = A p/|p| - b``; :mod:`basinflow.recipes.rsm_setup`); the frames stay
lazy. Each chunk of frames (small storage chunks grouped to ~16 MiB, never copied
together) becomes one task running a fused numba kernel (pixel -> Q -> bin -> sums and
counts per group) that returns a *sparse* partial (the bins it touched); partials are
merged in a tree (``split_every``) and densified once at the root
(:mod:`basinflow.recipes.rsm_gridding`). Memory per task is its frames plus one dense grid
buffer (``16 bytes x bins x groups``), whatever the scan length.

Output (see :data:`RECIPE`): ``intensity = sums / counts`` per bin (xrayutilities'
normalised Gridder data) where ``counts > 0`` and **NaN where no pixel fell** (the
Gridder returns 0 there; NaN keeps "no data" apart from "zero counts"), ``counts``
(pixels per bin), ``nonfinite`` (pixels skipped because they, or their monitor-scaled
values, were NaN or ±inf), Q bin centres as coordinates and the group dim (e.g. ``delay``)
when ``group_by`` is set. With ``normalize_by`` each frame is divided by its monitor
value before gridding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from basinflow.errors import LayoutError, RecipeError
from basinflow.recipes.base import OutputSpec, Recipe
from basinflow.recipes.grid import Q_DIMS, Q_UNITS
from basinflow.recipes.masking import detector_mask, masked
from basinflow.recipes.rsm_gridding import count, mean, raise_on_bad, total_grid
from basinflow.recipes.rsm_setup import Setup, build_grid, column, variable_names
from basinflow.recipes.rsm_spice import RsmSpice

__all__ = ["RECIPE", "VERSION", "RsmSpice", "Setup", "build_grid", "rsm"]

VERSION = "1.0.0"
# Consecutive frame chunks smaller than this are gridded by one task (never copied
# together); a chunk as large already is one task, so catalog chunks (``chunk_mb``) never
# have to be gathered from other workers. Partials are sparse (the bins a task touched),
# so small tasks cost little in the reduction.
TARGET_CHUNK_BYTES = 16 * 2**20


def _frames(raw: xr.Dataset, spice: RsmSpice, setup_roi: tuple[int, int, int, int]):
    name = spice.frames
    if name not in raw.variables:
        raise LayoutError(
            f"the raw data has no frames variable {name!r} (it has: {variable_names(raw)})"
        )
    var = raw[name]
    if var.ndim != 3:
        raise LayoutError(f"frames {name!r} must be 3-D (index, y, x), got dims {var.dims}")
    n = var.shape[0]
    if n == 0:
        raise LayoutError(f"the scan has zero frames in {name!r}; there is nothing to map")
    size = tuple(spice.imageSize)
    r0, r1, c0, c1 = setup_roi
    data = var.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=(1, -1, -1))
    if tuple(var.shape[1:]) == size:
        data = data[:, r0:r1, c0:c1]
    elif spice.roi and tuple(var.shape[1:]) == (r1 - r0, c1 - c0):
        pass  # nx5d style: frames already cropped to the roi
    else:
        raise LayoutError(
            f"frames {name!r} are {var.shape[1]}x{var.shape[2]} pixels but the rsm spice "
            f"says imageSize {size[0]}x{size[1]}"
        )
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise LayoutError(f"frames {name!r} have dtype {data.dtype}; real numbers needed")
    return var.dims[0], data


def _mask(raw: xr.Dataset, spice: RsmSpice, roi) -> np.ndarray:
    size = tuple(spice.imageSize)
    r0, r1, c0, c1 = roi
    if spice.mask is None:
        return np.zeros((r1 - r0, c1 - c0), dtype=bool)
    if isinstance(spice.mask, str):
        if spice.mask not in raw.variables:
            raise RecipeError(
                f"mask variable {spice.mask!r} is not in the raw data "
                f"(it has: {variable_names(raw)})"
            )
        full = np.asarray(raw[spice.mask].values) != 0
        if full.shape != size:
            raise RecipeError(f"mask {spice.mask!r} is {full.shape}, the image is {size}")
    else:
        full = np.zeros(size, dtype=bool)
        for m0, m1, n0, n1 in spice.mask:
            full[m0:m1, n0:n1] = True
    return np.ascontiguousarray(full[r0:r1, c0:c1])


def _groups(raw: xr.Dataset, spice: RsmSpice, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    if spice.group_by is None:
        return np.zeros(n, dtype=np.int64), None
    values = column(raw, spice.group_by, "group_by variable", n)
    if not np.all(np.isfinite(values)):
        raise RecipeError(f"group_by variable {spice.group_by!r} has NaN or inf values")
    keys = np.unique(values)
    return np.searchsorted(keys, values).astype(np.int64), keys


def rsm(
    raw: xr.Dataset, spice: Mapping[str, Any], *, inputs: Mapping[str, xr.Dataset] | None = None
) -> xr.Dataset:
    """Cook a reciprocal space map (lazy). See the module docstring."""
    sp: RsmSpice = spice["rsm"]
    roi = tuple(sp.roi) if sp.roi else (0, sp.imageSize[0], 0, sp.imageSize[1])
    index_dim, frames = _frames(raw, sp, roi)
    n = frames.shape[0]
    setup = Setup(raw, sp, n)
    grid = build_grid(setup, sp)
    group, keys = _groups(raw, sp, n)
    ngroups = 1 if keys is None else len(keys)
    scale = np.ones(n)
    if sp.normalize_by is not None:
        with np.errstate(divide="ignore"):
            scale = 1.0 / column(raw, sp.normalize_by, "normalize_by variable", n)
    mask = _mask(raw, sp, roi)
    # the detector's own mask: static pixels join the spice mask (the kernel skips them);
    # invalid values (gap/dead pixels in each frame) become NaN, left out and counted
    # in ``nonfinite`` like any non-finite pixel
    detector = detector_mask(raw, raw[sp.frames])
    if detector.pixels is not None:
        pixels = detector.pixels
        if pixels.shape == tuple(sp.imageSize) and pixels.shape != mask.shape:
            pixels = pixels[roi[0] : roi[1], roi[2] : roi[3]]
        mask = np.ascontiguousarray(mask | pixels)
    frames = masked(frames, detector, pixels=False)
    if grid.nbins >= 2**31:
        raise RecipeError(f"the grid has {grid.nbins} bins; keep it below 2**31 (reduce qsize)")

    nd = len(grid.dims)
    rows = [Q_DIMS.index(d) for d in grid.dims]
    params = np.concatenate(
        [
            setup.a[:, rows, :].reshape(n, nd * 3),
            setup.b[:, rows],
            scale[:, None],
            group[:, None].astype(float),
        ],
        axis=1,
    )
    total = total_grid(
        frames,
        params,
        mask,
        ngroups,
        nd=nd,
        nbins=grid.nbins,
        units=grid.bin_units(),
        dirs_key=setup.dirs_key,
        target=TARGET_CHUNK_BYTES,
    )
    if sp.nonfinite == "raise":
        total = total.map_blocks(raise_on_bad, ngroups, dtype=total.dtype)
    nb = grid.nbins
    shape = (ngroups, *grid.sizes)
    pairs = total[: 2 * ngroups * nb].reshape((*shape, 2))
    intensity = pairs.map_blocks(mean, drop_axis=pairs.ndim - 1, dtype=np.float64)
    counts = pairs.map_blocks(count, drop_axis=pairs.ndim - 1, dtype=np.int64)
    bad = total[2 * ngroups * nb :].astype(np.int64)

    coords: dict[str, Any] = {}
    for i, dim in enumerate(grid.dims):
        coords[dim] = xr.Variable(
            dim,
            grid.centres(i),
            attrs={
                "units": Q_UNITS,
                "long_name": f"Q_{dim[1]}",
                "qmin": grid.lo[i],
                "qmax": grid.hi[i],
            },
        )
    if keys is None:
        dims = grid.dims
        intensity, counts, bad = intensity[0], counts[0], bad[0]
    else:
        gdim = sp.group_by
        dims = (gdim, *grid.dims)
        coords[gdim] = xr.Variable(gdim, keys, attrs=dict(raw[sp.group_by].attrs))
        intensity, counts = intensity.rechunk({0: 1}), counts.rechunk({0: 1})
        bad = bad.rechunk(1)
    out = xr.Dataset(
        {
            "intensity": xr.Variable(
                dims,
                intensity,
                attrs={
                    "long_name": "intensity (mean pixel value per bin)",
                    "normalized_by": sp.normalize_by or "",
                },
            ),
            "counts": xr.Variable(dims, counts, attrs={"long_name": "pixels per bin"}),
            "nonfinite": xr.Variable(
                dims[:1] if keys is not None else (),
                bad,
                attrs={
                    "long_name": "pixels skipped as NaN or inf",
                },
            ),
        },
        coords=coords,
        attrs={
            "grid_rule": "xrayutilities Gridder: centres lo + i*(hi-lo)/(n-1); a pixel with "
            "lo <= q <= hi goes to bin rint((q-lo)/step); intensity = sum/count, NaN if empty",
            "frames_used": n,
            "index_dim": index_dim,
            **({"mask": detector.text} if detector.text else {}),
        },
    )
    return out


def _outputs() -> tuple[OutputSpec, ...]:
    chunks = {"<group_by>": 1, "<dims>": -1}
    return (
        OutputSpec(
            "intensity",
            ("<group_by>", "<dims>"),
            chunks,
            "float64",
            "mean pixel value per Q bin (NaN where no pixel fell)",
        ),
        OutputSpec("counts", ("<group_by>", "<dims>"), chunks, "int64", "pixels per Q bin"),
        OutputSpec(
            "nonfinite",
            ("<group_by>",),
            {"<group_by>": 1},
            "int64",
            "pixels skipped because they were NaN or inf",
        ),
    )


RECIPE = Recipe(
    name="rsm",
    version=VERSION,
    spice_types=("rsm",),
    spice_models={"rsm": RsmSpice},
    func=rsm,
    outputs=_outputs(),
    description="reciprocal space map of an area-detector angle scan (Q grid, per group)",
)
