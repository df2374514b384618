"""The recipe registry: built-ins by entry point, discovery, broken plugins, errors."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
import warnings

import pytest

import basinflow.recipes as recipes
from basinflow.errors import Error, RecipeError, UnknownRecipeError
from basinflow.recipes import registry
from basinflow.recipes.base import Recipe


def _ep(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group=registry.GROUP)


@pytest.fixture
def clean_registry():
    """Run with an empty registry and restore it afterwards."""
    saved = dict(registry.RECIPES._items)
    registry.RECIPES._items.clear()
    registry.refresh()
    yield
    registry.RECIPES._items.clear()
    registry.RECIPES._items.update(saved)
    registry.refresh()


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """A facility's recipe package on sys.path: ``facility_recipes:RECIPE``."""
    (tmp_path / "facility_recipes.py").write_text(
        textwrap.dedent(
            """
            import xarray as xr
            from basinflow.recipes.base import Recipe

            def _count(raw, spice, *, inputs):
                return xr.Dataset({"n": ((), raw.sizes["index"])})

            RECIPE = Recipe(name="count", version="0.1", spice_types=(), func=_count)
            NOT_A_RECIPE = 42
            WRONG_NAME = Recipe(name="other", version="1", spice_types=(), func=_count)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "facility_recipes"
    sys.modules.pop("facility_recipes", None)


def test_builtins_are_listed_through_entry_points():
    found = recipes.list_recipes()
    assert {"rsm", "roi", "normalize"} <= set(found)
    assert all(isinstance(r, Recipe) for r in found.values())
    assert found["rsm"].spice_types == ("rsm",)
    assert found["rsm"].version
    assert recipes.recipes is recipes.list_recipes
    assert list(found) == sorted(found)


def test_registry_view_is_read_only():
    with pytest.raises(TypeError):
        registry.registry["x"] = None  # type: ignore[index]


def test_unknown_recipe_names_the_known_ones():
    with pytest.raises(UnknownRecipeError) as info:
        recipes.get_recipe("rsn")
    message = str(info.value)
    assert "'rsn'" in message and "rsm" in message and "normalize" in message
    assert isinstance(info.value, Error) and isinstance(info.value, KeyError)


def test_discovery_from_entry_point_objects(clean_registry, plugin_module):
    found = registry.discover([_ep("count", f"{plugin_module}:RECIPE")])
    assert list(found) == ["count"]
    assert registry.get_recipe("count") is found["count"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("facility_recipes_missing:RECIPE", "cannot be imported"),
        ("facility_recipes:NOT_A_RECIPE", "not a Recipe"),
        ("facility_recipes:WRONG_NAME", "must equal the recipe name"),
        ("facility_recipes:NOWHERE", "no attribute 'NOWHERE'"),
    ],
)
def test_broken_plugin_is_a_warning_not_a_crash(clean_registry, plugin_module, value, expected):
    eps = [_ep("count", value), _ep("roi", "basinflow.recipes.roi:RECIPE")]
    with pytest.warns(registry.RecipePluginWarning, match=expected):
        found = registry.discover(eps)
    assert list(found) == ["roi"]


def test_broken_plugin_asked_for_by_name_is_a_clear_error(clean_registry, plugin_module):
    ep = _ep("count", "facility_recipes:NOT_A_RECIPE")
    with pytest.raises(RecipeError, match=r"'count'.*not a Recipe"):
        registry.load_entry_point(ep)


def test_duplicate_entry_points_warn_and_keep_the_first(clean_registry, plugin_module):
    eps = [_ep("roi", "basinflow.recipes.roi:RECIPE"), _ep("roi", "facility_recipes:RECIPE")]
    with pytest.warns(registry.RecipePluginWarning, match="provided twice"):
        found = registry.discover(eps)
    assert found["roi"].name == "roi"


def test_discovery_is_cached_and_refreshable(clean_registry):
    first = registry.RECIPES.entry_points()
    assert registry.RECIPES.entry_points() is first  # read once
    registry.refresh()
    assert registry.RECIPES.entry_points() is not first  # read again
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the installed built-ins load cleanly
        assert {"rsm", "roi", "normalize"} <= set(registry.list_recipes())


def test_register_refuses_to_shadow(clean_registry, plugin_module):
    import facility_recipes

    registry.register_recipe(facility_recipes.RECIPE)
    other = Recipe(name="count", version="0.2", spice_types=(), func=facility_recipes._count)
    with pytest.raises(RecipeError, match="already registered"):
        registry.register_recipe(other)
    registry.register_recipe(other, replace=True)
    assert registry.get_recipe("count").version == "0.2"
    registry.unregister_recipe("count")
    with pytest.raises(UnknownRecipeError):
        registry.get_recipe("count")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "1bad"}, "not valid"),
        ({"version": ""}, "version"),
        ({"spice_types": "rsm"}, "tuple of type names"),
        ({"func": 3}, "callable"),
        ({"spice_models": {"other": object}}, "undeclared"),
    ],
)
def test_recipe_definitions_are_validated(kwargs, message):
    base = {"name": "x", "version": "1", "spice_types": ("rsm",), "func": lambda *a, **k: None}
    with pytest.raises(RecipeError, match=message):
        Recipe(**{**base, **kwargs})


def test_the_package_itself_lists_recipes():
    """``basinflow.recipes()`` works although ``basinflow.recipes`` is also the package."""
    import basinflow

    assert basinflow.recipes is recipes or callable(basinflow.recipes)
    assert {"rsm", "roi", "normalize"} <= set(recipes())
    assert set(basinflow.recipes()) == set(recipes.list_recipes())
