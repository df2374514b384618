"""Basin definitions: what a referrer links to, and how a location is turned into variables.

A definition is plain JSON stored at ``/basins/<key>`` of the referrer::

    {"name": "raw", "type": "file", "format": "hdf5",
     "paths": ["../../raw/p1/1.h5", "/abs/raw/p1/1.h5"], "urls": [],
     "layout": "nexus", "fragment": "entry",
     "variables": null, "mapping": "same", "dim": "index",
     "identifier": "p1/1", "pin": {"size": ..., "mtime": ..., "content_id": "b2:..."},
     "links": {"frames": "/entry/instrument/pilatus/data"}, "order": 0,
     "options": {"frames": "/entry/instrument/pilatus/data"}}

``type``: ``file`` (local paths; relative ones resolve against the referrer's directory),
``remote`` (``urls``), ``internal`` (data stored in the referrer under
``/basin_data/<name>``). ``layout`` says how variables are read: ``"referrer"`` (another
referrer, opened recursively: basins of basins), a raw layout name (``nexus``, ``groups``,
``tiff``: read as :attr:`Scan.raw` would be, with the repository's layout ``options`` the
scan was read with, so that a configured frames path, detector or mask value reads the same
data back; absent when there were none), or ``"datasets"`` (``datasets`` maps
variable names to ``{"path": ..., "dims": [...]}``). ``mapping`` is ``"same"`` (the
basin's ``dim`` matches the referrer's one to one) or ``"basinmapN"``: the integer array
``/basinmaps/basinmapN`` gives, for each referrer position along ``dim``, the basin
position (subsets, supersets and many-to-one all work; any number of maps).
``key`` is a stable hash of the canonical JSON of the definition.

Limits
------
A referrer is data and may come from anyone, so opening one is bounded in memory and
time. These limits are checked *before* the oversized part is read; exceeding one raises
:class:`~basinflow.errors.BasinLimitError` (:class:`~basinflow.errors.BasinDepthError`
for chains) naming the referrer, the limit and what to do:

* :data:`MAX_BASINS` basin definitions (and basin maps) in one referrer;
* :data:`MAX_BASIN_JSON_BYTES` characters in one definition;
* :data:`MAX_BASINMAP_LENGTH` entries in one basin map (a map must also have exactly the
  referrer's length along its dimension, checked from its shape before it is read);
* :data:`MAX_PROVENANCE_BYTES` of provenance JSON;
* :data:`MAX_BASIN_DEPTH` referrers in a chain of basins of basins (the referrer opened
  plus 15 below it); deeper chains are refused before the deeper files are opened:
  ``export`` an intermediate referrer to make it self-contained;
* :data:`MAX_REFERRERS` referrers opened in total by one ``open_referrer`` call (a
  referrer whose basins all point at one referrer whose basins all point at one ... would
  otherwise be opened exponentially often).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from basinflow.errors import BasinLimitError, ReferrerError
from basinflow.storage import fs, pins

TYPES = ("file", "remote", "internal")
FORMATS = ("hdf5", "http", "s3", "tiff")
#: the order basins are applied in (innate variables always come first)
TYPE_PRIORITY = {"internal": 0, "file": 1, "remote": 2}

#: most basin definitions (and, separately, basin maps) one referrer may hold
MAX_BASINS = 256
#: longest basin definition, in characters of JSON
MAX_BASIN_JSON_BYTES = 1024 * 1024
#: most entries in one basin map (80 MB of int64)
MAX_BASINMAP_LENGTH = 10_000_000
#: longest provenance document, in bytes of JSON
MAX_PROVENANCE_BYTES = 64 * 1024 * 1024
#: longest chain of referrers (the one opened, its referrer basin, that one's, ...)
MAX_BASIN_DEPTH = 16
#: most referrers one ``open_referrer`` call opens (every basin of every chain counted)
MAX_REFERRERS = 256

_MAPPING = re.compile(r"basinmap[0-9]{1,9}")
#: the advice of every error about a damaged or crafted referrer
DAMAGED = (
    "the referrer is damaged or was crafted: re-cook it, or copy it again from its source "
    "(check where it came from)"
)


@dataclass
class Basin:
    name: str
    type: str
    format: str = "hdf5"
    paths: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    layout: str = "datasets"
    fragment: str | None = None
    variables: list[str] | None = None
    mapping: str = "same"
    dim: str = "index"
    identifier: str = ""
    pin: dict[str, Any] | None = None
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    order: int = 0
    #: file inside a directory location whose pin identifies it (a TIFF stack's manifest)
    pin_file: str | None = None
    #: the layout options the scan was read with (the repository's ``layout_options``)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ReferrerError(f"basin name {self.name!r} must be a non-empty string without '/'")
        if self.type not in TYPES:
            raise ReferrerError(f"basin {self.name!r}: type {self.type!r} is not one of {TYPES}")
        if self.format not in FORMATS:
            raise ReferrerError(
                f"basin {self.name!r}: format {self.format!r} is not one of {FORMATS}"
            )
        if not isinstance(self.mapping, str) or not (
            self.mapping == "same" or _MAPPING.fullmatch(self.mapping)
        ):
            raise ReferrerError(
                f"basin {self.name!r}: mapping {self.mapping!r} must be 'same' or 'basinmapN'"
            )
        self.paths = self._strings("paths", self.paths)
        self.urls = self._strings("urls", self.urls)
        if self.variables is not None:
            self.variables = self._strings("variables", self.variables)
        for name in ("layout", "dim", "identifier"):
            self._check(name, isinstance(getattr(self, name), str), "a string")
        for name in ("fragment", "pin_file"):
            value = getattr(self, name)
            self._check(name, value is None or isinstance(value, str), "a string or null")
        order_ok = isinstance(self.order, int) and not isinstance(self.order, bool)
        self._check("order", order_ok, "an integer")
        self._check("pin", self.pin is None or _str_keys(self.pin), "an object or null")
        self._check("options", _str_keys(self.options), "an object")
        links_ok = _str_keys(self.links) and all(isinstance(v, str) for v in self.links.values())
        self._check("links", links_ok, "an object of strings")
        datasets_ok = _str_keys(self.datasets) and all(
            _dataset_spec(v) for v in self.datasets.values()
        )
        self._check("datasets", datasets_ok, 'an object of {"path": ..., "dims": [...]} objects')
        if self.pin_file is not None and (
            self.pin_file.startswith("/")
            or "://" in self.pin_file
            or ".." in self.pin_file.replace("\\", "/").split("/")
        ):
            raise ReferrerError(
                f"basin {self.name!r}: pin_file {self.pin_file!r} must be a relative path "
                "inside the basin's location (no '..', not absolute)"
            )

    def _check(self, what: str, ok: bool, expected: str) -> None:
        if not ok:
            value = getattr(self, what)
            raise ReferrerError(
                f"basin {self.name!r}: {what} must be {expected}, not "
                f"{type(value).__name__} {str(value)[:80]!r}"
            )

    def _strings(self, what: str, value: Any) -> list[str]:
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        self._check(what, ok, "a list of strings")
        return list(value)

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_json(self) -> str:
        data = asdict(self)
        if not data["options"]:  # as written before options were recorded: the same key
            del data["options"]
        return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)

    @property
    def key(self) -> str:
        return hashlib.blake2b(self.to_json().encode(), digest_size=8).hexdigest()

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "") -> Basin:
        """A definition from its JSON; anything malformed raises
        :class:`~basinflow.errors.ReferrerError` naming ``where``, anything over
        :data:`MAX_BASIN_JSON_BYTES` :class:`~basinflow.errors.BasinLimitError`."""
        if not isinstance(text, str | bytes | bytearray):
            raise ReferrerError(
                f"{where}: malformed basin definition: a {type(text).__name__}, not JSON text; "
                f"{DAMAGED}"
            )
        if len(text) > MAX_BASIN_JSON_BYTES:
            raise BasinLimitError(
                f"{where}: basin definition of {len(text)} characters exceeds the limit of "
                f"{MAX_BASIN_JSON_BYTES} (MAX_BASIN_JSON_BYTES); it was not parsed (a "
                f"definition is a few hundred bytes): {DAMAGED}"
            )
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError(f"a JSON {type(data).__name__}, not an object")
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
            return cls(**known)
        except ReferrerError as exc:
            if where and not str(exc).startswith(where):
                raise type(exc)(f"{where}: {exc}; {DAMAGED}") from exc
            raise
        except (TypeError, ValueError, RecursionError) as exc:
            raise ReferrerError(f"{where}: malformed basin definition ({exc}); {DAMAGED}") from exc

    @property
    def priority(self) -> tuple[int, int, str]:
        return (TYPE_PRIORITY[self.type], self.order, self.name)

    # -- where it lives ------------------------------------------------------------------------
    def locations(self, referrer_url: str) -> list[str]:
        """Candidate URLs in the order they are tried; relative paths against the referrer."""
        if self.type == "internal":
            return [referrer_url]
        out: list[str] = []
        base = referrer_dir(referrer_url)
        for p in self.paths:
            out.append(resolve_path(p, base))
        out.extend(self.urls)
        return list(dict.fromkeys(out))


def _str_keys(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


def _dataset_spec(spec: Any) -> bool:
    if not _str_keys(spec) or not isinstance(spec.get("path"), str):
        return False
    dims = spec.get("dims")
    return dims is None or (
        isinstance(dims, list | tuple) and all(isinstance(d, str) for d in dims)
    )


def referrer_dir(url: str) -> str:
    path = fs.local_path(url)
    if path is not None:
        return os.path.dirname(os.path.abspath(path))
    return url.rsplit("/", 1)[0]


def resolve_path(path: str, base: str) -> str:
    """A basin path relative to the referrer's directory (never the working directory)."""
    if "://" in path:
        return path
    if fs.local_path(base) is not None and "://" not in base:
        return os.path.normpath(os.path.join(base, path))
    # a remote referrer: relative paths are relative URLs; '..' is kept for trust to refuse
    return base.rstrip("/") + "/" + path if not path.startswith("/") else path


