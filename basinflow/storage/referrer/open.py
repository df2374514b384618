"""Open a referrer as one lazy ``xarray.Dataset``: innate variables plus basin variables.

Priority (the first source of a variable name keeps the name; a later variable of that
name is added as ``<basin>_<name>`` (the raw per-frame ``delay`` beside the cooked
``delay`` groups becomes ``raw_delay``), listed in ``ds.attrs["basinflow_renamed"]``, so
nothing is dropped silently; the coordinate of a dimension the two share is one axis and
is kept once):

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

import xarray as xr

from basinflow.errors import (
    BasinCycleError,
    BasinDepthError,
    BasinError,
    BasinLimitError,
    BasinUnavailableError,
    MissingBasinWarning,
    ReferrerError,
    StaleBasinError,
    StaleBasinWarning,
    UntrustedBasinError,
)
from basinflow.storage import fs
from basinflow.storage.referrer.basins import MAX_BASIN_DEPTH, MAX_REFERRERS, Basin
from basinflow.storage.referrer.load import BasinFormatError, Resolution, load, resolve, select
from basinflow.storage.referrer.meta import ReferrerMeta, open_xr, read_meta
from basinflow.storage.referrer.trust import Trust, normalize


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
    url = as_url(url)
    trust = Trust.build(
        trusted,
        trusted_hosts,
        referrer_url=url,
        storage_options=storage_options,
        host_options=host_options,
        trust_referrer_dir=trust_referrer_dir,
    )
    return _open(url, dict(storage_options or {}), trust, check_pins, missing, _Chain())


def as_url(url: str) -> str:
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
    ds = open_xr(url, options)
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
    renamed: dict[str, str] = {}
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
        src = _basin_variables(basin, res.location, trust, check_pins, missing, stack)
        src = select(basin, src, meta, {**ds.sizes, **meta.dims})
        for name in src.variables:
            if name in src.dims and (name in ds.dims or name not in src.coords):
                continue  # the coordinate of a shared dimension: one axis, kept once
            target = name
            if name in ds.variables or name in ds.dims:
                target = _free_name(ds, f"{basin.name}_{name}")
                renamed[f"{basin.name}:{name}"] = target
            try:
                ds[target] = src.variables[name]
            except ValueError as exc:
                raise BasinError(
                    f"basin {basin.name!r} of {url!r}: variable {name!r} does not fit the "
                    f"referrer ({exc}); a basin of different length needs a basinmap"
                ) from exc
    ds.attrs["provenance"] = json.dumps(meta.provenance, default=str)
    ds.encoding["basins"] = report
    if renamed:
        ds.attrs["basinflow_renamed"] = json.dumps(renamed)
    ds.encoding["source"] = url
    return ds


def _free_name(ds: xr.Dataset, name: str) -> str:
    """``name``, or ``name_2``, ``name_3``, ... if a variable or dimension has it."""
    candidate, n = name, 1
    while candidate in ds.variables or candidate in ds.dims:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def _basin_variables(
    basin: Basin, location: str, trust: Trust, check_pins: bool, missing: str, stack: _Chain
) -> xr.Dataset:
    """A basin's variables: a referrer basin is opened recursively (basins of basins)."""
    if basin.layout != "referrer" or basin.type == "internal":
        return load(basin, location, trust)
    try:
        return _open(location, trust.check(location), trust, check_pins, missing, stack)
    except ReferrerError as exc:
        if isinstance(exc, BasinError):
            raise
        raise BasinFormatError(f"basin {basin.name!r} ({location}): {exc}") from exc


__all__ = ["ReferrerMeta", "Resolution", "open_referrer", "read_meta", "resolve"]
