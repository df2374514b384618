"""Detector masks in recipes: pixels that are not counts are left out, never summed.

The raw Dataset carries what the detector says (see the layouts): ``pixel_mask(y, x)``
(True = excluded, from NeXus ``pixel_mask``) and ``frames.attrs["invalid_value"]`` (a value
marking gap/dead pixels in every frame, e.g. Eiger's ``2**32 - 1``). :func:`masked` turns
both into NaN, which every recipe already leaves out of sums and counts, and
:attr:`DetectorMask.text` is what the recipe records in its output (``attrs["mask"]``,
written into the referrer) so the result says which mask made it.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np
import xarray as xr


@dataclass(frozen=True)
class DetectorMask:
    pixels: np.ndarray | None  # (y, x) bool, True = excluded
    invalid: int | float | None
    text: str

    @property
    def empty(self) -> bool:
        return self.pixels is None and self.invalid is None


def detector_mask(raw: xr.Dataset, var: xr.DataArray) -> DetectorMask:
    """The mask of the frames ``var`` of ``raw`` (empty when the detector has none)."""
    pixels = None
    pm = raw.variables.get("pixel_mask")
    if pm is not None and pm.dims == var.dims[1:] and pm.shape == var.shape[1:]:
        pixels = np.asarray(pm.values) != 0
        if not pixels.any():
            pixels = None
    invalid = var.attrs.get("invalid_value")
    parts = []
    if pixels is not None:
        parts.append(f"pixel_mask ({int(pixels.sum())} pixels)")
    if invalid is not None:
        parts.append(f"invalid value {invalid}")
    text = str(raw.attrs.get("mask") or "; ".join(parts)) if parts else ""
    return DetectorMask(pixels, invalid, text)


def masked(data: da.Array, mask: DetectorMask, *, pixels: bool = True) -> da.Array:
    """``data`` with masked pixels as NaN (float64; unchanged when nothing is masked).
    ``pixels=False`` leaves the static mask to the caller (the rsm kernel takes it)."""
    static = mask.pixels if pixels else None
    if static is None and mask.invalid is None:
        return data
    bad = None
    if mask.invalid is not None:
        bad = data == data.dtype.type(mask.invalid)
    if static is not None:
        bad = static[None] if bad is None else bad | static[None]
    return da.where(bad, np.nan, data.astype(np.float64))


__all__ = ["DetectorMask", "detector_mask", "masked"]