def relative_to(target: str, referrer_url: str) -> str | None:
    """``target`` relative to the referrer's directory when both are local files."""
    t, r = fs.local_path(target), fs.local_path(referrer_url)
    if t is None or r is None:
        return None
    return os.path.relpath(os.path.abspath(t), os.path.dirname(os.path.abspath(r)))


def posix_rel(target: str, referrer_url: str) -> str | None:
    rel = relative_to(target, referrer_url)
    return None if rel is None else posixpath.join(*rel.split(os.sep))


def raw_basin(scan: Any, referrer_url: str, *, name: str = "raw", order: int = 0) -> Basin:
    """The basin definition of a scan's raw data, as seen from ``referrer_url``."""
    content, layout = scan.content, scan.layout_name
    frames_path = getattr(content.frames, "path", None)
    url = scan.path_url
    local = fs.local_path(url)
    fmt = "tiff" if layout == "tiff" else "hdf5"
    pin_url = content.pin_url or url
    if local is not None:
        rel = posix_rel(url, referrer_url)
        paths = [p for p in (rel, os.path.abspath(local)) if p]
        kind, urls = "file", []
    else:
        kind, paths, urls = "remote", [], [url]
        fmt = "tiff" if layout == "tiff" else ("s3" if fs.scheme_of(url) == "s3" else "http")
    basin = Basin(
        name=name,
        type=kind,
        format=fmt,
        paths=paths,
        urls=urls,
        layout=layout,
        fragment=scan.fragment,
        identifier=f"{scan.proposal.key}/{scan.key}",
        pin=dict(scan.pin),
        links={"frames": frames_path} if frames_path and fmt == "hdf5" else {},
        order=order,
        options=dict(scan.repository.layout_options),
    )
    if pin_url != url:
        basin.pin_file = pin_url[len(url) :].lstrip("/") if pin_url.startswith(url) else None
    return basin


