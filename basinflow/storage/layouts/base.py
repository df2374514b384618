"""The layout contract: how one family of files becomes a scan Dataset.

A layout reads *metadata and columns* (small 1-D arrays) eagerly and describes the frames
lazily (:class:`FrameSource`), so listing and summaries never touch frames. Turning that
description into an ``xarray.Dataset`` is shared (:func:`to_dataset`); a facility adds its
own file family by writing one :class:`Layout` subclass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from basinflow.errors import LayoutError

FRAME_DIMS = ("index", "y", "x")
DEFAULT_MONITORS = frozenset({"monitor", "mon", "i0", "ion_chamber", "izero"})


class FrameSource(Protocol):
    """Lazy frames: enough for :func:`dask.array.from_array` and no open handles."""

    shape: tuple[int, ...]
    dtype: np.dtype
    ndim: int

    @property
    def storage_chunks(self) -> tuple[int, ...]: ...

    def __getitem__(self, key): ...


@dataclass
class ScanContent:
    """What a layout found: lazy frames, small columns, and their roles."""

    url: str
    frames: FrameSource
    columns: dict[str, np.ndarray]
    roles: dict[str, str]  # column name -> "positioner" | "monitor"
    attrs: dict[str, Any] = field(default_factory=dict)
    #: the file whose pin identifies the scan (the manifest of a TIFF directory)
    pin_url: str | None = None
    #: the path of the scan inside an HDF5 file (the template's ``#fragment``), if any
    fragment: str | None = None

    @property
    def where(self) -> str:
        """The scan's full address for messages (``url#fragment``)."""
        return f"{self.url}#{self.fragment}" if self.fragment else self.url

    def validate(self) -> ScanContent:
        shape = tuple(self.frames.shape)
        where = self.where
        if len(shape) != 3:
            raise LayoutError(
                f"{where}: frames have shape {shape}; expected (frames, rows, columns); "
                "point the layout's 'frames' option at the detector image stack"
            )
        if shape[0] == 0:
            raise LayoutError(
                f"{where}: the scan has zero frames; nothing to read (an aborted scan? "
                "wait until it is written, or leave it out)"
            )
        for name, col in self.columns.items():
            if col.ndim != 1 or len(col) != shape[0]:
                raise LayoutError(
                    f"{where}: column {name!r} has shape {col.shape} but there are "
                    f"{shape[0]} frames; the scan is incomplete (wait until it is written) or "
                    "the layout options are wrong (check 'frames' and 'columns')"
                )
        return self


class Layout(ABC):
    """One family of raw files. Subclasses set ``name`` and implement :meth:`read`."""

    name: ClassVar[str]
    #: whether this layout reads a directory (``.../{scan}/``) instead of an HDF5 object
    supports_directories: ClassVar[bool] = False

    def __init__(self, **options: Any):
        self.options = options

    @abstractmethod
    def read(
        self, url: str, fragment: str | None, storage_options: Mapping[str, Any] | None = None
    ) -> ScanContent:
        """Describe the scan at ``url`` (+ HDF5 ``fragment``): metadata and columns only."""

    def monitors(self) -> frozenset[str]:
        return frozenset(self.options.get("monitors") or DEFAULT_MONITORS)


def summarize(content: ScanContent) -> dict[str, Any]:
    """Cheap facts about a scan: type, frame count, scanned axes with ranges, detector."""
    axes = {}
    for name, col in content.columns.items():
        if content.roles.get(name) != "positioner" or not np.issubdtype(col.dtype, np.number):
            continue
        lo, hi = float(np.nanmin(col)), float(np.nanmax(col))
        if hi > lo:
            axes[name] = (lo, hi)
    title = str(content.attrs.get("title", ""))
    return {
        "type": title.split()[0] if title else "unknown",
        "frames": int(content.frames.shape[0]),
        "axes": axes,
        "detector": tuple(int(s) for s in content.frames.shape[1:]),
        "dtype": str(np.dtype(content.frames.dtype)),
        "title": title,
    }


def frame_chunks(
    shape: tuple[int, ...], storage: tuple[int, ...], itemsize: int, target_bytes: int
) -> tuple[int, ...]:
    """Dask chunks along ``index``: the largest whole multiple of the storage chunk that
    stays under ``target_bytes`` (at least one storage chunk)."""
    frame_bytes = int(np.prod(shape[1:], dtype=np.int64)) * itemsize
    per = max(1, storage[0])
    k = max(1, target_bytes // max(1, frame_bytes * per))
    return (min(shape[0], per * k), *shape[1:])


def to_dataset(
    content: ScanContent, identity: Mapping[str, Any], *, chunk_bytes: int = 32 * 2**20
) -> xr.Dataset:
    """The scan as a lazy Dataset: ``frames(index, y, x)`` plus columns on ``index``."""
    content.validate()
    frames = content.frames
    chunks = frame_chunks(
        frames.shape, frames.storage_chunks, np.dtype(frames.dtype).itemsize, chunk_bytes
    )
    name = "frames-" + tokenize(content.url, identity.get("pin"), getattr(frames, "path", ""))
    data = da.from_array(
        frames,
        chunks=chunks,
        name=name,
        asarray=True,
        lock=False,
        meta=np.empty((0, 0, 0), dtype=frames.dtype),
    )
    variables: dict[str, Any] = {"frames": (FRAME_DIMS, data, {"role": "frames"})}
    for col, values in content.columns.items():
        variables[col] = ("index", values, {"role": content.roles.get(col, "positioner")})
    attrs = {k: v for k, v in content.attrs.items() if isinstance(v, str | int | float)}
    attrs.update({k: v for k, v in identity.items() if k != "pin"})
    for k, v in (identity.get("pin") or {}).items():
        attrs[f"pin_{k}"] = v
    ds = xr.Dataset(variables, coords={"index": np.arange(frames.shape[0])}, attrs=attrs)
    ds["frames"].encoding["storage_chunks"] = tuple(frames.storage_chunks)
    return ds
