"""The ``roi`` recipe: sums over named rectangular regions of interest, per frame.

Spice type ``roi``: ``regions`` maps a name to ``(row0, row1, col0, col1)`` (half-open
pixel ranges of the frames' ``y`` and ``x`` dims, like xrayutilities' ``roi``). Output
``intensity`` on ``(index, roi)``: the sum of the finite pixel values of each region in
each frame (divided by the frame's monitor value with ``normalize_by``), ``nonfinite``:
how many NaN/inf pixels were left out, and per region its ``pixels`` and bounds.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, model_validator

from basinflow.errors import LayoutError, RecipeError
from basinflow.recipes.base import OutputSpec, Recipe
from basinflow.recipes.chunking import grouped_blocks
from basinflow.recipes.masking import detector_mask, masked

VERSION = "1.0.0"


class RoiSpice(BaseModel):
    """Spice type ``roi``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    regions: dict[str, tuple[int, int, int, int]]  # name -> (row0, row1, col0, col1)
    normalize_by: str | None = None  # 1-D monitor variable the sums are divided by
    frames: str = "frames"

    @model_validator(mode="after")
    def _check(self) -> RoiSpice:
        if not self.regions:
            raise ValueError("regions is empty; give at least one name: [row0, row1, col0, col1]")
        for name, (r0, r1, c0, c1) in self.regions.items():
            if not (0 <= r0 < r1 and 0 <= c0 < c1):
                raise ValueError(
                    f"region {name!r} = {[r0, r1, c0, c1]} is empty or negative; "
                    "give row0 < row1 and col0 < col1"
                )
        return self


def _roi_chunks(chunks, *, rects):
    from basinflow.recipes import kernels

    n = sum(c.shape[0] for c in chunks)
    out = np.empty((n, len(rects), 2))
    start = 0
    for frames in chunks:
        m = frames.shape[0]
        sums = np.empty((m, len(rects)))
        bad = np.empty((m, len(rects)), dtype=np.int64)
        kernels.roi_sums(frames, rects, sums, bad)
        out[start : start + m, :, 0] = sums
        out[start : start + m, :, 1] = bad
        start += m
    return out


def roi(
    raw: xr.Dataset, spice: Mapping[str, Any], *, inputs: Mapping[str, xr.Dataset] | None = None
) -> xr.Dataset:
    """Region sums per frame (lazy)."""
    sp: RoiSpice = spice["roi"]
    if sp.frames not in raw.variables:
        raise LayoutError(f"the raw data has no frames variable {sp.frames!r}")
    var = raw[sp.frames]
    if var.ndim != 3:
        raise LayoutError(f"frames {sp.frames!r} must be 3-D (index, y, x), got dims {var.dims}")
    n, height, width = var.shape
    if n == 0:
        raise LayoutError(f"the scan has zero frames in {sp.frames!r}; there is nothing to sum")
    names = list(sp.regions)
    rects = np.array([sp.regions[k] for k in names], dtype=np.int64)
    outside = [
        k for k, (_, r1, _, c1) in zip(names, rects, strict=True) if r1 > height or c1 > width
    ]
    if outside:
        raise RecipeError(
            f"regions {outside} reach outside the {height}x{width} frames; fix the roi spice"
        )
    data = var.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=(1, -1, -1))
    # detector gap/dead pixels become NaN: left out of the sums, counted in ``nonfinite``
    mask = detector_mask(raw, var)
    data = masked(data, mask).rechunk({1: -1, 2: -1})
    k = len(names)
    both = grouped_blocks(
        functools.partial(_roi_chunks, rects=rects),
        data,
        out_chunks=lambda m: (m, k, 2),
        name="roi-sums",
    )
    sums, bad = both[..., 0], both[..., 1].astype(np.int64)
    index = var.dims[0]
    if sp.normalize_by is not None:
        if sp.normalize_by not in raw.variables or raw[sp.normalize_by].dims != (index,):
            raise RecipeError(
                f"normalize_by variable {sp.normalize_by!r} is not a 1-D variable on {index!r} "
                "in the raw data"
            )
        mon = np.asarray(raw[sp.normalize_by].values, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            sums = sums / da.from_array(mon, chunks=(sums.chunks[0],))[:, None]
    pixels = (rects[:, 1] - rects[:, 0]) * (rects[:, 3] - rects[:, 2])
    coords = {
        "roi": ("roi", np.array(names, dtype=object)),
        "roi_bounds": (("roi", "bound"), rects),
        "bound": ("bound", np.array(["row0", "row1", "col0", "col1"], dtype=object)),
    }
    if index in raw.coords:
        coords[index] = raw.coords[index]
    return xr.Dataset(
        {
            "intensity": (
                (index, "roi"),
                sums,
                {
                    "long_name": "sum of finite pixel values per region",
                    "normalized_by": sp.normalize_by or "",
                },
            ),
            "nonfinite": (
                (index, "roi"),
                bad,
                {"long_name": "NaN/inf and masked pixels left out"},
            ),
            "pixels": (("roi",), pixels, {"long_name": "pixels per region"}),
        },
        coords=coords,
        attrs={"mask": mask.text} if mask.text else {},
    )


RECIPE = Recipe(
    name="roi",
    version=VERSION,
    spice_types=("roi",),
    spice_models={"roi": RoiSpice},
    func=roi,
    outputs=(
        OutputSpec(
            "intensity",
            ("index", "roi"),
            {"index": "tasks", "roi": -1},
            "float64",
            "sum of finite pixel values per region and frame",
        ),
        OutputSpec(
            "nonfinite",
            ("index", "roi"),
            {"index": "tasks", "roi": -1},
            "int64",
            "NaN/inf pixels left out per region and frame",
        ),
        OutputSpec("pixels", ("roi",), {"roi": -1}, "int64", "pixels per region"),
    ),
    description="sums over named rectangular regions of interest, per frame",
)
