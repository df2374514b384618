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
exists is used. Every location is checked by :mod:`trust` before anything is opened; an
HTTP redirect is followed (up to :data:`MAX_REDIRECTS`) only to a location the trust
allows, and the basin is then read from where it led (no request made afterwards
follows a redirect).

Hostile referrers
-----------------
A referrer may come from anyone, so beyond :mod:`trust`:

* HDF5 links are data too. libhdf5 follows an ``ExternalLink`` by opening a *local*
  file named in it (even from a file read over HTTP), and xarray follows every link in
  the group it opens. So the groups xarray opens (the root: innate variables; an
  internal basin's ``/basin_data/<name>``) and the referrer's metadata objects must be
  hard links, and every soft or external link a basin's dataset path or raw layout
  would follow is resolved the way libhdf5 resolves it and refused unless the file it
  opens is trusted (no external links at all in remote files).
* Cycles are found by file identity (device and inode locally), so an alias through a
  symlink, a hard link or ``..`` is the same referrer.
* Sizes are bounded by the limits in :mod:`basins` (``MAX_BASIN_DEPTH``,
  ``MAX_REFERRERS``, ``MAX_BASINS``, ``MAX_BASIN_JSON_BYTES``,
  ``MAX_BASINMAP_LENGTH``), checked from shapes and counts before anything large is
  read.
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
    BasinDepthError,
    BasinError,
    BasinLimitError,
    BasinUnavailableError,
    LayoutError,
    MissingBasinWarning,
    NotFound,
    NotHDF5Error,
    RedirectRefusedError,
    ReferrerError,
    StaleBasinError,
    StaleBasinWarning,
    UntrustedBasinError,
)
from basinflow.storage import fs
from basinflow.storage.referrer.basins import (
    DAMAGED,
    MAX_BASIN_DEPTH,
    MAX_BASIN_JSON_BYTES,
    MAX_BASINMAP_LENGTH,
    MAX_BASINS,
    MAX_PROVENANCE_BYTES,
    MAX_REFERRERS,
    Basin,
)
from basinflow.storage.referrer.h5links import audit, link_of
from basinflow.storage.referrer.trust import Trust, normalize
from basinflow.storage.referrer.write import MARKER

#: most HTTP redirects followed (each checked by the trust first) to resolve one location
MAX_REDIRECTS = 5


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

    @property
    def tried_text(self) -> str:
        """``"location (outcome); ..."`` for messages."""
        return "; ".join(f"{loc} ({why})" for loc, why in self.tried)


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
    except (NotHDF5Error, UntrustedBasinError):  # e.g. a redirect that was not followed
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
        raise ReferrerError(
            f"{exc}; it is not a basinflow referrer or it is truncated: re-cook it, or copy it "
            "again from its source"
        ) from exc
    except BasinUnavailableError as exc:
        raise NotFound(f"{exc}; check the path or URL") from exc
    try:
        if MARKER not in f.attrs:
            raise ReferrerError(
                f"{url!r} is an HDF5 file but not a basinflow referrer (no {MARKER!r} "
                "attribute); open raw scans with bf.Repository(...), or use h5py/xarray"
            )
        for name in f:  # xarray opens the root group: it must not lead out of the file
            _hard(f, name, url)
        dims = _dims(url, json.loads(_text(f.attrs.get("basinflow_dims", "{}"))))
        basins = []
        group = _hard(f, "basins", url, h5py.Group) if _has(f, "basins") else {}
        _count(url, "basin definitions", len(group))
        for k in group:
            text = _small_text(_hard(group, k, url, h5py.Dataset), url, MAX_BASIN_JSON_BYTES)
            basins.append(Basin.from_json(text, f"{url}#/basins/{k}"))
        for b in basins:
            if b.type == "internal":  # xarray opens /basin_data/<name>: links stay inside
                data = _hard(f, "basin_data", url, h5py.Group)
                own = _hard(data, b.name, url, h5py.Group)
                for name in own:
                    _hard(own, name, url)
        maps = _basinmaps(f, url, basins, dims)
        prov: Any = {}
        if _has(f, "provenance"):
            doc = _hard(_hard(f, "provenance", url, h5py.Group), "document", url, h5py.Dataset)
            prov = json.loads(_small_text(doc, url, MAX_PROVENANCE_BYTES))
            if not isinstance(prov, dict):
                raise ReferrerError(f"{url!r}: /provenance/document is not an object; {DAMAGED}")
        return ReferrerMeta(url, basins, maps, prov, dims, _text(f.attrs[MARKER]))
    except (KeyError, OSError, ValueError, TypeError, RecursionError) as exc:
        if isinstance(exc, ReferrerError):
            raise
        raise ReferrerError(f"{url!r}: malformed or truncated referrer: {exc}") from exc
    finally:
        f.close()
        if fobj is not None:
            fobj.close()


