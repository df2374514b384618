"""One registry helper for every entry-point group (recipes, spice types, layouts).

In the style of fsspec's ``registry.py`` and xarray's ``backends/plugins.py``: each
:class:`Registry` is a private dict (name -> object, or a ``"package.module:attr"`` path
imported on first use), a read-only view of it, and the discovery of one entry-point
group. Discovery is cached and refreshable (:meth:`Registry.refresh`, after installing a
package in a running session); a plugin that fails to load becomes a warning when the
whole group is loaded (:meth:`Registry.load_all`), never a crash of everything else, and
a clear error naming the plugin when it is asked for by name. An unknown name lists the
known ones and says which entry-point group to install a package for.

A leaf module: it imports nothing of basinflow but :mod:`basinflow.errors`, so every
layer can keep its registry here without importing the layers that fill it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from basinflow.errors import BasinflowWarning, Error, NotFound

T = TypeVar("T")
EntryPoint = importlib.metadata.EntryPoint


class PluginWarning(BasinflowWarning):
    """A plugin (an entry point) could not be loaded; the others still work."""


class Registry(Generic[T]):
    """Named plugins of one kind, registered in code or found through an entry-point group.

    Parameters
    ----------
    group
        The entry-point group (``basinflow.recipes``).
    kind
        What a plugin is, for messages (``recipe``).
    check
        ``check(name, obj) -> obj``: accepts a loaded object or raises ``broken`` saying
        what is wrong with it (e.g. not a Recipe).
    builtins
        Plugins registered from the start, usually by dotted path (imported on first use).
    unknown, broken, warning
        The error for an unknown name, the error for a plugin that cannot be loaded, and
        the warning a broken plugin becomes during :meth:`load_all`.
    """

    def __init__(
        self,
        group: str,
        kind: str,
        *,
        check: Callable[[str, Any], T] | None = None,
        builtins: Mapping[str, T | str] | None = None,
        unknown: type[Exception] = NotFound,
        broken: type[Exception] = Error,
        warning: type[Warning] = PluginWarning,
    ) -> None:
        self.group = group
        self.kind = kind
        self._check = check
        self._items: dict[str, T | str] = dict(builtins or {})
        self.unknown, self.broken, self.warning = unknown, broken, warning
        self._eps: dict[str, EntryPoint] | None = None
        #: Read-only view of what is registered (lazy entries still as dotted paths).
        self.view: Mapping[str, T | str] = MappingProxyType(self._items)

    # -- registration -----------------------------------------------------------------------
    def register(self, name: str, obj: T | str, *, replace: bool = False) -> None:
        """Register ``obj`` (or a ``"package.module:attr"`` path) under ``name``; refuse to
        shadow another plugin unless ``replace``. Re-registering the same one is fine."""
        old = self._items.get(name)
        if old is not None and not replace and not _same(old, obj):
            raise self.broken(
                f"a {self.kind} named {name!r} is already registered ({_describe(old)}); "
                "pass replace=True to replace it"
            )
        self._items[name] = obj

    def unregister(self, name: str) -> None:
        """Forget ``name`` (its entry point, if any, is found again on the next lookup)."""
        self._items.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self.entry_points()

    # -- discovery --------------------------------------------------------------------------
    def entry_points(self) -> dict[str, EntryPoint]:
        """The group's installed entry points by name (read once, until :meth:`refresh`)."""
        if self._eps is None:
            self._eps = self._dedupe(importlib.metadata.entry_points(group=self.group))
        return self._eps

    def refresh(self) -> None:
        """Forget the cached entry points so newly installed packages are found."""
        self._eps = None

    def _dedupe(self, eps: Iterable[EntryPoint]) -> dict[str, EntryPoint]:
        found: dict[str, EntryPoint] = {}
        for ep in eps:
            first = found.get(ep.name)
            if first is not None and first.value != ep.value:
                warnings.warn(
                    f"{self.kind} {ep.name!r} is provided twice ({first.value} and {ep.value}); "
                    f"using {first.value}",
                    self.warning,
                    stacklevel=4,
                )
                continue
            found.setdefault(ep.name, ep)
        return found

    def names(self) -> list[str]:
        """Every known name, registered or installed, sorted."""
        return sorted(set(self._items) | set(self.entry_points()))

    # -- loading ----------------------------------------------------------------------------
    def load_entry_point(self, ep: EntryPoint) -> T:
        """Import one entry point and check it; raises ``broken`` naming it and the fix."""
        return self._load(ep.name, ep.value)

    def _load(self, name: str, value: str) -> T:
        module, _, attr = value.partition(":")
        try:
            obj = importlib.import_module(module)
            for part in filter(None, attr.split(".")):
                obj = getattr(obj, part)
        except ImportError as exc:
            missing = (getattr(exc, "name", None) or module).split(".")[0]
            raise self.broken(
                f"{self.kind} {name!r} ({value}) cannot be imported: {exc}; install "
                f"{missing!r}, the package that provides it (pip install {missing})"
            ) from exc
        except AttributeError as exc:
            raise self.broken(
                f"{self.kind} {name!r} ({value}) cannot be loaded: {exc}; fix the entry point"
            ) from exc
        except Exception as exc:  # a broken plugin must not take the others down
            raise self.broken(
                f"{self.kind} {name!r} ({value}) failed while importing: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return self._check(name, obj) if self._check is not None else obj

    def find(self, name: str) -> T | None:
        """The plugin ``name`` (loaded now if lazy), or ``None`` if nobody provides it."""
        target = self._items.get(name)
        if target is None:
            ep = self.entry_points().get(name)
            if ep is None:
                return None
            target = ep.value
        if isinstance(target, str):
            target = self._load(name, target)
            self._items[name] = target
        return target

    def get(self, name: str) -> T:
        """The plugin ``name``; ``unknown`` lists the known names and the install hint."""
        obj = self.find(name)
        if obj is None:
            known = ", ".join(self.names()) or "none"
            raise self.unknown(
                f"no {self.kind} named {name!r}; known {self.kind}s: {known}; check the name, or "
                f"install the package that provides it (entry-point group {self.group!r})"
            )
        return obj

    def load_all(self, eps: Iterable[EntryPoint] | None = None) -> dict[str, T]:
        """Load every plugin (``eps``, or the group's installed entry points, and what is
        registered); a broken one becomes a warning and is left out. What was registered
        in code wins over an entry point of the same name."""
        found = self.entry_points() if eps is None else self._dedupe(eps)
        names = [*found, *(n for n in self._items if n not in found)] if eps is None else found
        loaded: dict[str, T] = {}
        for name in names:
            target = self._items.get(name)
            try:
                if target is None:
                    target = self._load(name, found[name].value)
                elif isinstance(target, str):
                    target = self._load(name, target)
            except self.broken as exc:
                warnings.warn(str(exc), self.warning, stacklevel=2)
                continue
            self._items[name] = target
            loaded[name] = target
        return loaded


def _same(old: Any, new: Any) -> bool:
    if old is new or old == new:
        return True
    if isinstance(old, type) and isinstance(new, type):  # a class reloaded in a notebook
        return (old.__module__, old.__qualname__) == (new.__module__, new.__qualname__)
    return False


def _describe(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    version = getattr(obj, "version", None)
    if version is not None and not isinstance(obj, type):
        return f"version {version}"
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


__all__ = ["EntryPoint", "PluginWarning", "Registry"]
