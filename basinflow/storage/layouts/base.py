"""The layout contract: how one family of files becomes a scan Dataset.

A layout reads *metadata and columns* (small 1-D arrays) eagerly and describes the frames
lazily (:class:`FrameSource`), so listing and summaries never touch frames. Turning that
description into an ``xarray.Dataset`` is shared (:func:`to_dataset`); a facility adds its
own file family by writing one :class:`Layout` subclass.
"""

from __future__ import annotations

import re
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
#: monitor names beamlines write (ESRF BLISS ``I0``, ``I0t``, ``mon3``, ``*_I0t``...), matched
#: case-insensitively against a column's whole name
MONITOR_PATTERN = re.compile(
    r"(.*_)?(i0t?|i00|izero|mon\d*|monitor|ion_chamber)(_raw|_corr)?", re.IGNORECASE
)


@dataclass(frozen=True)
class PixelMask:
    """Pixels a detector marks as not counts: a static mask, an invalid value, and the
    limits of its trusted range.

    ``pixels`` is ``(y, x)`` bool, True = excluded (NeXus ``pixel_mask`` != 0);
    ``invalid`` a value that marks a gap or dead pixel in every frame (Eiger/LIMA write
    ``2**32 - 1`` in uint32 frames). ``saturation`` and ``underload`` are the NXdetector
    ``saturation_value`` / ``underload_value``: a pixel at or above the first, or at or
    below the second, did not record a count it can be trusted for (a saturated CCD well,
    a counter that rolled over), so it is left out like a masked one. ``source`` and
    ``limits_from`` say where each came from, for provenance.
    """

    pixels: np.ndarray | None = None
    invalid: int | float | None = None
    source: str = ""
    saturation: int | float | None = None
    underload: int | float | None = None
    #: where ``saturation`` / ``underload`` came from (a dataset's address, or the option)
    limits_from: tuple[str, str] = ("", "")

    def describe(self) -> str:
        parts = []
        if self.pixels is not None:
            parts.append(f"pixel_mask {self.source} ({int(self.pixels.sum())} pixels)")
        if self.invalid is not None:
            parts.append(f"invalid value {self.invalid}")
        if self.saturation is not None:
            parts.append(
                f"saturation value {self.saturation} (pixels at or above it left out; "
                f"{self.limits_from[0] or 'layout option'})"
            )
        if self.underload is not None:
            parts.append(
                f"underload value {self.underload} (pixels at or below it left out; "
                f"{self.limits_from[1] or 'layout option'})"
            )
        return "; ".join(parts)


def detector_limit(
    name: str, found: Any, found_at: str, option: Any, where: str
) -> tuple[int | float | None, str]:
    """One limit of the trusted range (``name``: ``saturation_value`` or
    ``underload_value``) and where it came from.

    ``option`` is the repository's layout option of the same name: ``auto`` (the default)
    takes the file's value ``found`` (read at ``found_at``; ``None`` when the detector
    writes none), a number replaces it (a detector that writes a wrong one), ``null``
    ignores it. Anything else is a :class:`LayoutError`: a limit that is silently not
    applied would count saturated pixels as photons."""
    if option is None or option == "none":
        return None, ""
    if isinstance(option, bool) or not (
        option == "auto" or isinstance(option, int | float | np.integer | np.floating)
    ):
        raise LayoutError(
            f"{where}: layout option {name!r} is {option!r}; give a number, 'auto' (the "
            "detector's own value) or null (none)"
        )
    if option != "auto":
        value, found_at = option, "layout option"
    elif found is None:
        return None, ""
    else:
        value = found
    value = value.item() if isinstance(value, np.generic) else value
    if not np.isfinite(value):
        raise LayoutError(
            f"{where}: {name} {value!r} ({found_at}) is not a finite number, so no pixel would "
            f"be left out by it; set the repository's layout option {name!r} to the "
            "detector's real value, or null to ignore it"
        )
    return value, found_at


