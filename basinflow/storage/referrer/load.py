"""Resolving a basin to one location, and loading its variables from there.

:func:`resolve` picks a location: trusted first (checked before any I/O), then existing
(an HTTP redirect is followed, up to :data:`MAX_REDIRECTS`, only to a location the trust
allows), then pinned. :func:`load` reads the variables of a basin that is not a referrer
(those are opened recursively by :mod:`~basinflow.storage.referrer.open`), after the
:mod:`~basinflow.storage.referrer.audit`; :func:`select` keeps the basin's variables and
maps its dimension onto the referrer's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import xarray as xr

from basinflow.errors import (
    BasinError,
    Error,
    LayoutError,
    NotHDF5Error,
    RedirectRefusedError,
    ReferrerError,
    UntrustedBasinError,
)
from basinflow.storage import fs, pins
from basinflow.storage.referrer.audit import audit, check_directory
from basinflow.storage.referrer.basins import Basin
from basinflow.storage.referrer.meta import ReferrerMeta, open_h5, open_xr
from basinflow.storage.referrer.trust import Trust

#: most HTTP redirects followed (each checked by the trust first) to resolve one location
MAX_REDIRECTS = 5


@dataclass
class Resolution:
    """How one basin was resolved (for ``inspect`` and ``ds.encoding['basins']``)."""

    basin: Basin
    tried: list[tuple[str, str]] = field(default_factory=list)  # (location, outcome)
    location: str | None = None
    status: str = "unresolved"  # ok | missing | untrusted | stale | error
    message: str = ""

    @property
    def tried_text(self) -> str:
        """``"location (outcome); ..."`` for messages."""
        return "; ".join(f"{loc} ({why})" for loc, why in self.tried)


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
        except UntrustedBasinError as exc:
            res.tried.append((loc, _refused(exc)))
    if not allowed:
        res.status = "untrusted"
        res.message = (
            f"basin {basin.name!r} of {meta.url!r}: every location is untrusted and none "
            f"was opened: {res.tried_text or 'none'}; "
            f"trusted roots: {', '.join(r.root for r in trust.roots) or 'none'}; pass "
            "trusted=[...] if you trust them"
        )
        return res
    redirects: list[str] = []  # refused: to a location the trust refuses
    for loc, opts in allowed:
        try:
            res.location = _probe(basin, meta, loc, opts, trust, res.tried)
        except UntrustedBasinError as exc:
            redirects.append(str(exc))
            continue
        if res.location is not None:
            break
    if res.location is None and redirects:
        res.status = "untrusted"
        res.message = "; ".join(redirects)
        if len(res.tried) > len(redirects):  # other locations too: say what became of them
            res.message += f" (tried: {res.tried_text})"
        return res
    if res.location is None:
        res.status = "missing"
        res.message = (
            f"basin {basin.name!r} ({basin.identifier}) of {meta.url!r} is unavailable; "
            f"tried: {res.tried_text}; put the file back, or open with missing='warn' to read "
            "the rest"
        )
        return res
    res.status = "ok"
    if basin.pin:
        pin_url = res.location
        if basin.pin_file:
            pin_url = res.location.rstrip("/") + "/" + basin.pin_file
        try:
            opts = trust.check(pin_url, what=f"basin {basin.name!r} pin file")
        except UntrustedBasinError as exc:
            res.tried.append((pin_url, _refused(exc)))
            res.status, res.location, res.message = "untrusted", None, f"{meta.url!r}: {exc}"
            return res
        sources = basin.pin.get("sources") or {}
        checks = [(pin_url, opts, basin.pin)]
        for url, recorded in sources.items() if isinstance(sources, dict) else ():
            try:  # the files the frames live in (VDS/external-link sources): trust first
                url_opts = trust.check(url, what=f"basin {basin.name!r} source")
            except UntrustedBasinError as exc:
                res.tried.append((url, _refused(exc)))
                res.status, res.location, res.message = "untrusted", None, f"{meta.url!r}: {exc}"
                return res
            checks.append((url, url_opts, recorded))
        try:
            ok, why = True, ""
            for url, url_opts, recorded in checks:
                if not isinstance(recorded, dict):
                    ok, why = False, f"its pin for {url!r} is malformed"
                    break
                ok, why = pins.verdict(recorded, url, url_opts)
                if not ok:
                    why = why if url == pin_url else f"its source {url!r}: {why}"
                    break
        except RedirectRefusedError as exc:
            res.tried.append((pin_url, f"redirected to {exc.target} (not followed)"))
            res.status, res.location = "untrusted", None
            res.message = f"basin {basin.name!r} of {meta.url!r}: its pin file {exc}"
            return res
        except Exception as exc:  # noqa: BLE001
            ok, why = False, str(exc)
        if not ok:
            res.status = "stale"
            res.message = (
                f"basin {basin.name!r} at {res.location!r} no longer matches the pin recorded "
                f"when {meta.url!r} was written: {why} (recorded {basin.pin}); "
                "re-cook the output, or open with check_pins=False to read it anyway"
            )
    return res


def _refused(exc: UntrustedBasinError) -> str:
    """What ``Resolution.tried`` records for a location the trust refused."""
    return f"untrusted: {exc.reason} (not opened)" if exc.reason else "untrusted (not opened)"


def _probe(
    basin: Basin,
    meta: ReferrerMeta,
    loc: str,
    opts: dict[str, Any],
    trust: Trust,
    tried: list[tuple[str, str]],
) -> str | None:
    """The location that holds the basin if ``loc`` exists (``loc`` itself, or where its
    HTTP redirects lead), else ``None``; each step is recorded in ``tried``.

    Requests for basins follow no redirects by themselves (:mod:`trust` turns them off):
    a redirect's target is checked like any other location first, then requested with
    its own options (a host's credentials never follow a redirect to another host);
    :class:`UntrustedBasinError` when the trust refuses it (nothing was sent there)."""
    seen = [loc]
    while True:
        try:
            found = fs.exists(loc, opts)
        except RedirectRefusedError as redirect:
            target = redirect.target
            if target is None:
                tried.append((loc, f"HTTP {redirect.status} redirect without a Location"))
                return None
            if target in seen or len(seen) > MAX_REDIRECTS:
                tried.append((loc, f"redirect loop or more than {MAX_REDIRECTS} redirects"))
                return None
            try:
                opts = trust.check(target, what=f"basin {basin.name!r} redirect target")
            except UntrustedBasinError as exc:
                tried.append((loc, f"redirected to {target}, {_refused(exc)}"))
                raise UntrustedBasinError(
                    f"basin {basin.name!r} of {meta.url!r}: {loc!r} answered HTTP "
                    f"{redirect.status}, a redirect to {target!r}, which is untrusted "
                    f"({exc.reason}); the redirect was not followed and {target!r} was not "
                    "contacted. If you trust it, add its host to trusted_hosts=[...] (or a "
                    "root holding it to trusted=[...]); otherwise fix the referrer to name "
                    "the final location",
                    reason=f"redirected to an untrusted location ({exc.reason})",
                ) from None
            tried.append((loc, f"redirected (HTTP {redirect.status}) to {target}"))
            seen.append(target)
            loc = target
            continue
        except Exception as exc:  # noqa: BLE001 - an unreachable host counts as missing
            tried.append((loc, f"unreachable ({exc})"))
            return None
        tried.append((loc, "found" if found else "missing"))
        return loc if found else None


def load(basin: Basin, location: str, trust: Trust) -> xr.Dataset:
    """The variables of a basin that is not a referrer, read from ``location`` after the
    audit (internal basins from the referrer itself, ``location``)."""
    opts = trust.check(location) if basin.type != "internal" else {}
    what = f"basin {basin.name!r} ({location})"
    try:
        if basin.type == "internal":
            return open_xr(location, opts, group=f"basin_data/{basin.name}")
        if basin.format in ("hdf5", "http", "s3") and basin.layout != "tiff":
            check_hdf5(location, opts, what, trust)
        if basin.layout == "datasets":
            return _datasets(basin, location, opts)
        from basinflow.storage import layouts

        cls = layouts.layout_class(basin.layout)
        if cls.supports_directories:
            check_directory(location, trust, what)
        # the options the scan was read with: a frames path, detector or mask value the
        # repository configured reads the same data back (the file itself was audited)
        content = cls(**basin.options).read(location, basin.fragment, opts)
        if hasattr(content.frames, "with_index"):  # direct chunk reads, as Scan.raw does
            from dataclasses import replace

            content = replace(content, frames=content.frames.with_index())
        return layouts.to_dataset(content, {"url": location})
    except NotHDF5Error as exc:
        raise BasinFormatError(f"{what} is not HDF5: {exc}") from exc
    except LayoutError as exc:
        raise BasinFormatError(f"{what} cannot be read: {exc}") from exc


def _datasets(basin: Basin, url: str, opts: Mapping[str, Any]) -> xr.Dataset:
    from basinflow.storage.hdf5 import H5Array, get_object, open_h5

    handle = open_h5(url, opts)
    arrays = {}
    try:
        for name, spec in basin.datasets.items():
            h = get_object(handle, spec["path"], "dataset")
            dims = spec.get("dims") or [f"{name}_dim{i}" for i in range(h.ndim)]
            # the chunk index read through this handle: direct chunk reads where possible
            # (no libhdf5 remotely), without opening the file again per dataset
            arr = H5Array.from_dataset(url, h, opts, index=True)
            arrays[name] = (dims, arr, bool(h.chunks))
    finally:
        handle.close()
    variables = {}
    for name, (dims, arr, chunked) in arrays.items():
        chunks = arr.storage_chunks if chunked else "auto"
        variables[name] = (dims, da.from_array(arr, chunks=chunks, lock=False, asarray=True))
    return xr.Dataset(variables)


def select(
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


def check_hdf5(url: str, opts: Mapping[str, Any], what: str, trust: Any) -> None:
    """An HDF5 file, and none that would make libhdf5 open an untrusted file."""
    f, fobj = open_h5(url, opts, what)
    try:
        audit(f, url, trust, what=what)
    except Error:
        raise
    except (OSError, KeyError, ValueError, RuntimeError, RecursionError) as exc:
        # libhdf5 failing on the file's own metadata: damaged, or crafted to fail
        raise NotHDF5Error(
            f"{what}: {url!r} has HDF5 metadata that cannot be read ({exc}); it was not "
            "opened further: copy the file again from its source"
        ) from exc
    finally:
        f.close()
        if fobj is not None:
            fobj.close()


__all__ = [
    "MAX_REDIRECTS",
    "BasinFormatError",
    "Resolution",
    "load",
    "resolve",
    "select",
]
