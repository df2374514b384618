"""ESRF BLISS: scans are groups ``N.M`` of one dataset file (``#{scan}``), each with
``measurement/`` (counters, positioners and detector images, often links or virtual datasets
into LIMA files) and ``instrument/<name>`` (``NXpositioner``/``NXdetector`` groups).

Proposal and collection *master* files hold external links into the dataset files; every
link and virtual-dataset source resolves relative to the file that holds it (BLISS writes
them so), never the working directory, and an absent one is an error naming it.

Options (``layout_options``): ``detector`` (the image to read, a name in ``measurement/``
or ``instrument/``; needed when a scan has several images), ``monitors`` (column names),
``invalid_value``, ``saturation_value``, ``underload_value`` (each ``auto``: the detector's
own, from ``instrument/<detector>`` or the group holding the image; a number; or ``null``).
"""

from __future__ import annotations

from collections import Counter

import h5py

from basinflow.errors import LayoutError
from basinflow.storage import hdf5, sources
from basinflow.storage.layouts import nxrules
from basinflow.storage.layouts.base import HDF5Layout, ScanContent
from basinflow.storage.layouts.frames import open_frames
from basinflow.storage.layouts.nexus import detector_mask, scan_group


class BlissLayout(HDF5Layout):
    name = "bliss"

    def read_open(self, handle, url, fragment, storage_options, where) -> ScanContent:
        scan, through = scan_group(handle, url, fragment, storage_options, "BLISS scan group")
        # a scan reached through a master file's link lives in the dataset file: its own
        # links and VDS sources resolve against that file
        holder = hdf5.holder_url(url, scan) if through else url
        meas = scan.get("measurement")
        inst = scan.get("instrument")
        if not isinstance(meas, h5py.Group):
            raise LayoutError(
                f"{where}: no 'measurement' group; is this a BLISS scan? (a NeXus file "
                "takes layout: nexus)"
            )
        images, lines = self._classify(meas, inst, holder, where, storage_options)
        content = ScanContent(url, None, {}, {}, fragment=fragment)
        det = self._pick(images, scan, where)
        if det is not None:
            frames = open_frames(holder, det, storage_options, where)
            content.frames = frames
            content.sources = frames.sources
            name = det.name.rsplit("/", 1)[1]
            detector_group = inst.get(name) if isinstance(inst, h5py.Group) else None
            content.mask = detector_mask(
                det,
                tuple(det.shape[-2:]),
                holder,
                self.options,
                where,
                (detector_group,) if isinstance(detector_group, h5py.Group) else (),
            )
            content.attrs["detector"] = name
        n = content.points if det is not None else _points(scan, lines)
        skipped = []
        for name, ds in lines.items():
            if len(ds) != n:
                skipped.append(f"{name}({len(ds)})")
                continue
            content.columns[name] = ds[()]
            content.roles[name] = self._role(name, inst)
        if not content.columns and det is None:
            content.columns = {}
        if skipped:
            content.attrs["skipped_columns"] = ", ".join(skipped)
        title = scan.get("title")
        content.attrs.update(
            {
                "title": nxrules.text(title[()]) if isinstance(title, h5py.Dataset) else "",
                "layout": self.name,
            }
        )
        content.sources = tuple(dict.fromkeys(u for u in (*through, *content.sources) if u != url))
        return content

    def _classify(self, meas, inst, holder, where, storage_options):
        images: dict[str, h5py.Dataset] = {}
        lines: dict[str, h5py.Dataset] = {}
        for name in meas:
            obj, _ = sources.get(meas, name, holder, where, storage_options)
            if not isinstance(obj, h5py.Dataset):
                continue
            if obj.ndim >= 3 or (obj.ndim == 2 and _says_image(obj)):
                images[name] = obj
            elif obj.ndim == 1:
                lines[name] = obj
        if isinstance(inst, h5py.Group):
            for name in inst:
                g = inst.get(name)
                if isinstance(g, h5py.Group) and name not in images:
                    data = g.get("data")
                    if isinstance(data, h5py.Dataset) and data.ndim >= 3:
                        images[name] = data
        return images, lines

    def _pick(self, images: dict[str, h5py.Dataset], scan, where) -> h5py.Dataset | None:
        wanted = self.options.get("detector")
        if wanted is not None:
            if wanted not in images:
                raise LayoutError(
                    f"{where}: no detector image {wanted!r} (images here: "
                    f"{', '.join(images) or 'none'}); check the layout option 'detector'"
                )
            return images[wanted]
        if len(images) <= 1:
            return next(iter(images.values()), None)
        plotted = nxrules.default_nxdata(scan)
        info = nxrules.read_nxdata(plotted) if plotted is not None else None
        if info is not None and info.signal_name in images:
            return images[info.signal_name]
        raise LayoutError(
            f"{where}: several detector images ({', '.join(images)}); pick one with the "
            f"repository's layout option 'detector' (layout_options: {{detector: "
            f"{next(iter(images))}}})"
        )

    def _role(self, name: str, inst) -> str:
        if self.is_monitor(name):
            return "monitor"
        g = inst.get(name) if isinstance(inst, h5py.Group) else None
        if isinstance(g, h5py.Group) and nxrules.nx_class(g) == "NXpositioner":
            return "positioner"
        return "counter"


def _says_image(ds: h5py.Dataset) -> bool:
    return nxrules.text(ds.attrs.get("interpretation", "")).lower() == "image"


def _points(scan: h5py.Group, lines: dict[str, h5py.Dataset]) -> int:
    """Points of a counters-only scan: the length of its plotted axis, else the most common
    length (BLISS may write one counter a point longer than the rest)."""
    plotted = nxrules.default_nxdata(scan)
    if plotted is not None:
        info = nxrules.read_nxdata(plotted)
        for axis in info.axes:
            if axis in lines:
                return len(lines[axis])
        if info.signal is not None and info.signal.ndim == 1:
            return len(info.signal)
    counts = Counter(len(d) for d in lines.values())
    return counts.most_common(1)[0][0] if counts else 0