def invalid_value(dtype: np.dtype, option: Any = "auto") -> int | float | None:
    """The invalid-pixel value for frames of ``dtype``: the repository's layout option
    ``invalid_value`` (a number, or ``null`` for none), else for ``auto`` the largest uint32
    (a counting detector never records 2**32 - 1: Eiger/LIMA gap and dead pixels)."""
    if option is None or option == "none":
        return None
    if option != "auto":
        return option
    return int(np.iinfo(np.uint32).max) if np.dtype(dtype) == np.uint32 else None


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
    """What a layout found: lazy frames (``None`` for a scan of counters only), small
    columns, and their roles."""

    url: str
    frames: FrameSource | None
    columns: dict[str, np.ndarray]
    roles: dict[str, str]  # column name -> "positioner" | "monitor" | "counter"
    attrs: dict[str, Any] = field(default_factory=dict)
    #: the file whose pin identifies the scan (the manifest of a TIFF directory)
    pin_url: str | None = None
    #: the path of the scan inside an HDF5 file (the template's ``#fragment``), if any
    fragment: str | None = None
    #: other files the scan reads (VDS sources, external-link targets): part of its pin
    sources: tuple[str, ...] = ()
    mask: PixelMask | None = None
    #: coordinates of the image axes (NXdata axes on pixel dims): name -> (dim, values)
    pixel_coords: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    #: the scan's shape when frames come from a mesh (two or more scanned axes)
    scan_shape: tuple[int, ...] = ()

    @property
    def points(self) -> int:
        """Frames, or the points of a scan of counters only."""
        if self.frames is not None:
            return int(self.frames.shape[0])
        return max((len(c) for c in self.columns.values()), default=0)

    @property
    def where(self) -> str:
        """The scan's full address for messages (``url#fragment``)."""
        return f"{self.url}#{self.fragment}" if self.fragment else self.url

    def validate(self) -> ScanContent:
        where = self.where
        if self.frames is None:
            if not self.columns:
                raise LayoutError(
                    f"{where}: no image and no counters found; set the repository's layout "
                    "option 'frames' to the detector dataset (see docs/files.md)"
                )
            shape: tuple[int, ...] = (self.points,)
        else:
            shape = tuple(self.frames.shape)
        if self.frames is not None and len(shape) != 3:
            raise LayoutError(
                f"{where}: frames have shape {shape}; expected (frames, rows, columns); "
                "point the layout's 'frames' option at the detector image stack"
            )
        if shape[0] == 0:
            raise LayoutError(
                f"{where}: the scan has zero {'frames' if self.frames is not None else 'points'}; "
                "nothing to read (an aborted scan? "
                "wait until it is written, or leave it out)"
            )
        for name, col in self.columns.items():
            if col.ndim != 1 or len(col) != shape[0]:
                what = "frames" if self.frames is not None else "points"
                raise LayoutError(
                    f"{where}: column {name!r} has shape {col.shape} but there are "
                    f"{shape[0]} {what}; the scan is incomplete (wait until it is written) or "
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

    def is_monitor(self, name: str) -> bool:
        """A configured ``monitors`` list is the whole truth; else the usual names."""
        if self.options.get("monitors"):
            return name in self.options["monitors"]
        return name.lower() in DEFAULT_MONITORS or bool(MONITOR_PATTERN.fullmatch(name))


class HDF5Layout(Layout):
    """A family of HDF5 files: the file is opened once for all metadata and closed after;
    subclasses implement :meth:`read_open` on the open handle."""

    def read(
        self, url: str, fragment: str | None, storage_options: Mapping[str, Any] | None = None
    ) -> ScanContent:
        from basinflow.storage import hdf5

        handle = hdf5.open_h5(url, storage_options)
        try:
            return self.read_open(handle, url, fragment, storage_options, f"{url}#{fragment or ''}")
        finally:
            handle.close()

    @abstractmethod
    def read_open(
        self, handle, url: str, fragment: str | None, storage_options, where: str
    ) -> ScanContent:
        """Describe the scan from the open ``handle`` (``where``: its address for messages)."""


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
    frames = content.frames
    return {
        "type": title.split()[0] if title else "unknown",
        "frames": content.points,
        "axes": axes,
        "detector": tuple(int(s) for s in frames.shape[1:]) if frames is not None else (),
        "dtype": str(np.dtype(frames.dtype)) if frames is not None else "",
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
    """The scan as a lazy Dataset: ``frames(index, y, x)`` plus columns on ``index``;
    ``pixel_mask(y, x)`` and ``frames.attrs`` ``invalid_value``, ``saturation_value``,
    ``underload_value`` where the detector has them."""
    content.validate()
    frames = content.frames
    variables: dict[str, Any] = {}
    attrs = {k: v for k, v in content.attrs.items() if isinstance(v, str | int | float)}
    if frames is not None:
        variables["frames"] = _frames_variable(content, identity, chunk_bytes)
        for name, (dim, values) in content.pixel_coords.items():
            variables[name] = (dim, values, {"role": "pixel axis"})
        mask = content.mask
        if mask is not None and mask.pixels is not None:
            variables["pixel_mask"] = (FRAME_DIMS[1:], mask.pixels, {"role": "mask"})
        if mask is not None and mask.describe():
            attrs["mask"] = mask.describe()
        if content.scan_shape:
            attrs["scan_shape"] = list(content.scan_shape)
    for col, values in content.columns.items():
        variables[col] = ("index", values, {"role": content.roles.get(col, "positioner")})
    attrs.update({k: v for k, v in identity.items() if k != "pin"})
    for k, v in (identity.get("pin") or {}).items():
        if isinstance(v, str | int | float):
            attrs[f"pin_{k}"] = v
    ds = xr.Dataset(variables, coords={"index": np.arange(content.points)}, attrs=attrs)
    if frames is not None:
        ds["frames"].encoding["storage_chunks"] = tuple(frames.storage_chunks)
    return ds


def _frames_variable(content: ScanContent, identity: Mapping[str, Any], chunk_bytes: int):
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
    fattrs: dict[str, Any] = {"role": "frames"}
    mask = content.mask
    if mask is not None:
        for key, value in (
            ("invalid_value", mask.invalid),
            ("saturation_value", mask.saturation),
            ("underload_value", mask.underload),
        ):
            if value is not None:
                fattrs[key] = value
    return (FRAME_DIMS, data, fattrs)
