"""Cook one scan into one referrer: ``bf.cook(scan, recipe, output=...)``.

Plain functions (no Prefect): the flows wrap :func:`cook` in tasks.

* **Outputs** come from a template with ``{proposal} {scan} {recipe} {recipe_version}
  {spice}``; ``{spice}`` is a short hash of the spice documents used (uuid + revision)
  and of keyword overrides, so outputs of different spice revisions or recipe versions
  can live side by side. :func:`plan_outputs` refuses templates that send two scans to
  one path, before anything is cooked.
* **Up to date**: an output is current when its provenance records the same input pins,
  recipe version, spice documents and overrides (:func:`up_to_date`; reads only the
  referrer's provenance and the inputs' ``fs.info``, never frames).
* **current pointer**: a small JSON file per (scan, recipe), replaced atomically after
  each successful cook (``{"url", "recipe_version", "spice", "history"}``). Its URL is the
  output URL with ``{recipe_version}`` and ``{spice}`` filled by ``current`` and the
  extension replaced by ``.current.json``; :func:`set_current` switches it (roll back by
  pointing it at an older output), :func:`current_output` reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from basinflow.errors import Error, NotFound, OutputError, ReferrerError, UnreachableError
from basinflow.storage import fs

SPICE_FIELD_LEN = 10


@dataclass
class CookResult:
    """What happened to one (scan, recipe)."""

    proposal: str
    scan: str
    recipe: str
    status: str  # "cooked" | "skipped" | "failed"
    output: str | None
    seconds: float
    bytes_read: int
    bytes_written: int
    reason: str = ""
    error: str = ""  # class name of the basinflow error of a failed result

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- spice and output names --------------------------------------------------------------------
def spice_used(scan: Any, recipe: Any) -> tuple[Any, list[dict[str, Any]]]:
    """The scan's spice view and the documents of the types the recipe needs (whole)."""
    if not recipe.spice_types:
        return None, []
    view = scan.proposal.spice.view(scan.key)
    docs = [d.to_dict() for d in view.documents if d.type in recipe.spice_types]
    return view, docs