def referrer_as_basin(
    source_url: str,
    referrer_url: str,
    *,
    name: str = "source",
    pin: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    order: int = 0,
    dim: str = "index",
) -> Basin:
    """A basin that is another referrer (basins of basins)."""
    local = fs.local_path(source_url)
    if local is not None:
        rel = posix_rel(source_url, referrer_url)
        kind, paths, urls = "file", [p for p in (rel, os.path.abspath(local)) if p], []
        fmt = "hdf5"
    else:
        kind, paths, urls = "remote", [], [source_url]
        fmt = "s3" if fs.scheme_of(source_url) == "s3" else "http"
    return Basin(
        name=name,
        type=kind,
        format=fmt,
        paths=paths,
        urls=urls,
        layout="referrer",
        identifier=source_url.rsplit("/", 1)[-1],
        # a referrer may be copied or moved: a full digest still recognises it
        pin=dict(pin) if pin else pins.pin(source_url, storage_options, full=True),
        order=order,
        dim=dim,
    )


__all__ = [
    "DAMAGED",
    "FORMATS",
    "MAX_BASINMAP_LENGTH",
    "MAX_BASINS",
    "MAX_BASIN_DEPTH",
    "MAX_BASIN_JSON_BYTES",
    "MAX_PROVENANCE_BYTES",
    "MAX_REFERRERS",
    "TYPES",
    "TYPE_PRIORITY",
    "Basin",
    "raw_basin",
    "referrer_as_basin",
    "referrer_dir",
    "relative_to",
    "resolve_path",
]
