"""Scans as groups of one HDF5 file (``proposal.h5#scan``), without NeXus metadata.

Options name what metadata would: ``frames`` (dataset path inside the scan group; default:
the only 3-D dataset in it), ``monitors`` (column names), ``columns`` (group holding the
1-D columns; default: the frames' group).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import h5py

from basinflow.errors import LayoutError
from basinflow.storage import hdf5
from basinflow.storage.layouts.base import Layout, ScanContent
from basinflow.storage.layouts.nexus import _text


class GroupsLayout(Layout):
    name = "groups"

    def read(
        self, url: str, fragment: str | None, storage_options: Mapping[str, Any] | None = None
    ) -> ScanContent:
        where = f"{url}#{fragment or ''}"
        handle = hdf5.open_h5(url, storage_options)
        try:
            group = hdf5.get_group(handle, fragment, "scan group")
            ds = self._frames(group, where)
            frames = hdf5.H5Array.from_dataset(url, ds, storage_options, index=True)
            col_group = (
                group.get(self.options["columns"]) if "columns" in self.options else ds.parent
            )
            if not isinstance(col_group, h5py.Group):
                raise LayoutError(
                    f"{where}: columns group {self.options.get('columns')!r} is missing; check "
                    "the layout option 'columns'"
                )
            monitors = self.monitors()
            columns, roles = {}, {}
            for name, obj in col_group.items():
                if isinstance(obj, h5py.Dataset) and obj.ndim == 1:
                    columns[name] = obj[()]
                    roles[name] = "monitor" if name in monitors else "positioner"
            attrs = {"title": _text(group.attrs.get("title", "")), "layout": self.name}
        finally:
            handle.close()
        return ScanContent(url, frames, columns, roles, attrs, fragment=fragment)

    def _frames(self, group: h5py.Group, where: str) -> h5py.Dataset:
        path = self.options.get("frames")
        if path:
            ds = group.get(path)
            if not isinstance(ds, h5py.Dataset):
                raise LayoutError(
                    f"{where}: frames dataset {path!r} is missing; check the layout option 'frames'"
                )
            return ds
        found: list[h5py.Dataset] = []
        group.visititems(
            lambda _n, o: found.append(o) if isinstance(o, h5py.Dataset) and o.ndim == 3 else None
        )
        if len(found) != 1:
            names = [d.name for d in found]
            raise LayoutError(
                f"{where}: expected one 3-D frames dataset, found {names or 'none'}; "
                "set the layout option 'frames'"
            )
        return found[0]
