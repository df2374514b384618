"""The spice type registry: registration, lazy models, entry points, validation messages."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
from pydantic import BaseModel

from basinflow.errors import (
    BasinflowWarning,
    InvalidKeyError,
    SpiceError,
    SpiceNotFound,
    SpiceValidationError,
)
from basinflow.spice import (
    StackSpice,
    get_spice_type,
    is_registered,
    register_spice_type,
    spice_type,
    spice_types,
    unregister_spice_type,
    validate_spice_data,
)
from basinflow.spice.types import register_entry_point

from ._schemas import Geom


class Other(BaseModel):
    x: int = 0


def test_builtin_stack_type():
    assert spice_type("stack") is StackSpice
    assert "stack" in spice_types()
    assert validate_spice_data("stack", {"size": 3}).size == 3
    with pytest.raises(SpiceValidationError, match="'size'"):
        validate_spice_data("stack", {"size": 0})


def test_register_lookup_and_read_only_view():
    assert spice_type("geom") is Geom and get_spice_type("geom") is Geom
    view = spice_types()
    with pytest.raises(TypeError):
        view["x"] = Other  # type: ignore[index]
    assert get_spice_type("nobody_registered_this") is None
    with pytest.raises(SpiceNotFound, match="no spice type 'nobody_registered_this'"):
        spice_type("nobody_registered_this")


def test_reregistering_needs_replace():
    register_spice_type("geom", Geom)  # same model: fine
    with pytest.raises(SpiceError, match=r"already registered.*replace=True"):
        register_spice_type("geom", Other)
    register_spice_type("geom", Other, replace=True)
    assert spice_type("geom") is Other


@pytest.mark.parametrize("name", ["", "a/b", "..", "1abc", "with space", "def", "_x"])
def test_invalid_type_names(name):
    with pytest.raises(InvalidKeyError, match="invalid spice type name"):
        register_spice_type(name, Other)


def test_model_must_be_pydantic():
    with pytest.raises(SpiceError, match="pydantic BaseModel"):
        register_spice_type("bad_model", dict)  # type: ignore[arg-type]
    with pytest.raises(SpiceError, match=r"package.module:Model"):
        register_spice_type("bad_model", "no_colon")


def test_lazy_registration_by_dotted_path():
    register_spice_type("lazy_geom", "tests.spice._schemas:Geom")
    try:
        assert spice_type("lazy_geom") is Geom
        register_spice_type("lazy_missing", "no_such_package.mod:Model")
        with pytest.raises(SpiceError, match=r"cannot be imported.*pip install no_such_package"):
            spice_type("lazy_missing")
    finally:
        unregister_spice_type("lazy_geom")
        unregister_spice_type("lazy_missing")


def test_entry_point_discovery_and_broken_plugins_warn():
    good = EntryPoint("ep_geom", "tests.spice._schemas:Geom", "basinflow.spice_types")
    broken = EntryPoint("bad name", "x:y", "basinflow.spice_types")
    try:
        register_entry_point(good)
        assert spice_type("ep_geom") is Geom
        with pytest.warns(BasinflowWarning, match="ignoring spice type entry point 'bad name'"):
            register_entry_point(broken)
        assert not is_registered("bad name")
    finally:
        unregister_spice_type("ep_geom")


def test_unknown_field_is_named_with_a_suggestion():
    with pytest.raises(SpiceValidationError) as info:
        validate_spice_data("geom", {"beamEnergy": 1.0, "beamEnrgy": 2.0})
    msg = str(info.value)
    assert "unknown field 'beamEnrgy'" in msg and "did you mean 'beamEnergy'" in msg
    assert "imageDistance" in msg  # lists the known fields


@pytest.mark.parametrize(
    ("data", "field", "expected"),
    [
        ({"beamEnergy": "8048"}, "beamEnergy", "float"),
        ({"beamEnergy": 1.0, "imageCenter": [1]}, "imageCenter[1]", "tuple[int, int]"),
        ({"beamEnergy": 1.0, "imageCenter": [1, "a"]}, "imageCenter[1]", "tuple[int, int]"),
        ({"beamEnergy": 1.0, "label": 5}, "label", "str | None"),
    ],
)
def test_wrong_type_names_field_and_expected_type(data, field, expected):
    with pytest.raises(SpiceValidationError) as info:
        validate_spice_data("geom", data, what="spice 'g'")
    msg = str(info.value)
    assert msg.startswith("spice 'g': ")
    assert f"field {field!r}" in msg
    assert expected in msg


def test_missing_required_field():
    with pytest.raises(SpiceValidationError, match="field 'beamEnergy' is required"):
        validate_spice_data("geom", {})


def test_untyped_when_nobody_registered():
    assert validate_spice_data("free_form_notes", {"anything": [1, 2]}) is None


def test_valid_data_gives_model_with_defaults():
    model = validate_spice_data("geom", {"beamEnergy": 8048, "imageCenter": [1, 2]})
    assert isinstance(model, Geom)
    assert model.beamEnergy == 8048.0 and model.imageCenter == (1, 2)
    assert model.imageDistance == 690.0


def test_typing_rsm_spice_loads_neither_the_recipe_nor_dask():
    """Seeding or checking spice (a CLI command, a spice editor) stays light: the rsm
    spice type lives beside the recipe, not in it."""
    import subprocess
    import sys

    code = (
        "import sys; from basinflow.spice.types import spice_type; spice_type('rsm'); "
        "print(sorted({'basinflow.recipes.rsm', 'dask', 'numba'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_types_of_a_recipe_are_found_before_the_recipe_is_imported():
    """``seed("rsm")`` before the rsm recipe was imported must still be typed: recipe
    packages declare their spice types in the ``basinflow.spice_types`` group, and spice
    never loads recipe entry points."""
    from basinflow.recipes.rsm import RsmSpice
    from basinflow.spice.types import TYPES

    assert spice_type("rsm") is RsmSpice
    assert TYPES.entry_points()["rsm"].value == "basinflow.recipes.rsm_spice:RsmSpice"
    broken = EntryPoint("ep_broken", "no_such_module:Model", "basinflow.spice_types")
    with pytest.warns(BasinflowWarning, match="spice type 'ep_broken'"):
        assert TYPES.load_all([broken]) == {}
    assert not is_registered("ep_broken")


@pytest.mark.parametrize("value", [2**63, 10**30])
def test_integers_beyond_int64_are_refused_naming_the_field(value):
    """JSON and Python integers have no limit, NumPy's do: refused when seeded, not with a
    bare ``OverflowError`` at cook time."""
    from basinflow.recipes.roi import RoiSpice  # noqa: F401 - registers "roi"

    data = {"regions": {"peak": [0, value, 0, 4]}}
    with pytest.raises(SpiceValidationError, match=r"regions\.peak\[1\]") as err:
        validate_spice_data("roi", data, what="spice 'roi'")
    assert str(value) in str(err.value) and "64-bit" in str(err.value)
    assert validate_spice_data("roi", {"regions": {"peak": [0, 2**62, 0, 4]}})
