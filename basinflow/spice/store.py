"""Spice stores: where documents live, one immutable JSON file per document.

A store is deliberately dumb: it lists names, reads bytes and *creates* files. It never
overwrites and never deletes, so the only way two writers can interfere is by choosing the
same name, and the name is the document's uuid. This module holds the contract
(:class:`SpiceStore`: three primitives and the caching, parsing and idempotent writes built
on them) and the in-memory store; the store of files at an fsspec URL, with its exclusive
create per file system, and :func:`~basinflow.spice.fsspec_store.open_spice_store` (a store
from a URL, or the in-memory one) are :mod:`basinflow.spice.fsspec_store`.

Re-listing is cheap: documents are immutable, so a store caches every document it has
read and :meth:`SpiceStore.refresh` only lists the directory (one ``LIST`` on S3) and reads
the names it has not seen, concurrently where fsspec can. Documents written by other
processes therefore show up without restarting anything.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

from basinflow.errors import Error, SpiceError, SpiceNotFound, StorageError
from basinflow.keys import validate_key
from basinflow.spice.document import SpiceDocument
from basinflow.spice.json_values import canonical_json

SUFFIX = ".json"


def document_name(uuid: str) -> str:
    """File name of the document with ``uuid`` (validated, so it can never leave the store)."""
    return validate_key(uuid, "spice uuid") + SUFFIX


def _same_statement(a: SpiceDocument, b: SpiceDocument) -> bool:
    return (a.type, a.handle, a.anchor, a.revision, a.parent) == (
        b.type,
        b.handle,
        b.anchor,
        b.revision,
        b.parent,
    ) and canonical_json(a.data) == canonical_json(b.data)


class SpiceStore(ABC):
    """Base of all spice stores: three primitives and the caching built on them.

    Subclasses implement :meth:`_names`, :meth:`_read` and :meth:`_create`; everything
    else (parsing, the cache, idempotent writes, error messages) lives here.

    Attributes
    ----------
    url
        Where the store is, for messages and provenance.
    supports_exclusive_create
        Whether :meth:`_create` is atomic against concurrent writers of the same name.
        Names are uuids, so even without it no two different documents share a name.
    """

    url: str = ""
    supports_exclusive_create: bool = True

    def __init__(self) -> None:
        self._docs: dict[str, SpiceDocument] = {}
        self._lock = threading.RLock()
        self._generation = 0
        self.refreshed_at: float | None = None

    # --- primitives ------------------------------------------------------------------------------
    @abstractmethod
    def _names(self) -> Iterable[str]:
        """Every file name in the store (an empty store or a missing directory: none)."""

    @abstractmethod
    def _read(self, names: list[str]) -> Mapping[str, bytes | BaseException]:
        """Bytes of each name; an exception object for a name that could not be read."""

    @abstractmethod
    def _create(self, name: str, data: bytes) -> None:
        """Create ``name`` with ``data``; raise ``FileExistsError`` if it exists."""

    def location(self, name: str) -> str:
        """Full location of ``name``, for error messages."""
        return f"{self.url}/{name}"

    # --- helpers ---------------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        """Changes whenever the cached set of documents changes (for derived caches)."""
        return self._generation

    def refresh(self) -> list[SpiceDocument]:
        """List the store again and read the documents not seen yet.

        Returns
        -------
        The documents that are new since the last refresh.

        Raises
        ------
        SpiceError
            For a malformed document, naming its file (the other documents are still read
            and cached; fix or remove the file and refresh again).
        StorageError
            When the store cannot be listed or read.
        """
        with self._lock:
            try:
                names = {n for n in self._names() if _is_document_name(n)}
            except Error:
                raise
            except OSError as exc:
                raise StorageError(f"cannot list spice store {self.url}: {exc}") from None
            gone = set(self._docs) - names
            for name in gone:
                del self._docs[name]
            new_names = sorted(names - set(self._docs))
            fresh: list[SpiceDocument] = []
            problems: list[SpiceError] = []
            if new_names:
                raw = self._read(new_names)
                for name in new_names:
                    content = raw.get(name)
                    if isinstance(content, FileNotFoundError) or content is None:
                        continue  # removed between listing and reading
                    if isinstance(content, BaseException):
                        raise StorageError(
                            f"cannot read spice document {self.location(name)}: {content}"
                        )
                    try:
                        doc = self._parse(name, content)
                    except SpiceError as exc:
                        problems.append(exc)
                        continue
                    self._docs[name] = doc
                    fresh.append(doc)
            if gone or fresh:
                self._generation += 1
            self.refreshed_at = time.monotonic()
            if problems:
                if len(problems) > 1:
                    raise type(problems[0])(
                        f"{problems[0]} (and {len(problems) - 1} more malformed document(s))"
                    )
                raise problems[0]
            return fresh

    def documents(self) -> tuple[SpiceDocument, ...]:
        """Every cached document (call :meth:`refresh` to see new ones)."""
        with self._lock:
            if self.refreshed_at is None:
                self.refresh()
            return tuple(self._docs.values())

    def get(self, uuid: str) -> SpiceDocument:
        """The document with ``uuid`` (refreshing once if it is not cached yet).

        Raises
        ------
        SpiceNotFound
            When no such document exists.
        """
        name = document_name(uuid)
        with self._lock:
            if name not in self._docs:
                self.refresh()
            try:
                return self._docs[name]
            except KeyError:
                raise SpiceNotFound(
                    f"no spice document with uuid {uuid!r} in {self.url}; check the uuid "
                    "(spice.history(handle) lists them)"
                ) from None

    def __contains__(self, uuid: object) -> bool:
        return isinstance(uuid, str) and (uuid + SUFFIX) in self._docs

    def put(self, doc: SpiceDocument) -> SpiceDocument:
        """Store ``doc`` under its uuid, never overwriting anything.

        Writing a document whose uuid exists with the same statement (type, handle, anchor,
        revision, parent, data) is a no-op that returns the stored one, which makes repeated
        seeds and imports idempotent even across processes.

        Raises
        ------
        SpiceError
            When a *different* document already has this uuid.
        StorageError
            When the store cannot be written.
        """
        if not isinstance(doc, SpiceDocument):
            raise SpiceError(f"only SpiceDocument objects can be stored, got {type(doc).__name__}")
        name = document_name(doc.uuid)
        data = doc.to_json().encode("utf-8")
        with self._lock:
            try:
                self._create(name, data)
            except FileExistsError:
                existing = self._read_one(name)
                if _same_statement(existing, doc):
                    self._remember(name, existing)
                    return existing
                raise SpiceError(
                    f"a different spice document with uuid {doc.uuid!r} already exists at "
                    f"{self.location(name)}; documents are immutable, write a new revision "
                    "with update() instead"
                ) from None
            except Error:
                raise
            except OSError as exc:
                raise StorageError(
                    f"cannot write spice document {self.location(name)}: {exc}"
                ) from None
            self._remember(name, doc)
            return doc

    def _remember(self, name: str, doc: SpiceDocument) -> None:
        if self._docs.get(name) is not doc:
            self._docs[name] = doc
            self._generation += 1

    def _read_one(self, name: str) -> SpiceDocument:
        content = self._read([name]).get(name)
        if content is None or isinstance(content, BaseException):
            raise StorageError(f"cannot read spice document {self.location(name)}: {content}")
        return self._parse(name, content)

    def _parse(self, name: str, content: bytes) -> SpiceDocument:
        where = self.location(name)
        doc = SpiceDocument.from_json(content, source=where)
        if doc.uuid + SUFFIX != name:
            raise SpiceError(
                f"spice document {where}: its uuid {doc.uuid!r} does not match the file name; "
                "a document must be stored as '<uuid>.json' (rename or remove the file)"
            )
        return doc

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, {len(self._docs)} documents cached)"


def _is_document_name(name: str) -> bool:
    # temporary files start with '.', other files (README.md, ...) are not documents
    return name.endswith(SUFFIX) and not name.startswith(".")


class MemorySpiceStore(SpiceStore):
    """A store in this process's memory (tests, notebooks, nx5d's ``spice_url=''``).

    Documents are kept as JSON bytes, exactly as a file store keeps them, so everything
    that works here also round-trips through a real store.
    """

    def __init__(self, name: str = "memory") -> None:
        super().__init__()
        self.url = f"<{name}>"
        self._files: dict[str, bytes] = {}
        self._files_lock = threading.Lock()

    def _names(self) -> list[str]:
        with self._files_lock:
            return list(self._files)

    def _read(self, names: list[str]) -> dict[str, bytes | BaseException]:
        with self._files_lock:
            return {n: self._files[n] if n in self._files else FileNotFoundError(n) for n in names}

    def _create(self, name: str, data: bytes) -> None:
        with self._files_lock:
            if name in self._files:
                raise FileExistsError(name)
            self._files[name] = data

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_files_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._files_lock = threading.Lock()
