"""Repository -> Proposal -> Scan: finding scans and reading them lazily.

Listing and summaries are computed on first use and cached on the object; ``refresh()``
drops the cache (for a watcher that wants to see new scans). Nothing here opens every
file up front.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from basinflow.catalog.listing import list_keys
from basinflow.catalog.summaries import SummaryCache
from basinflow.catalog.template import OUTPUT_FIELDS, Template
from basinflow.errors import Error, ProposalNotFound, ScanNotFound
from basinflow.keys import handle_map, handle_of, natural_sorted, validate_key

if TYPE_CHECKING:
    import xarray as xr

    from basinflow.spice import ProposalSpice
    from basinflow.storage.layouts import ScanContent


class _Keyed:
    """Mapping-like access by key or handle, attribute access by handle, tab completion."""

    _prefix = "r"
    _not_found: type[Exception] = KeyError
    _what = "item"

    def keys(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _make(self, key: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @cached_property
    def _handles(self) -> dict[str, str]:
        return handle_map(self.keys(), self._prefix)

    @cached_property
    def _children(self) -> dict[str, Any]:
        return {}

    def __getitem__(self, key: str) -> Any:
        validate_key(key, self._what)
        keys = self.keys()
        if key not in keys:
            key = self._key_of_handle(key) or key
        if key not in keys:
            near = [k for k in keys if key.lower() in k.lower()][:5]
            hint = (
                f"; did you mean {', '.join(near)}?"
                if near
                else f" ({len(keys)} known); check the key, list the known ones with "
                f".keys(), or call .refresh() if it was written since the last listing"
            )
            raise self._not_found(f"no {self._what} {key!r} in {self}{hint}")
        if key not in self._children:
            self._children[key] = self._make(key)
        return self._children[key]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        key = self._key_of_handle(name)
        if key is not None:
            return self[key]
        raise AttributeError(f"{type(self).__name__} has no attribute or {self._what} {name!r}")

    def __dir__(self) -> list[str]:
        # tab completion must not raise: on a handle collision offer the handles that are
        # unambiguous; attribute access to the ambiguous one raises HandleCollisionError
        handles = {h for h, n in self._handle_counts().items() if n == 1}
        return sorted(set(super().__dir__()) | handles)

    def _handle_counts(self) -> dict[str, int]:
        """handle -> how many keys map to it (never raises, unlike ``_handles``)."""
        counts: dict[str, int] = {}
        for k in self.keys():
            h = handle_of(k, self._prefix)
            counts[h] = counts.get(h, 0) + 1
        return counts

    def _key_of_handle(self, name: str) -> str | None:
        """The one key whose handle is ``name``; raises if two keys share it."""
        keys = [k for k in self.keys() if handle_of(k, self._prefix) == name]
        if len(keys) > 1:
            handle_map(keys, self._prefix)  # raises HandleCollisionError naming both keys
        return keys[0] if keys else None

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def _drop_cache(self) -> None:
        for name in (
            "_handles",
            "_children",
            "_keys",
            "_detected_layout",
            "_summaries",
            "_indexes",
        ):
            self.__dict__.pop(name, None)


class Repository(_Keyed):
    """Where raw data lives, addressed by a URL template.

    Parameters
    ----------
    raw
        URL template with ``{proposal}`` and ``{scan}``, e.g.
        ``"s3://raw/{proposal}/{scan}.h5#entry"`` or ``"file:///data/{proposal}.h5#{scan}"``.
    spice
        Spice store template with ``{proposal}`` (``"file:///spice/{proposal}"``), or ``None``.
    storage_options
        fsspec options for the repository's own host (endpoint, caching). Credentials are
        better left to the environment; these options are never written into outputs.
    layout, layout_options
        ``"auto"``, ``"nexus"``, ``"groups"``, ``"tiff"`` or a registered plugin, and its options.
    output
        Referrer URL template (``{proposal}``, ``{scan}``, ``{recipe}``, ...), used by ``bf.cook``.
    """

    _prefix = "p"
    _not_found = ProposalNotFound
    _what = "proposal"

    def __init__(
        self,
        raw: str,
        *,
        spice: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        layout: str = "auto",
        layout_options: Mapping[str, Any] | None = None,
        output: str | None = None,
        name: str | None = None,
        trusted: tuple[str, ...] | list[str] = (),
        trusted_hosts: tuple[str, ...] | list[str] = (),
        chunk_mb: float = 32.0,
    ):
        self.template = Template(raw)
        self.spice_template = Template(spice, ("proposal",), ()) if spice else None
        self.storage_options = dict(storage_options or {})
        self.layout = layout
        self.layout_options = dict(layout_options or {})
        self.output = output
        self.name = name or self.template.root.rstrip("/").rsplit("/", 1)[-1] or "repository"
        self.trusted = tuple(trusted)
        self.trusted_hosts = tuple(trusted_hosts)
        self.chunk_bytes = int(chunk_mb * 2**20)

    @property
    def url(self) -> str:
        return self.template.text

    @property
    def trusted_roots(self) -> tuple[str, ...]:
        """Roots that basins of this repository's referrers may resolve under."""
        roots = [self.template.root]
        if self.output:
            roots.append(Template(self.output, OUTPUT_FIELDS, ()).root)
        return (*roots, *self.trusted)

    def keys(self) -> list[str]:
        if "_keys" not in self.__dict__:
            self.__dict__["_keys"] = list_keys(
                self.template, "proposal", self.storage_options, self._indexes
            )
        return self.__dict__["_keys"]

    proposals = keys

    @cached_property
    def _indexes(self) -> dict[str, bytes | None]:
        """Listing index files fetched by this repository's listings (see list_keys)."""
        return {}

    def _make(self, key: str) -> Proposal:
        return Proposal(self, key)

    def refresh(self) -> Repository:
        self._drop_cache()
        return self

    def __repr__(self) -> str:
        return f"<Repository {self.name!r} {self.url}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td><code>{html.escape(h)}</code></td></tr>"
            for h, k in sorted(self._handles.items(), key=lambda x: x[1])
        )
        return (
            f"<b>Repository</b> {html.escape(self.name)} <code>{html.escape(self.url)}</code>"
            f"<table><tr><th>proposal</th><th>handle</th></tr>{rows}</table>"
        )