def _has(group: h5py.Group, name: str) -> bool:
    return link_of(group, name) is not None


def _hard(group: h5py.Group, name: str, url: str, kind: type | None = None) -> Any:
    """``group[name]`` when it is a hard link (to a ``kind``): never follows a soft or
    external link (libhdf5 would open the file an external link names, wherever it is)."""
    link = link_of(group, name)
    where = f"{group.name.rstrip('/')}/{name}"
    if link is None:
        raise ReferrerError(f"{url!r}: {where} is missing; {DAMAGED}")
    if link[0] != "hard":
        target = ":".join(link[1]) if isinstance(link[1], tuple) else link[1]
        raise ReferrerError(
            f"{url!r}: {where} is a {link[0]} link (to {target!r}); a referrer stores its "
            f"variables and metadata itself. It was not followed; {DAMAGED}"
        )
    obj = group[name]
    if kind is not None and not isinstance(obj, kind):
        raise ReferrerError(
            f"{url!r}: {where} is a {type(obj).__name__}, not a {kind.__name__}; {DAMAGED}"
        )
    if isinstance(obj, h5py.Dataset):
        dcpl = obj.id.get_create_plist()
        if dcpl.get_external_count() or (
            dcpl.get_layout() == h5py.h5d.VIRTUAL
            and any(dcpl.get_virtual_filename(i) != "." for i in range(dcpl.get_virtual_count()))
        ):
            raise ReferrerError(
                f"{url!r}: {where} keeps its data in another file (external storage or a "
                f"virtual dataset); a referrer stores its variables itself. It was not read; "
                f"{DAMAGED}"
            )
    return obj


def _count(url: str, what: str, n: int) -> None:
    if n > MAX_BASINS:
        raise BasinLimitError(
            f"{url!r} has {n} {what}, more than the limit of {MAX_BASINS} (MAX_BASINS); it "
            f"was refused before reading them (a referrer holds a few); {DAMAGED}"
        )


def _small_text(d: h5py.Dataset, url: str, limit: int) -> str:
    """A scalar string dataset's text, refused unread when its declared size is over
    ``limit`` (a variable-length string can only be read to be measured; its bytes are
    stored uncompressed, so it is no larger than the file)."""
    if d.shape != () or d.dtype.kind not in "OSU":
        raise ReferrerError(
            f"{url!r}: {d.name} is not a scalar string (shape {d.shape}); it was not read; "
            f"{DAMAGED}"
        )
    if d.dtype.kind in "SU" and d.dtype.itemsize > limit:
        raise BasinLimitError(
            f"{url!r}: {d.name} declares {d.dtype.itemsize} bytes, over the limit of {limit}; "
            f"it was not read; {DAMAGED}"
        )
    text = _text(d[()])
    if len(text) > limit:
        raise BasinLimitError(
            f"{url!r}: {d.name} holds {len(text)} characters, over the limit of {limit}; "
            f"it was not parsed; {DAMAGED}"
        )
    return text


def _dims(url: str, dims: Any) -> dict[str, int]:
    if not isinstance(dims, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in dims.items()
    ):
        raise ReferrerError(
            f"{url!r}: attribute basinflow_dims must map dimension names to sizes, not "
            f"{str(dims)[:80]!r}; {DAMAGED}"
        )
    return dims


