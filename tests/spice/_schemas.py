"""Test spice schemas, importable by spawned worker processes too."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Geom(BaseModel):
    """A small typed spice schema, like a recipe would declare (``geom`` is ours alone)."""

    model_config = ConfigDict(extra="forbid")

    beamEnergy: float
    imageDistance: float = 690.0
    imageCenter: tuple[int, int] = (0, 0)
    label: str | None = None


def register() -> None:
    from basinflow.spice import register_spice_type

    register_spice_type("geom", Geom, replace=True)


class _Recipe:
    """Stands in for a recipe object: what spice reads from it is ``spice_models``."""

    spice_models: ClassVar[dict[str, type[BaseModel]]] = {"ep_recipe": Geom}


RECIPE = _Recipe()
