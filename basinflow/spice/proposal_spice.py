"""``prop.spice``: seed, update, anchor and view the spice of one proposal.

This is the object users touch. It turns requests into new immutable documents and
resolves views, with every rule checked *before* anything is written:

- names (type, handle) are identifiers, anchors are scan keys (and, when the proposal's
  scans are known, an existing scan or one after the last, so a typo like ``r0040`` for
  ``0040`` cannot silently apply from the first scan);
- data is JSON and, for a registered type, matches its schema (field-named messages);
- a handle keeps one type.

Writes first refresh the store, so revisions are computed from what other processes
wrote; if two writers still race, both documents are kept and the result is a reported
conflict, never a lost update. Identical requests get identical (content-derived) uuids,
so repeating a seed or an update anywhere is a no-op.

One responsibility, the user's surface of one proposal's spice, so it stays one class of
about 400 lines (most of them the docstrings users read in Jupyter). The rules it applies
live beside it: which document is visible (:mod:`~basinflow.spice.resolve`), how a request
becomes the next document (:mod:`~basinflow.spice.revisions`), how stack spice groups scans
(:mod:`~basinflow.spice.stacks`), and what a view shows (:mod:`~basinflow.spice.view`).
"""

from __future__ import annotations

import getpass
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from basinflow.errors import SpiceConflict, SpiceError, SpiceNotFound, UntypedSpiceWarning
from basinflow.keys import validate_key
from basinflow.spice import revisions
from basinflow.spice.document import SpiceDocument, validate_name
from basinflow.spice.fsspec_store import open_spice_store
from basinflow.spice.json_values import canonical_json
from basinflow.spice.resolve import (
    Conflict,
    Index,
    anchor_label,
    find_conflicts,
    index_documents,
    resolve_handle,
    sorted_anchors,
    top_documents,
)
from basinflow.spice.stacks import StackGroup, stack_groups
from basinflow.spice.store import SpiceStore
from basinflow.spice.types import validate_spice_data
from basinflow.spice.view import SpiceTable, SpiceView


def default_author() -> str | None:
    """``$BASINFLOW_AUTHOR``, else the login name, else ``None`` (never a credential)."""
    author = os.environ.get("BASINFLOW_AUTHOR")
    if author:
        return author
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no login name in some containers
        return None


