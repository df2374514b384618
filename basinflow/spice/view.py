"""What users see of spice: the view at a scan and the anchor x handle table.

:class:`SpiceView` (``prop.spice.view(scan)``) holds, per visible handle, a
:class:`SpiceItem`: the document's data with attribute access and, for a registered type,
the validated model. :class:`SpiceTable` (``prop.spice.ls()``) shows the top revision of
every handle at every anchor, conflicts marked. Both print as text and render as HTML in
Jupyter. Which document is visible is decided by the pure rule in
:mod:`basinflow.spice.resolve`; this module only builds and shows the result.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from basinflow.errors import SpiceNotFound
from basinflow.spice.document import SpiceDocument
from basinflow.spice.json_values import thaw
from basinflow.spice.resolve import Index, resolve_handle, sorted_anchors, top_documents
from basinflow.spice.types import validate_spice_data


def _types_of(by_anchor: Mapping[str, list[SpiceDocument]]) -> set[str]:
    return {doc.type for docs in by_anchor.values() for doc in docs}


class SpiceItem(Mapping[str, Any]):
    """The parameters of one handle as seen at a scan.

    Both ``item.beamEnergy`` and ``item["beamEnergy"]`` work. For a registered type the
    values come from the validated pydantic model (defaults filled in, ``item.model`` is
    the instance); for untyped spice they are the document's frozen data. A data field
    whose name collides with a method or property here (``keys``, ``values``, ``items``,
    ``get``, ``document``, ``model``, ``typed``) is reached by item access.
    """

    __slots__ = ("_document", "_model", "_values")

    def __init__(self, document: SpiceDocument, model: BaseModel | None = None) -> None:
        self._document = document
        self._model = model
        if model is not None:
            values = {name: getattr(model, name) for name in type(model).model_fields}
            values.update(model.model_extra or {})
        else:
            values = dict(document.data)
        self._values = values

    @property
    def document(self) -> SpiceDocument:
        """The whole document used (provenance records it)."""
        return self._document

    @property
    def model(self) -> BaseModel | None:
        """The validated model instance, ``None`` for untyped spice."""
        return self._model

    @property
    def typed(self) -> bool:
        return self._model is not None

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise SpiceNotFound(self._missing(name)) from None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(self._missing(name)) from None

    def _missing(self, name: str) -> str:
        return (
            f"spice {self._document.handle!r} ({self._document.type}) has no field {name!r}; "
            f"fields: {', '.join(self._values) or '(none)'}"
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {k for k in self._values if k.isidentifier()})

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON-like)."""
        if self._model is not None:
            return self._model.model_dump(mode="json")
        return thaw(self._values)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"<spice {self._document.label}: {fields}>"


