"""Import existing spice (nx5d's ``kmc3/1a`` documents, or another basinflow store).

Accepted sources, local or at any fsspec URL:

- a directory of ``*.json`` / ``*.yaml`` files, each holding one document, a list of
  documents, or a mapping ``uuid -> document``;
- one such file.

Documents keep their uuids, revisions, anchors and data exactly, so provenance recorded
against nx5d spice stays meaningful. The import is checked completely before the first
document is written (all files parse, no uuid is used twice for different content, no
uuid clashes with a different document already in the store), and importing the same
source again writes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from basinflow.errors import SpiceError, StorageError, yaml_problem
from basinflow.spice.document import SpiceDocument
from basinflow.spice.fsspec_store import open_spice_store
from basinflow.spice.json_values import canonical_json, parse_json
from basinflow.spice.store import SpiceStore
from basinflow.spice.types import is_registered, validate_spice_data

_SUFFIXES = (".json", ".yaml", ".yml")


@dataclass(frozen=True)
class ImportReport:
    """What an import did (or, with ``dry_run``, would do)."""

    imported: tuple[SpiceDocument, ...] = field(default_factory=tuple)
    skipped: tuple[SpiceDocument, ...] = field(default_factory=tuple)
    dry_run: bool = False

    def __str__(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        return f"{verb} {len(self.imported)} spice document(s), {len(self.skipped)} already present"


def read_spice_documents(
    source: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> list[SpiceDocument]:
    """Read every document from ``source`` (a file or a directory, local or fsspec URL).

    Raises
    ------
    SpiceError
        Naming the file (and the position in it) of a malformed document, or two
        different documents with one uuid.
    StorageError
        When ``source`` does not exist or cannot be read.
    """
    import fsspec

    url = os.fspath(source)
    try:
        fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except (ImportError, ValueError, TypeError) as exc:
        raise StorageError(f"cannot open spice source {url!r}: {exc}") from None
    if not fs.exists(path):
        raise StorageError(f"spice source {url!r} does not exist; check the path or URL")
    is_dir = fs.isdir(path)
    if is_dir:
        files = sorted(
            p
            for p in fs.ls(path, detail=False)
            if p.endswith(_SUFFIXES) and not p.rsplit("/", 1)[-1].startswith(".")
        )
        if not files:
            raise SpiceError(f"spice source {url!r} holds no .json or .yaml files")
    else:
        files = [path]
    docs: dict[str, SpiceDocument] = {}
    for file in files:
        where = f"{url.rstrip('/')}/{file.rsplit('/', 1)[-1]}" if is_dir else url
        try:
            raw = fs.cat_file(file)
        except OSError as exc:
            raise StorageError(f"cannot read spice source {where}: {exc}") from None
        for doc in _parse_file(raw, where):
            old = docs.get(doc.uuid)
            if old is not None and not (
                old.same_content(doc) and (old.revision, old.parent) == (doc.revision, doc.parent)
            ):
                raise SpiceError(
                    f"spice source {url!r}: two different documents share uuid {doc.uuid!r} "
                    f"(one in {where}); uuids must be unique"
                )
            docs.setdefault(doc.uuid, doc)
    return list(docs.values())


def _parse_file(raw: bytes, where: str) -> list[SpiceDocument]:
    if where.endswith((".yaml", ".yml")):
        try:
            content = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise SpiceError(
                f"malformed spice document {where}: {yaml_problem(exc)}; fix or remove the file"
            ) from None
    else:
        content = parse_json(raw, where)
    if isinstance(content, list):
        items = [(f"{where}[{i}]", item) for i, item in enumerate(content)]
    elif (
        isinstance(content, Mapping)
        and content
        and "uuid" not in content
        and all(isinstance(v, Mapping) for v in content.values())
    ):
        items = [(f"{where}[{k!r}]", item) for k, item in content.items()]
    else:
        items = [(where, content)]
    return [SpiceDocument.from_dict(item, source=label) for label, item in items]


def import_spice(
    source: str | os.PathLike[str],
    store: SpiceStore | str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    store_options: Mapping[str, Any] | None = None,
    validate: bool = True,
    dry_run: bool = False,
) -> ImportReport:
    """Copy the documents of ``source`` into ``store``.

    Parameters
    ----------
    source
        nx5d spice (a directory or file), see the module docstring.
    store
        Target store or store URL.
    storage_options, store_options
        fsspec options for the source and for the store URL.
    validate
        Check documents of registered types against their schema before writing (types
        nobody registered are imported untyped, as they are).
    dry_run
        Check everything, write nothing.

    Raises
    ------
    SpiceError
        For a malformed source document (named), a uuid that exists in the store with
        different content, or (``validate``) data that does not match its schema. Nothing
        is written in any of these cases.
    """
    docs = read_spice_documents(source, storage_options)
    target = open_spice_store(store, store_options)
    if validate:
        for doc in docs:
            if is_registered(doc.type):
                validate_spice_data(
                    doc.type, doc.data, what=f"imported spice document {doc.uuid} ({doc.label})"
                )
    target.refresh()
    existing = {d.uuid: d for d in target.documents()}
    imported, skipped = [], []
    for doc in docs:
        old = existing.get(doc.uuid)
        if old is None:
            imported.append(doc)
        elif old.same_content(doc) and (old.revision, old.parent) == (doc.revision, doc.parent):
            skipped.append(old)
        else:
            raise SpiceError(
                f"cannot import spice document {doc.uuid}: the store {target.url} already holds "
                f"a different document with this uuid (revision {old.revision}, data "
                f"{canonical_json(old.data)[:80]}); nothing was imported"
            )
    if not dry_run:
        imported = [target.put(doc) for doc in imported]
    return ImportReport(tuple(imported), tuple(skipped), dry_run)
