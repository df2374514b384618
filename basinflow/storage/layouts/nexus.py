"""NeXus HDF5: one ``NXentry`` per scan; frames are the image its ``NXdata`` plots, or the
``data`` of its ``NXdetector``; a scan without an image is its counters.

The rules (``@default`` chain, signal/axes in every dialect) are in
:mod:`~basinflow.storage.layouts.nxrules`. Options (the repository's ``layout_options``):
``frames`` (the image dataset, relative to the entry or absolute), ``monitors`` (column
names), ``invalid_value``, ``saturation_value``, ``underload_value`` (each ``auto``: the
detector's own, a number, or ``null``: none). The entry is the template's
``#fragment``; without one (or with ``#*``) it is the file's default entry.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from basinflow.errors import LayoutError, NotFound
from basinflow.storage import sources
from basinflow.storage.layouts import nxrules
from basinflow.storage.layouts.base import (
    HDF5Layout,
    PixelMask,
    ScanContent,
    detector_limit,
    invalid_value,
)
from basinflow.storage.layouts.frames import open_frames

# kept for layouts that import them from here
_text = nxrules.text
nx_class = nxrules.nx_class


def find_nxdata(entry: h5py.Group) -> h5py.Group | None:
    """The entry's default ``NXdata`` (``@default`` chain), else its first ``NXdata``."""
    found = nxrules.default_nxdata(entry)
    if found is not None:
        return found
    groups = nxrules.nxdata_groups(entry)
    return groups[0] if groups else None


def scan_group(handle, url: str, fragment: str | None, storage_options, what: str):
    """The scan's group: the fragment's path (external links checked), or for no fragment
    or ``*`` the file's default entry. Returns the group and the files the path crossed."""
    where = f"{url}#{fragment or ''}"
    root = handle.file
    if fragment in (None, "", "*"):
        entry = nxrules.default_entry(root)
        if entry is None:
            entries = [k for k in root if isinstance(root.get(k), h5py.Group)]
            raise LayoutError(
                f"{url}: no default entry (no @default on the root and {len(entries)} groups: "
                f"{', '.join(entries[:8])}); name the scan's group after '#' in the template, "
                "e.g. '#{scan}' or '#entry'"
            )
        return entry, []
    obj, through = sources.get(root, fragment, url, where, storage_options)
    if obj is None:
        raise NotFound(
            f"{where}: no such {what} in the HDF5 file; check the part after '#' in the template"
        )
    if not isinstance(obj, h5py.Group):
        raise LayoutError(f"{where} is a dataset, not a {what}; put the {what}'s path after '#'")
    return obj, through


def _detector_groups(ds: h5py.Dataset, extra: tuple[h5py.Group, ...]) -> list[h5py.Group]:
    """Where the detector's own description of ``ds`` lives: its ``NXdetector`` parent
    (or any parent holding a ``pixel_mask``), then ``extra`` (BLISS: ``instrument/<det>``,
    since ``measurement/<det>`` is not inside the detector group)."""
    parent = ds.parent
    found = []
    if nxrules.nx_class(parent) == "NXdetector" or "pixel_mask" in parent:
        found.append(parent)
    found.extend(g for g in extra if isinstance(g, h5py.Group) and g.name != parent.name)
    return found


def _limit_in(groups: list[h5py.Group], name: str, url: str, where: str):
    """The scalar ``name`` (``saturation_value``/``underload_value``) of the first group
    that has it, and its address; ``(None, "")`` when none does."""
    for group in groups:
        obj = group.get(name)
        if obj is None:
            continue
        at = f"{url}#{obj.name}"
        if (
            not isinstance(obj, h5py.Dataset)
            or obj.size != 1
            or not (np.issubdtype(obj.dtype, np.integer) or np.issubdtype(obj.dtype, np.floating))
        ):
            shape = obj.shape if isinstance(obj, h5py.Dataset) else "a group"
            raise LayoutError(
                f"{where}: {at} is {shape} of {getattr(obj, 'dtype', '-')}, not one number; "
                f"basinflow applies one {name} to every frame: set the repository's layout "
                f"option {name!r} to the number to use, or null to ignore it"
            )
        return np.asarray(obj[()]).reshape(-1)[0], at
    return None, ""


