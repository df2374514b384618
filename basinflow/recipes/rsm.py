"""The ``rsm`` recipe: reciprocal space maps from area-detector angle scans.

Spice type ``rsm`` uses the field names of nx5d's ``QMapper.init_experiment`` (so nx5d
spice reads unchanged) plus the grid. Geometry conventions are xrayutilities'
(``QConversion`` + ``Ang2Q.init_area``), see :mod:`basinflow.recipes.geometry`; Q is in
the goniometer (sample) frame, 1/Å. ``sampleFaceUp`` and ``sampleNormal`` are accepted
and checked but, exactly as for ``Ang2Q.area``, they do not change Q (they orient HKL).

How it runs: the 1-D positioner columns are read to build, per frame, one 3x3 matrix
and one vector (``q = A p/|p| - b``); the frames stay lazy. Each chunk of frames (small
storage chunks grouped to ~16 MiB, never copied together) becomes one task running a
fused numba kernel (pixel -> Q -> bin -> sums and counts per group) that returns a
*sparse* partial (the bins it touched); partials are merged in a tree (``split_every``)
and densified once at the root. Memory per task is its frames plus one dense grid
buffer (``16 bytes x bins x groups``), whatever the scan length.

Output (see :data:`RECIPE`): ``intensity = sums / counts`` per bin (xrayutilities'
normalised Gridder data) where ``counts > 0`` and **NaN where no pixel fell** (the
Gridder returns 0 there; NaN keeps "no data" apart from "zero counts"), ``counts``
(pixels per bin), ``nonfinite`` (pixels skipped because they, or their monitor-scaled
values, were NaN or ±inf), Q bin centres as coordinates and the group dim (e.g. ``delay``)
when ``group_by`` is set. With ``normalize_by`` each frame is divided by its monitor
value before gridding.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import dask.array as da
import numpy as np
import xarray as xr
from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

from basinflow.errors import LayoutError, RecipeError
from basinflow.recipes import geometry
from basinflow.recipes.base import OutputSpec, Recipe
from basinflow.recipes.chunking import grouped_tasks, tree_reduce
from basinflow.recipes.grid import (
    Q_DIMS,
    Q_UNITS,
    BinUnits,
    Grid,
    auto_range,
    detector_extent,
    normalize_qsize,
)
from basinflow.recipes.masking import detector_mask, masked

VERSION = "1.0.0"
SPLIT_EVERY = 8  # partials summed per reduction task
# Consecutive frame chunks smaller than this are gridded by one task (never copied
# together); a chunk as large already is one task, so catalog chunks (``chunk_mb``) never
# have to be gathered from other workers. Partials are sparse (the bins a task touched),
# so small tasks cost little in the reduction.
TARGET_CHUNK_BYTES = 16 * 2**20


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


# --- geometry of one scan ---------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _detector(key: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
    rows, step2, inorm, jf = _detector(key)
    pos = rows[:, None, :] + jf[None, :, None] * step2
    return pos * inorm[..., None]


class Setup:
    """Everything about one scan's geometry the kernel needs (small arrays only)."""

    def __init__(self, raw: xr.Dataset, spice: RsmSpice, n: int):
        self.spice = spice
        beam = geometry.axis_vector(spice.beamDirection)
        energy = _value(raw, spice.beamEnergy, "beamEnergy", n)
        if not np.all(energy[np.isfinite(energy)] > 0):
            raise RecipeError("beamEnergy must be positive (eV)")
        k = 2.0 * np.pi * energy / geometry.HC_EV_ANGSTROM
        if spice.imageChannelSpan is not None:
            span = _pair(spice.imageChannelSpan)
            p1, p2, distance = geometry.channel_size_from_span(span)
        else:
            p1, p2 = _pair(spice.imageChannelSize)
            dist = _value(raw, spice.imageDistance, "imageDistance", n)
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
        s_ang = [_column(raw, name, "goniometer axis", n) for name in s_names]
        d_ang = [_column(raw, name, "detector axis", n) for name in d_names]
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


def _variables(raw: xr.Dataset) -> str:
    return ", ".join(sorted(map(str, raw.variables))) or "none"


def _column(raw: xr.Dataset, name: str, what: str, n: int) -> np.ndarray:
    if name not in raw.variables:
        raise RecipeError(
            f"{what} {name!r} from the rsm spice is not a variable of the raw data "
            f"(it has: {_variables(raw)}); fix the axis names in the spice"
        )
    var = raw[name]
    if var.ndim == 0:
        return np.full(n, float(var.values))
    if var.ndim != 1 or var.shape[0] != n:
        raise RecipeError(
            f"{what} {name!r} has shape {var.shape}; it needs one value per frame ({n})"
        )
    return np.asarray(var.values, dtype=float)