def spice_hash(
    docs: Iterable[Mapping[str, Any]], overrides: Mapping[str, Any] | None = None
) -> str:
    ids = sorted((d["uuid"], int(d["revision"])) for d in docs)
    text = json.dumps([ids, dict(sorted((overrides or {}).items()))], default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()[:SPICE_FIELD_LEN]


def _template(text: str):
    from basinflow.config import output_template

    return output_template(text)


def output_url(
    scan: Any, recipe: Any, template: str, spice: str = "none", *, version: str | None = None
) -> str:
    return _template(template).fill(
        proposal=scan.proposal.key,
        scan=scan.key,
        recipe=recipe.name,
        recipe_version=version or recipe.version,
        spice=spice,
    )


def _resolve_template(scan: Any, output: str | None) -> str:
    template = output or scan.repository.output
    if not template:
        raise OutputError(
            f"no output for {scan}: pass output='file:///out/{{proposal}}/{{scan}}/{{recipe}}.h5' "
            "or configure the repository's output template"
        )
    return template


def plan_outputs(scans: Iterable[Any], recipe: str, template: str | None = None) -> dict[str, Any]:
    """``{output URL: scan}`` for ``scans``; refuses two scans that share one output.

    Uses the recipe version and the template only (the spice hash is left as
    ``{spice}`` placeholder text when it would need spice to be read), so it is cheap.
    """
    from basinflow.recipes.registry import get_recipe

    rec = get_recipe(recipe)
    out: dict[str, Any] = {}
    for scan in scans:
        t = _resolve_template(scan, template)
        url = _template(t).fill(
            proposal=scan.proposal.key, scan=scan.key, recipe=rec.name, recipe_version=rec.version
        )
        # two scans differing only in spice could still collide if {spice} is absent
        if url in out:
            raise OutputError(
                f"output template {t!r} sends scans {out[url].proposal.key}/{out[url].key} and "
                f"{scan.proposal.key}/{scan.key} to one file {url!r}; add {{proposal}} and "
                "{scan} to it"
            )
        out[url] = scan
    return out


def current_pointer_url(scan: Any, recipe: Any, template: str) -> str:
    filled = output_url(scan, recipe, template, "current", version="current")
    head, _, name = filled.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    if "{recipe}" not in template:
        stem += f".{recipe.name}"
    return f"{head}/{stem}.current.json"


def _output_options(scan: Any, url: str) -> dict[str, Any]:
    from basinflow.storage.fs import HostOptions

    repo = scan.repository
    home = repo.template.root
    if fs.scheme_of(home) in ("file", "memory") and fs.scheme_of(url) not in ("file", "memory"):
        # raw is local: the repository's options can only be meant for its remote output
        home = url
    return HostOptions(home=home, default=repo.storage_options).for_url(url)


# --- provenance and freshness --------------------------------------------------------------
def _packages() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("basinflow", "numpy", "xarray", "dask", "h5py", "fsspec"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[name] = md.version(name)
    return out


def provenance(
    scan: Any,
    recipe: Any,
    docs: list[dict[str, Any]],
    overrides: Mapping[str, Any],
    flow_run_id: str | None,
) -> dict[str, Any]:
    return {
        "recipe": recipe.name,
        "recipe_version": recipe.version,
        "spice": docs,
        "spice_hash": spice_hash(docs, overrides),
        "overrides": dict(overrides),
        "inputs": {scan.url: dict(scan.pin)},
        "scan": {
            "proposal": scan.proposal.key,
            "scan": scan.key,
            "repository": scan.repository.name,
        },
        "packages": _packages(),
        "flow_run_id": flow_run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def read_provenance(url: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    from basinflow.storage.referrer.read import read_meta

    return read_meta(url, storage_options).provenance


def up_to_date(
    scan: Any, recipe: str, output_url: str, *, overrides: Mapping[str, Any] | None = None
) -> bool:
    """Whether ``output_url`` exists and was cooked from the same inputs, recipe version,
    spice documents and overrides. Reads the referrer's provenance and the inputs' info."""
    from basinflow.recipes.registry import get_recipe

    rec = get_recipe(recipe)
    opts = _output_options(scan, output_url)
    try:
        if not fs.exists(output_url, opts):
            return False
        prov = read_provenance(output_url, opts)
    except (NotFound, ReferrerError):
        return False
    if prov.get("recipe") != rec.name or prov.get("recipe_version") != rec.version:
        return False
    _, docs = spice_used(scan, rec)
    if prov.get("spice_hash") != spice_hash(docs, overrides):
        return False
    inputs = prov.get("inputs") or {}
    if set(inputs) != {scan.url}:
        return False
    return fs.pin_matches(inputs[scan.url], scan.pin_url, scan.storage_options)


# --- the current pointer ------------------------------------------------------------------------
def _pointer(
    scan: Any, recipe: str, output: str | None
) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """``(URL, storage options, content or None)`` of the (scan, recipe) ``current`` pointer."""
    from basinflow.recipes.registry import get_recipe

    pointer = current_pointer_url(scan, get_recipe(recipe), _resolve_template(scan, output))
    opts = _output_options(scan, pointer)
    return pointer, opts, _read_json(pointer, opts)


def set_current(
    scan: Any, recipe: str, url: str, output: str | None = None, *, by: str = "user", **info: Any
) -> str:
    """Point the (scan, recipe) ``current`` pointer at ``url`` atomically; returns its URL.

    ``by`` records who set it: ``"cook"`` after a cook, ``"user"`` (the default) for an
    explicit choice such as a roll-back, which later cooks of an up-to-date output respect.
    """
    from basinflow.storage.commit import write_json_atomic

    pointer, opts, old = _pointer(scan, recipe, output)
    old = old or {}
    history = list(old.get("history", []))
    if old.get("url") and old.get("url") != url:
        history.append(old["url"])
    write_json_atomic(pointer, {"url": url, "by": by, **info, "history": history[-20:]}, opts)
    return pointer


def pointer_behind(scan: Any, recipe: str, url: str, output: str | None = None) -> bool:
    """Whether the ``current`` pointer should name the up-to-date ``url`` but does not.

    True when the pointer is missing, or a cook set it to another output: a process that
    died between committing an output and replacing the pointer. A pointer a user set
    (a roll-back) is left alone.
    """
    data = _pointer(scan, recipe, output)[2]
    return data is None or (data.get("by", "cook") == "cook" and data.get("url") != url)


def current_output(scan: Any, recipe: str, output: str | None = None) -> str | None:
    """The output URL the (scan, recipe) ``current`` pointer names, or ``None``."""
    data = _pointer(scan, recipe, output)[2]
    return None if data is None else data.get("url")


def _read_json(url: str, opts: Mapping[str, Any]) -> dict[str, Any] | None:
    filesystem, path = fs.url_to_fs(url, opts)
    try:
        with filesystem.open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None
    except Exception as exc:
        raise fs.translate_errors(url, exc) from exc


# --- cooking --------------------------------------------------------------------------------------
def _check_local_target(url: str) -> None:
    """Refuse a local output that names a directory, or lies below a file, before any
    work is done (the rename at the end would fail only after the whole cook)."""
    path = fs.local_path(url)
    if path is None:
        return
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise OutputError(
            f"output {url!r} is an existing directory; use an output template that names a "
            "file (e.g. file:///out/{proposal}/{scan}/{recipe}.h5)"
        )
    parent = os.path.dirname(path)
    while not os.path.exists(parent):  # the nearest existing ancestor ("/" exists)
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputError(
            f"output {url!r} lies below {parent!r}, which is a file, not a directory; "
            "use another output location or move that file"
        )


def write_output(
    url: str,
    cooked: Any,
    *,
    basins: list,
    provenance: Mapping[str, Any],
    dims: Mapping[str, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    strict: bool = False,
) -> int:
    """Write a referrer to ``url`` atomically; returns the compressed bytes stored."""
    from basinflow.storage.commit import atomic_output
    from basinflow.storage.referrer.write import write_referrer

    _check_local_target(url)
    with atomic_output(url, storage_options) as tmp:
        stats = write_referrer(
            tmp,
            cooked,
            referrer_url=url,
            basins=basins,
            provenance=provenance,
            dims=dims,
            strict=strict,
        )
    return stats.bytes


def _pointer_info(rec: Any, docs: list, overrides: Mapping[str, Any] | None = None) -> dict:
    return {"recipe_version": rec.version, "spice": spice_hash(docs, overrides)}


def cook(
    scan: Any,
    recipe: str,
    output: str | None = None,
    *,
    force: bool = False,
    flow_run_id: str | None = None,
    **overrides: Any,
) -> CookResult:
    """Cook ``scan`` with ``recipe`` and write its referrer (``bf.cook``).

    Bad input (a :class:`basinflow.Error` other than an unreachable host) gives a
    ``"failed"`` result with the reason; unreachable hosts raise so callers can retry.
    An up-to-date output is ``"skipped"`` unless ``force``.
    """
    from basinflow.recipes.registry import get_recipe
    from basinflow.storage.referrer.basins import raw_basin

    t0 = time.perf_counter()
    pk, sk = scan.proposal.key, scan.key
    url: str | None = None

    def result(
        status: str, reason: str = "", read: int = 0, written: int = 0, error: str = ""
    ) -> CookResult:
        return CookResult(
            pk, sk, recipe, status, url, time.perf_counter() - t0, read, written, reason, error
        )

    try:
        rec = get_recipe(recipe)
        template = _resolve_template(scan, output)
        view, docs = spice_used(scan, rec)
        url = output_url(scan, rec, template, spice_hash(docs, overrides))
        opts = _output_options(scan, url)
        if not force and up_to_date(scan, recipe, url, overrides=overrides):
            reason = "up to date (same input pins, recipe version and spice)"
            if pointer_behind(scan, recipe, url, template):
                info = _pointer_info(rec, docs, overrides)
                set_current(scan, recipe, url, template, by="cook", **info)
                reason += "; current pointer repaired"
            return result("skipped", reason)
        raw = scan.raw
        cooked = rec.cook(raw, view, **overrides)
        prov = provenance(scan, rec, docs, overrides, flow_run_id)
        basin = raw_basin(scan, url)
        written = write_output(
            url,
            cooked,
            basins=[basin],
            provenance=prov,
            dims={"index": raw.sizes["index"]},
            storage_options=opts,
        )
        set_current(scan, recipe, url, template, by="cook", **_pointer_info(rec, docs, overrides))
        size = int(fs.info(url, opts).get("size") or written)
        return result("cooked", read=int(scan.pin.get("size", 0)), written=size)
    except UnreachableError:
        raise
    except Error as exc:
        return result("failed", str(exc), error=type(exc).__name__)


def cook_referrer(
    source: str,
    recipe: str,
    output: str,
    *,
    spice: Any = None,
    trusted: Iterable[Any] = (),
    trusted_hosts: Iterable[str] = (),
    storage_options: Mapping[str, Any] | None = None,
    flow_run_id: str | None = None,
    **overrides: Any,
) -> CookResult:
    """Cook a referrer (basins of basins): the output links to ``source``, which links on
    to its own basins, so the raw frames stay visible through the chain."""
    from basinflow.recipes.registry import get_recipe
    from basinflow.storage.referrer.basins import referrer_as_basin
    from basinflow.storage.referrer.read import open_referrer

    t0 = time.perf_counter()
    try:
        rec = get_recipe(recipe)
        ds = open_referrer(
            source, trusted=trusted, trusted_hosts=trusted_hosts, storage_options=storage_options
        )
        src_prov = json.loads(ds.attrs.get("provenance", "{}") or "{}")
        scan = src_prov.get("scan", {})
        cooked = rec.cook(ds, spice, **overrides)
        pin = fs.pin(source, storage_options)
        prov = {
            "recipe": rec.name,
            "recipe_version": rec.version,
            "spice": [],
            "spice_hash": spice_hash([], overrides),
            "overrides": dict(overrides),
            "inputs": {source: pin},
            "scan": scan,
            "source_provenance": src_prov,
            "packages": _packages(),
            "flow_run_id": flow_run_id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        dims = {"index": ds.sizes["index"]} if "index" in ds.sizes else {}
        basin = referrer_as_basin(source, output, pin=pin, storage_options=storage_options)
        write_output(output, cooked, basins=[basin], provenance=prov, dims=dims)
        size = int(fs.info(output).get("size") or 0)
        return CookResult(
            scan.get("proposal", ""),
            scan.get("scan", ""),
            recipe,
            "cooked",
            output,
            time.perf_counter() - t0,
            pin["size"],
            size,
        )
    except UnreachableError:
        raise
    except Error as exc:
        return CookResult(
            "",
            "",
            recipe,
            "failed",
            output,
            time.perf_counter() - t0,
            0,
            0,
            str(exc),
            type(exc).__name__,
        )


__all__ = [
    "CookResult",
    "cook",
    "cook_referrer",
    "current_output",
    "current_pointer_url",
    "output_url",
    "plan_outputs",
    "pointer_behind",
    "set_current",
    "spice_hash",
    "up_to_date",
    "write_output",
]
