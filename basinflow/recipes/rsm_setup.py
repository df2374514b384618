"""One scan's diffractometer geometry, as the ``rsm`` kernel needs it, and its Q grid.

Kept apart from the recipe because this is the part that reads the raw data's 1-D
positioner columns (never the frames) and turns them, with the spice, into small arrays:
per frame one 3x3 matrix and one vector (``q = A p/|p| - b``), the pixel directions of the
detector (cached per worker process), and the grid that holds every pixel. Tests and the
kernel benchmark build a :class:`Setup` directly to compare with xrayutilities.
"""

from __future__ import annotations

import functools

import numpy as np
import xarray as xr

from basinflow.errors import RecipeError
from basinflow.recipes import geometry
from basinflow.recipes.grid import Q_DIMS, Grid, auto_range, detector_extent
from basinflow.recipes.rsm_spice import RsmSpice


@functools.lru_cache(maxsize=8)
def detector_pixels(key: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixel geometry for the kernels (cached per worker process).

    Returns ``rows`` (n1, 3): position of the first pixel of every row; ``step2`` (3,):
    from one pixel to the next along a row; ``inorm`` (n1, n2): 1/|position|; ``jf``:
    0, 1, 2, ... as floats. Pixel ``(i, j)`` of the roi is at ``rows[i] + j * step2``.
    """
    _shape, center, pixel, distance, image_axes, beam, tilt, azimuth, roi = key
    u1, u2 = geometry.pixel_steps(image_axes, pixel, tilt, azimuth)
    r0, r1, c0, c1 = roi
    i = np.arange(r0, r1) - center[0]
    rows = distance * np.asarray(beam) + i[:, None] * u1 + (c0 - center[1]) * u2
    jf = np.arange(c1 - c0, dtype=np.float64)
    pos = rows[:, None, :] + jf[None, :, None] * u2
    inorm = 1.0 / np.linalg.norm(pos, axis=-1)
    out = (np.ascontiguousarray(rows), np.ascontiguousarray(u2), inorm, jf)
    for arr in out:
        arr.flags.writeable = False
    return out


def unit_directions(key: tuple) -> np.ndarray:
    """Unit direction of every pixel, ``(n1, n2, 3)`` (for tests and the slow path)."""
    rows, step2, inorm, jf = detector_pixels(key)
    pos = rows[:, None, :] + jf[None, :, None] * step2
    return pos * inorm[..., None]


class Setup:
    """Everything about one scan's geometry the kernel needs (small arrays only)."""

    def __init__(self, raw: xr.Dataset, spice: RsmSpice, n: int):
        self.spice = spice
        beam = geometry.axis_vector(spice.beamDirection)
        energy = per_frame(raw, spice.beamEnergy, "beamEnergy", n)
        if not np.all(energy[np.isfinite(energy)] > 0):
            raise RecipeError("beamEnergy must be positive (eV)")
        k = 2.0 * np.pi * energy / geometry.HC_EV_ANGSTROM
        if spice.imageChannelSpan is not None:
            span = _pair(spice.imageChannelSpan)
            p1, p2, distance = geometry.channel_size_from_span(span)
        else:
            p1, p2 = _pair(spice.imageChannelSize)
            dist = per_frame(raw, spice.imageDistance, "imageDistance", n)
            if np.ptp(dist) != 0 or not dist[0] > 0:
                raise RecipeError(
                    f"imageDistance {spice.imageDistance!r} must be one positive value per scan"
                )
            distance = float(dist[0])
        tilt, azimuth, detrot = (float(v) for v in spice.detectorTARAlign)
        size = tuple(int(v) for v in spice.imageSize)
        center = geometry.center_pixels(size, spice.imageCenter)
        self.roi = tuple(spice.roi) if spice.roi else (0, size[0], 0, size[1])
        r0, r1, c0, c1 = self.roi
        self.shape = (r1 - r0, c1 - c0)
        self.dirs_key = (
            size,
            center,  # in pixels
            (p1, p2),
            distance,
            tuple(spice.imageAxes),
            tuple(beam),
            tilt,
            azimuth,
            self.roi,
        )
        u1, u2 = geometry.pixel_steps(spice.imageAxes, (p1, p2), tilt, azimuth)
        self.corner = distance * beam + (r0 - center[0]) * u1 + (c0 - center[1]) * u2
        self.side1 = (r1 - 1 - r0) * u1
        self.side2 = (c1 - 1 - c0) * u2

        s_names, s_axes = list(spice.goniometerAxes), list(spice.goniometerAxes.values())
        d_names, d_axes = list(spice.detectorAxes), list(spice.detectorAxes.values())
        s_ang = [column(raw, name, "goniometer axis", n) for name in s_names]
        d_ang = [column(raw, name, "detector axis", n) for name in d_names]
        if detrot:
            d_axes, d_ang = [*d_axes, beam], [*d_ang, np.full(n, detrot)]
        rs, rd = _rotations(s_axes, s_ang, n), _rotations(d_axes, d_ang, n)
        rs_t = np.transpose(rs, (0, 2, 1))
        self.a = k[:, None, None] * (rs_t @ rd)  # q = a @ p_unit - b
        self.b = k[:, None] * (rs_t @ beam)
        self.angles = dict(zip(s_names + d_names, s_ang + d_ang[: len(d_names)], strict=True))

    def directions(self) -> np.ndarray:
        return unit_directions(self.dirs_key)

    def extent(self, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        return detector_extent(
            self.a[:, rows, :], self.b[:, rows], self.corner, self.side1, self.side2
        )


def _pair(value: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(value, int | float):
        return float(value), float(value)
    return float(value[0]), float(value[1])


def _rotations(axes: list, angles: list[np.ndarray], n: int) -> np.ndarray:
    out = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    for axis, ang in zip(axes, angles, strict=True):
        out = out @ geometry.rotation(axis, ang)
    return out


def variable_names(raw: xr.Dataset) -> str:
    return ", ".join(sorted(map(str, raw.variables))) or "none"


def column(raw: xr.Dataset, name: str, what: str, n: int) -> np.ndarray:
    if name not in raw.variables:
        raise RecipeError(
            f"{what} {name!r} from the rsm spice is not a variable of the raw data "
            f"(it has: {variable_names(raw)}); fix the axis names in the spice"
        )
    var = raw[name]
    if var.ndim == 0:
        return np.full(n, float(var.values))
    if var.ndim != 1 or var.shape[0] != n:
        raise RecipeError(
            f"{what} {name!r} has shape {var.shape}; it needs one value per frame ({n})"
        )
    return np.asarray(var.values, dtype=float)


def per_frame(raw: xr.Dataset, value: float | str, what: str, n: int) -> np.ndarray:
    if isinstance(value, str):
        return column(raw, value[1:], what, n)
    return np.full(n, float(value))


def build_grid(setup: Setup, spice: RsmSpice) -> Grid:
    """The Q grid: given ``qrange`` where set, else the exact extent of the detector."""
    dims, sizes = spice.grid_dims(), spice.grid_sizes()
    given = spice.given_qrange()
    rows = [Q_DIMS.index(d) for d in dims]
    lo_all, hi_all = setup.extent(rows)
    lo, hi = [], []
    for i, dim in enumerate(dims):
        rng = given[dim] if dim in given else auto_range(lo_all[:, i], hi_all[:, i], dim)
        lo.append(float(rng[0]))
        hi.append(float(rng[1]))
    return Grid(dims, tuple(lo), tuple(hi), sizes)