def _value(raw: xr.Dataset, value: float | str, what: str, n: int) -> np.ndarray:
    if isinstance(value, str):
        return _column(raw, value[1:], what, n)
    return np.full(n, float(value))


# --- the recipe ---------------------------------------------------------------------------
def _frames(raw: xr.Dataset, spice: RsmSpice, setup_roi: tuple[int, int, int, int]):
    name = spice.frames
    if name not in raw.variables:
        raise LayoutError(
            f"the raw data has no frames variable {name!r} (it has: {_variables(raw)})"
        )
    var = raw[name]
    if var.ndim != 3:
        raise LayoutError(f"frames {name!r} must be 3-D (index, y, x), got dims {var.dims}")
    n = var.shape[0]
    if n == 0:
        raise LayoutError(f"the scan has zero frames in {name!r}; there is nothing to map")
    size = tuple(spice.imageSize)
    r0, r1, c0, c1 = setup_roi
    data = var.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=(1, -1, -1))
    if tuple(var.shape[1:]) == size:
        data = data[:, r0:r1, c0:c1]
    elif spice.roi and tuple(var.shape[1:]) == (r1 - r0, c1 - c0):
        pass  # nx5d style: frames already cropped to the roi
    else:
        raise LayoutError(
            f"frames {name!r} are {var.shape[1]}x{var.shape[2]} pixels but the rsm spice "
            f"says imageSize {size[0]}x{size[1]}"
        )
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise LayoutError(f"frames {name!r} have dtype {data.dtype}; real numbers needed")
    return var.dims[0], data


def _mask(raw: xr.Dataset, spice: RsmSpice, roi) -> np.ndarray:
    size = tuple(spice.imageSize)
    r0, r1, c0, c1 = roi
    if spice.mask is None:
        return np.zeros((r1 - r0, c1 - c0), dtype=bool)
    if isinstance(spice.mask, str):
        if spice.mask not in raw.variables:
            raise RecipeError(
                f"mask variable {spice.mask!r} is not in the raw data (it has: {_variables(raw)})"
            )
        full = np.asarray(raw[spice.mask].values) != 0
        if full.shape != size:
            raise RecipeError(f"mask {spice.mask!r} is {full.shape}, the image is {size}")
    else:
        full = np.zeros(size, dtype=bool)
        for m0, m1, n0, n1 in spice.mask:
            full[m0:m1, n0:n1] = True
    return np.ascontiguousarray(full[r0:r1, c0:c1])


