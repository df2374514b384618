"""Lazy HDF5 reading that survives pickling onto Dask workers.

Two paths, one interface (``shape``, ``dtype``, ``__getitem__`` with basic slices):

* **direct chunk reads** — for frames chunked along the first axis (one or more whole
  frames per chunk) with no filter or gzip/shuffle, the byte ranges of every chunk are
  read once from the HDF5 chunk index; a Dask task then fetches exactly its chunks'
  bytes (``cat_ranges``: concurrent requests on S3/HTTP, ``pread`` locally) and inflates
  them in NumPy/numba and ISA-L. No libhdf5 call, no global HDF5 lock, no metadata round trips on
  the remote path; bytes fetched = compressed chunk bytes.
* **h5py** — everything else, through xarray's :class:`~xarray.backends.CachingFileManager`
  so each worker reopens files itself and keeps a small LRU of open handles.

Graphs carry only URLs, options and the chunk index — never an open handle.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  registers Bitshuffle-LZ4, LZ4, Blosc, Zstd... filters for h5py
import numpy as np
from xarray.backends import CachingFileManager

from basinflow.errors import Error, LayoutError, NotFound, NotHDF5Error
from basinflow.storage import codecs, deflate, fs, gcpause, retry
from basinflow.storage.shuffle import unshuffle

_DAMAGED = "the file is damaged or truncated: copy it again from its source, or leave the scan out"

_H5_LOCK = threading.Lock()  # libhdf5 is not thread-safe; h5py serialises, we make it explicit


class _H5Handle:
    """An h5py.File plus the file object under it, closed together.

    A remote file is read by libhdf5 through fsspec, whose I/O runs on its own thread
    while this one holds h5py's global lock: from open to close the handle keeps cyclic
    garbage collection paused (:mod:`~basinflow.storage.gcpause` says why and why that
    suffices). ``section=False`` leaves that to the caller: a handle kept open in a cache
    (:func:`manager`) is used only inside the caller's own sections.
    """

    def __init__(self, url: str, options_json: str, mode: str = "r", section: bool = True):
        self.url = url
        self._fileobj = None
        self._section = False
        path = fs.local_path(url)
        try:
            if path is not None:
                self.file = h5py.File(path, "r")
            else:
                if section:
                    gcpause.enter()
                    self._section = True
                self._fileobj = fs.open_input(url, json.loads(options_json))
                self.file = h5py.File(self._fileobj, "r")
        except Error:
            self._release()
            raise
        except (OSError, ValueError) as exc:
            # h5py re-raises what the file object raised: a read that failed transiently
            # through all of the storage layer's retries is "unreachable", not "not HDF5"
            transient = (
                fs.translate_errors(url, exc) if retry.transient_cause(exc) is not None else None
            )
            missing = isinstance(exc, FileNotFoundError) or "No such file" in str(exc)
            reason = str(exc)
            # Drop h5py's frames now: kept alive by the exception chain, the half-opened
            # file's h5py objects would be freed later by the cyclic GC in whatever thread
            # runs it (see gcpause on the deadlock that can cause).
            exc.__traceback__ = None
            failed = True
        else:
            failed = False
        if failed:
            self._release()
            if transient is not None:
                raise transient
            if missing:
                raise NotFound(f"{url!r} does not exist; check the path")
            raise NotHDF5Error(
                f"{url!r} is not a readable HDF5 file (truncated or another format: {reason}); "
                "copy it again from its source, or check that the template points at HDF5 files"
            )

    def _release(self) -> None:
        try:
            if self._fileobj is not None:
                self._fileobj.close()
        finally:
            if self._section:
                self._section = False
                gcpause.leave()

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self._release()


def _options_json(storage_options: Mapping[str, Any] | None) -> str:
    return json.dumps(storage_options or {}, sort_keys=True, default=str)


def manager(url: str, storage_options: Mapping[str, Any] | None = None) -> CachingFileManager:
    """A picklable, per-process cached opener for ``url``."""
    return CachingFileManager(
        _H5Handle, url, _options_json(storage_options), mode="r", kwargs={"section": False}
    )


def open_h5(url: str, storage_options: Mapping[str, Any] | None = None) -> _H5Handle:
    """Open ``url`` for metadata reads now (caller closes ``.close()``)."""
    return _H5Handle(url, _options_json(storage_options))


def get_object(handle: _H5Handle, path: str, what: str = "group"):
    path = path.strip("/") or "/"
    try:
        return handle.file[path]
    except KeyError:
        raise NotFound(
            f"{handle.url}#{path}: no such {what} in the HDF5 file; check the part after '#' "
            "in the template"
        ) from None


def get_group(handle: _H5Handle, path: str | None, what: str) -> h5py.Group:
    """The group a template's fragment names; a dataset there is a template mistake."""
    obj = get_object(handle, path or "/", what)
    if not isinstance(obj, h5py.Group):
        raise LayoutError(
            f"{handle.url}#{path or ''} is a dataset, not a {what}; put the {what}'s path "
            "after '#' in the template"
        )
    return obj


