"""The ``roi`` and ``normalize`` recipes, and quicklook PNGs."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from basinflow.errors import LayoutError, RecipeError, SpiceValidationError
from basinflow.recipes import get_recipe
from basinflow.recipes.base import InputRef
from basinflow.recipes.quicklook import quicklook
from tests.recipes.conftest import make_raw

ROI = get_recipe("roi")
NORMALIZE = get_recipe("normalize")

REGIONS = {"film": (80, 120, 200, 300), "corner": (0, 10, 0, 10), "all": (0, 195, 0, 487)}


# --- roi ----------------------------------------------------------------------------------
def test_roi_sums_per_frame(sample_scan):
    frames, columns, _ = sample_scan
    raw = make_raw(frames, columns, chunk=1)
    cooked = ROI.cook(raw, {"roi": {"regions": REGIONS}})
    assert cooked.intensity.dims == ("index", "roi")
    assert list(cooked.roi.values) == list(REGIONS)
    out = cooked.compute()
    for name, (r0, r1, c0, c1) in REGIONS.items():
        expected = frames[:, r0:r1, c0:c1].sum(axis=(1, 2), dtype=np.float64)
        np.testing.assert_array_equal(out.intensity.sel(roi=name).values, expected)
        assert int(out.pixels.sel(roi=name)) == (r1 - r0) * (c1 - c0)
    assert int(out.nonfinite.sum()) == 0
    # chunks along index: whole groups of the input's chunks
    assert sum(cooked.intensity.data.chunks[0]) == len(frames)


def test_roi_normalized_by_monitor_and_nan_counted(sample_scan):
    frames, columns, _ = sample_scan
    data = frames.astype(np.float64)
    data[2, 85, 210] = np.nan
    raw = make_raw(data, columns, chunk=3)
    out = ROI.cook(raw, {"roi": {"regions": REGIONS}}, normalize_by="monitor").compute()
    assert int(out.nonfinite.sel(roi="film")[2]) == 1
    assert int(out.nonfinite.sum()) == 2  # the pixel is in "film" and in "all"
    expected = np.nansum(data[:, 80:120, 200:300], axis=(1, 2)) / columns["monitor"]
    np.testing.assert_allclose(out.intensity.sel(roi="film").values, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("regions", "error", "message"),
    [
        ({}, SpiceValidationError, "regions is empty"),
        ({"a": (5, 5, 0, 3)}, SpiceValidationError, "empty or negative"),
        ({"a": (0, 300, 0, 3)}, RecipeError, "outside the 195x487"),
    ],
)
def test_roi_bad_regions(sample_raw, regions, error, message):
    with pytest.raises(error, match=message):
        ROI.cook(sample_raw, {"roi": {"regions": regions}})


def test_roi_zero_frames():
    raw = make_raw(np.zeros((0, 4, 5)), {})
    with pytest.raises(LayoutError, match="zero frames"):
        ROI.cook(raw, {"roi": {"regions": {"a": (0, 1, 0, 1)}}})


# --- normalize ------------------------------------------------------------------------------
def test_normalize_with_values(sample_scan):
    frames, columns, _ = sample_scan
    raw = make_raw(frames, columns, chunk=2)
    flat = np.full(frames.shape[1:], 2.0)
    flat[0, 0] = 0.0  # a dead pixel of the flat: NaN in the output
    cooked = NORMALIZE.cook(
        raw,
        {
            "normalize": {
                "dark": 0.5,
                "flat": flat.tolist(),
                "flat_normalize": False,
                "monitor": "monitor",
                "monitor_reference": 1e5,
            }
        },
    )
    assert cooked.normalized.dtype == np.float32
    assert cooked.normalized.shape == frames.shape
    assert cooked.normalized.data.chunks == raw.frames.data.chunks
    out = cooked.normalized.values
    expected = (frames - 0.5) / 2.0 / columns["monitor"][:, None, None] * 1e5
    expected[:, 0, 0] = np.nan
    np.testing.assert_allclose(out, expected.astype(np.float32), rtol=1e-6, equal_nan=True)


def test_normalize_with_dark_and_flat_scans(sample_scan):
    frames, columns, _ = sample_scan
    raw = make_raw(frames, columns, chunk=4)
    rng = np.random.default_rng(1)
    dark_frames = rng.poisson(3, (5, *frames.shape[1:])).astype(np.uint32)
    flat_frames = rng.uniform(900, 1100, (3, *frames.shape[1:]))
    spice = {"normalize": {"dark": {"scan": "0040"}, "flat": {"scan": "0041"}}}
    assert NORMALIZE.required_inputs(spice) == (
        InputRef("dark", "0040", "frames"),
        InputRef("flat", "0041", "frames"),
    )
    with pytest.raises(RecipeError, match=r"needs other scans: 'dark' \(scan '0040'"):
        NORMALIZE.cook(raw, spice)
    inputs = {
        "dark": make_raw(dark_frames, {}, scan="0040"),
        "flat": make_raw(flat_frames, {}, scan="0041"),
    }
    cooked = NORMALIZE.cook(raw, spice, inputs=inputs)
    flat = flat_frames.mean(axis=0)
    expected = (frames - dark_frames.mean(axis=0)) / (flat / flat.mean())
    np.testing.assert_allclose(cooked.normalized.values, expected, rtol=1e-4)


def test_normalize_reference_of_the_wrong_size(sample_scan):
    frames, columns, _ = sample_scan
    raw = make_raw(frames, columns)
    spice = {"normalize": {"dark": {"scan": "0040"}}}
    with pytest.raises(LayoutError, match="dark scan '0040'"):
        NORMALIZE.cook(raw, spice, inputs={"dark": make_raw(np.zeros((2, 3, 3)), {})})


def test_normalized_frames_feed_the_rsm_recipe(sample_scan, rsm_spice):
    """Basins of basins: rsm cooks the output of normalize (NaN pixels masked, counted)."""
    frames, columns, _ = sample_scan
    raw = make_raw(frames, columns, chunk=4)
    flat = np.ones(frames.shape[1:])
    flat[:3, :] = 0  # three dead rows
    normalized = NORMALIZE.cook(raw, {"normalize": {"flat": flat.tolist()}})
    chained = xr.merge([raw, normalized])
    cooked = get_recipe("rsm").cook(chained, {"rsm": rsm_spice}, frames="normalized", qsize=8)
    out = cooked.compute()
    assert int(out.nonfinite) == 3 * frames.shape[2] * frames.shape[0]
    assert int(out.counts.sum()) == frames.size - int(out.nonfinite)


# --- quicklook ------------------------------------------------------------------------------
@pytest.mark.parametrize("dims", [("qx", "qy", "qz"), ("qy", "qz")])
def test_quicklook_png(sample_scan, rsm_spice, dims):
    frames, columns, _ = sample_scan
    raw = make_raw(frames, columns, chunk=11)
    cooked = get_recipe("rsm").cook(
        raw, {"rsm": rsm_spice}, dims=dims, qsize=[12] * len(dims), group_by="delay"
    )
    png = quicklook(cooked, max_panels=3)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000


def test_quicklook_of_an_empty_map_and_bad_input():
    data = xr.Dataset(
        {"intensity": (("qx", "qz"), np.full((3, 4), np.nan))},
        coords={"qx": np.arange(3.0), "qz": np.arange(4.0)},
    )
    assert quicklook(data).startswith(b"\x89PNG")
    with pytest.raises(RecipeError, match="no variable 'counts2'"):
        quicklook(data, variable="counts2")
    with pytest.raises(RecipeError, match="two of"):
        quicklook(data, axes=("qx", "qy"))
    flat = xr.Dataset({"intensity": (("a",), da.zeros(3))})
    with pytest.raises(RecipeError, match="2-D or 3-D"):
        quicklook(flat)
