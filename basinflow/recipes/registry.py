"""The recipe registry: the ``basinflow.recipes`` entry-point group on the shared helper.

Recipes are found by name only (spice never names code). Built-ins are registered the
same way as a facility's own package: through the entry-point group
``basinflow.recipes`` (``name = "package.module:RECIPE"``). Discovery is cached; a
plugin that fails to import or is not a :class:`~basinflow.recipes.base.Recipe` becomes a
:class:`RecipePluginWarning`, never a crash of everything else. :func:`refresh` forgets
the cache (after installing a package in a running session).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint

from basinflow.errors import RecipeError, UnknownRecipeError
from basinflow.plugins import PluginWarning, Registry
from basinflow.recipes.base import Recipe

GROUP = "basinflow.recipes"


class RecipePluginWarning(PluginWarning):
    """An entry point of group ``basinflow.recipes`` could not be loaded."""


def _check(name: str, obj: object) -> Recipe:
    if not isinstance(obj, Recipe):
        raise RecipeError(f"entry point {name!r} is a {type(obj).__name__}, not a Recipe")
    if obj.name != name:
        raise RecipeError(
            f"entry point {name!r} holds a recipe named {obj.name!r}; "
            "the entry-point name must equal the recipe name"
        )
    return obj


RECIPES: Registry[Recipe] = Registry(
    GROUP,
    "recipe",
    check=_check,
    unknown=UnknownRecipeError,
    broken=RecipeError,
    warning=RecipePluginWarning,
)
#: Read-only view of the recipes registered so far (entry points load on first use).
registry: Mapping[str, Recipe] = RECIPES.view  # type: ignore[assignment]


def register_recipe(recipe: Recipe, *, replace: bool = False) -> Recipe:
    """Register ``recipe`` under its name; refuse to shadow another unless ``replace``."""
    if not isinstance(recipe, Recipe):
        raise RecipeError(f"register_recipe needs a Recipe, got {type(recipe).__name__}")
    RECIPES.register(recipe.name, recipe, replace=replace)
    return recipe


def unregister_recipe(name: str) -> None:
    """Forget a registered recipe (entry points are found again by :func:`refresh`)."""
    RECIPES.unregister(name)


def load_entry_point(ep: EntryPoint) -> Recipe:
    """Import one entry point and check that it is the recipe it claims to be."""
    return RECIPES.load_entry_point(ep)


def discover(eps: Iterable[EntryPoint] | None = None) -> dict[str, Recipe]:
    """Load every entry point (``eps`` or the installed group) and register it.

    Broken plugins are reported as :class:`RecipePluginWarning` and skipped; recipes that
    are registered already are kept (explicit registration wins over discovery).
    """
    return RECIPES.load_all(eps)


def get_recipe(name: str) -> Recipe:
    """The recipe registered (or discoverable) under ``name``."""
    if not isinstance(name, str):
        raise UnknownRecipeError(f"recipe names are strings, got {type(name).__name__}")
    return RECIPES.get(name)


def list_recipes() -> dict[str, Recipe]:
    """Every available recipe by name (sorted), discovering entry points on first use."""
    return dict(sorted(RECIPES.load_all().items()))


def refresh() -> None:
    """Forget cached entry points so newly installed recipe packages are found."""
    RECIPES.refresh()
