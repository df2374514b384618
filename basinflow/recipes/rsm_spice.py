"""The ``rsm`` spice type: diffractometer geometry (nx5d names) and the Q grid.

A schema of its own because the spice registry imports it (entry point
``basinflow.spice_types``) to validate seeding before any recipe runs, and because it is the
contract users write: field names follow nx5d's ``QMapper.init_experiment`` so nx5d spice
reads unchanged. It checks every field that can be checked without the raw data (axes,
rectangles inside the image, grid dims and sizes, non-empty ranges); what needs the data is
checked by :mod:`basinflow.recipes.rsm_setup` and the recipe.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

from basinflow.errors import RecipeError
from basinflow.recipes import geometry
from basinflow.recipes.grid import Q_DIMS, normalize_qsize


def _axis(value: str) -> str:
    geometry.axis_vector(value)
    return value


Axis = Annotated[str, AfterValidator(_axis)]
Vector3 = tuple[float, float, float]
Rect = tuple[int, int, int, int]


class RsmSpice(BaseModel):
    """Spice type ``rsm``: diffractometer geometry (nx5d names) and the Q grid."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    beamEnergy: float | str  # eV, or "@variable" in the raw data (may vary per frame)
    beamDirection: Axis | Vector3 = (0.0, 1.0, 0.0)
    sampleFaceUp: Axis = "z+"
    sampleNormal: Vector3 = (0.0, 0.0, 1.0)
    goniometerAxes: dict[str, Axis]  # {positioner: axis}, outer to inner
    detectorAxes: dict[str, Axis]  # {positioner: axis}, outer to inner
    detectorTARAlign: Vector3 = (0.0, 0.0, 0.0)  # tilt, tilt azimuth, rotation (deg)
    imageAxes: tuple[Axis, Axis]
    imageCenter: tuple[float, float]  # pixels, or fractions of imageSize when both <= 1
    imageChannelSize: float | tuple[float, float] | None = None  # mm
    imageChannelSpan: float | tuple[float, float] | None = None  # degrees per channel
    imageDistance: float | str | None = None  # mm, or "@variable" (constant per scan)
    imageSize: tuple[int, int]
    roi: Rect | None = None  # (row0, row1, col0, col1), half-open, of the pixels used
    # -- the grid and what goes into it
    dims: tuple[str, ...] | None = None  # two or three of qx, qy, qz; default qsize's keys
    qsize: int | tuple[int, ...] | dict[str, int] = 100
    qrange: dict[str, tuple[float, float]] | tuple[tuple[float, float], ...] | None = None
    group_by: str | None = None  # 1-D variable: one map per distinct value (e.g. delay)
    normalize_by: str | None = None  # 1-D monitor variable each frame is divided by
    mask: list[Rect] | str | None = None  # rectangles of excluded pixels, or a 2-D variable
    frames: str = "frames"  # the frames variable (e.g. "normalized" from that recipe)
    nonfinite: Literal["mask", "raise"] = "mask"

    @model_validator(mode="after")
    def _check(self) -> RsmSpice:
        if self.imageChannelSize is None and self.imageChannelSpan is None:
            raise ValueError("give imageChannelSize (mm, with imageDistance) or imageChannelSpan")
        if self.imageChannelSize is not None and self.imageChannelSpan is not None:
            raise ValueError("give imageChannelSize or imageChannelSpan, not both")
        if self.imageChannelSize is not None and self.imageDistance is None:
            raise ValueError("imageChannelSize needs imageDistance (mm)")
        for name in ("beamEnergy", "imageDistance"):
            value = getattr(self, name)
            if isinstance(value, str) and not (value.startswith("@") and len(value) > 1):
                raise ValueError(f"{name} must be a number or '@variable', got {value!r}")
            if isinstance(value, float) and not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if min(self.imageSize) < 1:
            raise ValueError(f"imageSize must be positive, got {list(self.imageSize)}")
        e1, e2 = (geometry.axis_vector(a) for a in self.imageAxes)
        if abs(float(e1 @ e2)) > 1e-12:
            raise ValueError(f"imageAxes {list(self.imageAxes)} must be perpendicular")
        for rect in ([self.roi] if self.roi else []) + (
            self.mask if isinstance(self.mask, list) else []
        ):
            _check_rect(rect, self.imageSize)
        dims = self.grid_dims()
        if len(dims) not in (2, 3) or len(set(dims)) != len(dims) or set(dims) - set(Q_DIMS):
            raise ValueError(f"dims must be two or three distinct of {Q_DIMS}, got {list(dims)}")
        try:
            sizes = normalize_qsize(self.qsize, dims)
        except RecipeError as exc:
            raise ValueError(str(exc)) from None
        if any(s < 1 for s in sizes):
            raise ValueError(
                f"qsize {dict(zip(dims, sizes, strict=True))} has zeros or negatives; "
                "every dim needs at least 1 bin"
            )
        for dim, rng in self.given_qrange().items():
            lo, hi = rng
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ValueError(f"qrange of {dim} is empty: ({lo}, {hi}); give lo < hi")
        return self

    def grid_dims(self) -> tuple[str, ...]:
        if self.dims is not None:
            return tuple(self.dims)
        if isinstance(self.qsize, dict):
            return tuple(self.qsize)
        if isinstance(self.qsize, tuple) and len(self.qsize) == 2:
            raise ValueError("a 2-D qsize needs dims (which two of qx, qy, qz)")
        return Q_DIMS

    def grid_sizes(self) -> tuple[int, ...]:
        return normalize_qsize(self.qsize, self.grid_dims())

    def given_qrange(self) -> dict[str, tuple[float, float]]:
        if self.qrange is None:
            return {}
        dims = self.grid_dims()
        if isinstance(self.qrange, dict):
            unknown = set(self.qrange) - set(dims)
            if unknown:
                raise ValueError(f"qrange for {sorted(unknown)}, which are not in dims {dims}")
            return dict(self.qrange)
        if len(self.qrange) != len(dims):
            raise ValueError(f"qrange needs one (lo, hi) per dim of {list(dims)}")
        return dict(zip(dims, self.qrange, strict=True))


def _check_rect(rect: Rect, size: tuple[int, int]) -> None:
    r0, r1, c0, c1 = rect
    if not (0 <= r0 < r1 <= size[0] and 0 <= c0 < c1 <= size[1]):
        raise ValueError(
            f"rectangle {list(rect)} (row0, row1, col0, col1) is empty or outside the "
            f"{size[0]}x{size[1]} image"
        )
