"""``xr.open_dataset(url, engine="basinflow")`` is ``bf.open_referrer``; name clashes between
cooked and basin variables rename, never drop; ``export`` keeps the NXdata signal."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import xarray as xr

from basinflow.errors import UntrustedBasinError
from basinflow.recipes.base import Recipe
from basinflow.recipes.registry import register_recipe, unregister_recipe
from basinflow.storage.referrer.export import export
from basinflow.storage.referrer.open import open_referrer
from basinflow.tasks.cooking import cook
from tests.storage.conftest import local, make_repo


def _clash(raw: xr.Dataset, spice, inputs=None) -> xr.Dataset:
    """Cooked names that the raw scan also has: ``theta`` (a variable) and ``delay`` (a
    dimension of grouped results); ``zeta`` before ``alpha`` so the signal is ``zeta``."""
    delays = np.unique(raw.delay.values)
    frames = raw.frames.data.astype("float32")
    return xr.Dataset(
        {
            "zeta": (("index", "y", "x"), frames),
            "alpha": (("index", "y", "x"), frames * 2),
            "theta": (("index",), raw.theta.data * 2),
            "per_delay": (("delay",), np.arange(len(delays), dtype="float64")),
        },
        coords={"index": raw.index, "delay": delays},
    )


@pytest.fixture(scope="module", autouse=True)
def clash_recipe():
    register_recipe(Recipe("clash", "1", (), _clash), replace=True)
    yield
    unregister_recipe("clash")


@pytest.fixture
def referrer(tmp_path):
    repo = make_repo(tmp_path / "site")
    scan = repo["p1"]["1"]
    result = cook(scan, "clash")
    assert result.status == "cooked", result.reason
    return repo, scan, result.output


def test_engine_is_registered():
    assert "basinflow" in xr.backends.list_engines()


def test_open_dataset_engine_is_open_referrer(referrer):
    repo, _, url = referrer
    via_xarray = xr.open_dataset(url, engine="basinflow", trusted=[repo])
    direct = open_referrer(url, trusted=[repo])
    assert via_xarray.identical(direct)
    assert via_xarray.frames.shape == direct.frames.shape  # the basin's raw frames
    dropped = xr.open_dataset(url, engine="basinflow", trusted=[repo], drop_variables="frames")
    assert "frames" not in dropped and "zeta" in dropped


def test_open_dataset_engine_applies_trust(referrer):
    _, _, url = referrer  # the raw file is outside the referrer's directory: untrusted
    with pytest.raises(UntrustedBasinError, match="nexus"):
        xr.open_dataset(local(url), engine="basinflow")


def test_name_clash_renames_the_basin_variable(referrer):
    repo, scan, url = referrer
    ds = open_referrer(url, trusted=[repo])
    raw = scan.raw
    np.testing.assert_allclose(ds.theta.values, raw.theta.values * 2)  # cooked keeps the name
    np.testing.assert_allclose(ds.raw_theta.values, raw.theta.values)  # raw: renamed, kept
    np.testing.assert_allclose(ds.raw_delay.values, raw.delay.values)  # clashes with a dim
    assert ds.delay.dims == ("delay",) and ds.sizes["delay"] == len(np.unique(raw.delay))
    assert json.loads(ds.attrs["basinflow_renamed"]) == {
        "raw:delay": "raw_delay",
        "raw:theta": "raw_theta",
    }
    assert "raw_index" not in ds  # the shared dimension's coordinate is one axis


def test_export_keeps_the_nxdata_signal(referrer, tmp_path):
    repo, _, url = referrer
    with h5py.File(local(url)) as f:
        assert f["entry/data"].attrs["signal"] == "zeta"
    out = tmp_path / "copy.h5"
    export(url, out.as_uri(), trusted=[repo])
    with h5py.File(out) as f:
        assert f["entry/data"].attrs["signal"] == "zeta"
    copy = open_referrer(out.as_uri())
    np.testing.assert_allclose(copy.raw_delay.values, open_referrer(url, trusted=[repo]).raw_delay)
