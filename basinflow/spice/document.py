"""Spice documents: the immutable unit of processing parameters.

A spice document says "from scan *anchor* on, the parameters of *handle* (a spice of
*type*) are *data*". Documents are never changed: an update writes a new document with
``revision + 1`` and ``parent`` = the uuid it replaces, so the history of every parameter
is kept and provenance can record exactly which documents a result was cooked with.

The JSON layout is a superset of nx5d's (``version: kmc3/1a``, ``type``, ``handle``,
``uuid``, ``revision``, ``anchor``, ``data``), so existing nx5d spice reads as it is:
missing fields take their defaults and ``anchor: ''`` means "from the first scan".

Spice is data only. Values are JSON (numbers, strings, booleans, null, lists, mappings);
nothing is ever evaluated or unpickled, and a recipe is chosen by its registered name,
never by a module path or a file URL written into spice (those rules, for any value, live
in :mod:`basinflow.spice.json_values`).
"""

from __future__ import annotations

import json
import keyword
import re
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from basinflow.errors import Error, InvalidKeyError, SpiceError, SpiceValidationError
from basinflow.keys import validate_key
from basinflow.spice.json_values import (
    FrozenDict,
    canonical_json,
    check_not_code,
    freeze,
    parse_json,
    thaw,
)

VERSION = "basinflow/1"
"""Version string written into new documents."""

NX5D_VERSION = "kmc3/1a"
"""Version string of nx5d spice documents, read as they are."""

READABLE_VERSIONS = frozenset({VERSION, NX5D_VERSION})

FIELDS = (
    "version",
    "type",
    "handle",
    "uuid",
    "revision",
    "anchor",
    "data",
    "parent",
    "created",
    "author",
    "comment",
    "typed",
)

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")
_MAX_TEXT = 10_000
_NAMESPACE = uuidlib.UUID("6d0c8f0e-4c1f-5b8e-9a57-3b3f1c2a9e41")


def validate_name(name: object, what: str = "spice handle") -> str:
    """Return ``name`` if it can be a spice handle or type name, else raise.

    Handles and type names become attribute names (``view.rsm``) and never paths, so
    they must be ASCII Python identifiers: a letter first, then letters, digits or
    ``_``; not a Python keyword; at most 100 characters. A leading ``_`` is refused so a
    handle can never shadow private or dunder attributes.

    Raises
    ------
    InvalidKeyError
        With a message naming the value and the rule.
    """
    if not isinstance(name, str):
        raise InvalidKeyError(f"{what} must be a string, got {type(name).__name__} {name!r}")
    if not _IDENT.fullmatch(name) or keyword.iskeyword(name):
        raise InvalidKeyError(
            f"invalid {what} {name!r}: use a Python identifier (a letter, then letters, "
            "digits or '_'; at most 100 characters; not a keyword), e.g. 'rsm' or 'roi_1'"
        )
    return name


def validate_anchor(anchor: object) -> str:
    """Return ``anchor`` ('' = from the first scan) if it is a valid scan key, else raise
    :class:`InvalidKeyError`."""
    if anchor is None or anchor == "":
        return ""
    return validate_key(anchor, "spice anchor (a scan key)")


def _check_text(value: object, what: str, *, limit: int = _MAX_TEXT) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SpiceError(f"spice {what} must be a string or null, got {type(value).__name__}")
    if len(value) > limit:
        raise SpiceError(f"spice {what} is longer than {limit} characters")
    return value


