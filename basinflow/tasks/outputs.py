"""Where a cook writes, and the ``current`` pointer that says which output is in use.

* **Outputs** come from a template with ``{proposal} {scan} {recipe} {recipe_version}
  {spice}``; ``{spice}`` is a short hash of the spice documents used (uuid + revision)
  and of keyword overrides, so outputs of different spice revisions or recipe versions
  can live side by side. :func:`plan_outputs` refuses templates that send two scans to
  one path, before anything is cooked.
* **The current pointer**: a small JSON file per (scan, recipe), replaced atomically after
  each successful cook (``{"url", "by", "recipe_version", "spice", "history"}``). Its URL
  is the output URL with ``{recipe_version}`` and ``{spice}`` filled by ``current`` and the
  extension replaced by ``.current.json``; :func:`set_current` switches it (roll back by
  pointing it at an older output), :func:`current_output` reads it.
* **Writing**: :func:`write_output` commits a referrer atomically, with the output's own
  storage options, and records its full digest beside it (``<output>.pin.json``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from basinflow.catalog.template import output_template
from basinflow.errors import Error, OutputError
from basinflow.storage import fs

if TYPE_CHECKING:
    from basinflow.catalog import Scan

SPICE_FIELD_LEN = 10

logger = logging.getLogger(__name__)


def spice_hash(
    docs: Iterable[Mapping[str, Any]], overrides: Mapping[str, Any] | None = None
) -> str:
    """Short hash of the spice documents (uuid + revision) and the keyword overrides."""
    ids = sorted((d["uuid"], int(d["revision"])) for d in docs)
    text = json.dumps([ids, dict(sorted((overrides or {}).items()))], default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()[:SPICE_FIELD_LEN]


def template_for(scan: Scan, output: str | None) -> str:
    """The output template: ``output`` if given, else the repository's."""
    template = output or scan.repository.output
    if not template:
        raise OutputError(
            f"no output for {scan}: pass output='file:///out/{{proposal}}/{{scan}}/{{recipe}}.h5' "
            "or configure the repository's output template"
        )
    return template


def fill_output(
    template: str, proposal: str, scan: str, recipe: str, version: str, spice: str
) -> str:
    return output_template(template).fill(
        proposal=proposal, scan=scan, recipe=recipe, recipe_version=version, spice=spice
    )


def plan_outputs(scans: Iterable[Scan], recipe: str, template: str | None = None) -> dict:
    """``{output URL: scan}`` for ``scans``; refuses two scans that share one output.

    Uses the recipe version and the template only (the spice hash is left as
    ``{spice}`` placeholder text when it would need spice to be read), so it is cheap.
    """
    from basinflow.recipes.registry import get_recipe

    rec = get_recipe(recipe)
    out: dict[str, Any] = {}
    for scan in scans:
        t = template_for(scan, template)
        url = output_template(t).fill(
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


def pointer_url(template: str, proposal: str, scan: str, recipe: str) -> str:
    """URL of the (scan, recipe) ``current`` pointer for an output ``template``."""
    filled = fill_output(template, proposal, scan, recipe, "current", "current")
    head, _, name = filled.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    if "{recipe}" not in template:
        stem += f".{recipe}"
    return f"{head}/{stem}.current.json"


def output_options(scan: Scan, url: str) -> dict[str, Any]:
    """Storage options an output at ``url`` is written with: the repository's options
    where they are meant for that host (never another host's credentials)."""
    repo = scan.repository
    home = repo.template.root
    if fs.scheme_of(home) in ("file", "memory") and fs.scheme_of(url) not in ("file", "memory"):
        # raw is local: the repository's options can only be meant for its remote output
        home = url
    return fs.HostOptions(home=home, default=repo.storage_options).for_url(url)


# --- the current pointer ------------------------------------------------------------------------
def read_pointer(url: str, options: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pointer's content, ``None`` when there is none."""
    filesystem, path = fs.url_to_fs(url, options)
    try:
        with filesystem.open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None
    except Exception as exc:
        raise fs.translate_errors(url, exc) from exc


def write_pointer(
    url: str, options: Mapping[str, Any], target: str, *, by: str, **info: Any
) -> str:
    """Point the pointer at ``url`` at ``target`` atomically, keeping a short history."""
    from basinflow.storage.commit import write_json_atomic

    old = read_pointer(url, options) or {}
    history = list(old.get("history", []))
    if old.get("url") and old.get("url") != target:
        history.append(old["url"])
    write_json_atomic(url, {"url": target, "by": by, **info, "history": history[-20:]}, options)
    return url


def pointer_lags(data: Mapping[str, Any] | None, target: str) -> bool:
    """Whether a pointer should name the up-to-date ``target`` but does not.

    True when the pointer is missing, or a cook set it to another output: a process that
    died between committing an output and replacing the pointer. A pointer a user set
    (a roll-back) is left alone.
    """
    return data is None or (data.get("by", "cook") == "cook" and data.get("url") != target)


def _pointer_of(scan: Scan, recipe: str, output: str | None) -> tuple[str, dict[str, Any]]:
    pointer = pointer_url(template_for(scan, output), scan.proposal.key, scan.key, recipe)
    return pointer, output_options(scan, pointer)


def set_current(
    scan: Scan, recipe: str, url: str, output: str | None = None, *, by: str = "user", **info: Any
) -> str:
    """Point the (scan, recipe) ``current`` pointer at ``url`` atomically; returns its URL.

    ``by`` records who set it: ``"cook"`` after a cook, ``"user"`` (the default) for an
    explicit choice such as a roll-back, which later cooks of an up-to-date output respect.
    """
    pointer, options = _pointer_of(scan, recipe, output)
    return write_pointer(pointer, options, url, by=by, **info)


def current_output(scan: Scan, recipe: str, output: str | None = None) -> str | None:
    """The output URL the (scan, recipe) ``current`` pointer names, or ``None``."""
    data = read_pointer(*_pointer_of(scan, recipe, output))
    return None if data is None else data.get("url")


# --- writing --------------------------------------------------------------------------------------
def check_local_target(url: str) -> None:
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
    record_digest: bool = True,
) -> int:
    """Write a referrer to ``url`` atomically; returns the bytes stored at ``url``.

    With ``record_digest`` the written file is hashed before the commit, while it is
    still in the page cache, and its digest recorded beside it with the identity it has
    after the commit (:func:`basinflow.storage.pins.record_written`): a later pin of this
    referrer (a cook that reads it as a basin) takes the digest from there instead of
    reading the whole file again, possibly from S3. A record that cannot be written costs
    only that full read later: it is logged, not raised (the output is committed)."""
    from basinflow.storage import pins
    from basinflow.storage.commit import atomic_output
    from basinflow.storage.referrer.write import write_referrer

    check_local_target(url)
    with contextlib.ExitStack() as stack:
        held, content = None, None
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
            if record_digest:
                # kept open across the commit: its fstat is this file's identity afterwards
                held = stack.enter_context(open(tmp, "rb"))
                content = pins.digest_of(held)
        if held is not None and content is not None:
            try:
                pins.record_written(url, held, content, storage_options)
            except Error as exc:
                logger.warning("%s: digest not recorded (%s); pins will read the file", url, exc)
    return int(fs.info(url, storage_options).get("size") or stats.bytes)


__all__ = [
    "current_output",
    "output_options",
    "plan_outputs",
    "pointer_url",
    "set_current",
    "spice_hash",
    "template_for",
    "write_output",
]
