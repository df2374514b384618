"""Frames of any rank as the ``(index, y, x)`` stack recipes read.

Files hold one 2-D image (SAXS/SANS), a stack ``(n, y, x)``, or a mesh ``(n1, n2, y, x)``
(two scanned axes). :class:`FrameView` presents each as ``(index, y, x)`` without reading:
a single image is one frame, a mesh is its frames in C order with its ``scan_shape``
kept (``frames.attrs["scan_shape"]``) so a recipe can fold it back. :func:`open_frames`
picks the reader of an HDF5 dataset: a virtual dataset is checked for absent sources before
anything is read and read per source; everything else is an ``H5Array``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import h5py
import numpy as np

from basinflow.errors import LayoutError
from basinflow.storage import hdf5, sources


@dataclass
class FrameView:
    """``source`` (shape ``scan_shape + image_shape``) seen as ``(frames, *image_shape)``."""

    source: Any
    scan_shape: tuple[int, ...]
    shape: tuple[int, ...] = field(init=False)
    dtype: np.dtype = field(init=False)
    ndim: int = field(init=False)

    def __post_init__(self) -> None:
        image = tuple(self.source.shape[len(self.scan_shape) :])
        self.shape = (int(np.prod(self.scan_shape, dtype=np.int64)), *image)
        self.dtype = np.dtype(self.source.dtype)
        self.ndim = len(self.shape)

    @property
    def path(self) -> str:
        return getattr(self.source, "path", "")

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(getattr(self.source, "sources", ()))

    @property
    def inner(self) -> int:
        """Frames per step of the source's first axis."""
        return int(np.prod(self.scan_shape[1:], dtype=np.int64)) if self.scan_shape else 1

    @property
    def storage_chunks(self) -> tuple[int, ...]:
        if len(self.scan_shape) == 1:
            return tuple(self.source.storage_chunks)
        return (self.inner, *self.shape[1:])

    def with_index(self) -> FrameView:
        if not hasattr(self.source, "with_index"):
            return self
        return replace(self, source=self.source.with_index())

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if len(self.scan_shape) == 1:
            return np.asarray(self.source[key])
        first, rest = key[0], key[1:]
        if isinstance(first, int | np.integer):
            i = int(first) + (self.shape[0] if first < 0 else 0)
            return self[(slice(i, i + 1), *rest)][0]
        start, stop, step = first.indices(self.shape[0])
        if not self.scan_shape:  # one image
            block = np.asarray(self.source[(slice(None),) * self.source.ndim])[None]
            return block[(slice(start, stop, step), *rest)]
        inner = self.inner
        r0, r1 = start // inner, max(start // inner, -(-stop // inner))
        block = np.asarray(self.source[r0:r1]).reshape(-1, *self.shape[1:])
        lo = start - r0 * inner
        return block[(slice(lo, lo + max(0, stop - start), step), *rest)]


def open_frames(
    url: str,
    ds: h5py.Dataset,
    storage_options: Mapping[str, Any] | None,
    where: str,
    *,
    image_ndim: int = 2,
) -> FrameView:
    """The frames of ``ds`` (its last ``image_ndim`` axes are the image), lazily.

    A virtual dataset's sources are checked first (an absent one raises
    :class:`~basinflow.errors.MissingSourceError`), then read per source file."""
    if ds.ndim < image_ndim:
        raise LayoutError(
            f"{where}: {ds.name} has shape {ds.shape}, not an image; set the repository's "
            "layout option 'frames' to the detector dataset"
        )
    holder = hdf5.holder_url(url, ds)
    source: Any
    if ds.is_virtual:
        found = sources.check_virtual(ds, holder, where, storage_options)
        stack = sources.stack_of(ds, holder, storage_options, _part, found)
        source = (
            stack
            if stack is not None
            else _VirtualByH5(
                hdf5.H5Array.from_dataset(url, ds, storage_options),
                tuple(dict.fromkeys(s.url for s in found)),
            )
        )
    else:
        source = hdf5.H5Array.from_dataset(url, ds, storage_options, index=True)
    # the source's shape, not the dataset's: a printf stack is as long as the blocks found,
    # where libhdf5 reading remotely finds none and says 0
    return FrameView(source, tuple(source.shape[: ds.ndim - image_ndim]))


def _part(url: str, dset: str, shape: tuple[int, ...], storage_options) -> hdf5.H5Array:
    # dtype and chunks are read with the chunk index (with_index), when the scan is read
    return hdf5.H5Array(url, dset, shape, np.float64, None, dict(storage_options or {}))


@dataclass
class _VirtualByH5:
    """A virtual dataset whose mapping is not a stack of source blocks: h5py reads it,
    frame by frame, after its sources were found present."""

    array: hdf5.H5Array
    sources: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def path(self) -> str:
        return self.array.path

    @property
    def storage_chunks(self) -> tuple[int, ...]:
        return (1, *self.array.shape[1:])

    def __getitem__(self, key):
        return self.array[key]


__all__ = ["FrameView", "open_frames"]
