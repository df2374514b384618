"""Quicklook PNGs of cooked reciprocal space maps (for the Prefect UI and notebooks).

One panel per group (up to ``max_panels``), log colour scale, Q axes labelled in 1/Å.
3-D maps are projected onto two Q axes by summing the third over the bins that hold
data; by default the axis with the narrowest Q span is summed out (for a specular rocking
scan that keeps the in-plane/out-of-plane map). Matplotlib's Agg backend is used
directly, so no display and no global pyplot state are involved.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import xarray as xr

from basinflow.errors import RecipeError
from basinflow.recipes.grid import Q_DIMS


def _projection_axes(da_: xr.DataArray, axes: Sequence[str] | None) -> tuple[str, str]:
    qdims = [d for d in da_.dims if d in Q_DIMS]
    if axes is not None:
        axes = tuple(axes)
        if len(axes) != 2 or not set(axes) <= set(qdims):
            raise RecipeError(f"quicklook axes must be two of {qdims}, got {list(axes)}")
        return axes  # type: ignore[return-value]
    if len(qdims) == 2:
        return qdims[0], qdims[1]
    if len(qdims) != 3:
        raise RecipeError(f"quicklook needs a 2-D or 3-D Q map, got dims {list(da_.dims)}")
    spans = {d: float(np.ptp(da_[d].values)) if da_[d].size > 1 else 0.0 for d in qdims}
    drop = min(qdims, key=lambda d: spans[d])
    keep = [d for d in qdims if d != drop]
    return keep[0], keep[1]


def quicklook(
    cooked: xr.Dataset,
    *,
    variable: str = "intensity",
    axes: Sequence[str] | None = None,
    max_panels: int = 6,
    dpi: int = 90,
) -> bytes:
    """PNG bytes showing ``cooked[variable]`` (an ``rsm`` result) on a log colour scale."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    if variable not in cooked:
        raise RecipeError(f"quicklook: the cooked data has no variable {variable!r}")
    data = cooked[variable]
    x, y = _projection_axes(data, axes)
    extra_q = [d for d in data.dims if d in Q_DIMS and d not in (x, y)]
    if extra_q:
        data = data.sum(extra_q, skipna=True, min_count=1)
    groups = [d for d in data.dims if d not in (x, y)]
    if len(groups) > 1:
        raise RecipeError(f"quicklook shows one group dim, got {groups}")
    data = data.transpose(*groups, y, x).compute()
    group = groups[0] if groups else None
    n = data.sizes[group] if group else 1
    shown = min(n, max_panels)
    values = np.asarray(data.values, dtype=float).reshape(n, data.sizes[y], data.sizes[x])
    positive = values[np.isfinite(values) & (values > 0)]
    norm = None
    if positive.size:
        vmin, vmax = float(positive.min()), float(positive.max())
        norm = LogNorm(vmin=vmin, vmax=vmax if vmax > vmin else vmin * 10)

    cols = min(shown, 3)
    rows = math.ceil(shown / cols)
    # fixed margins, not layout="constrained": its text measurements were 40 % of a
    # quicklook's time, and a cook run draws several (B5)
    width, height = 4.2 * cols, 3.6 * rows
    fig = Figure(figsize=(width, height), dpi=dpi)
    fig.subplots_adjust(
        left=0.75 / width,
        right=1 - 0.3 / width,
        bottom=0.6 / height,
        top=1 - (0.75 if n > shown else 0.4) / height,
        wspace=0.35,
        hspace=0.5,
    )
    FigureCanvasAgg(fig)
    xs, ys = data[x].values, data[y].values
    mappable = None
    for k in range(shown):
        ax = fig.add_subplot(rows, cols, k + 1)
        img = np.where(values[k] > 0, values[k], np.nan)
        mappable = ax.pcolormesh(xs, ys, img, norm=norm, shading="nearest", cmap="viridis")
        ax.set_xlabel(f"{x} (1/Å)")
        ax.set_ylabel(f"{y} (1/Å)")
        if group:
            value = data[group].values[k]
            units = data[group].attrs.get("units", "")
            text = f"{value:g}" if isinstance(value, int | float | np.number) else str(value)
            ax.set_title(f"{group} = {text} {units}".strip())
    if mappable is not None and norm is not None:
        fig.colorbar(mappable, ax=fig.axes, label=variable, shrink=0.9)
    if n > shown:
        fig.suptitle(f"first {shown} of {n} {group} values")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
