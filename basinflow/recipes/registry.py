"""The recipe registry: one private dict, a read-only view, entry-point discovery.

Recipes are found by name only (spice never names code). Built-ins are registered the
same way as a facility's own package: through the entry-point group
``basinflow.recipes`` (``name = "package.module:RECIPE"``). Discovery is cached; a
plugin that fails to import or is not a :class:`~basinflow.recipes.base.Recipe` becomes a
:class:`RecipePluginWarning`, never a crash of everything else. :func:`refresh` forgets
the cache (after installing a package in a running session).
"""

from __future__ import annotations

import functools
import importlib.metadata
import warnings
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from basinflow.errors import BasinflowWarning, RecipeError, UnknownRecipeError
from basinflow.recipes.base import Recipe

GROUP = "basinflow.recipes"

_registry: dict[str, Recipe] = {}
#: Read-only view of the recipes registered so far (entry points load on first use).
registry: Mapping[str, Recipe] = MappingProxyType(_registry)


class RecipePluginWarning(BasinflowWarning):
    """An entry point of group ``basinflow.recipes`` could not be loaded."""


def register_recipe(recipe: Recipe, *, replace: bool = False) -> Recipe:
    """Register ``recipe`` under its name; refuse to shadow another unless ``replace``."""
    if not isinstance(recipe, Recipe):
        raise RecipeError(f"register_recipe needs a Recipe, got {type(recipe).__name__}")
    old = _registry.get(recipe.name)
    if old is not None and old is not recipe and not replace:
        raise RecipeError(
            f"a recipe named {recipe.name!r} (version {old.version}) is already registered; "
            "pass replace=True to replace it"
        )
    _registry[recipe.name] = recipe
    return recipe


def unregister_recipe(name: str) -> None:
    """Forget a registered recipe (entry points are found again by :func:`refresh`)."""
    _registry.pop(name, None)


@functools.cache
def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return _dedupe(importlib.metadata.entry_points(group=GROUP))


EntryPoint = importlib.metadata.EntryPoint


def _dedupe(eps: Iterable[EntryPoint]) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in eps:
        if ep.name in found and found[ep.name].value != ep.value:
            warnings.warn(
                f"recipe {ep.name!r} is provided twice ({found[ep.name].value} and {ep.value}); "
                f"using {found[ep.name].value}",
                RecipePluginWarning,
                stacklevel=3,
            )
            continue
        found.setdefault(ep.name, ep)
    return found


def load_entry_point(ep: importlib.metadata.EntryPoint) -> Recipe:
    """Import one entry point and check that it is the recipe it claims to be."""
    try:
        obj = ep.load()
    except ImportError as exc:
        hint = f"; install {exc.name!r}" if getattr(exc, "name", None) else ""
        raise RecipeError(
            f"recipe {ep.name!r} ({ep.value}) cannot be imported: {exc}{hint}"
        ) from exc
    except AttributeError as exc:
        raise RecipeError(
            f"recipe {ep.name!r} ({ep.value}) cannot be loaded: {exc}; fix the entry point"
        ) from exc
    except Exception as exc:  # a broken plugin must not take the others down
        raise RecipeError(
            f"recipe {ep.name!r} ({ep.value}) failed while importing: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(obj, Recipe):
        raise RecipeError(
            f"entry point {ep.name!r} ({ep.value}) is a {type(obj).__name__}, not a Recipe"
        )
    if obj.name != ep.name:
        raise RecipeError(
            f"entry point {ep.name!r} ({ep.value}) holds a recipe named {obj.name!r}; "
            "the entry-point name must equal the recipe name"
        )
    return obj


def discover(
    eps: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> dict[str, Recipe]:
    """Load every entry point (``eps`` or the installed group) and register it.

    Broken plugins are reported as :class:`RecipePluginWarning` and skipped; recipes that
    are registered already are kept (explicit registration wins over discovery).
    """
    found = _entry_points() if eps is None else _dedupe(eps)
    loaded: dict[str, Recipe] = {}
    for name, ep in found.items():
        if name in _registry:
            loaded[name] = _registry[name]
            continue
        try:
            loaded[name] = register_recipe(load_entry_point(ep))
        except RecipeError as exc:
            warnings.warn(str(exc), RecipePluginWarning, stacklevel=2)
    return loaded


def get_recipe(name: str) -> Recipe:
    """The recipe registered (or discoverable) under ``name``."""
    if not isinstance(name, str):
        raise UnknownRecipeError(f"recipe names are strings, got {type(name).__name__}")
    recipe = _registry.get(name)
    if recipe is not None:
        return recipe
    ep = _entry_points().get(name)
    if ep is not None:
        return register_recipe(load_entry_point(ep))  # a broken plugin: RecipeError, named
    known = sorted(set(_registry) | set(_entry_points()))
    raise UnknownRecipeError(
        f"no recipe named {name!r}; known recipes: {', '.join(known) or 'none'}; check the "
        f"name, or install the package that registers it (entry-point group {GROUP!r})"
    )


def list_recipes() -> dict[str, Recipe]:
    """Every available recipe by name (sorted), discovering entry points on first use."""
    discover()
    return dict(sorted(_registry.items()))


def refresh() -> None:
    """Forget cached entry points so newly installed recipe packages are found."""
    _entry_points.cache_clear()
