"""Stack spice: consecutive scans grouped into one cooked unit.

Kept apart from :class:`~basinflow.spice.proposal_spice.ProposalSpice` because the rule is
its own and pure (documents and scan keys in, groups out): each ``stack`` document anchored
at *A* groups the scans from *A* up to the next anchor of its handle, cut into groups of
``size`` when the document sets one. Scans before the first anchor are in no group.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from basinflow.errors import SpiceConflict
from basinflow.keys import natural_key, natural_sorted
from basinflow.spice.document import SpiceDocument
from basinflow.spice.resolve import Conflict, sorted_anchors, top_documents
from basinflow.spice.types import validate_spice_data


class StackGroup(NamedTuple):
    """Consecutive scans cooked as one unit: ``anchor`` is the first scan of the group."""

    anchor: str
    scans: list[str]


def stack_groups(
    by_anchor: Mapping[str, list[SpiceDocument]], handle: str, scans: Iterable[str]
) -> list[StackGroup]:
    """The groups that the documents of one stack ``handle`` (anchor -> documents) make of
    ``scans``, in natural scan order.

    Raises
    ------
    SpiceConflict
        When a stack anchor has a conflict.
    SpiceValidationError
        When a document of a registered type does not match its schema.
    """
    anchors = sorted_anchors(by_anchor)
    scans = natural_sorted(scans)
    groups: list[StackGroup] = []
    for i, anchor in enumerate(anchors):
        tops = top_documents(by_anchor[anchor])
        if len(tops) > 1:
            raise SpiceConflict(Conflict(handle, anchor, tops[0].revision, tuple(tops)).message())
        doc = tops[0]
        model = validate_spice_data(doc.type, doc.data, what=f"spice document {doc.uuid}")
        size = getattr(model, "size", None) if model is not None else doc.data.get("size")
        nxt = anchors[i + 1] if i + 1 < len(anchors) else None
        members = [
            s
            for s in scans
            if (anchor == "" or natural_key(s) >= natural_key(anchor))
            and (nxt is None or natural_key(s) < natural_key(nxt))
        ]
        step = size if isinstance(size, int) and size >= 1 else len(members) or 1
        for start in range(0, len(members), step):
            chunk = members[start : start + step]
            groups.append(StackGroup(chunk[0], chunk))
    return groups