def detector_mask(
    ds: h5py.Dataset,
    image: tuple[int, ...],
    url: str,
    options: Mapping[str, Any],
    where: str,
    extra: tuple[h5py.Group, ...] = (),
) -> PixelMask:
    """What the detector holding ``ds`` marks as not counts: its ``pixel_mask``, the
    invalid value, and its ``saturation_value``/``underload_value`` (each overridden by the
    layout option of the same name)."""
    pixels, source = None, ""
    groups = _detector_groups(ds, extra)
    for group in groups:
        pm = group.get("pixel_mask")
        if isinstance(pm, h5py.Dataset) and tuple(pm.shape[-2:]) == image:
            values = pm[()] if pm.ndim == 2 else pm[(0,) * (pm.ndim - 2)]
            pixels, source = np.asarray(values) != 0, f"{url}#{pm.name}"
            break
    limits = []
    for name in ("saturation_value", "underload_value"):
        option = options.get(name, "auto")
        found, at = _limit_in(groups, name, url, where) if option == "auto" else (None, "")
        limits.append(detector_limit(name, found, at, option, where))
    (saturation, sat_from), (underload, under_from) = limits
    return PixelMask(
        pixels,
        invalid_value(ds.dtype, options.get("invalid_value", "auto")),
        source,
        saturation,
        underload,
        (sat_from, under_from),
    )


class NexusLayout(HDF5Layout):
    """Reads ``NXdata`` ``signal``/``axes``, ``NXdetector``, ``NXpositioner``, ``NXmonitor``."""

    name = "nexus"

    def read_open(self, handle, url, fragment, storage_options, where) -> ScanContent:
        entry, through = scan_group(handle, url, fragment, storage_options, "NeXus entry group")
        nxdata = find_nxdata(entry)
        info = nxrules.read_nxdata(nxdata) if nxdata is not None else None
        # walked once, when first needed: after the frames' own checks, so an absent
        # linked file is named by them rather than met on the walk
        groups = functools.cache(lambda: _classified_groups(entry))
        ds = self._frames(entry, groups, info, url, where, storage_options, through)
        content = ScanContent(url, None, {}, {}, fragment=fragment)
        if ds is not None:
            self._image(content, entry, groups, ds, info, url, where, storage_options)
        self._counters(content, groups, info, ds)
        content.attrs.update(
            {
                "title": _text(entry["title"][()]) if "title" in entry else "",
                "layout": self.name,
            }
        )
        if "start_time" in entry:
            content.attrs["start_time"] = _text(entry["start_time"][()])
        content.sources = tuple(dict.fromkeys(u for u in (*through, *content.sources) if u != url))
        return content

    # -- frames ----------------------------------------------------------------------------
    def _frames(
        self, entry, groups, info, url, where, storage_options, through
    ) -> h5py.Dataset | None:
        path = self.options.get("frames")
        if path is not None:
            root = entry if not path.startswith("/") else entry.file
            ds, crossed = sources.get(root, path, url, where, storage_options)
            through.extend(crossed)
            if not isinstance(ds, h5py.Dataset):
                raise LayoutError(
                    f"{where}: frames dataset {path!r} is missing; check the file, or the "
                    "repository's layout option 'frames'"
                )
            return ds
        if info is not None and info.signal_name and info.signal is None:
            # the file names its data and it is not there: an absent external link target
            # is named by sources.get; anything else is a damaged or partial file
            sources.get(info.group, info.signal_name, url, where, storage_options)
            raise LayoutError(
                f"{where}: frames dataset '{info.group.name}/{info.signal_name}' is missing; "
                "check the file, or set the repository's layout option 'frames' to the "
                "detector dataset"
            )
        if info is not None and info.signal is not None and _is_image(info.signal):
            return info.signal
        images = _detector_images(groups())
        if len(images) > 1:
            raise LayoutError(
                f"{where}: several detector images ({', '.join(d.name for d in images)}) and "
                "the default plot is none of them; pick one with the repository's layout "
                f"option 'frames' (e.g. layout_options: {{frames: {images[0].name}}})"
            )
        return images[0] if images else None

    def _image(self, content, entry, groups, ds, info, url, where, storage_options) -> None:
        frames = open_frames(url, ds, storage_options, where)
        content.frames = frames
        content.sources = frames.sources
        nscan = ds.ndim - 2
        content.scan_shape = tuple(ds.shape[:nscan]) if nscan > 1 else ()
        content.mask = detector_mask(
            ds, tuple(ds.shape[-2:]), url, self.options, where, _described_by(groups(), ds)
        )
        if info is None or info.signal is None or info.signal.name != ds.name:
            return
        for axis, dims in info.axes.items():
            obj = info.group.get(axis)
            if not isinstance(obj, h5py.Dataset) or obj.ndim != 1 or len(dims) != 1:
                continue
            dim = dims[0]
            if dim >= nscan:  # a pixel axis: a coordinate of y or x, never a column
                if len(obj) == ds.shape[dim]:
                    content.pixel_coords[axis] = ("yx"[dim - nscan], obj[()])
                continue
            values = obj[()]
            if nscan > 1 and len(values) == ds.shape[dim]:  # a mesh: one value per frame
                values = _per_frame(values, dim, tuple(ds.shape[:nscan]))
            content.columns[axis] = values
            content.roles[axis] = "monitor" if self.is_monitor(axis) else "positioner"

    # -- columns ---------------------------------------------------------------------------
    def _counters(self, content, groups, info, ds) -> None:
        strict = ds is not None  # with frames, NXdata columns must match them
        n = content.points if ds is not None else _points(info)
        skipped: list[str] = []

        def add(name: str, obj: Any, role: str, exact: bool) -> None:
            if name in content.columns or not isinstance(obj, h5py.Dataset) or obj.ndim != 1:
                return
            if ds is not None and obj.name == ds.name:
                return
            if not exact and n is not None and len(obj) != n:
                skipped.append(f"{name}({len(obj)})")
                return
            content.columns[name] = obj[()]
            content.roles[name] = "monitor" if self.is_monitor(name) else role

        if info is not None:
            for name in info.group:
                if name in content.pixel_coords:
                    continue
                add(name, info.group.get(name), "positioner", strict or n is None)
        for group, cls in groups():
            short = group.name.rsplit("/", 1)[1]
            if cls == "NXpositioner":
                add(short, group.get("value"), "positioner", False)
            elif cls == "NXmonitor":
                add(short, group.get("data"), "monitor", False)
            elif cls == "NXdetector" and ds is None:
                add(short, group.get("data"), "counter", False)
        if skipped:
            content.attrs["skipped_columns"] = ", ".join(skipped)


