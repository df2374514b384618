"""Recipes: registered, versioned, pure functions ``raw + spice -> cooked`` (lazy).

Built-ins ``rsm``, ``roi`` and ``normalize`` are registered through the entry-point group
``basinflow.recipes`` like any facility plugin, and imported only when first used (they
pull in numba). ``list_recipes()`` lists them; ``get_recipe(name).cook(raw, spice,
**overrides)`` cooks a scan's raw dataset. ``basinflow.recipes.quicklook.quicklook(cooked)``
renders a PNG (import it from its module: a function here of the same name would be
shadowed by the submodule once imported).
"""

from __future__ import annotations

import sys
import types

from basinflow.recipes.base import InputRef, OutputSpec, Recipe
from basinflow.recipes.registry import (
    RecipePluginWarning,
    discover,
    get_recipe,
    list_recipes,
    refresh,
    register_recipe,
    unregister_recipe,
)

#: Same as :func:`list_recipes`.
recipes = list_recipes


class _CallablePackage(types.ModuleType):
    """``basinflow.recipes()`` lists the recipes, although ``basinflow.recipes`` is also
    this package: once any submodule is imported, the attribute ``basinflow.recipes`` is
    the package (Python's import system sets it), so the package itself is callable."""

    def __call__(self) -> dict[str, Recipe]:
        return list_recipes()


sys.modules[__name__].__class__ = _CallablePackage


__all__ = [
    "InputRef",
    "OutputSpec",
    "Recipe",
    "RecipePluginWarning",
    "discover",
    "get_recipe",
    "list_recipes",
    "recipes",
    "refresh",
    "register_recipe",
    "unregister_recipe",
]
