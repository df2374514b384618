"""The Prefect tasks of the cook flows: plan, cook a small batch of scans, quicklook.

Kept apart from the flows because a task is the unit Prefect retries and Dask runs: each
wraps one plain function of :mod:`basinflow.tasks.worker` (the work itself knows nothing
of Prefect), reveals the concealed parameters it receives
(:mod:`basinflow.flows.parameters`), and is retried with backoff when, and only when, the
error is transient (a remote read that timed out, not bad input). How many scans one task
run cooks is :func:`auto_scans_per_task`.
"""

from __future__ import annotations

import math
from typing import Any

from prefect import task
from prefect.tasks import exponential_backoff

from basinflow.flows.parameters import conceal, reveal
from basinflow.tasks import worker
from basinflow.tasks.freshness import Plan
from basinflow.tasks.request import CookRequest
from basinflow.tasks.results import CookResult, is_transient


def _retry_transient(task, task_run, state) -> bool:
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # noqa: BLE001 - no result to look at
            return False
    return isinstance(exc, BaseException) and is_transient(exc)


@task(
    name="plan",
    task_run_name="plan/{proposal}/{recipe}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=_retry_transient,
)
def plan_task(
    settings: dict[str, Any],
    repository: str,
    proposal: str,
    scans: list[str] | None,
    recipe: str,
    force: bool = False,
) -> Plan:
    """One request per scan to cook, and the up-to-date ones (reads metadata only)."""
    planned = worker.plan_scans(reveal(settings), repository, proposal, scans, recipe, force=force)
    planned.todo = [conceal(r) for r in planned.todo]
    return planned


@task(
    name="cook-scans",
    task_run_name="{label}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_transient,
)
def cook_scans_task(
    settings: dict[str, Any],
    requests: list[CookRequest],
    force: bool = False,
    flow_run_id: str | None = None,
    label: str = "",
    inline_bytes: int | None = None,
) -> list[CookResult]:
    """Cook one scan (or a small batch) on the cluster; each scan's Dask graph runs through
    the worker's client. Fails (with every result attached) if any scan failed."""
    return worker.run_batch(
        reveal(settings),
        [reveal(r) for r in requests],
        strict=True,
        force=force,
        flow_run_id=flow_run_id,
        inline_bytes=inline_bytes,
    )


def auto_scans_per_task(n: int, threads: int) -> int:
    """One scan per task while there are few per worker thread; else small batches so that
    each thread gets about four tasks (Prefect's per-task cost on Dask is ~0.1 s here),
    at most 25 scans per task."""
    per_thread = 4 * max(1, threads)
    if n <= per_thread:
        return 1
    return min(25, math.ceil(n / per_thread))


def task_label(chunk: list[CookRequest]) -> str:
    first, last = chunk[0], chunk[-1]
    scans = first.scan if len(chunk) == 1 else f"{first.scan}..{last.scan}"
    return f"{first.proposal}/{scans}/{first.recipe}"


@task(name="quicklook", task_run_name="quicklook/{proposal}")
def quicklook_task(settings: dict[str, Any], repository: str, proposal: str, outputs: list):
    return [
        (scan, worker.quicklook_png(reveal(settings), repository, url), url)
        for scan, url in outputs
    ]