def _groups(raw: xr.Dataset, spice: RsmSpice, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    if spice.group_by is None:
        return np.zeros(n, dtype=np.int64), None
    values = _column(raw, spice.group_by, "group_by variable", n)
    if not np.all(np.isfinite(values)):
        raise RecipeError(f"group_by variable {spice.group_by!r} has NaN or inf values")
    keys = np.unique(values)
    return np.searchsorted(keys, values).astype(np.int64), keys


def _folded(p: np.ndarray, nd: int, units: BinUnits) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame kernel coefficients ``(a, b)`` with ``u = a @ p/|p| - b`` in bin units.

    ``q = A p/|p| - B`` (rows in grid-dim order) becomes ``u = (q - lo) * scale``: the grid
    is folded into the 3x3 matrix and the vector of every frame, so the kernel spends no
    flops per pixel on it. A 2-D grid gets a zero third row (``u = 0``, always in range).
    """
    m = p.shape[0]
    a = np.zeros((m, 3, 3))
    b = np.zeros((m, 3))
    a[:, :nd] = p[:, : nd * 3].reshape(m, nd, 3) * units.scale[:nd, None]
    b[:, :nd] = (p[:, nd * 3 : nd * 4] + units.lo[:nd]) * units.scale[:nd]
    return a, b


def _padded(v: np.ndarray, fill: float) -> np.ndarray:
    return np.concatenate([v, np.full(3 - len(v), fill)])


def _grid_chunks(chunks, params, mask, *, nd, ngroups, nbins, units, dirs_key):
    """One task: grid a list of frame chunks; returns a sparse partial.

    The kernel accumulates into a dense ``[sum, count]`` buffer (group-major, C order;
    pages never touched are never faulted in; one scratch row past the grid takes the
    pixels that fall nowhere), which is then compacted to the bins that received pixels:
    ``(bins, sums, counts, bad)``. A chunk of a rocking scan touches a few percent of a
    3-D grid, so partials are small to keep, send and add.
    """
    from basinflow.recipes import kernels

    size = ngroups * nbins
    acc = np.zeros((size + kernels.SCRATCH, 2))
    bad = np.zeros(ngroups)
    touched = np.zeros(len(acc) // kernels.BLOCK + 1, dtype=np.uint8)
    rows, step2, inorm, jf = _detector(dirs_key)
    umax, stride = _padded(units.umax, 0.0), _padded(units.stride, 0.0)
    start = 0
    for frames in chunks:
        m = frames.shape[0]
        p = params[start : start + m]
        start += m
        a, b = _folded(p, nd, units)
        kernels.grid(
            frames,
            mask,
            a,
            b,
            np.ascontiguousarray(p[:, nd * 4]),
            p[:, nd * 4 + 1].astype(np.int64),
            rows,
            step2,
            inorm,
            jf,
            umax,
            stride,
            acc,
            bad,
            touched,
        )
    bins = _touched_bins(acc[:size], touched)
    return bins, acc[bins, 0], acc[bins, 1], bad


def _touched_bins(acc: np.ndarray, touched: np.ndarray) -> np.ndarray:
    """Bins with pixels, found through the block map (no scan of the whole grid)."""
    from basinflow.recipes import kernels

    return kernels.touched_bins(acc, touched)


def _merge(*parts, nbins: int):
    """Add sparse partials (their bins may overlap) into one sparse partial."""
    from basinflow.recipes import kernels

    acc = np.zeros((nbins, 2))
    touched = np.zeros(nbins // kernels.BLOCK + 1, dtype=np.uint8)
    for bins, sums, counts, _ in parts:
        kernels.merge_into(acc, bins, sums, counts, touched)
    bins = _touched_bins(acc, touched)
    return bins, acc[bins, 0], acc[bins, 1], np.sum([p[3] for p in parts], axis=0)


def _densify(part, nbins: int) -> np.ndarray:
    """The flat dense result: ``[sum, count]`` per bin, then NaN/inf counts per group."""
    bins, sums, counts, bad = part
    out = np.zeros(2 * nbins + len(bad))
    pairs = out[: 2 * nbins].reshape(nbins, 2)
    pairs[bins, 0] = sums
    pairs[bins, 1] = counts
    out[2 * nbins :] = bad
    return out


def _total(frames: da.Array, params: np.ndarray, mask: np.ndarray, ngroups: int, **kw):
    """The summed grid of every frame, as a flat one-chunk Dask array (see _densify)."""
    frames = frames.rechunk({1: -1, 2: -1})
    nbins = ngroups * kw["nbins"]
    dsk, keys, _, deps = grouped_tasks(
        functools.partial(_grid_chunks, ngroups=ngroups, **kw),
        frames,
        target=TARGET_CHUNK_BYTES,
        group_args=lambda rows: (params[rows],),
        shared=[da.from_array(mask, chunks=-1)],
        name="rsm-partial",
    )
    return tree_reduce(
        dsk,
        keys,
        deps,
        combine=functools.partial(_merge, nbins=nbins),
        finalize=functools.partial(_densify, nbins=nbins),
        length=2 * nbins + ngroups,
        split_every=SPLIT_EVERY,
        name="rsm-total",
    )


def _mean(pairs: np.ndarray) -> np.ndarray:
    """sum / count per bin; NaN where no pixel fell."""
    sums, counts = pairs[..., 0], pairs[..., 1]
    filled = counts > 0
    out = np.full(sums.shape, np.nan)
    np.divide(sums, counts, out=out, where=filled)
    return out


def _count(pairs: np.ndarray) -> np.ndarray:
    return pairs[..., 1].astype(np.int64)


def _raise_on_bad(total: np.ndarray, ngroups: int) -> np.ndarray:
    bad = total[-ngroups:]
    if bad.sum() > 0:
        raise RecipeError(
            f"{int(bad.sum())} pixel values are NaN or inf (rsm spice nonfinite='raise'); "
            "set nonfinite='mask' to skip and count them"
        )
    return total


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


def rsm(
    raw: xr.Dataset, spice: Mapping[str, Any], *, inputs: Mapping[str, xr.Dataset] | None = None
) -> xr.Dataset:
    """Cook a reciprocal space map (lazy). See the module docstring."""
    sp: RsmSpice = spice["rsm"]
    roi = tuple(sp.roi) if sp.roi else (0, sp.imageSize[0], 0, sp.imageSize[1])
    index_dim, frames = _frames(raw, sp, roi)
    n = frames.shape[0]
    setup = Setup(raw, sp, n)
    grid = build_grid(setup, sp)
    group, keys = _groups(raw, sp, n)
    ngroups = 1 if keys is None else len(keys)
    scale = np.ones(n)
    if sp.normalize_by is not None:
        with np.errstate(divide="ignore"):
            scale = 1.0 / _column(raw, sp.normalize_by, "normalize_by variable", n)
    mask = _mask(raw, sp, roi)
    # the detector's own mask: static pixels join the spice mask (the kernel skips them);
    # invalid values (gap/dead pixels in each frame) become NaN, left out and counted
    # in ``nonfinite`` like any non-finite pixel
    detector = detector_mask(raw, raw[sp.frames])
    if detector.pixels is not None:
        pixels = detector.pixels
        if pixels.shape == tuple(sp.imageSize) and pixels.shape != mask.shape:
            pixels = pixels[roi[0] : roi[1], roi[2] : roi[3]]
        mask = np.ascontiguousarray(mask | pixels)
    frames = masked(frames, detector, pixels=False)
    if grid.nbins >= 2**31:
        raise RecipeError(f"the grid has {grid.nbins} bins; keep it below 2**31 (reduce qsize)")

    nd = len(grid.dims)
    rows = [Q_DIMS.index(d) for d in grid.dims]
    params = np.concatenate(
        [
            setup.a[:, rows, :].reshape(n, nd * 3),
            setup.b[:, rows],
            scale[:, None],
            group[:, None].astype(float),
        ],
        axis=1,
    )
    total = _total(
        frames,
        params,
        mask,
        ngroups,
        nd=nd,
        nbins=grid.nbins,
        units=grid.bin_units(),
        dirs_key=setup.dirs_key,
    )
    if sp.nonfinite == "raise":
        total = total.map_blocks(_raise_on_bad, ngroups, dtype=total.dtype)
    nb = grid.nbins
    shape = (ngroups, *grid.sizes)
    pairs = total[: 2 * ngroups * nb].reshape((*shape, 2))
    intensity = pairs.map_blocks(_mean, drop_axis=pairs.ndim - 1, dtype=np.float64)
    counts = pairs.map_blocks(_count, drop_axis=pairs.ndim - 1, dtype=np.int64)
    bad = total[2 * ngroups * nb :].astype(np.int64)

    coords: dict[str, Any] = {}
    for i, dim in enumerate(grid.dims):
        coords[dim] = xr.Variable(
            dim,
            grid.centres(i),
            attrs={
                "units": Q_UNITS,
                "long_name": f"Q_{dim[1]}",
                "qmin": grid.lo[i],
                "qmax": grid.hi[i],
            },
        )
    if keys is None:
        dims = grid.dims
        intensity, counts, bad = intensity[0], counts[0], bad[0]
    else:
        gdim = sp.group_by
        dims = (gdim, *grid.dims)
        coords[gdim] = xr.Variable(gdim, keys, attrs=dict(raw[sp.group_by].attrs))
        intensity, counts = intensity.rechunk({0: 1}), counts.rechunk({0: 1})
        bad = bad.rechunk(1)
    out = xr.Dataset(
        {
            "intensity": xr.Variable(
                dims,
                intensity,
                attrs={
                    "long_name": "intensity (mean pixel value per bin)",
                    "normalized_by": sp.normalize_by or "",
                },
            ),
            "counts": xr.Variable(dims, counts, attrs={"long_name": "pixels per bin"}),
            "nonfinite": xr.Variable(
                dims[:1] if keys is not None else (),
                bad,
                attrs={
                    "long_name": "pixels skipped as NaN or inf",
                },
            ),
        },
        coords=coords,
        attrs={
            "grid_rule": "xrayutilities Gridder: centres lo + i*(hi-lo)/(n-1); a pixel with "
            "lo <= q <= hi goes to bin rint((q-lo)/step); intensity = sum/count, NaN if empty",
            "frames_used": n,
            "index_dim": index_dim,
            **({"mask": detector.text} if detector.text else {}),
        },
    )
    return out


def _outputs() -> tuple[OutputSpec, ...]:
    chunks = {"<group_by>": 1, "<dims>": -1}
    return (
        OutputSpec(
            "intensity",
            ("<group_by>", "<dims>"),
            chunks,
            "float64",
            "mean pixel value per Q bin (NaN where no pixel fell)",
        ),
        OutputSpec("counts", ("<group_by>", "<dims>"), chunks, "int64", "pixels per Q bin"),
        OutputSpec(
            "nonfinite",
            ("<group_by>",),
            {"<group_by>": 1},
            "int64",
            "pixels skipped because they were NaN or inf",
        ),
    )


RECIPE = Recipe(
    name="rsm",
    version=VERSION,
    spice_types=("rsm",),
    spice_models={"rsm": RsmSpice},
    func=rsm,
    outputs=_outputs(),
    description="reciprocal space map of an area-detector angle scan (Q grid, per group)",
)