def _basinmaps(
    f: h5py.File, url: str, basins: list[Basin], dims: Mapping[str, int]
) -> dict[str, np.ndarray]:
    """The basin maps, each checked from its shape (against the referrer's length along the
    dimension of the basin using it, and :data:`MAX_BASINMAP_LENGTH`) before it is read."""
    if not _has(f, "basinmaps"):
        return {}
    group = _hard(f, "basinmaps", url, h5py.Group)
    _count(url, "basin maps", len(group))
    users = {b.mapping: b for b in basins}
    maps = {}
    for k in group:
        d = _hard(group, k, url, h5py.Dataset)
        b = users.get(k)
        if d.ndim != 1 or d.dtype.kind not in "iu":
            raise ReferrerError(
                f"{url!r}: {k}{f' of basin {b.name!r}' if b else ''} must be a 1-d integer "
                f"array, not {d.dtype} of shape {d.shape}; {DAMAGED}"
            )
        want = dims.get(b.dim) if b is not None else None
        if want is not None and len(d) != want:
            raise ReferrerError(
                f"{url!r}: {k} of basin {b.name!r} has shape {d.shape}; the referrer has "
                f"{want} along {b.dim!r} (it was not read); {DAMAGED}"
            )
        if len(d) > MAX_BASINMAP_LENGTH:
            raise BasinLimitError(
                f"{url!r}: {k}{f' of basin {b.name!r}' if b else ''} declares {len(d)} "
                f"entries, over the limit of {MAX_BASINMAP_LENGTH} (MAX_BASINMAP_LENGTH); it "
                f"was not read; {DAMAGED}"
            )
        maps[k] = np.asarray(d[()], dtype=np.int64)
    return maps


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _open_xr(url: str, storage_options: Mapping[str, Any] | None, group: str | None = None):
    path = fs.local_path(url)
    target = path if path is not None else fs.open_input(url, storage_options)
    try:
        ds = xr.open_dataset(target, engine="h5netcdf", chunks={}, group=group)
    except UntrustedBasinError:  # a redirect that was not followed
        raise
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
    return _open(url, dict(storage_options or {}), trust, check_pins, missing, _Chain())


def _as_url(url: str) -> str:
    if "://" in url:
        return url
    return "file://" + os.path.abspath(os.path.expanduser(url))


@dataclass(frozen=True)
class _Chain:
    """The referrers being opened (outermost first) and how many one call has opened."""

    urls: tuple[str, ...] = ()
    keys: tuple[Any, ...] = ()
    opened: list[int] = field(default_factory=lambda: [0])

    def enter(self, url: str) -> _Chain:
        """This chain extended by ``url``: refused, before ``url`` is opened, if that
        closes a cycle or exceeds ``MAX_BASIN_DEPTH`` or ``MAX_REFERRERS``."""
        ident = normalize(url)
        key = _identity(ident)
        if key in self.keys:
            chain = " -> ".join([*self.urls, ident])
            raise BasinCycleError(
                f"basins refer to each other in a cycle: {chain}; fix the basin paths (each "
                "must lead to a source, never back up the chain), or re-cook the referrer "
                "from its raw data"
            )
        if len(self.urls) >= MAX_BASIN_DEPTH:
            raise BasinDepthError(
                f"the basin chain of {self.urls[0]!r} is longer than {MAX_BASIN_DEPTH} "
                f"referrers (MAX_BASIN_DEPTH): {self.urls[-1]!r}, the {len(self.urls)}th, has "
                f"a referrer basin {url!r}, which was not opened. Export an intermediate "
                "referrer fewer than that many steps from the end of the chain "
                "(`basinflow export REF COPY`) and point the chain at the self-contained copy"
            )
        self.opened[0] += 1
        if self.opened[0] > MAX_REFERRERS:
            raise BasinLimitError(
                f"opening {self.urls[0]!r} would open more than {MAX_REFERRERS} referrers "
                f"(MAX_REFERRERS; next: {url!r}); its basins of basins fan out too far. "
                "Export it where it was made (`basinflow export REF COPY`) and use the copy"
            )
        return _Chain((*self.urls, ident), (*self.keys, key), self.opened)


