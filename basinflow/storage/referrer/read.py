"""Open a referrer as one lazy ``xarray.Dataset``: innate variables plus basin variables.

Priority (the first source of a variable name wins; later ones with that name are
hidden, and listed in ``ds.encoding["shadowed"]``):

1. innate variables (stored in the referrer itself);
2. internal basins (``/basin_data``);
3. file basins (local paths; a relative path is resolved against the referrer's
   directory, then the absolute path recorded when it was written);
4. remote basins (``http(s)://``, ``s3://``);

and, within one type, the order the basins were written in (``order``, then name).
Within a basin, locations are tried in the order listed; the first trusted one that
exists is used. Every location is checked by :mod:`trust` before anything is opened.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import h5py
import numpy as np
import xarray as xr

from basinflow.errors import (
    BasinCycleError,
    BasinError,
    BasinUnavailableError,
    LayoutError,
    MissingBasinWarning,
    NotFound,
    NotHDF5Error,
    ReferrerError,
    StaleBasinError,
    StaleBasinWarning,
    UntrustedBasinError,
)
from basinflow.storage import fs
from basinflow.storage.referrer.basins import Basin
from basinflow.storage.referrer.trust import Trust, normalize
from basinflow.storage.referrer.write import MARKER


@dataclass
class ReferrerMeta:
    """Everything in a referrer except variable data (one small metadata read)."""

    url: str
    basins: list[Basin]
    basinmaps: dict[str, np.ndarray]
    provenance: dict[str, Any]
    dims: dict[str, int]
    version: str


@dataclass
class Resolution:
    """How one basin was resolved (for ``inspect`` and ``ds.encoding['basins']``)."""

    basin: Basin
    tried: list[tuple[str, str]] = field(default_factory=list)  # (location, outcome)
    location: str | None = None
    status: str = "unresolved"  # ok | missing | untrusted | stale | error
    message: str = ""


# --- opening files ------------------------------------------------------
def _open_h5(url: str, storage_options: Mapping[str, Any] | None, what: str):
    path = fs.local_path(url)
    try:
        if path is not None:
            if not os.path.exists(path):
                raise FileNotFoundError(path)
            if not h5py.is_hdf5(path):
                raise NotHDF5Error(f"{what} {url!r} is not an HDF5 file (wrong signature)")
            return h5py.File(path, "r"), None
        fobj = fs.open_input(url, storage_options)
        try:
            return h5py.File(fobj, "r"), fobj
        except Exception:
            fobj.close()
            raise
    except NotHDF5Error:
        raise
    except FileNotFoundError as exc:
        raise BasinUnavailableError(f"{what} {url!r} does not exist") from exc
    except NotFound as exc:
        raise BasinUnavailableError(f"{what} {url!r} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise NotHDF5Error(
            f"{what} {url!r} is not a readable HDF5 file (truncated or another format): {exc}"
        ) from exc


def read_meta(url: str, storage_options: Mapping[str, Any] | None = None) -> ReferrerMeta:
    """Basins, maps, provenance and dims of a referrer, without touching variable data."""
    try:
        f, fobj = _open_h5(url, storage_options, "referrer")
    except NotHDF5Error as exc:
        raise ReferrerError(f"{exc}; it is not a basinflow referrer or it is truncated") from exc
    except BasinUnavailableError as exc:
        raise NotFound(str(exc)) from exc
    try:
        if MARKER not in f.attrs:
            raise ReferrerError(
                f"{url!r} is an HDF5 file but not a basinflow referrer (no {MARKER!r} attribute)"
            )
        basins = [
            Basin.from_json(_text(f["basins"][k][()]), f"{url}#/basins/{k}")
            for k in (f.get("basins", ()))
        ]
        maps = {k: np.asarray(v[()]) for k, v in f["basinmaps"].items()} if "basinmaps" in f else {}
        prov = json.loads(_text(f["provenance/document"][()])) if "provenance" in f else {}
        dims = json.loads(_text(f.attrs.get("basinflow_dims", "{}")))
        return ReferrerMeta(url, basins, maps, prov, dims, _text(f.attrs[MARKER]))
    except (KeyError, OSError, ValueError) as exc:
        if isinstance(exc, ReferrerError):
            raise
        raise ReferrerError(f"{url!r}: malformed or truncated referrer: {exc}") from exc
    finally:
        f.close()
        if fobj is not None:
            fobj.close()


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _open_xr(url: str, storage_options: Mapping[str, Any] | None, group: str | None = None):
    path = fs.local_path(url)
    target = path if path is not None else fs.open_input(url, storage_options)
    try:
        ds = xr.open_dataset(target, engine="h5netcdf", chunks={}, group=group)
    except Exception as exc:  # truncated data, a foreign file, ...
        raise ReferrerError(f"{url!r}: cannot read its variables: {exc}") from exc
    return ds


# --- the public entry point ------------------------------------------------------
def open_referrer(
    url: str,
    *,
    trusted: Iterable[Any] = (),
    trusted_hosts: Iterable[str] = (),
    storage_options: Mapping[str, Any] | None = None,
    host_options: Mapping[str, Mapping[str, Any]] | None = None,
    check_pins: bool = True,
    missing: str = "raise",
    trust_referrer_dir: bool = True,
) -> xr.Dataset:
    """Open a referrer lazily with its basin variables.

    Parameters
    ----------
    url
        The referrer (``file://``, a path, ``http(s)://`` or ``s3://``).
    trusted, trusted_hosts
        Roots (paths, URLs, ``(root, storage_options)`` pairs or ``Repository`` objects)
        and hosts basins may resolve to; see :mod:`basinflow.storage.referrer.trust`.
    storage_options
        fsspec options for the referrer's own location (and basins next to it).
    host_options
        ``{"http://host:port": {...}}`` options for trusted hosts.
    check_pins
        ``False`` reads basins whose pin no longer matches, with a
        :class:`~basinflow.errors.StaleBasinWarning`.
    missing
        ``"raise"`` (default) or ``"warn"``: skip unavailable basins with a
        :class:`~basinflow.errors.MissingBasinWarning`.

    Raises
    ------
    ReferrerError, StaleBasinError, BasinUnavailableError, UntrustedBasinError,
    BasinCycleError
    """
    if missing not in ("raise", "warn"):
        raise ValueError("missing must be 'raise' or 'warn'")
    url = _as_url(url)
    trust = Trust.build(
        trusted,
        trusted_hosts,
        referrer_url=url,
        storage_options=storage_options,
        host_options=host_options,
        trust_referrer_dir=trust_referrer_dir,
    )
    return _open(url, dict(storage_options or {}), trust, check_pins, missing, ())


def _as_url(url: str) -> str:
    if "://" in url:
        return url
    return "file://" + os.path.abspath(os.path.expanduser(url))


def _open(
    url: str,
    options: dict[str, Any],
    trust: Trust,
    check_pins: bool,
    missing: str,
    stack: tuple[str, ...],
) -> xr.Dataset:
    ident = normalize(url)
    if ident in stack:
        chain = " -> ".join([*stack, ident])
        raise BasinCycleError(f"basins refer to each other in a cycle: {chain}")
    stack = (*stack, ident)
    meta = read_meta(url, options)
    ds = _open_xr(url, options)
    shadowed: list[str] = []
    report: list[Resolution] = []
    for basin in sorted(meta.basins, key=lambda b: b.priority):
        res = resolve(basin, meta, trust, check_pins=check_pins, options=options)
        report.append(res)
        if res.status == "missing":
            if missing == "warn":
                warnings.warn(res.message, MissingBasinWarning, stacklevel=3)
                continue
            raise BasinUnavailableError(res.message)
        if res.status == "untrusted":
            raise UntrustedBasinError(res.message)
        if res.status == "stale":
            if check_pins:
                raise StaleBasinError(res.message)
            warnings.warn(res.message, StaleBasinWarning, stacklevel=3)
        src = _load(basin, res.location, meta, trust, check_pins, missing, stack)
        src = _select(basin, src, meta, {**ds.sizes, **meta.dims})
        for name in src.variables:
            if name in ds.variables or (name in src.dims and name not in src.coords):
                if name not in ds.dims:
                    shadowed.append(f"{basin.name}:{name}")
                continue
            try:
                ds[name] = src.variables[name]
            except ValueError as exc:
                raise BasinError(
                    f"basin {basin.name!r} of {url!r}: variable {name!r} does not fit the "
                    f"referrer ({exc}); a basin of different length needs a basinmap"
                ) from exc
    ds.attrs["provenance"] = json.dumps(meta.provenance, default=str)
    ds.encoding["basins"] = report
    ds.encoding["shadowed"] = shadowed
    ds.encoding["source"] = url
    return ds


# --- resolving one basin ------------------------------------------------------
def resolve(
    basin: Basin,
    meta: ReferrerMeta,
    trust: Trust,
    *,
    check_pins: bool = True,
    options: Mapping[str, Any] | None = None,
) -> Resolution:
    """Pick a location: trusted first (checked before any I/O), then existing, then pinned."""
    res = Resolution(basin)
    if basin.type == "internal":
        res.location, res.status = meta.url, "ok"
        res.tried.append((meta.url, "internal"))
        return res
    allowed: list[tuple[str, dict[str, Any]]] = []
    for loc in basin.locations(meta.url):
        try:
            allowed.append((loc, trust.check(loc)))
        except UntrustedBasinError:
            res.tried.append((loc, "untrusted (not opened)"))
    if not allowed:
        res.status = "untrusted"
        res.message = (
            f"basin {basin.name!r} of {meta.url!r}: every location is untrusted and none "
            f"was opened: {', '.join(loc for loc, _ in res.tried) or 'no locations'}; trusted "
            f"roots: {', '.join(r.root for r in trust.roots) or 'none'}; pass trusted=[...] "
            "if you trust them"
        )
        return res
    for loc, opts in allowed:
        try:
            found = fs.exists(loc, opts)
        except Exception as exc:  # noqa: BLE001 - an unreachable host counts as missing
            res.tried.append((loc, f"unreachable ({exc})"))
            continue
        if not found:
            res.tried.append((loc, "missing"))
            continue
        res.location = loc
        res.tried.append((loc, "found"))
        break
    if res.location is None:
        res.status = "missing"
        res.message = (
            f"basin {basin.name!r} ({basin.identifier}) of {meta.url!r} is unavailable; "
            "tried: " + "; ".join(f"{loc} ({why})" for loc, why in res.tried)
        )
        return res
    res.status = "ok"
    if basin.pin:
        opts = trust.check(res.location)
        pin_url = res.location
        if basin.pin_file:
            pin_url = res.location.rstrip("/") + "/" + basin.pin_file
        try:
            ok = fs.pin_matches(basin.pin, pin_url, opts)
        except Exception as exc:  # noqa: BLE001
            ok, why = False, str(exc)
        else:
            why = ""
        if not ok:
            res.status = "stale"
            res.message = (
                f"basin {basin.name!r} at {res.location!r} no longer matches the pin recorded "
                f"when {meta.url!r} was written (recorded {basin.pin}){' ' + why if why else ''}; "
                "re-cook the output, or open with check_pins=False to read it anyway"
            )
    return res


def _load(
    basin: Basin,
    location: str,
    meta: ReferrerMeta,
    trust: Trust,
    check_pins: bool,
    missing: str,
    stack: tuple[str, ...],
) -> xr.Dataset:
    opts = trust.check(location) if basin.type != "internal" else {}
    what = f"basin {basin.name!r} ({location})"
    try:
        if basin.type == "internal":
            return _open_xr(location, opts, group=f"basin_data/{basin.name}")
        if basin.layout == "referrer":
            try:
                return _open(location, opts, trust, check_pins, missing, stack)
            except ReferrerError as exc:
                if isinstance(exc, BasinError):
                    raise
                raise BasinFormatError(f"{what}: {exc}") from exc
        if basin.format in ("hdf5", "http", "s3") and basin.layout != "tiff":
            _check_hdf5(location, opts, what)
        if basin.layout == "datasets":
            return _datasets(basin, location, opts)
        from basinflow.storage import layouts

        cls = layouts.layout_class(basin.layout)
        content = cls().read(location, basin.fragment, opts)
        if hasattr(content.frames, "with_index"):  # direct chunk reads, as Scan.raw does
            from dataclasses import replace

            content = replace(content, frames=content.frames.with_index())
        return layouts.to_dataset(content, {"url": location})
    except NotHDF5Error as exc:
        raise BasinFormatError(f"{what} is not HDF5: {exc}") from exc
    except LayoutError as exc:
        raise BasinFormatError(f"{what} cannot be read: {exc}") from exc


def _check_hdf5(url: str, opts: Mapping[str, Any], what: str) -> None:
    f, fobj = _open_h5(url, opts, what)
    f.close()
    if fobj is not None:
        fobj.close()


def _datasets(basin: Basin, url: str, opts: Mapping[str, Any]) -> xr.Dataset:
    from basinflow.storage.hdf5 import H5Array, get_object, open_h5

    handle = open_h5(url, opts)
    arrays = {}
    try:
        for name, spec in basin.datasets.items():
            h = get_object(handle, spec["path"], "dataset")
            dims = spec.get("dims") or [f"{name}_dim{i}" for i in range(h.ndim)]
            arrays[name] = (dims, H5Array.from_dataset(url, h, opts), bool(h.chunks))
    finally:
        handle.close()
    variables = {}
    for name, (dims, arr, chunked) in arrays.items():
        arr = arr.with_index()  # direct chunk reads where possible (no libhdf5 remotely)
        chunks = arr.storage_chunks if chunked else "auto"
        variables[name] = (dims, da.from_array(arr, chunks=chunks, lock=False, asarray=True))
    return xr.Dataset(variables)


def _select(
    basin: Basin, src: xr.Dataset, meta: ReferrerMeta, sizes: Mapping[str, int]
) -> xr.Dataset:
    """Keep the basin's variables and map its ``dim`` onto the referrer's."""
    if basin.variables is not None:
        keep = [v for v in basin.variables if v in src.variables]
        absent = sorted(set(basin.variables) - set(src.variables))
        if absent:
            raise BasinError(
                f"basin {basin.name!r} of {meta.url!r} lacks variables {absent}; "
                f"it has {sorted(map(str, src.variables))}"
            )
        src = src[[v for v in keep if v in src.data_vars]].assign_coords(
            {v: src[v] for v in keep if v in src.coords}
        )
    dim = basin.dim
    if dim not in src.dims:
        return src
    want = sizes.get(dim)
    if basin.mapping == "same":
        if want is not None and src.sizes[dim] != want:
            raise BasinError(
                f"basin {basin.name!r} of {meta.url!r} has {src.sizes[dim]} along {dim!r}, "
                f"the referrer {want}; a basin of different length needs a basinmap"
            )
        return src
    if basin.mapping not in meta.basinmaps:
        raise ReferrerError(f"{meta.url!r}: basin {basin.name!r} needs missing {basin.mapping!r}")
    bmap = meta.basinmaps[basin.mapping]
    if bmap.ndim != 1 or (want is not None and len(bmap) != want):
        raise ReferrerError(
            f"{meta.url!r}: {basin.mapping} of basin {basin.name!r} has shape {bmap.shape}; "
            f"the referrer has {want} along {dim!r}"
        )
    n = src.sizes[dim]
    if len(bmap) and (bmap.min() < 0 or bmap.max() >= n):
        raise ReferrerError(
            f"{meta.url!r}: {basin.mapping} of basin {basin.name!r} points outside the basin "
            f"(values {int(bmap.min())}..{int(bmap.max())}, basin has {n} along {dim!r})"
        )
    out = src.isel({dim: bmap})
    if dim in out.coords:
        out = out.drop_vars(dim)
    return out


class BasinFormatError(BasinError, NotHDF5Error):
    """A basin exists but is not a file of its declared format (e.g. not HDF5)."""


__all__ = [
    "BasinFormatError",
    "ReferrerMeta",
    "Resolution",
    "open_referrer",
    "read_meta",
    "resolve",
]
