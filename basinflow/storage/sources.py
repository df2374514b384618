"""Frames that live in other files: HDF5 virtual datasets and external links.

HDF5 reads a virtual dataset whose source file is absent as its fill value, silently (and
an external link to an absent file as a bare ``KeyError``). Both are common in beamline
files: ESRF BLISS scans map LIMA detector files into ``measurement/<detector>``, Diamond
NXmx maps Eiger data files, proposal master files hold external links into dataset files.
This module resolves every source *before* any read, relative to the file that holds the
link or the virtual dataset (the convention of those writers, and never the working
directory), and raises :class:`~basinflow.errors.MissingSourceError` naming what is absent.

A virtual dataset that is a stack of whole source blocks along its first axis (what BLISS
and NXmx write) is read as those sources (:class:`VirtualStack`): each source is an
:class:`~basinflow.storage.hdf5.H5Array` with its own chunk index, so frames keep the direct
chunk path and Dask chunks never straddle more than they must. Other mappings are read by
h5py, after the same presence check.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import h5py
import numpy as np

from basinflow.errors import LayoutError, MissingSourceError
from basinflow.storage import fs

_WHAT_TO_DO = (
    "copy the missing file(s) next to the file that refers to them (the detector files of a "
    "scan are written beside it), or leave the scan out"
)


def resolve(holder_url: str, name: str) -> str:
    """The URL of ``name`` (a VDS source or external-link file name) as seen from the file
    at ``holder_url``: ``.`` is that file; relative names resolve against its directory."""
    if name in (".", ""):
        return holder_url
    if "://" in name:
        return name
    base = holder_url.rsplit("#", 1)[0]
    if name.startswith("/"):
        return "file://" + name if base.startswith("file://") else name
    head = base.rsplit("/", 1)[0]
    scheme, sep, path = head.partition("://")
    if not sep:
        return posixpath.normpath(posixpath.join(head, name))
    return f"{scheme}://" + posixpath.normpath(posixpath.join(path, name)).lstrip(
        "/" if scheme != "file" else ""
    )


def _present(url: str, storage_options: Mapping[str, Any] | None) -> bool:
    local = fs.local_path(url)
    if local is not None:
        import os

        return os.path.isfile(local)
    return fs.exists(url, storage_options)


def missing(urls: list[str], storage_options: Mapping[str, Any] | None) -> list[str]:
    return [u for u in dict.fromkeys(urls) if not _present(u, storage_options)]


def get(
    root: h5py.Group,
    path: str,
    holder_url: str,
    where: str,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[h5py.HLObject | None, list[str]]:
    """The object at ``path`` below ``root`` (``None`` if absent), walking links one by one
    so that an external link to an absent file is named, not reported as a missing object.
    Also returns the URLs of the files the walk went through (for the scan's pin)."""
    obj: h5py.HLObject = root
    holder = holder_url
    through: list[str] = []
    for part in [p for p in path.split("/") if p]:
        if not isinstance(obj, h5py.Group):
            return None, through
        link = obj.get(part, getlink=True)
        if link is None:
            return None, through
        if isinstance(link, h5py.ExternalLink):
            target = resolve(holder, link.filename)
            if missing([target], storage_options):
                raise MissingSourceError(
                    f"{where}: {obj.name.rstrip('/')}/{part} is an external link to "
                    f"{target!r}, which is absent; {_WHAT_TO_DO}"
                )
            through.append(target)
            holder = target
        try:
            obj = obj[part]
        except KeyError:
            return None, through
    return obj, through


@dataclass
class VirtualStack:
    """A virtual dataset read as its sources, stacked along the first axis."""

    shape: tuple[int, ...]
    dtype: np.dtype
    starts: tuple[int, ...]  # first frame of each part in the stack
    parts: tuple[Any, ...]  # H5Array per source block (frames ``src_start:src_stop``)
    src_starts: tuple[int, ...]
    path: str = ""
    ndim: int = field(init=False)

    def __post_init__(self) -> None:
        self.dtype = np.dtype(self.dtype)
        self.ndim = len(self.shape)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.url for p in self.parts))

    @property
    def storage_chunks(self) -> tuple[int, ...]:
        # Dask chunks are whole multiples of this: one frame, so that a chunk grows by
        # frames up to the byte target and never has to hold a whole source file
        return (1, *self.shape[1:])

    def with_index(self) -> VirtualStack:
        return replace(self, parts=tuple(p.with_index() for p in self.parts))

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        first, rest = key[0], key[1:]
        if isinstance(first, int | np.integer):
            i = int(first) + (self.shape[0] if first < 0 else 0)
            return self[(slice(i, i + 1), *rest)][0]
        start, stop, step = first.indices(self.shape[0])
        out = []
        bounds = (*self.starts, self.shape[0])
        for k, part in enumerate(self.parts):
            lo, hi = max(start, bounds[k]), min(stop, bounds[k + 1])
            if lo >= hi:
                continue
            off = self.src_starts[k] - bounds[k]
            block = part[(slice(lo + off, hi + off), *rest)]
            out.append(np.asarray(block).astype(self.dtype, copy=False))
        if not out:
            return np.empty((0, *self.shape[1:]), self.dtype)[(slice(None), *rest)]
        block = np.concatenate(out) if len(out) > 1 else out[0]
        return block[::step] if step != 1 else block


