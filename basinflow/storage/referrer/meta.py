"""A referrer's metadata (basins, maps, provenance, dims), read without touching variable
data, and the opening of referrer files.

Opening is the second wall behind :mod:`~basinflow.storage.referrer.audit`: a referrer,
local or remote, is opened through a Python file object (h5py's ``fileobj`` driver).
libhdf5 then opens an external link's file or a virtual dataset's source through that
same object, so even a reference the audit missed reads the referrer's own bytes, never
another file. (External raw storage bypasses drivers: the audit refuses it outright.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import fsspec
import h5py
import numpy as np
import xarray as xr

from basinflow.errors import (
    BasinLimitError,
    BasinUnavailableError,
    NotFound,
    NotHDF5Error,
    ReferrerError,
    StorageError,
    UntrustedBasinError,
)
from basinflow.storage import fs, gcpause
from basinflow.storage.hdf5_links import link_of
from basinflow.storage.referrer.audit import hard as _hard
from basinflow.storage.referrer.basins import (
    DAMAGED,
    MAX_BASIN_JSON_BYTES,
    MAX_BASINMAP_LENGTH,
    MAX_BASINS,
    MAX_PROVENANCE_BYTES,
    Basin,
)
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


def _local_file(path: str) -> Any:
    """A local file as a picklable file object (fsspec's), for h5py's ``fileobj`` driver:
    the second wall (see the module documentation); Dask workers reopen it by path."""
    return fsspec.filesystem("file").open(path, "rb")


class _Paused:
    """A remote file object whose ``close`` also ends the caller's GC pause."""

    def __init__(self, raw: Any):
        self.raw = raw
        self._open = True

    def close(self) -> None:
        try:
            self.raw.close()
        finally:
            if self._open:
                self._open = False
                gcpause.leave()


def open_h5(url: str, storage_options: Mapping[str, Any] | None, what: str):
    """``(h5py.File, file object)`` of an HDF5 file, read through the file object; errors
    name ``what`` and ``url`` (:class:`BasinUnavailableError`, :class:`NotHDF5Error`)."""
    path = fs.local_path(url)
    try:
        if path is not None:
            if not os.path.exists(path):
                raise FileNotFoundError(path)
            if not h5py.is_hdf5(path):
                raise NotHDF5Error(f"{what} {url!r} is not an HDF5 file (wrong signature)")
            fobj = _local_file(path)
            try:
                return h5py.File(fobj, "r"), fobj
            except Exception:
                fobj.close()
                raise
        # libhdf5 reads through fsspec's I/O thread until the caller closes the file
        # object: cyclic GC stays paused until then (gcpause says why)
        gcpause.enter()
        try:
            fobj = _Paused(fs.open_input(url, storage_options))
        except BaseException:
            gcpause.leave()
            raise
        try:
            return h5py.File(fobj.raw, "r"), fobj
        except Exception:
            fobj.close()
            raise
    except (NotHDF5Error, UntrustedBasinError, StorageError):  # a refused redirect, ...
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
        f, fobj = open_h5(url, storage_options, "referrer")
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


def open_xr(url: str, storage_options: Mapping[str, Any] | None, group: str | None = None):
    path = fs.local_path(url)
    from xarray.backends.locks import HDF5_LOCK

    remote = path is None
    target = _local_file(path) if not remote else fs.open_input(url, storage_options)
    # remote: the open, and every later lazy read of a variable (under the lock xarray takes
    # around each), is a section of gcpause: libhdf5 waits there for fsspec's I/O thread
    lock = gcpause.SectionLock(HDF5_LOCK) if remote else None
    try:
        # phony_dims: datasets without dimension scales (a foreign file, a hostile one) get
        # phony names in order of access, said explicitly so h5netcdf does not warn each time
        with gcpause.paused() if remote else nullcontext():
            ds = xr.open_dataset(
                target, engine="h5netcdf", chunks={}, group=group, phony_dims="access", lock=lock
            )
    except UntrustedBasinError:  # a redirect that was not followed
        raise
    except Exception as exc:  # truncated data, a foreign file, ...
        raise ReferrerError(f"{url!r}: cannot read its variables: {exc}") from exc
    return ds


__all__ = ["ReferrerMeta", "open_h5", "open_xr", "read_meta"]