def _check_created(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SpiceError(
            f"spice 'created' must be an ISO 8601 time string or null, got {type(value).__name__}"
        )
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise SpiceError(
            f"spice 'created' {value!r} is not an ISO 8601 time (e.g. 2026-11-21T10:00:00+00:00)"
        ) from None
    return value


def now_iso() -> str:
    """Current UTC time as an ISO 8601 string (the ``created`` field)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def content_uuid(
    type: str, handle: str, anchor: str, revision: int, parent: str | None, data: Any
) -> str:
    """A uuid derived from what a document *says*.

    Two writers who independently write the same statement (same type, handle, anchor,
    revision, parent and data) get the same uuid, hence the same file name: the exclusive
    create lets one of them win and the other finds an identical document. So repeating a
    seed, even concurrently in many processes, never creates a conflict; two *different*
    statements always get different uuids and never overwrite each other.
    """
    text = canonical_json([type, handle, anchor, revision, parent, data])
    return str(uuidlib.uuid5(_NAMESPACE, text))


# --- the document ---------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, eq=True)
class SpiceDocument:
    """One immutable spice document.

    Parameters
    ----------
    type
        Name of the spice type (a registered pydantic schema, or free-form if nobody
        registered it). A Python identifier.
    handle
        Name under which the spice is seen (``view.<handle>``); several handles may share
        one type (``roi_a``, ``roi_b``). Defaults to ``type`` when read from nx5d.
    uuid
        Identity and file name of the document; a safe key (no ``/``, no ``..``).
    revision
        1 for a seed; an update writes ``revision + 1``.
    anchor
        Scan key from which the spice applies, in natural scan order; ``''`` = from the
        first scan.
    data
        The parameters: JSON data, frozen.
    parent
        uuid of the document this one replaces or was copied from (``None`` for a seed).
    created, author, comment
        Who wrote it, when and why; for people reading the history.
    typed
        Whether ``data`` was validated against a registered schema when written (``False``
        for free-form spice and for imported nx5d documents).
    version
        Format version: ``basinflow/1`` for documents written here, ``kmc3/1a`` for nx5d.

    Raises
    ------
    InvalidKeyError
        For a bad handle, type, uuid, parent or anchor.
    SpiceValidationError
        For data that is not JSON or names code.
    SpiceError
        For any other malformed field.
    """

    type: str
    handle: str
    uuid: str
    revision: int = 1
    anchor: str = ""
    data: Mapping[str, Any] = field(default_factory=FrozenDict)
    parent: str | None = None
    created: str | None = None
    author: str | None = None
    comment: str | None = None
    typed: bool = False
    version: str = VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or self.version not in READABLE_VERSIONS:
            raise SpiceError(
                f"unsupported spice version {self.version!r}; this basinflow reads "
                f"{', '.join(sorted(READABLE_VERSIONS))} (upgrade basinflow to read newer spice)"
            )
        validate_name(self.type, "spice type name")
        validate_name(self.handle, "spice handle")
        validate_key(self.uuid, "spice uuid")
        if self.parent is not None:
            validate_key(self.parent, "spice parent uuid")
        object.__setattr__(self, "anchor", validate_anchor(self.anchor))
        if isinstance(self.revision, bool) or not isinstance(self.revision, int):
            raise SpiceError(
                f"spice revision must be a positive integer, got {type(self.revision).__name__} "
                f"{self.revision!r}"
            )
        if self.revision < 1:
            raise SpiceError(f"spice revision must be >= 1, got {self.revision}")
        if not isinstance(self.typed, bool):
            raise SpiceError(f"spice 'typed' must be true or false, got {self.typed!r}")
        if not isinstance(self.data, Mapping):
            raise SpiceValidationError(
                f"spice data must be a mapping of field names to values, got "
                f"{type(self.data).__name__}"
            )
        data = freeze(self.data)
        check_not_code(data)
        object.__setattr__(self, "data", data)
        _check_created(self.created)
        _check_text(self.author, "author", limit=200)
        _check_text(self.comment, "comment")

    def __hash__(self) -> int:
        return hash(self.uuid)

    # --- conversions ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, mapping: object, source: str | None = None) -> SpiceDocument:
        """Read a document from parsed JSON, nx5d documents included.

        Missing fields take their defaults (``handle`` = ``type``, ``revision`` = 1,
        ``anchor`` = ''); ``anchor: null`` is read as ''. Unknown top-level fields are
        refused: a misspelt ``anchr`` must not silently turn into "from the first scan".

        Raises
        ------
        SpiceError
            Naming ``source`` (a file or URL) and the problem; never anything else.
        """
        prefix = f"spice document {source}: " if source else "spice document: "
        if not isinstance(mapping, Mapping):
            raise SpiceError(f"{prefix}expected a JSON object, got {type(mapping).__name__}")
        unknown = [str(k) for k in mapping if k not in FIELDS]
        if unknown:
            raise SpiceError(
                f"{prefix}unknown field(s) {', '.join(map(repr, sorted(unknown)))}; "
                f"a spice document has {', '.join(FIELDS)}"
            )
        if "type" not in mapping:
            raise SpiceError(f"{prefix}missing field 'type'")
        if "uuid" not in mapping:
            raise SpiceError(f"{prefix}missing field 'uuid'")
        kwargs = dict(mapping)
        kwargs.setdefault("version", NX5D_VERSION)
        if kwargs.get("handle") is None:
            kwargs["handle"] = kwargs["type"]
        if kwargs.get("anchor") is None:
            kwargs["anchor"] = ""
        if kwargs.get("data") is None:
            kwargs["data"] = {}
        if kwargs.get("revision") is None:
            kwargs["revision"] = 1
        if kwargs.get("typed") is None:
            kwargs["typed"] = False
        try:
            return cls(**kwargs)
        except SpiceError as exc:
            raise type(exc)(prefix + str(exc)) from None
        except Error as exc:  # e.g. InvalidKeyError: reading a document only raises SpiceError
            raise SpiceError(prefix + str(exc)) from None
        except RecursionError:
            raise SpiceError(f"{prefix}nested too deeply") from None

    @classmethod
    def from_json(cls, text: str | bytes, source: str | None = None) -> SpiceDocument:
        """Parse one JSON document (strict JSON: no NaN or Infinity).

        Raises
        ------
        SpiceError
            Naming ``source`` when the text is not JSON or not a valid document; with a
            ``source`` (a stored file) the message says to fix or remove that file.
        """
        data = parse_json(text, source)
        try:
            return cls.from_dict(data, source)
        except SpiceError as exc:
            if source is None:
                raise
            raise type(exc)(f"{exc}; fix or remove the file") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict with every field (data thawed into dicts and lists)."""
        return {
            "version": self.version,
            "type": self.type,
            "handle": self.handle,
            "uuid": self.uuid,
            "revision": self.revision,
            "anchor": self.anchor,
            "data": thaw(self.data),
            "parent": self.parent,
            "created": self.created,
            "author": self.author,
            "comment": self.comment,
            "typed": self.typed,
        }

    def to_json(self, indent: int | None = 1) -> str:
        """Strict JSON text of the document (keys in a stable order)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, allow_nan=False)

    # --- comparisons -------------------------------------------------------------------------
    def same_content(self, other: SpiceDocument) -> bool:
        """Whether both documents say the same thing (type, handle, anchor and data),
        whoever wrote them and whenever."""
        return (
            self.type == other.type
            and self.handle == other.handle
            and self.anchor == other.anchor
            and canonical_json(self.data) == canonical_json(other.data)
        )

    @property
    def label(self) -> str:
        """Short human label, e.g. ``rsm r2 @0040 (1a2b3c4d)``."""
        anchor = self.anchor or "(first scan)"
        return f"{self.handle} r{self.revision} @{anchor} ({self.uuid[:8]})"
