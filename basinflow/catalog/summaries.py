"""A per-proposal cache of scan summaries on local disk, checked against each file's pin.

Why: a summary opens the scan's HDF5 file and walks its entry (~5-7 ms of CPU per scan
in h5py object creation, not I/O), so a listing of 2,000 local scans took ~11-14 s, and
every new :class:`~basinflow.catalog.Repository` (a CLI call, a notebook restart, a flow
run) paid it again. The summary of an unchanged file never changes: keyed by the file's
pin identity (:func:`basinflow.storage.pins.identity`: size, inode, mtime and ctime in
nanoseconds; any write changes ctime, which no user can set back), a listing stats each
file and reads one cache file.

What is trusted: an entry is used only if the identity of the scan's file *and* of every
other file its summary came from (external-link targets, virtual-dataset sources) is the
one recorded; anything else (a rewrite, a move, a copy, a source that vanished) reads the
file again and records the new entry. Only ``file://`` scans are cached: remotely the
identity costs a ``HEAD`` per file, close to what the summary itself costs. The cache
holds display metadata only: cooking, pins and the referrer audit never read it.

Layout: ``$BASINFLOW_CACHE`` (default ``$XDG_CACHE_HOME/basinflow``, else
``~/.cache/basinflow``; ``off`` disables), ``summaries/<key>.jsonl`` with one JSON line per
scan read, appended (one ``write`` of one line per new summary: O(1), and safe for two
processes listing at once); a later line for a scan wins; a torn or foreign line is
skipped. The key hashes the proposal's URL template, the layout and its options, the
package version and :data:`FORMAT`, so a change in any of them starts a new file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: bump when what a summary holds, or how a layout computes it, changes
FORMAT = 1
#: files changed less than this long ago (nanoseconds) are not recorded: file systems stamp
#: times from a coarse clock (a few ms), so a file rewritten within one tick at the same
#: size keeps its identity; the same rule as git's "racily clean" index entries. A scan
#: still being written is read every time until it has rested.
SETTLE_NS = 2_000_000_000
#: the identity fields compared (pins.IDENTITY_KEYS plus the size)
_COMPARED = ("size", "ino", "ctime_ns", "mtime_ns", "version_id", "etag", "last_modified")


def cache_root() -> Path | None:
    """Where caches live, or ``None`` when disabled (``BASINFLOW_CACHE=off``)."""
    setting = os.environ.get("BASINFLOW_CACHE")
    if setting is not None:
        return None if setting.strip().lower() in ("", "off", "0", "none") else Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "basinflow"


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("basinflow")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare tree
        return "unknown"


def _same(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    return all(recorded.get(k) == now.get(k) for k in _COMPARED)


class SummaryCache:
    """The cached summaries of one proposal's scans (see the module documentation)."""

    def __init__(self, path: Path | None):
        self.path = path
        self._entries: dict[str, dict[str, Any]] | None = None

    @classmethod
    def for_proposal(
        cls, template: str, layout: str, layout_options: Mapping[str, Any]
    ) -> SummaryCache:
        from basinflow.storage import fs

        root = cache_root()
        if root is None or fs.scheme_of(template) != "file":
            return cls(None)
        key = json.dumps(
            [FORMAT, _version(), template, layout, dict(layout_options)],
            sort_keys=True,
            default=str,
        )
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        return cls(root / "summaries" / f"{name}.jsonl")

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = {}
            try:
                with open(self.path, encoding="utf-8") as f:  # type: ignore[arg-type]
                    lines = f.readlines()
            except OSError:  # none yet, or unreadable: a cache that is not there
                lines = []
            for line in lines:
                try:
                    e = json.loads(line)
                    self._entries[str(e["scan"])] = e
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line, or a line from elsewhere
        return self._entries

    def get(self, scan: str, identity_of: Callable[[str], dict[str, Any]]) -> dict[str, Any] | None:
        """The cached summary of ``scan`` if every file it came from is unchanged."""
        if self.path is None:
            return None
        e = self._load().get(scan)
        if e is None or not isinstance(e.get("files"), dict):
            return None
        try:
            for url, recorded in e["files"].items():
                if not _same(recorded, identity_of(url)):
                    return None
        except Exception:  # noqa: BLE001 - a vanished file: read the scan, which says why
            return None
        return _restore(e["summary"])

    def put(self, scan: str, files: Mapping[str, dict[str, Any]], summary: Mapping) -> None:
        """Record ``summary`` with the identities of the files it came from."""
        if self.path is None:
            return
        settled = time.time_ns() - SETTLE_NS
        if any(int(i.get("ctime_ns", settled)) > settled for i in files.values()):
            return
        e = {"scan": scan, "files": dict(files), "summary": summary}
        try:
            line = json.dumps(e, sort_keys=True) + "\n"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_APPEND: one write of one line lands whole after whatever others appended
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except (OSError, TypeError, ValueError):
            return  # a cache that cannot be written is a cache that is not there
        self._load()[scan] = e


def _restore(s: Mapping[str, Any]) -> dict[str, Any]:
    """JSON's lists back to the tuples a fresh summary has."""
    out = dict(s)
    out["axes"] = {k: tuple(v) for k, v in s.get("axes", {}).items()}
    out["detector"] = tuple(s.get("detector", ()))
    return out


__all__ = ["FORMAT", "SummaryCache", "cache_root"]
