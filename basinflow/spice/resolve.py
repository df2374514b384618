"""The rule that resolves spice at a scan: natural anchor order, top revisions, conflicts.

The rule (DESIGN.md, Spice): for each handle, take the documents at the greatest anchor
<= scan in *natural scan order* (``r9`` < ``r10``; the empty anchor comes first), and
among them the highest revision. Two documents that share that top revision and say
different things are a *conflict*: two people updated at once and nobody can tell which
is meant, so :class:`~basinflow.errors.SpiceConflict` is raised until an explicit update
by uuid writes a higher revision. Documents at the top revision that say the same thing
(the same seed imported twice) are not a conflict; the oldest is used.

The functions here are pure (documents in, answers out) so the rule is tested directly,
with hypothesis, independently of any store.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from basinflow.errors import SpiceConflict
from basinflow.keys import natural_key
from basinflow.spice.document import SpiceDocument
from basinflow.spice.json_values import canonical_json

Index = dict[str, dict[str, list[SpiceDocument]]]
"""handle -> anchor -> documents."""


def anchor_label(anchor: str) -> str:
    """Human form of an anchor: ``''`` reads as "(first scan)"."""
    return repr(anchor) if anchor else "'' (first scan)"


def index_documents(docs: Iterable[SpiceDocument]) -> Index:
    """Group documents by handle, then anchor."""
    index: Index = defaultdict(lambda: defaultdict(list))
    for doc in docs:
        index[doc.handle][doc.anchor].append(doc)
    return {h: dict(by_anchor) for h, by_anchor in index.items()}


def _order(doc: SpiceDocument) -> tuple:
    return (doc.created or "", doc.uuid)


def top_documents(docs: Sequence[SpiceDocument]) -> list[SpiceDocument]:
    """The documents at the highest revision, one per distinct content, oldest first.

    More than one entry means a conflict.
    """
    if not docs:
        return []
    top = max(d.revision for d in docs)
    distinct: dict[str, SpiceDocument] = {}
    for doc in sorted((d for d in docs if d.revision == top), key=_order):
        distinct.setdefault(canonical_json([doc.type, doc.data]), doc)
    return list(distinct.values())


def visible_anchor(anchors: Iterable[str], scan: str) -> str | None:
    """The greatest anchor <= ``scan`` in natural order (``''`` is before every scan)."""
    limit = natural_key(scan)
    best: str | None = None
    for anchor in anchors:
        if (anchor == "" or natural_key(anchor) <= limit) and (
            best is None or _anchor_key(anchor) > _anchor_key(best)
        ):
            best = anchor
    return best


def _anchor_key(anchor: str) -> tuple:
    return (0,) if anchor == "" else (1, natural_key(anchor))


def sorted_anchors(anchors: Iterable[str]) -> list[str]:
    """Anchors in natural scan order, ``''`` first."""
    return sorted(set(anchors), key=_anchor_key)


@dataclass(frozen=True)
class Conflict:
    """Two or more different documents share the top revision of one handle at one anchor.

    Resolve it with ``spice.update(<uuid of the one to keep>, ...)``.
    """

    handle: str
    anchor: str
    revision: int
    documents: tuple[SpiceDocument, ...]

    @property
    def uuids(self) -> tuple[str, ...]:
        return tuple(d.uuid for d in self.documents)

    def message(self) -> str:
        who = ", ".join(
            f"{d.uuid} (by {d.author or 'unknown'}, {d.created or 'no date'})"
            for d in self.documents
        )
        return (
            f"spice {self.handle!r} at anchor {anchor_label(self.anchor)} has "
            f"{len(self.documents)} different documents at revision {self.revision}: {who}; "
            f"keep one with spice.update({self.documents[0].uuid!r}, ...) "
            f"(CLI: basinflow spice update {self.documents[0].uuid} KEY=VALUE ...)"
        )

    def __str__(self) -> str:
        return self.message()


def find_conflicts(docs: Iterable[SpiceDocument] | Index) -> list[Conflict]:
    """Every conflict in a set of documents, by handle then anchor (natural order)."""
    index = docs if isinstance(docs, dict) else index_documents(docs)
    out = []
    for handle in sorted(index):
        by_anchor = index[handle]
        for anchor in sorted_anchors(by_anchor):
            tops = top_documents(by_anchor[anchor])
            if len(tops) > 1:
                out.append(Conflict(handle, anchor, tops[0].revision, tuple(tops)))
    return out


def resolve_handle(index: Index, handle: str, scan: str) -> SpiceDocument | None:
    """The document of ``handle`` visible at ``scan``, ``None`` if none is.

    Raises
    ------
    SpiceConflict
        Naming the uuids, when the visible anchor has a conflict.
    """
    by_anchor = index.get(handle)
    if not by_anchor:
        return None
    anchor = visible_anchor(by_anchor, scan)
    if anchor is None:
        return None
    tops = top_documents(by_anchor[anchor])
    if len(tops) > 1:
        raise SpiceConflict(Conflict(handle, anchor, tops[0].revision, tuple(tops)).message())
    return tops[0]