def virtual_sources(ds: h5py.Dataset, holder_url: str) -> list[tuple[Any, str, str]]:
    """``(VDSmap, source URL, source dataset)`` of a virtual dataset."""
    return [(vs, resolve(holder_url, vs.file_name), vs.dset_name) for vs in ds.virtual_sources()]


def check_virtual(ds: h5py.Dataset, holder_url: str, where: str, storage_options=None) -> list[str]:
    """The source URLs of a virtual dataset; raises if any is absent (before any read)."""
    urls = [u for _, u, _ in virtual_sources(ds, holder_url)]
    absent = missing(urls, storage_options)
    if absent:
        shown = ", ".join(repr(u) for u in absent[:5])
        more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
        raise MissingSourceError(
            f"{where}: {ds.name} is an HDF5 virtual dataset whose source file(s) {shown}{more} "
            f"are absent (HDF5 would read them as fill values); {_WHAT_TO_DO}"
        )
    return [u for u in dict.fromkeys(urls) if u != holder_url]


def _box(space) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """``(start, stop)`` of a selection that is one rectangular block, else ``None``."""
    try:
        lo, hi = space.get_select_bounds()
    except (ValueError, OSError, RuntimeError):  # not a bounded selection
        return None
    stop = tuple(h + 1 for h in hi)
    if int(np.prod([b - a for a, b in zip(lo, stop, strict=True)])) != space.get_select_npoints():
        return None
    return tuple(lo), stop


def stack_of(
    ds: h5py.Dataset, holder_url: str, storage_options: Mapping[str, Any] | None, make_part
) -> VirtualStack | None:
    """The virtual dataset as a :class:`VirtualStack`, or ``None`` when its mapping is not
    whole source blocks tiling the first axis (then h5py reads it)."""
    shape = tuple(ds.shape)
    if not shape:
        return None
    pieces = []
    for vs, url, dset in virtual_sources(ds, holder_url):
        vbox, sbox = _box(vs.vspace), _box(vs.src_space)
        if vbox is None:
            return None
        (v0, *vrest), (v1, *vrest_stop) = vbox
        if tuple(vrest) != (0,) * (len(shape) - 1) or tuple(vrest_stop) != shape[1:]:
            return None
        n = v1 - v0
        src_shape = tuple(vs.src_space.shape)
        if sbox is None and not src_shape:
            # "the whole source" (HDF5 2 reports no extent for it): a block of n frames
            src_shape = (n, *shape[1:])
            sbox = ((0,) * len(shape), src_shape)
        if sbox is None:
            return None
        if src_shape == shape[1:] and n == 1:  # one image per source
            part = make_part(url, dset, (1, *src_shape), storage_options)
            pieces.append((v0, n, part, 0))
            continue
        if len(src_shape) != len(shape) or src_shape[1:] != shape[1:]:
            return None
        (s0, *srest), (s1, *srest_stop) = sbox
        if s1 - s0 != n or tuple(srest) != (0,) * len(srest) or tuple(srest_stop) != shape[1:]:
            return None
        pieces.append((v0, n, make_part(url, dset, src_shape, storage_options), s0))
    pieces.sort(key=lambda p: p[0])
    pos = 0
    for v0, n, _, _ in pieces:
        if v0 < pos:  # overlapping sources: let h5py apply HDF5's rules
            return None
        if v0 > pos:
            raise _unmapped(ds, holder_url, pos, v0)
        pos += n
    if pos != shape[0]:
        raise _unmapped(ds, holder_url, pos, shape[0])
    return VirtualStack(
        shape,
        ds.dtype,
        tuple(p[0] for p in pieces),
        tuple(p[2] for p in pieces),
        tuple(p[3] for p in pieces),
        path=ds.name,
    )


def _unmapped(ds: h5py.Dataset, holder_url: str, lo: int, hi: int) -> LayoutError:
    return LayoutError(
        f"{holder_url}#{ds.name}: frames {lo}..{hi - 1} of the virtual dataset map to no "
        "source file (HDF5 would read them as fill values): the scan was aborted or is still "
        "being written; wait until it is complete, or leave it out"
    )


__all__ = ["VirtualStack", "check_virtual", "get", "missing", "resolve", "stack_of"]