@dataclass(frozen=True)
class ChunkIndex:
    """Byte ranges of a dataset's chunks along axis 0 (first-axis chunking only)."""

    offsets: np.ndarray  # (nchunks,) int64, -1 where never written (fill value)
    sizes: np.ndarray  # (nchunks,) int64
    masks: np.ndarray  # (nchunks,) filter masks
    rows: int  # frames per chunk


_DIRECT_FILTERS = {"gzip", "shuffle"}


def _codec(filters: Mapping[str, Any]) -> str | None:
    """The detector codec of a one-filter pipeline the direct path decodes, else ``None``."""
    if set(filters) == {str(codecs.BSHUF_LZ4)}:
        cd = tuple(filters[str(codecs.BSHUF_LZ4)])
        return "bslz4" if len(cd) > 4 and cd[4] == 2 else None
    if set(filters) == {str(codecs.LZ4)}:
        return "lz4"
    return None


def _int_slice(i: int, n: int) -> slice:
    if not -n <= i < n:
        raise IndexError(f"index {i} is out of bounds for axis of size {n}")
    i = i + n if i < 0 else i
    return slice(i, i + 1)


def holder_url(url: str, ds: h5py.Dataset) -> str:
    """``url``, or the local file libhdf5 opened for ``ds`` if that is another one."""
    path = fs.local_path(url)
    if path is None:
        return url
    holder = os.path.abspath(ds.file.filename)
    try:
        if os.path.samefile(holder, path):
            return url
    except OSError:
        pass
    return "file://" + holder if url.startswith("file://") else holder


