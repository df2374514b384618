"""The ``watch`` and ``reprocess`` flows: many proposals, one ``cook`` sub-flow each.

``watch`` is what a schedule runs: it plans every proposal (metadata only), and only if
something is new or stale starts the cluster and cooks it, so a quiet tick costs a listing
and one planning task per proposal. ``reprocess`` cooks everything again for a new spice
revision or recipe version (``force`` to recook outputs that are still current). Neither
holds task runs of its own beyond planning; each ``cook`` sub-flow holds at most
``batch_size`` task runs per ``cook-batch``.

Proposals are planned and cooked ``proposals_in_parallel`` at a time (config, default 4):
each ``cook`` sub-flow spends seconds on orchestration (API round trips, planning, artifacts,
connecting to the cluster) during which the cluster would otherwise idle. Each runs in a
thread with a copy of the flow's context, so it is a sub-flow of this run with its tags.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from prefect import flow, tags

from basinflow.flows import artifacts, liveness
from basinflow.flows.cluster import dask_cluster
from basinflow.flows.cook import cook
from basinflow.flows.cook_tasks import plan_task
from basinflow.flows.parameters import load, settings_parameter
from basinflow.flows.reporting import ScansFailed, results_of
from basinflow.tasks import worker


def _proposals(cfg, repository: str, proposals: list[str] | None) -> list[str]:
    if proposals:
        return list(proposals)
    return worker.list_proposals(cfg.repository(repository).model_dump(), repository)


T = TypeVar("T")
R = TypeVar("R")


def in_parallel(fn: Callable[[T], R], items: Iterable[T], limit: int) -> list[R]:
    """``[fn(item) for item in items]``, ``limit`` at a time, in order; each call runs in a
    copy of the caller's context (the flow run, tags), so Prefect sees sub-flows and tasks
    of the calling flow. The first exception is raised after all calls have finished."""
    items = list(items)
    if limit <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(min(limit, len(items)), thread_name_prefix="proposal") as pool:
        futures = [pool.submit(contextvars.copy_context().run, fn, item) for item in items]
        return [f.result() for f in futures]


def _cook_each(cfg, config, repository, work, recipe, force, address) -> list:
    with dask_cluster(cfg.cluster, address) as addr:

        def one(item) -> list:
            proposal, scans = item
            state = cook(
                config, repository, proposal, scans, recipe, force, addr, return_state=True
            )
            return results_of(state)

        done = in_parallel(one, work, cfg.proposals_in_parallel)
    return [r for results in done for r in results]


def _finish(results: list, repository: str, recipe: str, title: str) -> list:
    artifacts.results_table(
        results, key=artifacts.artifact_key(title.split("/")[0], repository, recipe), title=title
    )
    failed = [r for r in results if r.status == "failed"]
    if failed:
        names = ", ".join(f"{r.proposal}/{r.scan} ({r.reason})" for r in failed[:10])
        raise ScansFailed(f"{len(failed)} of {len(results)} scans failed: {names}", results)
    return results


@flow(name="watch", flow_run_name="watch/{repository}/{recipe}", validate_parameters=False)
def watch(
    config: str | dict[str, Any],
    repository: str,
    proposals: list[str] | None = None,
    recipe: str = "rsm",
    cluster_address: str | None = None,
) -> list:
    """Cook what is new or stale since the last run (all proposals when none are named)."""
    liveness.claim_and_reap()
    cfg = load(config)
    settings = settings_parameter(cfg, repository)
    with tags("basinflow", "watch", f"repository:{repository}", f"recipe:{recipe}"):
        keys = _proposals(cfg, repository, proposals)
        plans = in_parallel(
            lambda p: [r.scan for r in plan_task(settings, repository, p, None, recipe).todo],
            keys,
            cfg.proposals_in_parallel,
        )
        work = [(p, todo) for p, todo in zip(keys, plans, strict=True) if todo]
        results = (
            _cook_each(cfg, config, repository, work, recipe, False, cluster_address)
            if work
            else []
        )
    return _finish(results, repository, recipe, f"watch/{repository}/{recipe}")


@flow(name="reprocess", flow_run_name="reprocess/{repository}/{recipe}", validate_parameters=False)
def reprocess(
    config: str | dict[str, Any],
    repository: str,
    proposals: list[str] | None = None,
    recipe: str = "rsm",
    force: bool = False,
    cluster_address: str | None = None,
) -> list:
    """Cook every scan of ``proposals`` (default all), one ``cook`` sub-flow per proposal."""
    liveness.claim_and_reap()
    cfg = load(config)
    with tags("basinflow", "reprocess", f"repository:{repository}", f"recipe:{recipe}"):
        work = [(p, None) for p in _proposals(cfg, repository, proposals)]
        results = _cook_each(cfg, config, repository, work, recipe, force, cluster_address)
    return _finish(results, repository, recipe, f"reprocess/{repository}/{recipe}")


__all__ = ["in_parallel", "reprocess", "watch"]