class ProposalSpice:
    """The spice of one proposal.

    Parameters
    ----------
    store
        A :class:`~basinflow.spice.store.SpiceStore`, a store URL (``file://``, ``s3://``,
        ``memory://``, a local path), or ``None``/``''`` for an in-memory store.
    scans
        Returns the proposal's scan keys (or is a fixed list of them). Used to check
        anchors and to compute :meth:`stacks`; optional so spice works without a catalog.
    storage_options
        fsspec options when ``store`` is a URL.
    author
        Default author of new documents (default: :func:`default_author`).
    max_age
        Seconds a listing of the store is trusted by reads (:meth:`view`, :meth:`ls`...)
        before they re-list it; writes always re-list. ``0`` re-lists on every read.
    """

    def __init__(
        self,
        store: SpiceStore | str | None,
        scans: Callable[[], Iterable[str]] | Iterable[str] | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
        author: str | None = None,
        max_age: float = 1.0,
    ) -> None:
        self.store = open_spice_store(store, storage_options)
        if scans is not None and not callable(scans):
            fixed = list(scans)
            scans = lambda: fixed  # noqa: E731 - a fixed list of scan keys
        self._scans = scans
        self.author = author if author is not None else default_author()
        self.max_age = max_age
        self._index: Index | None = None
        self._index_generation = -1

    # --- reading -----------------------------------------------------------------------------
    def refresh(self) -> list[SpiceDocument]:
        """Re-list the store now; returns the documents that are new."""
        return self.store.refresh()

    def _current(self, *, fresh: bool = False) -> Index:
        last = self.store.refreshed_at
        if fresh or last is None or time.monotonic() - last >= self.max_age:
            self.store.refresh()
        if self._index is None or self._index_generation != self.store.generation:
            self._index = index_documents(self.store.documents())
            self._index_generation = self.store.generation
        return self._index

    def documents(self) -> list[SpiceDocument]:
        """Every document, by handle, anchor (natural order) and revision."""
        index = self._current()
        return [
            doc
            for handle in sorted(index)
            for anchor in sorted_anchors(index[handle])
            for doc in sorted(index[handle][anchor], key=lambda d: (d.revision, d.created or ""))
        ]

    def get(self, uuid: str) -> SpiceDocument:
        """The document with ``uuid`` (:class:`SpiceNotFound` if there is none)."""
        return self.store.get(uuid)

    def handles(self) -> list[str]:
        """Every handle that has spice."""
        return sorted(self._current())

    def view(
        self,
        scan: str,
        handles: Iterable[str] | None = None,
        *,
        types: Iterable[str] | None = None,
    ) -> SpiceView:
        """The spice visible at ``scan``: per handle, the highest revision at the greatest
        anchor <= ``scan`` in natural scan order.

        Parameters
        ----------
        scan
            A scan key (checked like every key; it need not exist yet).
        handles
            Only resolve these handles (each must be visible); a conflict elsewhere then
            does not block a recipe that does not need that handle.
        types
            Only resolve the visible handles of these spice types (what a recipe asks
            for); handles of other types are not read, so their conflicts do not matter.

        Raises
        ------
        SpiceConflict
            When a visible anchor holds different documents at its top revision; the
            message names their uuids.
        SpiceValidationError
            When a visible document of a registered type does not match its schema.
        """
        validate_key(scan, "scan")
        if handles is not None:
            handles = [validate_name(h, "spice handle") for h in handles]
        return SpiceView.resolve(self._current(), scan, handles, types=types)

    def history(self, handle: str) -> list[SpiceDocument]:
        """Every document of ``handle``: by anchor (natural order), then revision."""
        validate_name(handle, "spice handle")
        index = self._current()
        if handle not in index:
            raise SpiceNotFound(revisions.no_handle(handle, index))
        return [
            doc
            for anchor in sorted_anchors(index[handle])
            for doc in sorted(index[handle][anchor], key=lambda d: (d.revision, d.created or ""))
        ]

    def conflicts(self) -> list[Conflict]:
        """Every unresolved conflict (same top revision, different content)."""
        return find_conflicts(self._current())

    def ls(self) -> SpiceTable:
        """Anchor x handle table of the top revisions (text repr, HTML in Jupyter)."""
        return SpiceTable.from_index(self._current())

    def stacks(self, handle: str = "stack") -> list[StackGroup]:
        """Groups of consecutive scans made by ``stack`` spice.

        Each ``stack`` document anchored at *A* groups the scans from *A* up to the next
        anchor of ``handle`` (cut into groups of ``size`` when set). Scans before the first
        anchor are in no group.

        Raises
        ------
        SpiceError
            When this spice has no ``scans`` callable (it cannot know the scans).
        SpiceConflict
            When a stack anchor has a conflict.
        """
        validate_name(handle, "spice handle")
        if self._scans is None:
            raise SpiceError(
                "stacks() needs the proposal's scans; create ProposalSpice(store, scans=...) "
                "or use prop.spice from a Repository"
            )
        return stack_groups(self._current().get(handle, {}), handle, self._scans())

    # --- writing -----------------------------------------------------------------------------
    def seed(
        self,
        type: str,
        handle: str | None = None,
        anchor: str | None = None,
        *,
        author: str | None = None,
        comment: str | None = None,
        values: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        **data: Any,
    ) -> SpiceDocument:
        """Create spice ``handle`` (default: ``type``) applying from scan ``anchor`` on
        (default: from the first scan).

        Idempotent: repeating a seed (same type, handle, anchor and data) returns the
        document it wrote the first time and writes nothing, even after later updates
        (:meth:`view` shows what is in effect); seeding what is already in effect there
        returns that document. Fields whose names clash with these parameters go in
        ``values``.

        Parameters
        ----------
        dry_run
            Check everything and return the document that would be written, writing nothing.

        Raises
        ------
        InvalidKeyError
            Bad type name, handle or anchor.
        ScanNotFound
            An anchor that is not a scan of the proposal (nor after its last scan).
        SpiceValidationError
            Data that is not JSON, or does not match the registered schema.
        SpiceError
            When ``handle`` already has different spice at ``anchor`` (use :meth:`update`)
            or has another type.
        SpiceConflict
            When the existing spice there is in conflict.
        """
        validate_name(type, "spice type name")
        handle = validate_name(type if handle is None else handle, "spice handle")
        anchor = revisions.check_anchor(anchor, self._scans)
        payload = revisions.payload(values, data)
        model = validate_spice_data(type, payload, what=f"spice {handle!r}")
        doc = revisions.new_document(
            type, handle, anchor, 1, None, payload, model, self._author(author), comment
        )
        index = self._current(fresh=True)
        if doc.uuid in self.store:  # this very seed was made before (here or elsewhere)
            return self.store.get(doc.uuid)
        revisions.check_one_type(index, handle, type)
        existing = index.get(handle, {}).get(anchor, [])
        if existing:
            tops = top_documents(existing)
            if len(tops) > 1:
                raise SpiceConflict(
                    Conflict(handle, anchor, tops[0].revision, tuple(tops)).message()
                )
            if canonical_json(tops[0].data) == canonical_json(payload):
                return tops[0]
            raise SpiceError(
                f"spice {handle!r} already exists at anchor {anchor_label(anchor)} "
                f"(revision {tops[0].revision}, uuid {tops[0].uuid}); change it with "
                f"spice.update({tops[0].uuid!r}, ...) or seed at another anchor"
            )
        return self._write(doc, dry_run)

    def update(
        self,
        target: str | SpiceDocument,
        handle: str | None = None,
        *,
        author: str | None = None,
        comment: str | None = None,
        values: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        **data: Any,
    ) -> SpiceDocument:
        """Write a new revision of some spice, changing the given fields.

        Parameters
        ----------
        target
            A scan key (*viewpoint*): update the ``handle`` document visible at that scan,
            at its anchor (so it changes for every scan that anchor covers). Or a uuid (or
            a document): update exactly that document; this is how a conflict is resolved,
            because the new revision is above every document at that anchor.
        handle
            Required with a viewpoint; with a uuid it must match the document if given.
        dry_run
            Check everything and return the document that would be written.

        Returns
        -------
        The new document (revision = top revision at that anchor + 1, ``parent`` = the
        updated document), or the existing one when nothing changes and there is no
        conflict to resolve.

        Raises
        ------
        SpiceNotFound
            No such uuid, no such handle, or nothing visible at the viewpoint.
        SpiceConflict
            A viewpoint whose visible spice is in conflict (update by uuid instead).
        SpiceValidationError
            The changed data does not match the schema.
        """
        payload = revisions.payload(values, data)
        if handle is not None:
            validate_name(handle, "spice handle")
        index = self._current(fresh=True)
        base = revisions.base_document(self.store, index, target, handle)
        merged = {**base.data, **payload}
        model = validate_spice_data(base.type, merged, what=f"spice {base.handle!r}")
        docs = index[base.handle][base.anchor]
        tops = top_documents(docs)
        unchanged = canonical_json(merged) == canonical_json(base.data)
        if unchanged and len(tops) == 1 and tops[0].uuid == base.uuid:
            return base
        revision = max(d.revision for d in docs) + 1
        doc = revisions.new_document(
            base.type,
            base.handle,
            base.anchor,
            revision,
            base.uuid,
            merged,
            model,
            self._author(author),
            comment,
        )
        return self._write(doc, dry_run)

    def anchor(
        self,
        scan: str,
        handle: str,
        *,
        author: str | None = None,
        comment: str | None = None,
        values: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        **data: Any,
    ) -> SpiceDocument:
        """Copy what ``handle`` is at ``scan`` into a new document anchored at ``scan``
        (optionally changing fields), so later changes from ``scan`` on leave earlier
        scans alone: "from scan 0040 on, the detector was at 690 mm".

        Returns the document now anchored at ``scan`` (the existing one if ``handle``
        is already anchored there and nothing changes).

        Raises
        ------
        SpiceNotFound
            When nothing of ``handle`` is visible at ``scan`` (seed it instead).
        """
        validate_name(handle, "spice handle")
        scan = revisions.check_anchor(scan, self._scans)
        if not scan:
            raise SpiceError(
                "anchor() needs a scan key; '' (the first scan) is where seed() puts spice"
            )
        payload = revisions.payload(values, data)
        index = self._current(fresh=True)
        if handle not in index:
            raise SpiceNotFound(revisions.no_handle(handle, index))
        visible = resolve_handle(index, handle, scan)
        if visible is None:
            raise SpiceNotFound(
                f"no spice {handle!r} is visible at scan {scan!r} (its first anchor is later); "
                f"seed it there instead: spice.seed(<type>, {handle!r}, anchor={scan!r}, ...)"
            )
        if visible.anchor == scan:
            return self.update(
                visible.uuid, author=author, comment=comment, values=payload, dry_run=dry_run
            )
        merged = {**visible.data, **payload}
        model = validate_spice_data(visible.type, merged, what=f"spice {handle!r}")
        doc = revisions.new_document(
            visible.type,
            handle,
            scan,
            1,
            visible.uuid,
            merged,
            model,
            self._author(author),
            comment,
        )
        return self._write(doc, dry_run)

    def _author(self, author: str | None) -> str | None:
        return author if author is not None else self.author

    def _write(self, doc: SpiceDocument, dry_run: bool) -> SpiceDocument:
        if not doc.typed:
            warnings.warn(
                UntypedSpiceWarning(
                    f"spice type {doc.type!r} is not registered, so {doc.handle!r} is "
                    f"{'checked' if dry_run else 'stored'} untyped (no schema check); register "
                    f"a schema with basinflow.spice.register_spice_type({doc.type!r}, Model) or "
                    "import the recipe that declares it"
                ),
                stacklevel=3,
            )
        if dry_run:
            return doc
        return self.store.put(doc)

    def __repr__(self) -> str:
        return f"ProposalSpice({self.store!r})"

    def _repr_html_(self) -> str:
        return self.ls()._repr_html_()
