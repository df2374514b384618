"""Regular Q grids (xrayutilities' Gridder conventions) and their automatic range.

A :class:`Grid` has, per dim, ``n`` bin *centres* from ``lo`` to ``hi`` inclusive, step
``(hi - lo) / (n - 1)`` (a single bin sits at ``(lo + hi) / 2``); a value belongs to the
grid when ``lo <= q <= hi``, so the first and last bins are half as wide as the others.
That is xrayutilities' ``Gridder2D/3D`` with ``dataRange(lo, hi, ...)``, chosen so our
maps agree with it bin for bin.

When a range is not given, :func:`detector_extent` derives it from the geometry alone,
exactly: for every frame, the extremes of each Q component over the (continuous)
detector rectangle. A component ``q = r . p/|p| - b`` of the unit pixel direction
``p/|p|`` has its extremes on the rectangle at the corners, at the single critical point
of each edge, or inside where ``p`` is parallel to ``±r``. That is a few dozen flops per
frame, never a pass over the frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from basinflow.errors import RecipeError

Q_DIMS = ("qx", "qy", "qz")
Q_UNITS = "1/Angstrom"


@dataclass(frozen=True)
class Grid:
    """A regular grid over ``dims`` (a subset of ``qx, qy, qz``)."""

    dims: tuple[str, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        k = len(self.dims)
        if not (len(self.lo) == len(self.hi) == len(self.sizes) == k):
            raise RecipeError(f"grid dims {self.dims} need one lo, hi and size each")
        for d, lo, hi, n in zip(self.dims, self.lo, self.hi, self.sizes, strict=True):
            if not (np.isfinite(lo) and np.isfinite(hi)) or not lo < hi:
                raise RecipeError(
                    f"qrange of {d} is empty or not finite: ({lo}, {hi}); give lo < hi"
                )
            if int(n) < 1:
                raise RecipeError(f"qsize of {d} is {n}; every grid dim needs at least 1 bin")

    @property
    def step(self) -> np.ndarray:
        """Bin spacing per dim, computed as xrayutilities does (inf for one bin)."""
        lo, hi = np.asarray(self.lo, float), np.asarray(self.hi, float)
        n = np.asarray(self.sizes, float)
        with np.errstate(divide="ignore"):
            return np.abs(hi - lo) / (n - 1)

    def centres(self, i: int) -> np.ndarray:
        lo, hi, n = float(self.lo[i]), float(self.hi[i]), int(self.sizes[i])
        if n == 1:
            return np.array([(lo + hi) / 2.0])
        return lo + (abs(hi - lo) / (n - 1)) * np.arange(n, dtype=float)

    @property
    def nbins(self) -> int:
        return int(np.prod(self.sizes))

    def bin_units(self) -> BinUnits:
        """How the kernels turn ``q`` into bins: ``u = (q - lo) * scale`` per dim, in range
        when ``0 <= u <= umax``, flat bin ``sum(rint(u) * stride)``.

        A dim of one bin (infinite step) is scaled to ``0..1`` over ``[lo, hi]`` and has a
        stride of zero, so the range test stays ``lo <= q <= hi`` as in xrayutilities.
        """
        sizes = np.asarray(self.sizes, dtype=np.int64)
        lo, hi = np.asarray(self.lo, float), np.asarray(self.hi, float)
        single = sizes == 1
        with np.errstate(divide="ignore"):
            scale = np.where(single, 1.0 / (hi - lo), 1.0 / self.step)
        strides = np.cumprod(np.r_[sizes[1:], 1][::-1])[::-1]
        return BinUnits(
            lo=lo,
            scale=scale,
            umax=np.where(single, 1.0, sizes - 1.0),
            stride=np.where(single, 0.0, strides.astype(float)),
        )


@dataclass(frozen=True)
class BinUnits:
    """Per grid dim: ``u = (q - lo) * scale`` in ``[0, umax]``; flat bin ``rint(u) . stride``."""

    lo: np.ndarray
    scale: np.ndarray
    umax: np.ndarray
    stride: np.ndarray


def detector_extent(
    rows: np.ndarray,
    offsets: np.ndarray,
    corner: np.ndarray,
    side1: np.ndarray,
    side2: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Extremes of ``q = rows[f, c] . p/|p| - offsets[f, c]`` over a detector rectangle.

    The rectangle is ``p = corner + s side1 + t side2`` with ``s, t`` in ``[0, 1]`` (sides
    perpendicular). ``rows`` is ``(n, c, 3)``, ``offsets`` ``(n, c)``; returns two
    ``(n, c)`` arrays (min, max).
    """
    rows = np.asarray(rows, float)
    corner, side1, side2 = (np.asarray(v, float) for v in (corner, side1, side2))
    cands = []
    corners = [corner, corner + side1, corner + side2, corner + side1 + side2]
    for p in corners:
        cands.append(rows @ (p / np.linalg.norm(p)))
    edges = [(corner, side2), (corner + side1, side2), (corner, side1), (corner + side2, side1)]
    for start, w in edges:
        alpha, beta = rows @ start, rows @ w
        gamma, delta, eps = start @ start, start @ w, w @ w
        den = beta * delta - alpha * eps
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            t = np.where(den != 0, (alpha * delta - beta * gamma) / den, np.nan)
            ok = (t > 0) & (t < 1)
            tt = np.where(ok, t, 0.0)
            val = (alpha + beta * tt) / np.sqrt(gamma + 2 * delta * tt + eps * tt * tt)
        cands.append(np.where(ok, val, np.nan))
    lo = np.nanmin(cands, axis=0)
    hi = np.nanmax(cands, axis=0)
    # inside: p parallel to +r (value |r|) or -r (value -|r|), if that ray hits the rectangle
    s1, s2 = side1 @ side1, side2 @ side2
    if s1 > 0 and s2 > 0:
        normal = np.cross(side1, side2)
        norm_r = np.linalg.norm(rows, axis=-1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            unit = rows / norm_r[..., None]
            for sign in (1.0, -1.0):
                d = sign * unit
                lam = (normal @ corner) / (d @ normal)
                x = lam[..., None] * d - corner
                s, t = (x @ side1) / s1, (x @ side2) / s2
                hit = (lam > 0) & (s >= 0) & (s <= 1) & (t >= 0) & (t <= 1)
                if sign > 0:
                    hi = np.where(hit, norm_r, hi)
                else:
                    lo = np.where(hit, -norm_r, lo)
    offsets = np.asarray(offsets, float)
    return lo - offsets, hi - offsets


def auto_range(values_lo: np.ndarray, values_hi: np.ndarray, dim: str) -> tuple[float, float]:
    """A grid range covering every frame's extent, padded by a few ulps of the span.

    The pad (1e-9 of the span) only keeps the pixel that defines an extreme inside the
    range despite rounding differences between the analytic extreme and the kernel. It is
    twice as wide above as below, so that a degenerate extent (a single value) never sits
    exactly on a bin boundary, where rounding would decide the bin.
    """
    lo, hi = np.nanmin(values_lo), np.nanmax(values_hi)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise RecipeError(
            f"cannot derive the {dim} range from the geometry (no frame has finite angles); "
            "give qrange explicitly"
        )
    pad = 1e-9 * (hi - lo) + 1e-12 * max(abs(lo), abs(hi), 1.0)
    return float(lo - pad), float(hi + 2 * pad)


def normalize_qsize(
    qsize: int | Sequence[int] | dict[str, int], dims: Sequence[str]
) -> tuple[int, ...]:
    if isinstance(qsize, dict):
        missing = [d for d in dims if d not in qsize]
        if missing:
            raise RecipeError(f"qsize has no size for {missing}; give one per dim of {list(dims)}")
        sizes = tuple(int(qsize[d]) for d in dims)
    elif isinstance(qsize, int):
        sizes = (int(qsize),) * len(dims)
    else:
        sizes = tuple(int(s) for s in qsize)
        if len(sizes) != len(dims):
            raise RecipeError(f"qsize {list(sizes)} needs one size per dim of {list(dims)}")
    return sizes