def _identity(ident: str) -> Any:
    """What makes two locations one file: device and inode locally (an alias through a
    hard link is found too), the normalised URL remotely."""
    if fs.local_path(ident) is None:
        return ident
    try:
        st = os.stat(ident)
    except OSError:
        return ident
    return ("inode", st.st_dev, st.st_ino)


def _open(
    url: str,
    options: dict[str, Any],
    trust: Trust,
    check_pins: bool,
    missing: str,
    stack: _Chain,
) -> xr.Dataset:
    stack = stack.enter(url)
    meta = read_meta(url, options)
    ds = _open_xr(url, options)
    try:
        return _add_basins(ds, url, meta, trust, check_pins, missing, stack, options)
    except BaseException:
        ds.close()  # a refusal must not keep the referrer open while its traceback lives
        raise


def _add_basins(
    ds: xr.Dataset,
    url: str,
    meta: ReferrerMeta,
    trust: Trust,
    check_pins: bool,
    missing: str,
    stack: _Chain,
    options: dict[str, Any],
) -> xr.Dataset:
    shadowed: list[str] = []
    report: list[Resolution] = []
    for basin in sorted(meta.basins, key=lambda b: b.priority):
        res = resolve(basin, meta, trust, check_pins=check_pins, options=options)
        report.append(res)
        if res.status == "missing":
            if missing == "warn":
                warnings.warn(res.message, MissingBasinWarning, stacklevel=4)
                continue
            raise BasinUnavailableError(res.message)
        if res.status == "untrusted":
            raise UntrustedBasinError(res.message)
        if res.status == "stale":
            if check_pins:
                raise StaleBasinError(res.message)
            warnings.warn(res.message, StaleBasinWarning, stacklevel=4)
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
        try:
            ok = fs.pin_matches(basin.pin, pin_url, opts)
        except RedirectRefusedError as exc:
            res.tried.append((pin_url, f"redirected to {exc.target} (not followed)"))
            res.status, res.location = "untrusted", None
            res.message = f"basin {basin.name!r} of {meta.url!r}: its pin file {exc}"
            return res
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


def _load(
    basin: Basin,
    location: str,
    meta: ReferrerMeta,
    trust: Trust,
    check_pins: bool,
    missing: str,
    stack: _Chain,
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
            _check_hdf5(location, opts, what, trust)
        if basin.layout == "datasets":
            return _datasets(basin, location, opts)
        from basinflow.storage import layouts

        cls = layouts.layout_class(basin.layout)
        if cls.supports_directories:
            _check_directory(location, trust, what)
        content = cls().read(location, basin.fragment, opts)
        if hasattr(content.frames, "with_index"):  # direct chunk reads, as Scan.raw does
            from dataclasses import replace

            content = replace(content, frames=content.frames.with_index())
        return layouts.to_dataset(content, {"url": location})
    except NotHDF5Error as exc:
        raise BasinFormatError(f"{what} is not HDF5: {exc}") from exc
    except LayoutError as exc:
        raise BasinFormatError(f"{what} cannot be read: {exc}") from exc


def _check_directory(url: str, trust: Trust, what: str) -> None:
    """Every entry of a local scan directory (a TIFF stack) must resolve inside the trusted
    roots: the directory may be trusted while a frame in it is a symlink to elsewhere."""
    path = fs.local_path(url)
    if path is None:
        return
    try:
        entries = [e.path for e in os.scandir(path)]
    except OSError as exc:
        raise BasinUnavailableError(f"{what}: cannot list the directory: {exc}") from exc
    for entry in entries:
        trust.check("file://" + entry, what=f"{what}: file")


def _check_hdf5(url: str, opts: Mapping[str, Any], what: str, trust: Trust) -> None:
    """An HDF5 file, and none that would make libhdf5 open an untrusted file (see
    :mod:`~basinflow.storage.referrer.h5links`)."""
    f, fobj = _open_h5(url, opts, what)
    try:
        audit(f, url, trust, what=what)
    finally:
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
    "MAX_REDIRECTS",
    "BasinFormatError",
    "ReferrerMeta",
    "Resolution",
    "open_referrer",
    "read_meta",
    "resolve",
]
