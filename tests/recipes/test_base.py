"""Recipe.cook: where spice comes from, validation, overrides, declared outputs."""

from __future__ import annotations

import pydantic
import pytest
import xarray as xr

from basinflow.errors import SpiceValidationError
from basinflow.recipes import get_recipe
from basinflow.recipes.base import Recipe


class _Params(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    factor: float
    label: str = "x"


def _scale(raw, spice, *, inputs):
    return xr.Dataset({"n": ((), raw.sizes["index"] * spice["params"].factor)})


SCALE = Recipe("scale", "1", ("params",), _scale, spice_models={"params": _Params})


@pytest.fixture
def raw():
    return xr.Dataset({"frames": (("index", "y", "x"), [[[1]], [[2]]])})


@pytest.mark.parametrize(
    "spice",
    [
        {"params": {"factor": 2}},
        {"other_handle": {"type": "params", "data": {"factor": 2}, "uuid": "u"}},
        {"params": _Params(factor=2)},
    ],
)
def test_spice_found_by_type_or_handle(raw, spice):
    out = SCALE.cook(raw, spice)
    assert float(out.n) == 4
    assert out.attrs["recipe"] == "scale" and out.attrs["recipe_version"] == "1"


def test_overrides_update_the_main_type_and_can_stand_alone(raw):
    assert float(SCALE.cook(raw, {"params": {"factor": 2}}, factor=3).n) == 6
    assert float(SCALE.cook(raw, None, factor=5).n) == 10


def test_validation_messages(raw):
    with pytest.raises(SpiceValidationError, match="needs spice of type 'params'"):
        SCALE.cook(raw, {"rsm": {}})
    with pytest.raises(SpiceValidationError, match="factor"):
        SCALE.cook(raw, {"params": {"label": "y"}})
    with pytest.raises(SpiceValidationError, match=r"\['facter'\] are not fields"):
        SCALE.cook(raw, {"params": {"factor": 1}}, facter=2)
    with pytest.raises(SpiceValidationError, match="factor"):
        SCALE.cook(raw, {"params": {"factor": "lots"}})


def test_recipe_without_spice_refuses_overrides(raw):
    bare = Recipe("bare", "1", (), lambda raw, spice, *, inputs: xr.Dataset())
    assert bare.cook(raw) is not None
    with pytest.raises(SpiceValidationError, match="takes no spice"):
        bare.cook(raw, None, anything=1)


def test_builtin_recipes_declare_their_outputs():
    rsm = get_recipe("rsm")
    assert [o.name for o in rsm.outputs] == ["intensity", "counts", "nonfinite"]
    normalize = get_recipe("normalize")
    assert normalize.outputs[0].chunks == {"index": "input", "y": "input", "x": "input"}
    assert get_recipe("roi").main_spice_type == "roi"


def test_recipe_spice_models_are_registered_spice_types():
    from basinflow.spice.types import get_spice_type

    for name in ("rsm", "roi", "normalize"):
        recipe = get_recipe(name)
        assert get_spice_type(name) is recipe.spice_models[name]
