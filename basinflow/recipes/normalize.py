"""The ``normalize`` recipe: dark-, flat- and monitor-corrected frames, as float32.

``normalized = (frames - dark) / flat / monitor * monitor_reference``, with the shape and
chunks of the raw frames (so every output chunk is one storage chunk of the input: this
is the workload of the parallel writer). Pixels where the flat is not positive and
finite become NaN (the ``rsm`` recipe then masks and counts them).

``dark`` and ``flat`` are each a number, a 2-D list (one value per pixel), or a reference
to another scan of the same proposal, ``{"scan": "0040", "variable": "frames"}``, whose
frames are averaged. The recipe stays pure: it declares the referenced scans as
:class:`~basinflow.recipes.base.InputRef` (``RECIPE.required_inputs(spice)``); the caller
(the task layer) opens those scans and passes their raw datasets as
``cook(raw, spice, inputs={"dark": dark_scan.raw, "flat": flat_scan.raw})``. The average
is part of the lazy graph, computed once and shared by every output chunk. A flat from a
scan or a 2-D list is divided by its mean over valid pixels (``flat_normalize``), so the
output keeps the scale of the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict

from basinflow.errors import LayoutError, RecipeError
from basinflow.recipes.base import InputRef, OutputSpec, Recipe
from basinflow.recipes.masking import detector_mask, masked

VERSION = "1.0.0"


class FrameRef(BaseModel):
    """Frames of another scan of the same proposal, averaged over ``index``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scan: str
    variable: str = "frames"


Correction = float | list[list[float]] | FrameRef | None


class NormalizeSpice(BaseModel):
    """Spice type ``normalize``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dark: Correction = None
    flat: Correction = None
    flat_normalize: bool = True  # divide a per-pixel flat by its mean over valid pixels
    monitor: str | None = None  # 1-D variable each frame is divided by
    monitor_reference: float | None = None  # multiply back (e.g. the nominal monitor rate)
    frames: str = "frames"


def required_inputs(spice: Mapping[str, BaseModel]) -> tuple[InputRef, ...]:
    sp: NormalizeSpice = spice["normalize"]
    refs = []
    for name in ("dark", "flat"):
        value = getattr(sp, name)
        if isinstance(value, FrameRef):
            refs.append(InputRef(name, value.scan, value.variable))
    return tuple(refs)


def _correction(
    name: str, value: Correction, inputs: Mapping[str, xr.Dataset], shape: tuple[int, int]
) -> da.Array | float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, FrameRef):
        ds = inputs[name]
        if value.variable not in ds.variables:
            raise RecipeError(
                f"{name} scan {value.scan!r} has no variable {value.variable!r} "
                f"(it has: {', '.join(sorted(map(str, ds.variables)))})"
            )
        var = ds[value.variable]
        if var.ndim != 3 or tuple(var.shape[1:]) != shape or var.shape[0] == 0:
            raise LayoutError(
                f"{name} scan {value.scan!r}: {value.variable!r} is {var.shape}; "
                f"frames of {shape[0]}x{shape[1]} pixels are needed"
            )
        data = var.data if isinstance(var.data, da.Array) else da.asarray(var.data)
        return data.astype(np.float64).mean(axis=0).astype(np.float32).rechunk(-1)
    arr = np.asarray(value, dtype=np.float32)
    if arr.shape != shape:
        raise RecipeError(f"{name} is {arr.shape} values; the frames are {shape}")
    return da.from_array(arr, chunks=-1)


def _unit_mean(flat: da.Array) -> da.Array:
    valid = da.isfinite(flat) & (flat > 0)
    mean = da.where(valid, flat, 0).sum() / da.maximum(valid.sum(), 1)
    return flat / mean.astype(np.float32)


def normalize(
    raw: xr.Dataset, spice: Mapping[str, Any], *, inputs: Mapping[str, xr.Dataset] | None = None
) -> xr.Dataset:
    """Corrected frames (lazy), same shape and chunks as the raw frames."""
    sp: NormalizeSpice = spice["normalize"]
    inputs = inputs or {}
    if sp.frames not in raw.variables:
        raise LayoutError(f"the raw data has no frames variable {sp.frames!r}")
    var = raw[sp.frames]
    if var.ndim != 3:
        raise LayoutError(f"frames {sp.frames!r} must be 3-D (index, y, x), got dims {var.dims}")
    if var.shape[0] == 0:
        raise LayoutError(f"the scan has zero frames in {sp.frames!r}; there is nothing to do")
    data = (
        var.data
        if isinstance(var.data, da.Array)
        else da.from_array(np.asarray(var.data), chunks=(1, -1, -1))
    )
    shape = tuple(var.shape[1:])
    # detector gap/dead pixels are NaN in the output: not counts, never corrected as such
    mask = detector_mask(raw, var)
    out = masked(data, mask).astype(np.float32)
    dark = _correction("dark", sp.dark, inputs, shape)
    if dark is not None:
        out = out - dark
    flat = _correction("flat", sp.flat, inputs, shape)
    if flat is not None:
        if not isinstance(flat, float) and sp.flat_normalize:
            flat = _unit_mean(flat)
        if isinstance(flat, float):
            if not (np.isfinite(flat) and flat > 0):
                raise RecipeError(f"flat must be positive, got {flat}")
            out = out / np.float32(flat)
        else:
            ok = da.isfinite(flat) & (flat > 0)
            out = da.where(ok, out / da.where(ok, flat, 1), np.float32(np.nan))
    index = var.dims[0]
    if sp.monitor is not None:
        if sp.monitor not in raw.variables or raw[sp.monitor].dims != (index,):
            raise RecipeError(
                f"monitor variable {sp.monitor!r} is not a 1-D variable on {index!r} "
                "in the raw data"
            )
        mon = raw[sp.monitor].data
        mon = mon if isinstance(mon, da.Array) else da.from_array(np.asarray(mon))
        mon = mon.astype(np.float32).rechunk((data.chunks[0],))
        with np.errstate(divide="ignore", invalid="ignore"):
            out = out / mon[:, None, None]
        if sp.monitor_reference is not None:
            out = out * np.float32(sp.monitor_reference)
    out = out.astype(np.float32).rechunk(data.chunks)
    coords = {c: raw.coords[c] for c in raw.coords if set(raw.coords[c].dims) <= set(var.dims)}
    return xr.Dataset(
        {
            "normalized": (
                var.dims,
                out,
                {
                    "long_name": "(frames - dark) / flat / monitor",
                    "source": sp.frames,
                },
            )
        },
        coords=coords,
        attrs={"mask": mask.text} if mask.text else {},
    )


RECIPE = Recipe(
    name="normalize",
    version=VERSION,
    spice_types=("normalize",),
    spice_models={"normalize": NormalizeSpice},
    func=normalize,
    inputs=required_inputs,
    outputs=(
        OutputSpec(
            "normalized",
            ("index", "y", "x"),
            {"index": "input", "y": "input", "x": "input"},
            "float32",
            "dark/flat/monitor corrected frames",
        ),
    ),
    description="dark-, flat- and monitor-corrected frames (float32, as large as the input)",
)
