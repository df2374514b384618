"""NeXus HDF5: one ``NXentry`` per scan; frames are the ``signal`` of its ``NXdata``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from basinflow.errors import LayoutError
from basinflow.storage import hdf5
from basinflow.storage.layouts.base import Layout, ScanContent


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _text(v[()])
    return str(v)


def nx_class(obj: h5py.HLObject) -> str:
    return _text(obj.attrs.get("NX_class", ""))


def find_nxdata(entry: h5py.Group) -> h5py.Group | None:
    default = entry.attrs.get("default")
    if default is not None and _text(default) in entry:
        g = entry[_text(default)]
        if isinstance(g, h5py.Group) and nx_class(g) == "NXdata":
            return g
    for obj in entry.values():
        if isinstance(obj, h5py.Group) and nx_class(obj) == "NXdata":
            return obj
    return None


class NexusLayout(Layout):
    """Reads ``NXdata`` ``signal``/``axes`` and ``NXpositioner``/``NXmonitor`` groups.

    Options: ``frames`` (path inside the entry, overriding ``signal``), ``monitors``.
    """

    name = "nexus"

    def read(
        self, url: str, fragment: str | None, storage_options: Mapping[str, Any] | None = None
    ) -> ScanContent:
        where = f"{url}#{fragment or ''}"
        handle = hdf5.open_h5(url, storage_options)
        try:
            entry = hdf5.get_group(handle, fragment, "NeXus entry group")
            nxdata = find_nxdata(entry)
            frames_path = self.options.get("frames")
            if frames_path is None:
                if nxdata is None or "signal" not in nxdata.attrs:
                    raise LayoutError(
                        f"{where}: no NXdata group with a 'signal' attribute; set the "
                        "repository's layout option 'frames' to the detector dataset"
                    )
                frames_path = f"{nxdata.name}/{_text(nxdata.attrs['signal'])}"
            elif not frames_path.startswith("/"):
                frames_path = f"{entry.name}/{frames_path}"
            ds = handle.file.get(frames_path)
            if not isinstance(ds, h5py.Dataset):
                raise LayoutError(
                    f"{where}: frames dataset {frames_path!r} is missing; check the file, or set "
                    "the repository's layout option 'frames' to the detector dataset"
                )
            frames = hdf5.H5Array.from_dataset(url, ds, storage_options, index=True)
            columns, roles = {}, {}
            monitors = self.monitors()
            if nxdata is not None:
                for name, obj in nxdata.items():
                    if isinstance(obj, h5py.Dataset) and obj.ndim == 1 and obj.name != ds.name:
                        columns[name] = obj[()]
                        roles[name] = "monitor" if name in monitors else "positioner"
            for group in _walk_groups(entry):
                cls = nx_class(group)
                if cls == "NXpositioner" and "value" in group:
                    name = group.name.rsplit("/", 1)[1]
                    if name not in columns and group["value"].ndim == 1:
                        columns[name], roles[name] = group["value"][()], "positioner"
                elif cls == "NXmonitor" and "data" in group:
                    name = group.name.rsplit("/", 1)[1]
                    if name not in columns and group["data"].ndim == 1:
                        columns[name], roles[name] = group["data"][()], "monitor"
            attrs = {
                "title": _text(entry["title"][()]) if "title" in entry else "",
                "layout": self.name,
            }
            if "start_time" in entry:
                attrs["start_time"] = _text(entry["start_time"][()])
        finally:
            handle.close()
        return ScanContent(url, frames, columns, roles, attrs, fragment=fragment)


def _walk_groups(group: h5py.Group, depth: int = 3):
    if depth == 0:
        return
    for obj in group.values():
        if isinstance(obj, h5py.Group):
            yield obj
            yield from _walk_groups(obj, depth - 1)
