"""Detector masks in recipes: pixels that are not counts are left out, never summed.

The raw Dataset carries what the detector says (see the layouts): ``pixel_mask(y, x)``
(True = excluded, from NeXus ``pixel_mask``), ``frames.attrs["invalid_value"]`` (a value
marking gap/dead pixels in every frame, e.g. Eiger's ``2**32 - 1``) and
``frames.attrs["saturation_value"]``/``["underload_value"]`` (the NXdetector's trusted range:
a pixel at or above saturation, or at or below underload, holds no count to trust).
:func:`masked` turns all of them into NaN, which every recipe already leaves out of sums
and counts, and
:attr:`DetectorMask.text` is what the recipe records in its output (``attrs["mask"]``,
written into the referrer) so the result says which mask made it.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

import dask.array as da
import numpy as np
import xarray as xr


@dataclass(frozen=True)
class DetectorMask:
    pixels: np.ndarray | None  # (y, x) bool, True = excluded
    invalid: int | float | None
    text: str
    saturation: int | float | None = None  # values >= this are not counts
    underload: int | float | None = None  # values <= this are not counts

    @property
    def empty(self) -> bool:
        return self.pixels is None and not self.per_frame

    @property
    def per_frame(self) -> bool:
        """Whether anything is masked by value (so every frame must be looked at)."""
        return any(v is not None for v in (self.invalid, self.saturation, self.underload))


def detector_mask(raw: xr.Dataset, var: xr.DataArray) -> DetectorMask:
    """The mask of the frames ``var`` of ``raw`` (empty when the detector has none)."""
    pixels = None
    pm = raw.variables.get("pixel_mask")
    if pm is not None and pm.dims == var.dims[1:] and pm.shape == var.shape[1:]:
        pixels = np.asarray(pm.values) != 0
        if not pixels.any():
            pixels = None
    invalid = var.attrs.get("invalid_value")
    saturation = var.attrs.get("saturation_value")
    underload = var.attrs.get("underload_value")
    parts = []
    if pixels is not None:
        parts.append(f"pixel_mask ({int(pixels.sum())} pixels)")
    if invalid is not None:
        parts.append(f"invalid value {invalid}")
    if saturation is not None:
        parts.append(f"saturation value {saturation} (pixels at or above it left out)")
    if underload is not None:
        parts.append(f"underload value {underload} (pixels at or below it left out)")
    text = str(raw.attrs.get("mask") or "; ".join(parts)) if parts else ""
    return DetectorMask(pixels, invalid, text, saturation, underload)


def masked(data: da.Array, mask: DetectorMask, *, pixels: bool = True) -> da.Array:
    """``data`` with masked pixels as NaN (float64; unchanged when nothing is masked).
    ``pixels=False`` leaves the static mask to the caller (the rsm kernel takes it)."""
    static = mask.pixels if pixels else None
    if static is None and not mask.per_frame:
        return data
    tests = []
    if mask.invalid is not None:
        tests.append(data == data.dtype.type(mask.invalid))
    # limits are compared as Python numbers, so numpy compares values, not casts: a negative
    # underload of unsigned frames is never reached rather than wrapped around. float16/32
    # frames are widened first, else the limit would be rounded to their precision
    values = data.astype(np.float64) if data.dtype.kind == "f" else data
    if mask.saturation is not None:
        tests.append(values >= _number(mask.saturation))
    if mask.underload is not None:
        tests.append(values <= _number(mask.underload))
    if static is not None:
        tests.append(static[None])
    bad = functools.reduce(operator.or_, tests)
    return da.where(bad, np.nan, data.astype(np.float64))


def _number(value) -> int | float:
    return value.item() if isinstance(value, np.generic) else value


__all__ = ["DetectorMask", "detector_mask", "masked"]
