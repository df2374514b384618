"""Is an output up to date, and which scans of a list need cooking?

An output is current when its provenance records the same recipe version, spice documents,
overrides and way of reading the raw files (layout and its options) as the
:class:`~basinflow.tasks.request.CookRequest`, and the same input
pins as the input files have now. Only the referrer's provenance and the inputs'
``fs.info`` are read, never frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from basinflow.errors import Error, NotFound, ReferrerError
from basinflow.storage import fs, pins
from basinflow.tasks.outputs import pointer_lags, read_pointer
from basinflow.tasks.provenance import read_provenance
from basinflow.tasks.request import CookRequest, prepare, reading_of
from basinflow.tasks.results import CookResult, is_transient, reason_of

if TYPE_CHECKING:
    from basinflow.catalog import Scan


def up_to_date(request: CookRequest, raw_options: Mapping[str, Any] | None = None) -> bool:
    """Whether ``request.output`` exists and was cooked from the same inputs, recipe
    version, spice documents and overrides (``raw_options``: the inputs' storage options)."""
    try:
        if not fs.exists(request.output, request.storage_options):
            return False
        prov = read_provenance(request.output, request.storage_options)
    except (NotFound, ReferrerError):
        return False
    if (prov.get("recipe"), prov.get("recipe_version")) != (
        request.recipe,
        request.recipe_version,
    ):
        return False
    if prov.get("spice_hash") != request.spice_hash:
        return False
    if prov.get("reading", reading_of()) != request.reading:  # a layout option changed
        return False
    pins = prov.get("inputs") or {}
    wanted = {request.scan_url: request.pin_url, **{i.url: i.pin_url for i in request.inputs}}
    if set(pins) != set(wanted):
        return False
    return all(_pins_match(pins[url], wanted[url], raw_options) for url in wanted)


def _pins_match(recorded: Mapping[str, Any], url: str, options) -> bool:
    """The scan's file still is what ``recorded`` pinned, and so is every other file its
    frames live in (VDS sources, external-link targets: ``recorded["sources"]``)."""
    try:
        return pins.pin_matches(recorded, url, options) and all(
            pins.pin_matches(p, u, options) for u, p in (recorded.get("sources") or {}).items()
        )
    except NotFound:  # a file it was made from is gone: not up to date (a recook says why)
        return False


def cooked_by(request: CookRequest, flow_run_id: str) -> bool:
    """Whether ``request.output`` was written by flow run ``flow_run_id``: a retried task
    finding the output an earlier attempt of the same run committed before its worker died."""
    try:
        prov = read_provenance(request.output, request.storage_options)
    except (NotFound, ReferrerError):
        return False
    return prov.get("flow_run_id") == str(flow_run_id)


def pointer_behind(request: CookRequest) -> bool:
    """Whether the ``current`` pointer should name the up-to-date output but does not."""
    return pointer_lags(read_pointer(request.pointer, request.storage_options), request.output)


@dataclass
class Plan:
    """Which scans of a list to cook: ``todo`` (their requests), ``fresh`` (skipped
    results of up-to-date outputs) and ``failed`` (scans that cannot be cooked at all:
    unknown recipe, missing or invalid spice, ...)."""

    todo: list[CookRequest] = field(default_factory=list)
    fresh: list[CookResult] = field(default_factory=list)
    failed: list[CookResult] = field(default_factory=list)


def plan(
    scans: Iterable[Scan],
    recipe: str,
    *,
    force: bool = False,
    output: str | None = None,
    threads: int = 1,
) -> Plan:
    """Prepare one request per scan and sort the scans by freshness (``force``: all to do).

    A scan whose freshness cannot be decided is cooked (and fails there with its reason if
    it is broken). A current output whose pointer was left behind by a process that died
    after the commit is cooked too: the cook repairs the pointer and reports it skipped.
    """
    scans = list(scans)

    def check(scan: Scan) -> CookRequest | CookResult:
        try:
            request = prepare(scan, recipe, output)
        except Exception as exc:
            if is_transient(exc):
                raise  # the planning task retries
            error = type(exc).__name__ if isinstance(exc, Error) else ""
            return CookResult.failed(
                scan.proposal.key, scan.key, recipe, reason_of(exc), error=error
            )
        if force:
            return request
        try:
            fresh = up_to_date(request, scan.storage_options) and not pointer_behind(request)
        except Exception:  # noqa: BLE001 - undecidable: cook it, fail there with a reason
            fresh = False
        if fresh:
            return CookResult.skipped(request.proposal, request.scan, recipe, request.output)
        return request

    if threads <= 1 or len(scans) <= 1:
        answers = [check(s) for s in scans]
    else:
        with ThreadPoolExecutor(min(threads, len(scans))) as pool:
            answers = list(pool.map(check, scans))
    out = Plan()
    for answer in answers:
        if isinstance(answer, CookRequest):
            out.todo.append(answer)
        elif answer.status == "skipped":
            out.fresh.append(answer)
        else:
            out.failed.append(answer)
    return out


__all__ = ["Plan", "cooked_by", "plan", "pointer_behind", "up_to_date"]
