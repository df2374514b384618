"""Scans as groups of one HDF5 file (``proposal.h5#scan``), without NeXus metadata.

Options name what metadata would: ``frames`` (dataset path inside the scan group, of any
rank: a 2-D image is one frame; default: the only 3-D dataset in it), ``monitors`` (column
names), ``columns`` (group holding the 1-D columns; default: the frames' group),
``invalid_value`` (``auto``, a number, or ``null``), ``saturation_value`` and
``underload_value`` (a number; pixels at or above / at or below it are not counts).
"""

from __future__ import annotations

import h5py

from basinflow.errors import LayoutError
from basinflow.storage import hdf5
from basinflow.storage.layouts.base import (
    HDF5Layout,
    PixelMask,
    ScanContent,
    detector_limit,
    invalid_value,
)
from basinflow.storage.layouts.frames import open_frames
from basinflow.storage.layouts.nexus import _text


class GroupsLayout(HDF5Layout):
    name = "groups"

    def read_open(self, handle, url, fragment, storage_options, where) -> ScanContent:
        group = hdf5.get_group(handle, fragment, "scan group")
        ds = self._frames(group, where)
        frames = open_frames(url, ds, storage_options, where)
        col_group = group.get(self.options["columns"]) if "columns" in self.options else ds.parent
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
        # plain HDF5 has no detector group to read limits from: only the options give them
        (sat, sat_from), (under, under_from) = (
            detector_limit(name, None, "", self.options.get(name), where)
            for name in ("saturation_value", "underload_value")
        )
        mask = PixelMask(
            None,
            invalid_value(ds.dtype, self.options.get("invalid_value", "auto")),
            "",
            sat,
            under,
            (sat_from, under_from),
        )
        sources = tuple(u for u in frames.sources if u != url)
        return ScanContent(
            url, frames, columns, roles, attrs, fragment=fragment, sources=sources, mask=mask
        )

    def _frames(self, group: h5py.Group, where: str) -> h5py.Dataset:
        path = self.options.get("frames")
        if path:
            ds = group.get(path)
            if not isinstance(ds, h5py.Dataset):
                raise LayoutError(
                    f"{where}: frames dataset {path!r} is missing; check the layout option "
                    "'frames' in the repository's config"
                )
            return ds
        found: list[h5py.Dataset] = []
        images: list[str] = []

        def visit(name: str, obj) -> None:
            if isinstance(obj, h5py.Dataset) and obj.ndim >= 2:
                (found if obj.ndim == 3 else images).append(obj if obj.ndim == 3 else name)

        group.visititems(visit)
        if len(found) != 1:
            names = [d.name.split(group.name, 1)[-1].lstrip("/") for d in found] + images
            raise LayoutError(
                f"{where}: expected one 3-D frames dataset, found "
                f"{len(found) or 'none'}; nothing in the file says which dataset is the "
                "detector: set the layout option 'frames', one line in the repository's "
                "config: layout_options: "
                f"{{frames: {names[0] if names else 'PATH/IN/SCAN/GROUP'}}}"
                + (f" (datasets of 2 or more dims: {', '.join(names[:8])})" if names else "")
            )
        return found[0]
