"""Fixtures for referrer tests: a tiny sample repository and a stand-in recipe."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from basinflow import samples
from basinflow.catalog.repository import Repository
from basinflow.recipes.base import Recipe
from basinflow.recipes.registry import register_recipe, unregister_recipe


def _halve(raw: xr.Dataset, spice, inputs=None) -> xr.Dataset:
    """A stand-in 'normalize': frames as float32, halved (output as large as the input)."""
    data = raw.frames.data.astype("float32") / 2
    return xr.Dataset({"norm": (("index", "y", "x"), data)}, coords={"index": raw.index})


def _profile(raw: xr.Dataset, spice, inputs=None) -> xr.Dataset:
    """A stand-in second recipe (cooks a referrer): the row profile of the 'norm' frames."""
    return xr.Dataset({"profile": (("index", "y"), raw.norm.data.sum(axis=2))})


@pytest.fixture(scope="session", autouse=True)
def stand_in_recipes():
    register_recipe(Recipe("halve", "1", (), _halve), replace=True)
    register_recipe(Recipe("profile", "1", (), _profile), replace=True)
    yield
    unregister_recipe("halve")
    unregister_recipe("profile")


def make_repo(root, out=None, proposals=None, **kw) -> Repository:
    proposals = proposals or {"p1": ("1", "2")}
    samples.generate(root, samples.SampleSpec(proposals=proposals, ntheta=2, layouts=("nexus",)))
    output = out or f"file://{root}/out/{{proposal}}/{{scan}}/{{recipe}}.h5"
    return Repository(f"file://{root}/nexus/{{proposal}}/{{scan}}.h5#entry", output=output, **kw)


@pytest.fixture
def repo(tmp_path) -> Repository:
    return make_repo(tmp_path / "site")


@pytest.fixture
def cooked(repo):
    """(repo, scan, CookResult) of the stand-in recipe on p1/1."""
    from basinflow.tasks.cooking import cook

    scan = repo["p1"]["1"]
    result = cook(scan, "halve")
    assert result.status == "cooked", result.reason
    return repo, scan, result


def local(url: str) -> str:
    return url[len("file://") :] if url.startswith("file://") else url


__all__ = ["local", "make_repo", "np"]
