"""Lay out a referrer file.

::

    /                      NXroot; basinflow_referrer = format version; default = "entry"
      <cooked variables>   netCDF-4 style (dimension scales): xarray/h5netcdf read them as is
    /entry                 NXentry, default = "data"
    /entry/data            NXdata: signal, axes; hard links to the cooked variables
    /entry/raw/<var>       relative ExternalLinks into local file basins (for h5py, silx, h5web)
    /basins/<key>          one JSON basin definition each (key = stable hash of it)
    /basinmaps/basinmapN   int64 index arrays of mapped basins
    /basin_data/<name>/    internal basins (e.g. one dark frame shared by many frames)
    /provenance/document   JSON: recipe, version, spice documents, input pins, mask, packages,
                           run id (recipe, version, run id and mask also as attributes)

The root attribute ``basinflow_dims`` (JSON) records the referrer's size along each
basin dimension (``{"index": 44}``), against which basin maps and ``same`` basins are
checked when opening.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from basinflow.errors import OutputError
from basinflow.storage.referrer.basins import Basin, posix_rel
from basinflow.storage.writer import WriteStats, write_attrs, write_dataset

FORMAT_VERSION = "1"
MARKER = "basinflow_referrer"


def pick_signal(ds: Any) -> str | None:
    """The variable NeXus viewers plot: the data variable with most dims, then most values."""
    names = list(ds.data_vars)
    if not names:
        return None
    return max(names, key=lambda n: (ds[n].ndim, ds[n].size, -names.index(n)))


def write_referrer(
    path: str,
    cooked: Any,
    *,
    referrer_url: str,
    basins: Sequence[Basin] = (),
    basinmaps: Mapping[str, np.ndarray] | None = None,
    internal: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    dims: Mapping[str, int] | None = None,
    signal: str | None = None,
    strict: bool = False,
    level: int = 1,
) -> WriteStats:
    """Write a referrer to the local ``path`` (a temporary name; see :mod:`commit`).

    ``referrer_url`` is the final URL, used to make relative ExternalLinks. ``internal``
    maps an internal basin's name to the (small) Dataset stored under ``/basin_data``.
    """
    basinmaps = dict(basinmaps or {})
    for b in basins:
        if b.mapping != "same" and b.mapping not in basinmaps:
            raise OutputError(f"basin {b.name!r} uses {b.mapping!r} but no such map was given")
    with h5py.File(path, "w", libver=("v110", "latest")) as f:
        f.attrs[MARKER] = FORMAT_VERSION
        f.attrs["NX_class"] = "NXroot"
        f.attrs["default"] = "entry"
        f.attrs["basinflow_dims"] = json.dumps(dict(dims or {}), sort_keys=True)
        stats = write_dataset(f, cooked, strict=strict, level=level)
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        _nxdata(f, entry, cooked, signal or pick_signal(cooked))
        raw = None
        for b in basins:
            if b.type != "file" or not b.links or not b.paths:
                continue
            rel = b.paths[0]
            if raw is None:
                raw = entry.create_group("raw")
                raw.attrs["NX_class"] = "NXcollection"
            for var, target in b.links.items():
                link = var if var not in raw else f"{b.name}_{var}"
                raw[link] = h5py.ExternalLink(rel, target)
        g = f.create_group("basins")
        for b in basins:
            g.create_dataset(b.key, data=b.to_json())
        if basinmaps:
            m = f.create_group("basinmaps")
            for name, values in basinmaps.items():
                m.create_dataset(name, data=np.asarray(values, dtype=np.int64))
        if internal:
            data = f.create_group("basin_data")
            for name, ids in internal.items():
                stats.add(write_dataset(data.create_group(name), ids, level=level))
        prov = f.create_group("provenance")
        prov.create_dataset("document", data=json.dumps(provenance or {}, default=str, indent=1))
        # the few facts a plain HDF5 tool shows without parsing the JSON (the mask: which
        # pixels were left out, so two outputs of the same frames can be told apart)
        for k in ("recipe", "recipe_version", "flow_run_id", "mask"):
            if (provenance or {}).get(k) is not None:
                prov.attrs[k] = str(provenance[k])
    return stats


def _nxdata(f: h5py.File, entry: h5py.Group, ds: Any, signal: str | None) -> None:
    if signal is None:
        return
    entry.attrs["default"] = "data"
    nx = entry.create_group("data")
    nx.attrs["NX_class"] = "NXdata"
    nx.attrs["signal"] = signal
    nx[signal] = f[signal]
    axes = []
    for dim in ds[signal].dims:
        if dim in ds.coords and ds.coords[dim].dims == (dim,):
            nx[dim] = f[dim]
            axes.append(str(dim))
        else:
            axes.append(".")
    nx.attrs["axes"] = axes
    write_attrs(nx, {"title": ds.attrs.get("recipe", signal)})


def internal_basin(
    name: str,
    variables: Sequence[str],
    *,
    mapping: str = "same",
    dim: str = "index",
    order: int = 0,
    dims: Mapping[str, Sequence[str]] | None = None,
) -> Basin:
    """Definition of an internal basin whose data is stored under ``/basin_data/<name>``."""
    return Basin(
        name=name,
        type="internal",
        layout="datasets",
        datasets={
            v: {"path": f"/basin_data/{name}/{v}", "dims": list((dims or {}).get(v, ()))}
            for v in variables
        },
        mapping=mapping,
        dim=dim,
        order=order,
    )


__all__ = [
    "FORMAT_VERSION",
    "MARKER",
    "internal_basin",
    "pick_signal",
    "posix_rel",
    "write_referrer",
]