@dataclass
class H5Array:
    """Lazy array over one HDF5 dataset, picklable, for :func:`dask.array.from_array`."""

    url: str
    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...] | None
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    index: ChunkIndex | None = None
    shuffle: bool = False
    deflate: bool = False
    fill: Any = 0
    #: "bslz4" or "lz4" for detector chunks decoded by :mod:`basinflow.storage.codecs`
    codec: str | None = None
    ndim: int = field(init=False)

    def __post_init__(self) -> None:
        self.dtype = np.dtype(self.dtype)
        self.ndim = len(self.shape)

    @classmethod
    def from_dataset(
        cls,
        url: str,
        ds: h5py.Dataset,
        storage_options: Mapping[str, Any] | None = None,
        *,
        index: bool = False,
    ) -> H5Array:
        """The array of ``ds``, opened from ``url``. A dataset reached through an HDF5
        external link lives in another file, and ``ds.name`` is its path *there*: the
        array records that file (``ds.file.filename``), so lazy reads open the file that
        holds the data. (Remotely libhdf5 would resolve such a link on the local disk;
        referrers refuse those, and the URL is kept.)

        ``index=True`` also reads the chunk index from the open ``ds`` (see
        :meth:`with_index`): a remote file is then opened once for metadata, not twice.
        """
        arr = cls(
            holder_url(url, ds),
            ds.name,
            tuple(ds.shape),
            ds.dtype,
            ds.chunks,
            dict(storage_options or {}),
        )
        return arr._indexed(ds) if index else arr

    @property
    def storage_chunks(self) -> tuple[int, ...]:
        # a contiguous stack is read frame by frame: one storage "chunk" per frame, so Dask
        # chunks grow by frames up to their byte target instead of being the whole stack
        if self.chunks is None and len(self.shape) >= 3:
            return (1, *self.shape[1:])
        return self.chunks or self.shape

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.url,)

    def with_index(self) -> H5Array:
        """Read the chunk index (metadata only) and enable direct reads where possible."""
        if self.index is not None:
            return self
        handle = open_h5(self.url, self.storage_options)
        try:
            return self._indexed(get_object(handle, self.path, "dataset"))
        finally:
            handle.close()

    def _indexed(self, ds: h5py.Dataset) -> H5Array:
        """This array with the chunk index of the open ``ds`` (self where direct reads
        cannot serve: other filters, big-endian data, frames split across chunks)."""
        if self.index is not None or ds.dtype.byteorder == ">":
            return self
        if ds.dtype != self.dtype or tuple(ds.shape) != self.shape or ds.chunks != self.chunks:
            # a source of a virtual dataset, described before its file was opened
            return H5Array(
                self.url, self.path, tuple(ds.shape), ds.dtype, ds.chunks, self.storage_options
            )._indexed(ds)
        filters = set(ds._filters)
        codec = _codec(ds._filters)
        direct = filters <= _DIRECT_FILTERS or codec is not None
        if not direct or not self.shape or self.shape[0] == 0 or ds.is_virtual:
            return self
        fill = ds.fillvalue
        if ds.chunks is None:
            off = ds.id.get_offset()
            if off is None:
                return self
            rows = 1
            n = self.shape[0]
            row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
            offsets = off + np.arange(n, dtype=np.int64) * row_bytes
            sizes = np.full(n, row_bytes, dtype=np.int64)
            masks = np.zeros(n, dtype=np.int64)
        else:
            if tuple(ds.chunks[1:]) != tuple(self.shape[1:]):
                return self  # frames split across chunks: leave it to h5py
            rows = ds.chunks[0]
            n = -(-self.shape[0] // rows)
            offsets = np.full(n, -1, dtype=np.int64)
            sizes = np.zeros(n, dtype=np.int64)
            masks = np.zeros(n, dtype=np.int64)

            def visit(info) -> None:
                i = info.chunk_offset[0] // rows
                offsets[i], sizes[i], masks[i] = info.byte_offset, info.size, info.filter_mask

            with _H5_LOCK:
                ds.id.chunk_iter(visit)
        return H5Array(
            self.url,
            self.path,
            self.shape,
            self.dtype,
            self.chunks,
            self.storage_options,
            ChunkIndex(offsets, sizes, masks, rows),
            shuffle="shuffle" in filters,
            deflate="gzip" in filters,
            fill=fill,
            codec=codec,
        )

    # -- reading ------------------------------------------------------------------------------
    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if self.index is not None and all(isinstance(k, slice | int | np.integer) for k in key):
            # Dask passes integers for a single frame (``frames[3]``): read it as a slice
            # through the direct path, then drop the axes integers remove
            ints = [i for i, k in enumerate(key) if not isinstance(k, slice)]
            as_slices = tuple(
                k if isinstance(k, slice) else _int_slice(int(k), self.shape[i])
                for i, k in enumerate(key)
            )
            block = self._direct(as_slices)
            return block.reshape([n for i, n in enumerate(block.shape) if i not in ints])
        return self._via_h5(key)

    def _direct(self, key: tuple[slice, ...]) -> np.ndarray:
        first = key[0].indices(self.shape[0])
        if first[2] != 1:
            return self._via_h5(key)
        start, stop = first[0], max(first[0], first[1])
        if stop == start:  # an empty selection (dask asks for these too): no chunk to read
            return np.empty((0, *self.shape[1:]), self.dtype)[(slice(None), *key[1:])]
        idx = self.index
        c0, c1 = start // idx.rows, -(-stop // idx.rows)
        frame = self.shape[1:]
        chunk_items = idx.rows * int(np.prod(frame, dtype=np.int64))
        wanted = [
            (int(idx.offsets[c]), int(idx.offsets[c] + idx.sizes[c]))
            for c in range(c0, c1)
            if idx.offsets[c] >= 0
        ]
        blobs = iter(fs.cat_ranges(self.url, wanted, self.storage_options)) if wanted else iter(())

        def chunk(c: int) -> np.ndarray:
            if idx.offsets[c] < 0:
                return np.full((idx.rows, *frame), self.fill, dtype=self.dtype)
            return self._decode(next(blobs), int(idx.masks[c]), chunk_items).reshape(
                idx.rows, *frame
            )

        if c1 - c0 == 1:
            block = chunk(c0)
        else:
            # each chunk decoded and copied into the slab before the next is decoded: one
            # chunk-sized temporary that the allocator reuses, where decoding them all and
            # concatenating grew and trimmed the heap on every call (page faults: B8)
            block = np.empty(((c1 - c0) * idx.rows, *frame), self.dtype)
            for k, c in enumerate(range(c0, c1)):
                block[k * idx.rows : (k + 1) * idx.rows] = chunk(c)
        lo = start - c0 * idx.rows
        return block[(slice(lo, lo + stop - start), *key[1:])]

    def _via_h5(self, key):
        remote = fs.local_path(self.url) is None
        if remote:
            gcpause.enter()  # libhdf5 reads through fsspec's I/O thread: see gcpause
        try:
            handle = manager(self.url, self.storage_options)
            try:
                with _H5_LOCK:
                    return np.asarray(get_object(handle.acquire(), self.path, "dataset")[key])
            except Error:
                raise
            except Exception as exc:
                if retry.transient_cause(exc) is None:
                    raise
                # name the URL; drop h5py's frames (see _H5Handle on the deadlock they cause)
                translated = fs.translate_errors(self.url, exc)
                exc.__traceback__ = None
            finally:
                # the last manager of a file closes it when it goes: inside the section
                del handle
        finally:
            if remote:
                gcpause.leave()
        raise translated

    def _decode(self, raw: bytes, mask: int, items: int) -> np.ndarray:
        if self.codec is not None and not mask & 1:
            try:
                data = (
                    codecs.bslz4_decode(raw, self.dtype.itemsize)
                    if self.codec == "bslz4"
                    else codecs.lz4_decode(raw)
                )
            except codecs.CodecError as exc:
                raise LayoutError(
                    f"{self.url}#{self.path}: corrupt {self.codec} chunk ({exc}); {_DAMAGED}"
                ) from exc
            return self._values(data, items)
        # HDF5 applies filters in pipeline order (shuffle, then deflate) when writing;
        # bit i of the mask set means filter i was skipped for this chunk.
        order = [f for f in ("shuffle", "deflate") if getattr(self, f)]
        data = raw
        for i in reversed(range(len(order))):
            if mask >> i & 1:
                continue
            if order[i] == "deflate":
                try:
                    data = deflate.decompress(data)
                except deflate.DeflateError as exc:
                    raise LayoutError(
                        f"{self.url}#{self.path}: corrupt chunk ({exc}); {_DAMAGED}"
                    ) from exc
            else:
                data = unshuffle(data, self.dtype.itemsize)
        return self._values(data, items)

    def _values(self, data, items: int) -> np.ndarray:
        out = np.frombuffer(data, self.dtype)
        if out.size != items:
            raise LayoutError(
                f"{self.url}#{self.path}: chunk holds {out.size} values, expected {items}; "
                f"{_DAMAGED}"
            )
        return out
