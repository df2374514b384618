"""The ``watch`` and ``reprocess`` flows: many proposals, one ``cook`` sub-flow each.

``watch`` is what a schedule runs: it plans every proposal (metadata only), and only if
something is new or stale starts the cluster and cooks it, so a quiet tick costs a listing
and one planning task per proposal. ``reprocess`` cooks everything again for a new spice
revision or recipe version (``force`` to recook outputs that are still current). Neither
holds task runs of its own beyond planning; each ``cook`` sub-flow holds at most
``batch_size`` task runs per ``cook-batch``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, tags

from basinflow.flows import artifacts, liveness
from basinflow.flows.cluster import dask_cluster
from basinflow.flows.cook import ScansFailed, cook, load, plan_task, results_of, settings_parameter
from basinflow.tasks import worker


def _proposals(cfg, repository: str, proposals: list[str] | None) -> list[str]:
    if proposals:
        return list(proposals)
    return worker.list_proposals(cfg.repository(repository).model_dump(), repository)


def _cook_each(cfg, config, repository, work, recipe, force, address) -> list:
    results: list = []
    with dask_cluster(cfg.cluster, address) as addr:
        for proposal, scans in work:
            state = cook(
                config, repository, proposal, scans, recipe, force, addr, return_state=True
            )
            results.extend(results_of(state))
    return results


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
    work = []
    with tags("basinflow", "watch", f"repository:{repository}", f"recipe:{recipe}"):
        for proposal in _proposals(cfg, repository, proposals):
            todo = plan_task(settings, repository, proposal, None, recipe).todo
            if todo:
                work.append((proposal, [r.scan for r in todo]))
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


__all__ = ["reprocess", "watch"]
