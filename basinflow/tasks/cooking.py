"""Cooking: a recipe run on a scan, written as a referrer.

Three callables, three names:

* :func:`cooked` — the lazy cooked Dataset of a scan (spice and input scans resolved,
  nothing written): what a notebook looks at.
* :func:`cook_scan` — cook one scan from its :class:`~basinflow.tasks.request.CookRequest`
  and write its referrer; every caller (``bf.cook``, a worker, a flow) ends here.
* :func:`cook` — ``bf.cook(scan, recipe, output=...)``: prepare the request, then
  :func:`cook_scan`.

:func:`cook_referrer` cooks a referrer (basins of basins). The recipe call itself is
:meth:`basinflow.recipes.base.Recipe.cook` (pure: xarray in, xarray out). Plain functions,
no Prefect: the flows wrap them in tasks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from basinflow.errors import Error, RecipeError, UnreachableError
from basinflow.storage import fs, pins
from basinflow.tasks import provenance
from basinflow.tasks.freshness import cooked_by, pointer_behind, up_to_date
from basinflow.tasks.outputs import write_output, write_pointer
from basinflow.tasks.request import CookRequest, prepare
from basinflow.tasks.results import CookResult

if TYPE_CHECKING:
    import xarray as xr

    from basinflow.catalog import Scan


def cooked(scan: Scan, recipe: str, **overrides: Any) -> xr.Dataset:
    """The lazy cooked Dataset of ``recipe`` on ``scan`` with its spice (+ ``overrides``);
    the scans the recipe reads besides (a dark scan) are opened too. Nothing is written."""
    from basinflow.recipes.registry import get_recipe

    rec = get_recipe(recipe)
    view = scan.proposal.spice.view(scan.key, types=rec.spice_types) if rec.spice_types else None
    refs = rec.required_inputs(view, **overrides)
    inputs = {ref.name: scan.proposal[ref.scan].raw for ref in refs}
    return rec.cook(scan.raw, view, inputs=inputs, **overrides)


def cook_scan(
    scan: Scan,
    request: CookRequest,
    *,
    force: bool = False,
    flow_run_id: str | None = None,
) -> CookResult:
    """Cook ``scan`` as ``request`` says and write its referrer.

    An up-to-date output is ``"skipped"`` unless ``force`` (and a ``current`` pointer left
    behind is repaired), or ``"cooked"`` when flow run ``flow_run_id`` wrote it (a retry
    after the worker that committed it died). Bad input (a :class:`basinflow.Error` other
    than an unreachable host) gives a ``"failed"`` result with the reason; unreachable hosts
    raise so callers can retry.
    """
    from basinflow.recipes.registry import get_recipe
    from basinflow.storage.referrer.basins import raw_basin

    t0 = time.perf_counter()

    def result(status: str, reason: str = "", read: int = 0, written: int = 0, error: str = ""):
        seconds = time.perf_counter() - t0
        return CookResult(
            proposal=request.proposal,
            scan=request.scan,
            recipe=request.recipe,
            status=status,
            output=request.output,
            seconds=seconds,
            bytes_read=read,
            bytes_written=written,
            reason=reason,
            error=error,
        )

    try:
        if not force and up_to_date(request, scan.storage_options):
            reason = "up to date (same input pins, recipe version and spice)"
            if pointer_behind(request):
                _point_at_output(request)
                reason += "; current pointer repaired"
            if flow_run_id is not None and cooked_by(request, flow_run_id):
                # this run cooked it: an earlier attempt committed it, then its worker died
                # before reporting, and this retry finds it done
                size = fs.info(request.output, request.storage_options).get("size", 0)
                return result(
                    "cooked", "committed by an earlier attempt (its worker died)", 0, size
                )
            return result("skipped", reason)
        rec = get_recipe(request.recipe)
        if rec.version != request.recipe_version:
            raise RecipeError(
                f"recipe {rec.name!r} is version {rec.version} here, but the scan was planned "
                f"with version {request.recipe_version}; install the same recipe package "
                "where the flow plans and where it cooks"
            )
        others = {i.name: scan.proposal[i.scan] for i in request.inputs}
        raw = scan.raw
        data = rec.cook(
            raw,
            request.spice_documents,
            inputs={name: other.raw for name, other in others.items()},
            **request.overrides,
        )
        pins = {scan.url: scan.pin, **{o.url: o.pin for o in others.values()}}
        record = provenance.record(
            recipe=rec.name,
            recipe_version=rec.version,
            spice=request.spice,
            overrides=request.overrides,
            inputs=pins,
            scan={
                "proposal": scan.proposal.key,
                "scan": scan.key,
                "repository": scan.repository.name,
            },
            flow_run_id=flow_run_id,
            mask=provenance.mask_of(data),
            reading=request.reading,
        )
        written = write_output(
            request.output,
            data,
            basins=[raw_basin(scan, request.output)],
            provenance=record,
            dims={"index": raw.sizes["index"]},
            storage_options=request.storage_options,
        )
        _point_at_output(request)
        read = sum(int(pin.get("size", 0)) for pin in pins.values())
        return result("cooked", read=read, written=written)
    except UnreachableError:
        raise
    except Error as exc:
        return result("failed", str(exc), error=type(exc).__name__)


def _point_at_output(request: CookRequest) -> None:
    write_pointer(
        request.pointer,
        request.storage_options,
        request.output,
        by="cook",
        **request.pointer_info,
    )


def cook(
    scan: Scan,
    recipe: str,
    output: str | None = None,
    *,
    force: bool = False,
    flow_run_id: str | None = None,
    **overrides: Any,
) -> CookResult:
    """Cook ``scan`` with ``recipe`` and write its referrer (``bf.cook``).

    ``output`` is a referrer URL template (default: the repository's); ``overrides``
    change fields of the recipe's main spice type for this cook (and name the output).
    See :func:`cook_scan` for what is skipped, failed or raised.
    """
    t0 = time.perf_counter()
    try:
        request = prepare(scan, recipe, output, overrides)
    except UnreachableError:
        raise
    except Error as exc:
        return CookResult.failed(
            scan.proposal.key,
            scan.key,
            recipe,
            str(exc),
            seconds=time.perf_counter() - t0,
            error=type(exc).__name__,
        )
    return cook_scan(scan, request, force=force, flow_run_id=flow_run_id)


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
    to its own basins, so the raw frames stay visible through the chain.

    ``storage_options`` apply to ``source`` and to ``output`` (one host, e.g. one S3
    endpoint).
    """
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
        data = rec.cook(ds, spice, **overrides)
        # the digest recorded when the source was written (no full read): a copied or
        # moved source still matches
        pin = pins.pin(source, storage_options, full="recorded")
        record = provenance.record(
            recipe=rec.name,
            recipe_version=rec.version,
            spice=[],
            overrides=overrides,
            inputs={source: pin},
            scan=scan,
            flow_run_id=flow_run_id,
            mask=provenance.mask_of(data),
            source_provenance=src_prov,
        )
        dims = {"index": ds.sizes["index"]} if "index" in ds.sizes else {}
        basin = referrer_as_basin(source, output, pin=pin, storage_options=storage_options)
        written = write_output(
            output,
            data,
            basins=[basin],
            provenance=record,
            dims=dims,
            storage_options=storage_options,
        )
        return CookResult(
            proposal=scan.get("proposal", ""),
            scan=scan.get("scan", ""),
            recipe=recipe,
            status="cooked",
            output=output,
            seconds=time.perf_counter() - t0,
            bytes_read=pin["size"],
            bytes_written=written,
        )
    except UnreachableError:
        raise
    except Error as exc:
        return CookResult.failed(
            "",
            "",
            recipe,
            str(exc),
            output=output,
            seconds=time.perf_counter() - t0,
            error=type(exc).__name__,
        )


__all__ = ["cook", "cook_referrer", "cook_scan", "cooked"]