def _described_by(groups: list[tuple[h5py.Group, str]], ds: h5py.Dataset) -> tuple[h5py.Group, ...]:
    """The ``NXdetector`` that describes frames plotted outside it (NXmx: ``entry/data/data``
    beside ``entry/instrument/detector``, which holds ``saturation_value`` and ``pixel_mask``
    but often no ``data``): the one whose ``data`` is ``ds`` itself, else the entry's only
    detector unless its own ``data`` has another image size."""
    detectors = [g for g, cls in groups if cls == "NXdetector"]
    for group in detectors:
        data = group.get("data")
        if isinstance(data, h5py.Dataset) and data == ds:
            return (group,)
    if len(detectors) == 1:
        data = detectors[0].get("data")
        if not isinstance(data, h5py.Dataset) or tuple(data.shape[-2:]) == tuple(ds.shape[-2:]):
            return (detectors[0],)
    return ()


def _points(info) -> int | None:
    if info is not None and info.signal is not None and info.signal.ndim == 1:
        return len(info.signal)
    return None


def _per_frame(values: np.ndarray, dim: int, scan_shape: tuple[int, ...]) -> np.ndarray:
    """A mesh axis (one value per step of scan dim ``dim``) as one value per frame."""
    shape = [1] * len(scan_shape)
    shape[dim] = len(values)
    return np.broadcast_to(values.reshape(shape), scan_shape).reshape(-1).copy()


def _detector_images(groups: list[tuple[h5py.Group, str]]) -> list[h5py.Dataset]:
    found = []
    for group, cls in groups:
        if cls == "NXdetector":
            data = group.get("data")
            if isinstance(data, h5py.Dataset) and (data.ndim >= 3 or _is_image(data)):
                found.append(data)
    return found


def _is_image(ds: h5py.Dataset) -> bool:
    """2-D and more is an image unless it says otherwise (``@interpretation`` spectrum);
    a 2-D NXdetector ``data`` must say ``image`` (it is often one spectrum per point)."""
    kind = nxrules.text(ds.attrs.get("interpretation", "")).lower()
    if ds.ndim < 2 or kind in ("spectrum", "scalar"):
        return False
    return ds.ndim >= 3 or kind == "image" or nxrules.nx_class(ds.parent) == "NXdata"


def _classified_groups(entry: h5py.Group) -> list[tuple[h5py.Group, str]]:
    """Every group of the entry (:func:`_walk_groups`) with its ``NX_class``, walked once
    per read: the frames, the detector describing them and the columns all look, and
    each walk opened every group and read its class again (B2)."""
    return [(g, nxrules.nx_class(g)) for g in _walk_groups(entry)]


def _walk_groups(group: h5py.Group, depth: int = 3):
    """The groups down to ``depth`` levels below ``group``. Members are classified
    before they are opened (``getclass``: one object-info call, no h5py object): an
    entry holds mostly datasets, and opening each only to drop it was most of a local
    summary's CPU time (benchmarks/RESULTS.md, B2)."""
    if depth == 0:
        return
    for name in group:
        try:
            kind = group.get(name, getclass=True)
        except (RuntimeError, KeyError, OSError):  # an external link to an absent file
            continue
        if kind is not h5py.Group:
            continue  # a dataset, or a broken link (None): not ours to read here
        obj = group.get(name)
        if isinstance(obj, h5py.Group):
            yield obj
            yield from _walk_groups(obj, depth - 1)