class Proposal(_Keyed):
    """One experiment campaign: its scans and its spice."""

    _prefix = "r"
    _not_found = ScanNotFound
    _what = "scan"

    def __init__(self, repository: Repository, key: str):
        self.repository = repository
        self.key = validate_key(key, "proposal")
        self.template = repository.template.partial(proposal=key)

    def keys(self) -> list[str]:
        if "_keys" not in self.__dict__:
            self.__dict__["_keys"] = list_keys(
                self.template, "scan", self.repository.storage_options, self.repository._indexes
            )
        return self.__dict__["_keys"]

    scans = keys

    def _make(self, key: str) -> Scan:
        return Scan(self, key)

    @cached_property
    def _summaries(self) -> SummaryCache:
        """Summaries read before, by any process, of this proposal's local scans."""
        repo = self.repository
        return SummaryCache.for_proposal(self.template.text, repo.layout, repo.layout_options)

    @cached_property
    def spice(self) -> ProposalSpice:
        """The proposal's spice (a memory store when the repository names none)."""
        from basinflow.spice import FsspecSpiceStore, MemorySpiceStore, ProposalSpice

        t = self.repository.spice_template
        if t is None:
            store = MemorySpiceStore()
        else:
            store = FsspecSpiceStore(t.fill(proposal=self.key), self.repository.storage_options)
        return ProposalSpice(store, scans=self.keys)

    def stacks(self):
        return self.spice.stacks()

    def refresh(self) -> Proposal:
        self._drop_cache()
        # the index files too: a new scan is listed there, not in this object
        self.repository.__dict__.pop("_indexes", None)
        spice = self.__dict__.get("spice")
        if spice is not None:
            spice.refresh()
        return self

    def __repr__(self) -> str:
        return f"<Proposal {self.key!r} of {self.repository.name!r}>"

    def _repr_html_(self) -> str:
        head = "<tr><th>scan</th><th>type</th><th>frames</th><th>axes</th><th>detector</th></tr>"
        rows = []
        for k in self.keys():
            s = self[k].summary
            axes = ", ".join(f"{a} {lo:g}..{hi:g}" for a, (lo, hi) in s["axes"].items())
            rows.append(
                f"<tr><td>{html.escape(k)}</td><td>{html.escape(s['type'])}</td>"
                f"<td>{s['frames']}</td><td>{html.escape(axes)}</td>"
                f"<td>{s['detector']} {s['dtype']}</td></tr>"
            )
        return f"<b>Proposal</b> {html.escape(self.key)}<table>{head}{''.join(rows)}</table>"


