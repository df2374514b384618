"""Raw layouts: a registry of file families on the shared helper (:mod:`basinflow.plugins`).

Built-ins are registered by dotted path and imported on first use; packages add their own
through the ``basinflow.layouts`` entry-point group.
"""

from __future__ import annotations

import h5py

from basinflow.errors import ConfigError, LayoutError
from basinflow.plugins import Registry
from basinflow.storage.layouts.base import (
    HDF5Layout,
    Layout,
    ScanContent,
    summarize,
    to_dataset,
)


def _check(name: str, obj: object) -> type[Layout]:
    if not (isinstance(obj, type) and issubclass(obj, Layout)):
        raise ConfigError(f"layout {name!r} is a {type(obj).__name__}, not a Layout class")
    return obj


LAYOUTS: Registry[type[Layout]] = Registry(
    "basinflow.layouts",
    "layout",
    check=_check,
    builtins={
        "nexus": "basinflow.storage.layouts.nexus:NexusLayout",
        "groups": "basinflow.storage.layouts.groups:GroupsLayout",
        "tiff": "basinflow.storage.layouts.tiff:TiffLayout",
    },
    unknown=ConfigError,
    broken=ConfigError,
)
registry = LAYOUTS.view


def register_layout(name: str, cls: str | type[Layout], *, replace: bool = False) -> None:
    LAYOUTS.register(name, cls, replace=replace)


def refresh() -> None:
    LAYOUTS.refresh()


def layout_class(name: str) -> type[Layout]:
    return LAYOUTS.get(name)


def detect(url: str, fragment: str | None, storage_options=None) -> str:
    """Guess a layout: directories are TIFF stacks; a BLISS writer's file (root
    ``@publisher``/``@creator``) or an ``NXentry`` with ``measurement/`` is BLISS; NeXus
    entries have ``NX_class``; the rest is scans as plain groups."""
    if url.endswith("/"):
        return "tiff"
    from basinflow.storage import hdf5

    handle = hdf5.open_h5(url, storage_options)
    try:
        return classify(handle, fragment)
    finally:
        handle.close()


def classify(handle, fragment: str | None) -> str:
    """:func:`detect` on an HDF5 file already open (``hdf5.open_h5``): the caller can then
    read the scan through the same handle instead of opening the file twice."""
    from basinflow.storage import hdf5
    from basinflow.storage.layouts.nxrules import text

    root = handle.file
    writer = " ".join(text(root.attrs.get(k, "")) for k in ("publisher", "creator")).lower()
    path = fragment if fragment not in (None, "", "*") else "/"
    obj = hdf5.get_object(handle, path, "scan")
    entry_with_measurement = text(obj.attrs.get("NX_class", "")) == "NXentry" and isinstance(
        obj.get("measurement"), h5py.Group
    )
    if "bliss" in writer or entry_with_measurement:
        return "bliss"
    if obj.attrs.get("NX_class") is not None or any(
        hasattr(v, "attrs") and v.attrs.get("NX_class") is not None for v in obj.values()
    ):
        return "nexus"
    return "groups"


__all__ = [
    "HDF5Layout",
    "Layout",
    "LayoutError",
    "ScanContent",
    "classify",
    "detect",
    "layout_class",
    "refresh",
    "register_layout",
    "registry",
    "summarize",
    "to_dataset",
]
