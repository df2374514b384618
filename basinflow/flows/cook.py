"""The ``cook`` flow: the scans of one proposal, one Prefect task per scan.

``cook`` plans first (one task that reads output metadata and raw pins, never frames),
reports up-to-date scans as skipped, and only then starts or connects to the Dask cluster
and cooks the rest in ``cook-batch`` sub-flows of at most ``batch_size`` task runs each.
A scan that fails for a reason of its own fails its task; the others finish; the batch and
the flow then fail with :class:`~basinflow.flows.reporting.ScansFailed` ("1 of 3 scans
failed: ..."), which carries every result. Each scan's result is one line in the cook
run's own log (and its batch's), through Prefect's run logger, as it arrives.

This module only wires: the tasks are :mod:`basinflow.flows.cook_tasks`, what crosses the
API is :mod:`basinflow.flows.parameters`, how a run reports (logs, failure count, results
table, quicklooks) is :mod:`basinflow.flows.reporting`.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, tags
from prefect.context import TagsContext, get_run_context
from prefect.futures import as_completed

from basinflow.flows import artifacts, liveness
from basinflow.flows.cluster import dask_cluster, task_runner

# cook_batch looks cook_scans_task up in this module (tests patch it here)
from basinflow.flows.cook_tasks import auto_scans_per_task, cook_scans_task, plan_task, task_label
from basinflow.flows.parameters import load, run_tags, settings_parameter
from basinflow.flows.reporting import (
    RUN_LOGGER,
    notify,
    raise_if_failed,
    report,
    results_of,
    run_logger,
)
from basinflow.tasks.request import CookRequest
from basinflow.tasks.results import BatchFailed, CookResult, reason_of

QUICKLOOKS = artifacts.GALLERY


def _flow_run_id() -> str | None:
    try:
        return str(get_run_context().flow_run.id)
    except Exception:  # noqa: BLE001 - outside a flow run
        return None


@flow(
    name="cook-batch",
    flow_run_name="cook/{repository}/{proposal}/{recipe}/batch-{index}",
    validate_parameters=False,
)
def cook_batch(
    settings: dict[str, Any],
    repository: str,
    proposal: str,
    requests: list[CookRequest],
    recipe: str,
    force: bool = False,
    index: int = 0,
    progress_id: str | None = None,
    done_before: int = 0,
    total: int | None = None,
    per_task: int = 1,
    inline_bytes: int | None = None,
) -> list:
    """Cook ``requests`` (at most ``batch_size`` of them), ``per_task`` scans per task run;
    every scan is cooked; raises :class:`ScansFailed` (with every result) if one failed."""
    liveness.claim_and_reap()
    total = total or len(requests)
    run_id = _flow_run_id()
    per = max(1, per_task)
    chunks = [requests[i : i + per] for i in range(0, len(requests), per)]
    futures = {}
    # Task runs carry no tags (the flow runs do): every tag would cost each task run a
    # concurrency-slot round trip to the API.
    with TagsContext(current_tags=set()):
        for chunk in chunks:
            fut = cook_scans_task.submit(
                settings, chunk, force, run_id, task_label(chunk), inline_bytes
            )
            futures[fut.task_run_id] = (chunk, fut)
    results = {}
    done = done_before
    for fut in as_completed([f for _, f in futures.values()]):
        chunk = futures[fut.task_run_id][0]
        for r in _results_of(fut, chunk):
            results[r.scan] = r
            done += 1
            notify(r)
        artifacts.set_progress(progress_id, done, total)  # per task run: per scan or batch
    out = [results[r.scan] for r in requests]
    raise_if_failed(out)  # the batch is Failed too, with the count
    return out


def _results_of(fut, chunk: list[CookRequest]) -> list[CookResult]:
    fut.wait()
    state = fut.state
    if state.is_completed():
        return fut.result()
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, BatchFailed):
        return exc.results
    reason = reason_of(exc) if isinstance(exc, BaseException) else str(state.message)
    return [CookResult.failed(r.proposal, r.scan, r.recipe, reason) for r in chunk]


@flow(
    name="cook",
    flow_run_name="cook/{repository}/{proposal}/{recipe}",
    validate_parameters=False,
)
def cook(
    config: str | dict[str, Any],
    repository: str,
    proposal: str,
    scans: list[str] | None = None,
    recipe: str = "rsm",
    force: bool = False,
    cluster_address: str | None = None,
    batch_size: int | None = None,
    quicklooks: int = QUICKLOOKS,
    scans_per_task: int | None = None,
) -> list:
    """Cook the scans of one proposal (all when ``scans`` is None) with ``recipe``.

    Up-to-date outputs are skipped unless ``force``. ``scans_per_task`` (default: one while
    there are few scans per worker thread, else small batches) groups scans into task runs.
    Returns every scan's CookResult;
    raises :class:`ScansFailed` (with the results) if any scan failed.
    """
    liveness.claim_and_reap()
    RUN_LOGGER.set(run_logger())
    cfg = load(config)
    settings = settings_parameter(cfg, repository)
    limit = batch_size or cfg.batch_size
    title = f"cook/{repository}/{proposal}/{recipe}"
    with tags(*run_tags(repository, proposal, recipe)):
        planned = plan_task(settings, repository, proposal, scans, recipe, force)
        todo = planned.todo
        results = {r.scan: r for r in [*planned.fresh, *planned.failed]}
        names = [r.scan for r in todo]
        run_logger().info(
            f"{title}: {len(todo)} to cook, {len(planned.fresh)} up to date"
            + (f" ({', '.join(names[:20])}{' ...' if len(names) > 20 else ''})" if todo else "")
        )
        for r in results.values():
            notify(r)
        if todo:
            results.update(
                _cook_todo(
                    cfg,
                    settings,
                    repository,
                    proposal,
                    todo,
                    recipe,
                    force,
                    limit,
                    cluster_address,
                    title,
                    scans_per_task,
                )
            )
    out = [results[s] for s in _natural(list(results))]
    report(out, settings, repository, proposal, recipe, title, quicklooks)
    raise_if_failed(out)
    return out


def _natural(keys: list[str]) -> list[str]:
    from basinflow.keys import natural_sorted

    return list(natural_sorted(keys))


def _threads(address: str) -> int:
    from distributed import Client

    with Client(address, timeout=30) as client:
        return sum(client.nthreads().values())


def _cook_todo(
    cfg, settings, repository, proposal, todo, recipe, force, limit, address, title, per_task
):
    key = artifacts.artifact_key("progress", repository, proposal, recipe)
    progress_id = artifacts.progress(key, f"{title}: {len(todo)} scans to cook")
    results = {}
    with dask_cluster(cfg.cluster, address) as addr:
        runner = task_runner(addr)
        per = per_task or auto_scans_per_task(min(len(todo), limit), _threads(addr))
        for i in range(0, len(todo), limit):
            chunk = todo[i : i + limit]
            sub = cook_batch.with_options(task_runner=runner)
            state = sub(
                settings,
                repository,
                proposal,
                chunk,
                recipe,
                force,
                i // limit,
                str(progress_id),
                i,
                len(todo),
                per,
                int(cfg.cluster.inline_scan_mib * 2**20),
                return_state=True,
            )
            for r in results_of(state):  # a Failed batch still carries every result
                results[r.scan] = r
    return results


__all__ = ["cook", "cook_batch"]
