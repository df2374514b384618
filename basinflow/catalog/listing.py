"""Listing keys from storage: fsspec globs for the path part, HDF5 group names for the
fragment, and a JSON index for HTTP servers that cannot list directories."""

from __future__ import annotations

import fnmatch
import json
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from basinflow.catalog.template import Template, parse_component
from basinflow.errors import NotFound, TemplateError, UnlistedEntriesWarning
from basinflow.keys import is_valid_key, natural_sorted
from basinflow.storage import fs

if TYPE_CHECKING:
    import h5py

INDEX_NAME = "basinflow-index.json"


def list_keys(
    template: Template,
    field: str,
    storage_options: Mapping[str, Any] | None = None,
    indexes: dict[str, bytes | None] | None = None,
) -> list[str]:
    """Distinct valid keys of ``field`` in natural order (other fields already filled).

    ``indexes``: index files fetched so far (URL -> body, ``None`` where absent), shared
    by the listings of one repository so that listing its proposals and then each
    proposal's scans fetches the index once, not once per level (its owner drops it on
    ``refresh()``)."""
    unlisted: dict[str, str] = {}
    found = _from_path(template, field, storage_options, indexes)
    if found is None:
        found = _from_fragment(template, field, storage_options, unlisted)
    for k in found:
        if not is_valid_key(k):
            unlisted[k] = "not a valid key (letters, digits, '.', '_', '-')"
    if unlisted:
        # a listing is total: what is not a scan is named here, once, with its reason
        shown = "; ".join(f"{k!r}: {why}" for k, why in sorted(unlisted.items())[:20])
        more = f"; and {len(unlisted) - 20} more" if len(unlisted) > 20 else ""
        warnings.warn(
            f"{template.text}: {len(unlisted)} entr{'y is' if len(unlisted) == 1 else 'ies are'} "
            f"not listed as {field}s: {shown}{more}",
            UnlistedEntriesWarning,
            stacklevel=3,
        )
    return natural_sorted({k for k in found if is_valid_key(k)})


def _from_path(template: Template, field: str, storage_options, indexes=None) -> set[str] | None:
    spec = template.glob_for(field)
    if spec is None:
        return None
    pattern, rx = spec
    if template.scheme in ("http", "https"):
        hits = _glob_index(template, pattern, storage_options, {} if indexes is None else indexes)
        if hits is None:
            hits = _glob(pattern, storage_options)
    else:
        hits = _glob(pattern, storage_options)
    out = set()
    for hit in hits:
        m = rx.search(hit.rstrip("/"))
        if m:
            out.add(m.group(field))
    return out


def _glob(pattern: str, storage_options) -> list[str]:
    fsys, path = fs.url_to_fs(pattern, storage_options)
    try:
        return list(fsys.glob(path))
    except FileNotFoundError:
        return []
    except Exception as exc:
        raise fs.translate_errors(pattern, exc) from exc


def _glob_index(
    template: Template, pattern: str, storage_options, indexes: dict[str, bytes | None]
) -> list[str] | None:
    """Match ``pattern`` against ``basinflow-index.json`` at the root or a parent of it."""
    base = template.root.rstrip("/")
    host_root = base.split("://", 1)[0] + "://" + base.split("://", 1)[1].split("/", 1)[0]
    while True:
        url = f"{base}/{INDEX_NAME}"
        if url in indexes:
            blob = indexes[url]
        else:
            fsys, path = fs.url_to_fs(url, storage_options)
            try:
                blob = fsys.cat_file(path)
            except FileNotFoundError:
                blob = None
            except Exception as exc:
                raise fs.translate_errors(url, exc) from exc
            indexes[url] = blob
        if blob is not None:
            try:
                files = json.loads(blob)["files"]
            except (ValueError, KeyError, TypeError) as exc:
                raise NotFound(
                    f"{url}: malformed listing index ({exc}); regenerate it "
                    "with 'basinflow samples --index-only DIR'"
                ) from None
            names = set()
            for rel in files:
                parts = rel.split("/")
                for i in range(1, len(parts) + 1):  # directories are implied by files
                    names.add(f"{base}/{'/'.join(parts[:i])}")
            return [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if base == host_root:
            return None
        base = base.rsplit("/", 1)[0]


def _from_fragment(
    template: Template, field: str, storage_options, unlisted: dict[str, str]
) -> set[str]:
    spec = template.fragment_parts_for(field)
    if spec is None:
        raise TemplateError(f"template {template.text!r} has no {{{field}}} field")
    if not Template(template.path, template.fields, ()).is_concrete:
        raise TemplateError(
            f"template {template.text!r}: {{{field}}} is inside the HDF5 file but the file path "
            "still has unfilled fields; put outer keys before inner ones"
        )
    comps, last = spec
    # imported here: lazy HDF5 reading pulls in xarray and numba, which listing a path
    # template (the CLI's name checks) does not need
    import h5py

    from basinflow.storage import hdf5

    handle = hdf5.open_h5(template.path, storage_options)
    try:
        groups: list[tuple[h5py.Group, dict]] = [(handle.file, {})]
        for comp in comps[: last + 1]:
            nxt = []
            for g, got in groups:
                if "{" not in comp:
                    child = g.get(comp)
                    if isinstance(child, h5py.Group):
                        nxt.append((child, got))
                    continue
                names = []
                for name in g:
                    obj = g.get(name)
                    if isinstance(obj, h5py.Group):
                        names.append(name)
                    elif obj is None and parse_component(comp, [name]):
                        unlisted[name] = _broken(g, name)
                for name in names:
                    for fields in parse_component(comp, [name]):
                        nxt.append((g[name], {**got, **fields}))
            groups = nxt
        return {got[field] for _, got in groups if field in got}
    finally:
        handle.close()


def _broken(group: h5py.Group, name: str) -> str:
    """Why a member that should be a scan cannot be opened (an absent link target)."""
    import h5py

    link = group.get(name, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        return f"external link to {link.filename!r}#{link.path}, which cannot be opened"
    if isinstance(link, h5py.SoftLink):
        return f"soft link to {link.path}, which does not exist"
    return "cannot be opened"