class Scan:
    """One measurement. ``summary`` reads metadata only; ``raw`` is lazy."""

    def __init__(self, proposal: Proposal, key: str):
        self.proposal = proposal
        self.key = validate_key(key, "scan")
        self.url = proposal.template.fill(scan=key)
        t = Template(self.url, (), ())
        self.path_url, self.fragment = t.path, t.fragment

    @property
    def repository(self) -> Repository:
        return self.proposal.repository

    @property
    def storage_options(self) -> dict[str, Any]:
        return self.repository.storage_options

    @property
    def layout_name(self) -> str:
        """The layout the scan is read with: the repository's, or the detected one."""
        from basinflow.storage import layouts

        repo = self.repository
        name = repo.layout
        if name == "auto":
            # one template is one file family: detect on the first scan read, not on every
            # scan (detection opens the file, which costs requests on remote storage)
            name = repo.__dict__.get("_detected_layout")
            if name is None:
                name = layouts.detect(self.path_url, self.fragment, self.storage_options)
                repo.__dict__["_detected_layout"] = name
        return name

    @cached_property
    def content(self) -> ScanContent:
        """What the layout found in the scan's files: metadata and lazy arrays."""
        from basinflow.storage import hdf5, layouts

        repo = self.repository
        url, fragment, opts = self.path_url, self.fragment, self.storage_options
        first = repo.layout == "auto" and "_detected_layout" not in repo.__dict__
        if first and not url.endswith("/"):
            # the first scan read: detect the layout on the handle the read then uses
            # (one open of the file, not two: remotely a HEAD and 2-3 blocks fewer)
            handle = hdf5.open_h5(url, opts)
            try:
                name = layouts.classify(handle, fragment)
                repo.__dict__["_detected_layout"] = name
                layout = layouts.layout_class(name)(**repo.layout_options)
                if isinstance(layout, layouts.HDF5Layout):
                    where = f"{url}#{fragment or ''}"
                    return layout.read_open(handle, url, fragment, opts, where).validate()
            finally:
                handle.close()
        layout = layouts.layout_class(self.layout_name)(**repo.layout_options)
        return layout.read(url, fragment, opts).validate()

    @cached_property
    def summary(self) -> dict[str, Any]:
        """Type, frame count, scanned axes with ranges, detector shape and dtype.

        A local scan's summary comes from the proposal's summary cache when none of its
        files changed since it was recorded (:mod:`basinflow.catalog.summaries`): then
        the file is only stat'ed, not opened."""
        from basinflow.storage.layouts import summarize
        from basinflow.storage.pins import identity

        cache = self.proposal._summaries
        if not cache.enabled:
            return summarize(self.content)
        opts = self.storage_options
        if "content" not in self.__dict__:
            hit = cache.get(self.key, lambda u: identity(u, opts))
            if hit is not None:
                return hit
        # the identity before the read: a file rewritten meanwhile is read again next time
        files: dict[str, Any] | None
        try:
            files = {self.pin_url: identity(self.pin_url, opts)}
        except Error:
            files = None  # the read below says what is wrong with the file
        summary = summarize(self.content)
        if files is not None:
            try:
                files.update({u: identity(u, opts) for u in self.content.sources})
            except Error:
                return summary  # a source that cannot be stat'ed: nothing to vouch with
            cache.put(self.key, files, summary)
        return summary

    @cached_property
    def pin(self) -> dict[str, Any]:
        """What the scan's file is now (size, mtime/ETag, content id)."""
        from basinflow.storage import pins

        # content="auto": a remote file with an ETag/VersionId is pinned by it alone (its
        # sampled content would be 32 KiB fetched for display only; see storage.pins)
        pin = pins.pin(self.pin_url, self.storage_options, content="auto")
        # frames in other files (VDS sources, external links) are part of what the scan
        # is: a detector file that appears or changes makes cooked outputs stale
        # (the scan's metadata is read for it: a pin without them would call a scan
        # unchanged whose detector file changed)
        extra = self.content.sources
        if extra:
            pin["sources"] = {u: pins.pin(u, self.storage_options, content="auto") for u in extra}
        return pin

    @property
    def pin_url(self) -> str:
        """The file whose pin identifies the scan, known without opening it: the scan's
        file, or the manifest of a scan directory. Up-to-date checks need only this."""
        content = self.__dict__.get("content")
        if content is not None and content.pin_url:
            return content.pin_url
        if self.path_url.endswith("/"):
            from basinflow.storage.layouts.tiff import MANIFEST

            return self.path_url + self.repository.layout_options.get("manifest", MANIFEST)
        return self.path_url

    @property
    def identity(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "proposal": self.proposal.key,
            "scan": self.key,
            "repository": self.repository.name,
            "pin": self.pin,
        }

    @property
    def raw(self) -> xr.Dataset:
        """The scan as a lazy ``xarray.Dataset`` (new graph each call, cheap)."""
        from dataclasses import replace

        from basinflow.storage.layouts import to_dataset

        content = self.content
        frames = content.frames
        if frames is not None and hasattr(frames, "with_index"):
            frames = self.__dict__.setdefault("_indexed", frames.with_index())
        return to_dataset(
            replace(content, frames=frames), self.identity, chunk_bytes=self.repository.chunk_bytes
        )

    def refresh(self) -> Scan:
        for name in ("content", "summary", "pin", "_indexed"):
            self.__dict__.pop(name, None)
        return self

    def __repr__(self) -> str:
        return f"<Scan {self.proposal.key}/{self.key} {self.url}>"

    def _repr_html_(self) -> str:
        s = self.summary
        items = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in s.items()
        )
        return f"<b>Scan</b> {html.escape(self.url)}<table>{items}</table>"


__all__ = ["Proposal", "Repository", "Scan", "natural_sorted"]
