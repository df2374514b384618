"""Revision history: the rules that turn a request into the next immutable document.

Kept apart from :class:`~basinflow.spice.proposal_spice.ProposalSpice` (which refreshes
the store, decides between seed, update and anchor, and writes) because these rules are
pure and every write path shares them: the fields a request carries, which anchors are
allowed, which document an update starts from (a uuid, or what a scan sees), that a handle
keeps one type, and the new document itself, whose uuid is derived from what it says so
that repeating a request anywhere writes nothing new.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from basinflow.errors import ScanNotFound, SpiceError, SpiceNotFound
from basinflow.keys import natural_key, validate_key
from basinflow.spice.document import SpiceDocument, content_uuid, now_iso, validate_anchor
from basinflow.spice.json_values import freeze
from basinflow.spice.resolve import Index, resolve_handle
from basinflow.spice.store import SpiceStore

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def payload(values: Mapping[str, Any] | None, data: Mapping[str, Any]) -> dict:
    """The fields of a request (``values`` first, keyword fields over them), frozen."""
    if values is not None and not isinstance(values, Mapping):
        raise SpiceError(f"values must be a mapping of field names, got {values!r}")
    return dict(freeze({**(values or {}), **data}))


def check_anchor(anchor: str | None, scans: Callable[[], Iterable[str]] | None) -> str:
    """``anchor`` ('' = from the first scan) if it is a key and, when the proposal's
    ``scans`` are known, an existing scan or one after the last (so a typo such as
    ``r0040`` for ``0040`` cannot silently apply from the first scan)."""
    anchor = validate_anchor(anchor)
    if anchor and scans is not None:
        known = list(scans())
        if known and anchor not in known:
            last = max(known, key=natural_key)
            if natural_key(anchor) <= natural_key(last):
                raise ScanNotFound(
                    f"anchor {anchor!r} is not a scan of this proposal (scans run from "
                    f"{min(known, key=natural_key)!r} to {last!r}); anchor at an existing "
                    "scan, or at one after the last for scans still to come"
                )
    return anchor


def no_handle(handle: str, index: Index) -> str:
    """The message for a handle that has no spice, naming those that do."""
    return (
        f"no spice handle {handle!r} in this proposal (handles: "
        f"{', '.join(sorted(index)) or 'none'}); create it with spice.seed(...)"
    )


def check_one_type(index: Index, handle: str, type_name: str) -> None:
    """Refuse spice of ``type_name`` under a handle that already has another type."""
    for docs in index.get(handle, {}).values():
        for doc in docs:
            if doc.type != type_name:
                raise SpiceError(
                    f"spice handle {handle!r} has type {doc.type!r}, not {type_name!r}; "
                    "use another handle (e.g. handle='"
                    f"{type_name}_2') for spice of type {type_name!r}"
                )


def base_document(
    store: SpiceStore, index: Index, target: str | SpiceDocument, handle: str | None
) -> SpiceDocument:
    """The document an update starts from: ``target`` as a uuid (or a document), else
    ``target`` as a scan key at which ``handle`` is visible."""
    if isinstance(target, SpiceDocument):
        target = target.uuid
    if not isinstance(target, str):
        raise SpiceError(
            f"update() needs a scan key or a document uuid, got {type(target).__name__}"
        )
    if target in store:
        base = store.get(target)
        if handle is not None and handle != base.handle:
            raise SpiceError(
                f"document {target} is spice {base.handle!r}, not {handle!r}; "
                "leave handle out when updating by uuid"
            )
        return base
    if _UUID.fullmatch(target):
        raise SpiceNotFound(
            f"no spice document with uuid {target!r} in {store.url}; check the uuid "
            "(spice.history(handle) lists them)"
        )
    scan = validate_key(target, "scan (viewpoint) or document uuid")
    if handle is None:
        raise SpiceError(
            f"update({scan!r}) needs handle=... to know which spice visible at scan "
            f"{scan!r} to update (handles: {', '.join(sorted(index)) or 'none'})"
        )
    if handle not in index:
        raise SpiceNotFound(no_handle(handle, index))
    base = resolve_handle(index, handle, scan)
    if base is None:
        raise SpiceNotFound(
            f"no spice {handle!r} is visible at scan {scan!r} (its first anchor is later); "
            "update at a later scan, or seed it at this one"
        )
    return base


def new_document(
    type_name: str,
    handle: str,
    anchor: str,
    revision: int,
    parent: str | None,
    data: Mapping[str, Any],
    model: object,
    author: str | None,
    comment: str | None,
) -> SpiceDocument:
    """The document to write; its uuid says what it states (see ``content_uuid``), and it
    is ``typed`` when a registered schema validated ``data`` into ``model``."""
    frozen = freeze(data)
    return SpiceDocument(
        type=type_name,
        handle=handle,
        uuid=content_uuid(type_name, handle, anchor, revision, parent, frozen),
        revision=revision,
        anchor=anchor,
        data=frozen,
        parent=parent,
        created=now_iso(),
        author=author,
        comment=comment,
        typed=model is not None,
    )
