"""Raw layouts: a registry of file families (fsspec ``registry.py`` style).

Built-ins are registered by dotted path and imported on first use; packages add their own
through the ``basinflow.layouts`` entry-point group.
"""

from __future__ import annotations

import importlib
import warnings
from functools import cache
from importlib.metadata import entry_points
from types import MappingProxyType

from basinflow.errors import ConfigError, LayoutError
from basinflow.storage.layouts.base import Layout, ScanContent, summarize, to_dataset

_builtin = {
    "nexus": "basinflow.storage.layouts.nexus:NexusLayout",
    "groups": "basinflow.storage.layouts.groups:GroupsLayout",
    "tiff": "basinflow.storage.layouts.tiff:TiffLayout",
}
_registry: dict[str, str | type[Layout]] = dict(_builtin)
registry = MappingProxyType(_registry)


def register_layout(name: str, cls: str | type[Layout], *, replace: bool = False) -> None:
    if name in _registry and not replace and _registry[name] != cls:
        raise ConfigError(f"layout {name!r} is already registered; pass replace=True")
    _registry[name] = cls


@cache
def _discover() -> None:
    for ep in entry_points(group="basinflow.layouts"):
        if ep.name not in _registry:
            _registry[ep.name] = ep.value


def refresh() -> None:
    _discover.cache_clear()
    _discover()


def layout_class(name: str) -> type[Layout]:
    _discover()
    if name not in _registry:
        raise ConfigError(f"unknown layout {name!r}; known: {', '.join(sorted(_registry))}")
    target = _registry[name]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        try:
            target = getattr(importlib.import_module(module), attr)
        except Exception as exc:
            warnings.warn(f"layout plugin {name!r} ({module}) failed to load: {exc}", stacklevel=2)
            raise ConfigError(f"layout {name!r} could not be loaded: {exc}") from exc
        _registry[name] = target
    return target


def detect(url: str, fragment: str | None, storage_options=None) -> str:
    """Guess a layout: directories are TIFF stacks; NeXus entries have ``NX_class``."""
    if url.endswith("/"):
        return "tiff"
    from basinflow.storage import hdf5

    handle = hdf5.open_h5(url, storage_options)
    try:
        obj = hdf5.get_object(handle, fragment or "/", "scan")
        if obj.attrs.get("NX_class") is not None or any(
            hasattr(v, "attrs") and v.attrs.get("NX_class") is not None for v in obj.values()
        ):
            return "nexus"
        return "groups"
    finally:
        handle.close()


__all__ = [
    "Layout",
    "LayoutError",
    "ScanContent",
    "detect",
    "layout_class",
    "refresh",
    "register_layout",
    "registry",
    "summarize",
    "to_dataset",
]