class SpiceView(Mapping[str, SpiceItem]):
    """The spice visible at one scan, per handle.

    ``view.rsm.beamEnergy`` and ``view["rsm"]["beamEnergy"]`` both work. ``documents``
    gives the documents used, whole, so provenance can record exactly what was cooked
    with. A handle that collides with a method here (``keys``, ``get``, ``documents``...)
    is reached by item access.
    """

    def __init__(self, scan: str, items: Mapping[str, SpiceItem]) -> None:
        self._scan = scan
        self._items = dict(sorted(items.items()))

    @classmethod
    def resolve(
        cls,
        index: Index,
        scan: str,
        handles: Iterable[str] | None = None,
        *,
        types: Iterable[str] | None = None,
    ) -> SpiceView:
        """Resolve every (or the given) handle at ``scan``.

        ``types`` narrows the handles to those whose documents are of these spice types
        (a recipe asks for types): the others are never resolved, so a conflict in a
        handle the caller does not need cannot block it.

        Raises
        ------
        SpiceConflict
            When a visible anchor has a conflict.
        SpiceValidationError
            When a visible document of a registered type does not match its schema.
        """
        wanted = sorted(index) if handles is None else list(handles)
        if types is not None:
            kinds = set(types)
            wanted = [h for h in wanted if kinds & _types_of(index.get(h, {}))]
        items = {}
        for handle in wanted:
            doc = resolve_handle(index, handle, scan)
            if doc is None:
                if handles is not None:
                    raise SpiceNotFound(
                        f"no spice {handle!r} is visible at scan {scan!r}; "
                        f"handles here: {', '.join(sorted(index)) or '(none)'}"
                    )
                continue
            model = validate_spice_data(
                doc.type, doc.data, what=f"spice document {doc.uuid} ({doc.label})"
            )
            items[handle] = SpiceItem(doc, model)
        return cls(scan, items)

    @property
    def scan(self) -> str:
        return self._scan

    @property
    def documents(self) -> tuple[SpiceDocument, ...]:
        """The documents this view was resolved from."""
        return tuple(item.document for item in self._items.values())

    def provenance(self) -> list[dict[str, Any]]:
        """The documents used, as plain dicts (what a referrer's ``/provenance`` records)."""
        return [doc.to_dict() for doc in self.documents]

    def of_type(self, type_name: str) -> dict[str, SpiceItem]:
        """Items whose spice type is ``type_name`` (a recipe asks for types, not handles)."""
        return {h: i for h, i in self._items.items() if i.document.type == type_name}

    def __getitem__(self, handle: str) -> SpiceItem:
        try:
            return self._items[handle]
        except KeyError:
            raise SpiceNotFound(self._missing(handle)) from None

    def __getattr__(self, handle: str) -> SpiceItem:
        if handle.startswith("_"):
            raise AttributeError(handle)
        try:
            return self._items[handle]
        except KeyError:
            raise AttributeError(self._missing(handle)) from None

    def _missing(self, handle: str) -> str:
        return (
            f"no spice {handle!r} is visible at scan {self._scan!r}; "
            f"visible: {', '.join(self._items) or '(none)'}"
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._items))

    def rows(self) -> list[dict[str, Any]]:
        """One dict per handle: handle, type, typed, revision, anchor, uuid, data."""
        return [
            {
                "handle": h,
                "type": i.document.type,
                "typed": i.typed,
                "revision": i.document.revision,
                "anchor": i.document.anchor,
                "uuid": i.document.uuid,
                "data": i.to_dict(),
            }
            for h, i in self._items.items()
        ]

    def __repr__(self) -> str:
        lines = [f"spice at scan {self._scan!r}:"]
        for row in self.rows():
            anchor = row["anchor"] or "(first scan)"
            typed = "" if row["typed"] else " untyped"
            lines.append(
                f"  {row['handle']} ({row['type']}{typed}) r{row['revision']} @{anchor} "
                f"{row['uuid'][:8]}: {row['data']}"
            )
        if not self._items:
            lines.append("  (none)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(
            f"<th>{c}</th>" for c in ("handle", "type", "revision", "anchor", "uuid", "data")
        )
        body = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (
                    r["handle"],
                    r["type"] + ("" if r["typed"] else " (untyped)"),
                    r["revision"],
                    r["anchor"] or "(first scan)",
                    r["uuid"][:8],
                    r["data"],
                )
            )
            + "</tr>"
            for r in self.rows()
        )
        title = html.escape(f"spice at scan {self._scan}")
        return f"<table><caption>{title}</caption><tr>{head}</tr>{body}</table>"


@dataclass(frozen=True)
class SpiceCell:
    """One cell of :class:`SpiceTable`: the top of one handle at one anchor."""

    revision: int
    uuids: tuple[str, ...]
    type: str

    @property
    def conflict(self) -> bool:
        return len(self.uuids) > 1

    def __str__(self) -> str:
        if self.conflict:
            return f"CONFLICT r{self.revision} ({', '.join(u[:8] for u in self.uuids)})"
        return f"r{self.revision} {self.uuids[0][:8]}"


@dataclass(frozen=True)
class SpiceTable:
    """Anchor x handle overview of a proposal's spice (``spice.ls()``).

    Rows are anchors in natural scan order, columns handles; a cell shows the top
    revision there and its uuid, or the conflict. Printed as text; shown as an HTML table
    in Jupyter.
    """

    anchors: tuple[str, ...]
    handles: tuple[str, ...]
    cells: Mapping[tuple[str, str], SpiceCell]

    @classmethod
    def from_index(cls, index: Index) -> SpiceTable:
        cells = {}
        for handle, by_anchor in index.items():
            for anchor, docs in by_anchor.items():
                tops = top_documents(docs)
                cells[(anchor, handle)] = SpiceCell(
                    tops[0].revision, tuple(d.uuid for d in tops), tops[0].type
                )
        anchors = tuple(sorted_anchors(a for a, _ in cells))
        return cls(anchors, tuple(sorted(index)), cells)

    def rows(self) -> list[dict[str, str]]:
        """One dict per anchor: ``{"anchor": ..., <handle>: <cell text or ''>}``."""
        return [
            {"anchor": a}
            | {h: str(self.cells[(a, h)]) if (a, h) in self.cells else "" for h in self.handles}
            for a in self.anchors
        ]

    def __repr__(self) -> str:
        if not self.handles:
            return "(no spice)"
        header = ["anchor", *self.handles]
        rows = [[r["anchor"] or "(first scan)", *(r[h] for h in self.handles)] for r in self.rows()]
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]

        def line(values: Sequence[str]) -> str:
            return "  ".join(str(v).ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

        return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in ("anchor", *self.handles))
        body = []
        for r in self.rows():
            cells = [html.escape(r["anchor"] or "(first scan)")]
            for h in self.handles:
                text = html.escape(r[h])
                if text.startswith("CONFLICT"):
                    text = f'<span style="color:#c00;font-weight:bold">{text}</span>'
                cells.append(text)
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        return f"<table><tr>{head}</tr>{''.join(body)}</table>"
