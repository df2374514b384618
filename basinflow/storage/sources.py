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
from basinflow.storage.hdf5_links import SubstitutionError, block_of, substituted

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


@dataclass(frozen=True)
class Source:
    """One source libhdf5 reads for a virtual dataset: the file ``url`` it opens and the
    dataset ``dset`` in it, both after libhdf5's name substitution, for the mapping ``vs``
    (h5py's ``VDSmap``); ``block`` is the ``%b`` number of a printf mapping."""

    vs: Any
    url: str
    dset: str
    block: int | None = None


def virtual_sources(
    ds: h5py.Dataset,
    holder_url: str,
    storage_options: Mapping[str, Any] | None = None,
    where: str = "",
) -> list[Source]:
    """The sources of a virtual dataset as libhdf5 opens them.

    Names are substituted as libhdf5 does (:func:`~basinflow.storage.hdf5_links.substituted`,
    the parser the referrer audit uses): ``s%%.h5`` opens ``s%.h5``. A printf mapping
    (``s%b.h5``, an unlimited virtual selection) stands for the blocks ``s0.h5``, ``s1.h5``,
    ...: every block up to the last file present (or up to the dataset's extent, if that is
    longer) is a source, present or not, so a missing block is named (libhdf5 would stop
    the dataset before it, hiding the blocks after it, or read it as fill values)."""
    out: list[Source] = []
    for vs in ds.virtual_sources():
        try:
            filename, pattern = substituted(vs.file_name)
            dset, dset_pattern = substituted(vs.dset_name)
        except SubstitutionError as exc:
            raise LayoutError(
                f"{where or holder_url}: {ds.name} is a virtual dataset libhdf5 cannot read "
                f"({exc}); the file is damaged or was not written by a detector writer"
            ) from None
        if pattern is None and dset_pattern is None:
            out.append(Source(vs, resolve(holder_url, filename), dset))
            continue
        for b in _blocks(ds, vs, holder_url, storage_options, where):
            out.append(
                Source(
                    vs,
                    resolve(holder_url, substituted(vs.file_name, b)[0]),
                    substituted(vs.dset_name, b)[0],
                    b,
                )
            )
    return out


def _printf_step(ds: h5py.Dataset, vs) -> tuple[int, int, int] | None:
    """``(start, stride, frames)`` of the blocks of a printf mapping along the first axis,
    or ``None`` when its unlimited selection is not along the first axis (then there are
    no blocks to place and h5py reads it)."""
    space = vs.vspace
    if not space.is_regular_hyperslab():
        return None
    start, stride, count, block = space.get_regular_hyperslab()
    if len(count) != ds.ndim or count[0] != h5py.h5s.UNLIMITED:
        return None
    return int(start[0]), int(stride[0]), int(block[0])


def _blocks(ds: h5py.Dataset, vs, holder_url: str, storage_options, where: str) -> range:
    """The block numbers of a printf mapping libhdf5 must find: 0 up to the last block
    whose file is present, and at least those the dataset's extent covers; block 0 when
    nothing is present (a printf source with no file at all is an absent source)."""
    name = vs.file_name
    last = -1
    if substituted(name)[1] is not None:
        head, _, base = name.rpartition("/")
        if substituted(head)[1] is not None:
            raise LayoutError(
                f"{where or holder_url}: {ds.name} is a virtual dataset whose source name "
                f"{name!r} has its block number %b in a directory name; basinflow reads "
                "block numbers in file names only: copy the data into a plain dataset"
            )
        directory = resolve(holder_url, substituted(name, 0)[0]).rsplit("/", 1)[0]
        for entry in _listing(directory, storage_options):
            b = block_of(base, entry)
            if b is not None:
                last = max(last, b)
    step = _printf_step(ds, vs)
    if step is not None and ds.shape:
        start, stride, _ = step
        covered = -(-(int(ds.shape[0]) - start) // max(1, stride))
        last = max(last, covered - 1)
    return range(max(last + 1, 1))


def _listing(directory_url: str, storage_options) -> list[str]:
    """Base names of the files in a directory, as it is now (none if it is absent)."""
    local = fs.local_path(directory_url)
    try:
        if local is not None:
            import os

            return os.listdir(local or ".")
        fsys, path = fs.url_to_fs(directory_url, storage_options)
        # fsspec keeps listings of shared filesystem instances: a block written or
        # removed since the last look must be seen now
        fsys.invalidate_cache(path)
        return [p.rstrip("/").rsplit("/", 1)[-1] for p in fsys.ls(path, detail=False)]
    except FileNotFoundError:
        return []
    except Exception as exc:  # a denied or failed listing is the storage's error, named
        raise fs.translate_errors(directory_url, exc) from exc


def check_virtual(
    ds: h5py.Dataset, holder_url: str, where: str, storage_options=None
) -> list[Source]:
    """The sources of a virtual dataset (:func:`virtual_sources`); raises
    :class:`~basinflow.errors.MissingSourceError` naming every absent one, before any read."""
    found = virtual_sources(ds, holder_url, storage_options, where)
    absent = missing([s.url for s in found], storage_options)
    if absent:
        shown = ", ".join(repr(u) for u in absent[:5])
        more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
        raise MissingSourceError(
            f"{where}: {ds.name} is an HDF5 virtual dataset whose source file(s) {shown}{more} "
            f"are absent (HDF5 would read them as fill values); {_WHAT_TO_DO}"
        )
    return found


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
    ds: h5py.Dataset,
    holder_url: str,
    storage_options: Mapping[str, Any] | None,
    make_part,
    found: list[Source] | None = None,
) -> VirtualStack | None:
    """The virtual dataset as a :class:`VirtualStack`, or ``None`` when its mapping is not
    whole source blocks tiling the first axis (then h5py reads it). ``found``: its
    :func:`check_virtual` sources. A printf mapping's blocks are placed by their number,
    and the stack is as long as the blocks found (libhdf5's extent of the same files)."""
    shape = tuple(ds.shape)
    if not shape:
        return None
    found = virtual_sources(ds, holder_url, storage_options) if found is None else found
    pieces = []
    length = shape[0]
    for src in found:
        vs, url, dset = src.vs, src.url, src.dset
        if src.block is not None:
            step = _printf_step(ds, vs)
            if step is None:
                return None
            start, stride, frames = step
            v0 = start + src.block * stride
            vbox = ((v0, *([0] * (len(shape) - 1))), (v0 + frames, *shape[1:]))
            length = max(length, v0 + frames)
        else:
            vbox = _box(vs.vspace)
        sbox = _box(vs.src_space)
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
    shape = (length, *shape[1:])
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


__all__ = [
    "Source",
    "VirtualStack",
    "check_virtual",
    "get",
    "missing",
    "resolve",
    "stack_of",
    "virtual_sources",
]
