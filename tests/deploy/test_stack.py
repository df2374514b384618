"""The facility stack, started as processes (``deploy/stack.py``, what ``make stack`` runs),
used the way a facility uses it: deployments of ``deploy/prefect.yaml`` run by a Prefect
process worker against a PostgreSQL-backed Prefect server, a separate Dask scheduler and
workers, and an S3 server that checks credentials.

One run through the API (``beamline-cook``) and one run the server's scheduler created
(``beamline-watch``, moved to now) must cook on the Dask cluster, write referrers equal to
an in-process cook of the same scans, and leave one completed task run per scan in the API.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import load_samples  # noqa: E402  (deploy/load_samples.py)
import stack as stack_mod  # noqa: E402  (deploy/stack.py)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

#: Under a loaded 2-core machine a tiny cook takes minutes end to end (worker start-up,
#: flow-run subprocess, Dask); the deadline only bounds a hang.
RUN_TIMEOUT = 900


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    try:
        stack_mod.postgres_bindir()
    except stack_mod.StackError as exc:
        pytest.skip(str(exc))  # .ci/run installs it; a developer without it is told how
    environ = {
        "AWS_ACCESS_KEY_ID": f"bf-{secrets.token_hex(4)}",
        "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16),
        "POSTGRES_PASSWORD": secrets.token_hex(12),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    }
    with stack_mod.Stack(tmp_path_factory.mktemp("stack"), environ) as s:
        yield s


@pytest.fixture(scope="module")
def client_env(stack, tmp_path_factory):
    """This process as a client of the stack: its API, its S3 keys."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    old = {k: os.environ.get(k) for k in (*keys, *stack.env)}
    os.environ.update(stack.env)
    os.environ.update({k: stack.environ[k] for k in keys})
    try:
        with temporary_settings(updates={PREFECT_API_URL: stack.env["PREFECT_API_URL"]}):
            yield stack.env
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _api(fn):
    from prefect.client.orchestration import get_client

    async def go():
        async with get_client() as client:
            return await fn(client)

    return asyncio.run(go())


def _wait_final(run_id, timeout: float = RUN_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        run = _api(lambda c: c.read_flow_run(run_id))
        if run.state is not None and run.state.is_final():
            return run
        assert time.monotonic() < deadline, f"flow run {run.name} still {run.state_type}"
        time.sleep(2)


def _subtree(root_id) -> list:
    """The flow run and every sub-flow run under it."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    out, todo = [], [root_id]
    while todo:
        parent = todo.pop()
        out.append(parent)
        children = _api(
            lambda c, p=parent: c.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[p])
                )
            )
        )
        todo += [r.id for r in children]
    return out


def _task_runs(flow_run_ids) -> dict[str, str]:
    """``{task run name: state type}`` of the task runs of these flow runs."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = _api(
        lambda c: c.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(flow_run_ids))),
            limit=200,
        )
    )
    return {r.name: r.state_type.value for r in runs}


def _per_scan_task_runs(root_id, expected: set[str], timeout: float = 600) -> dict[str, str]:
    """The task runs under flow run ``root_id`` once ``expected`` are all there and final.
    Task runs reach the server as events from the Dask workers, processed after the flow
    run's own state: on a loaded machine minutes later."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = _task_runs(_subtree(root_id))
        if all(tasks.get(n) in ("COMPLETED", "FAILED", "CRASHED") for n in expected):
            return tasks
        if time.monotonic() > deadline:
            return tasks
        time.sleep(3)


def _check_referrers(proposal: str, run_ids) -> None:
    """Every scan's referrer is in S3, made by one of ``run_ids``, equal to a local cook."""
    import warnings

    import fsspec

    import basinflow as bf
    from basinflow.config import load_config, open_repository

    config = os.environ["BASINFLOW_CONFIG"]
    settings = load_config(config).repository("beamline")
    repo = open_repository(config, "beamline")
    fs, _ = fsspec.core.url_to_fs("s3://cooked", **settings.storage_options)
    for scan in load_samples.PROPOSALS[proposal]:
        (found,) = fs.glob(f"cooked/{proposal}/{scan}/rsm-*.h5")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = bf.open_referrer(
                f"s3://{found}",
                storage_options=settings.storage_options,
                trusted=[repo],  # its raw basin is in the repository's bucket
            )
            local = bf.cooked(repo[proposal][scan], "rsm").compute()
        provenance = json.loads(ds.attrs["provenance"])
        assert provenance["flow_run_id"] in {str(i) for i in run_ids}, provenance
        assert set(local.data_vars) <= set(ds.data_vars)
        for name in local.data_vars:
            np.testing.assert_allclose(ds[name].values, local[name].values, rtol=1e-6)
        assert float(np.nansum(ds["intensity"].values)) > 0


def test_s3_checks_credentials(stack, client_env):
    import fsspec

    endpoint = {"client_kwargs": {"endpoint_url": client_env["BASINFLOW_S3_ENDPOINT"]}}
    good = {**endpoint, "key": stack.environ["AWS_ACCESS_KEY_ID"]}
    good["secret"] = stack.environ["AWS_SECRET_ACCESS_KEY"]
    fs, _ = fsspec.core.url_to_fs("s3://raw", skip_instance_cache=True, **good)
    assert sorted(fs.ls("raw", refresh=True)) == [f"raw/{p}" for p in load_samples.PROPOSALS]
    bad = {**good, "secret": "not-the-secret"}
    fs, _ = fsspec.core.url_to_fs("s3://raw", skip_instance_cache=True, **bad)
    with pytest.raises(PermissionError):
        fs.ls("raw", refresh=True)


def test_deployments_run_on_the_stack(stack, client_env):
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.deployments import run_deployment
    from prefect.states import Scheduled

    deployments = _api(lambda c: c.read_deployments())
    assert {d.entrypoint for d in deployments} == {
        "basinflow.flows.cook:cook",
        "basinflow.flows.watch:watch",
        "basinflow.flows.watch:reprocess",
    }

    # 1. a run through the API: cook one proposal on demand
    run = run_deployment("cook/beamline-cook", parameters={"proposal": "2021-05"}, timeout=0)
    run = _wait_final(run.id)
    assert run.state_type == StateType.COMPLETED, (run.state, stack.running[-1].tail())
    scans = load_samples.PROPOSALS["2021-05"]
    per_scan = {f"2021-05/{s}/rsm" for s in scans}
    tasks = _per_scan_task_runs(run.id, per_scan)
    assert {n: tasks.get(n) for n in per_scan} == dict.fromkeys(per_scan, "COMPLETED"), tasks
    _check_referrers("2021-05", _subtree(run.id))

    # 2. a run the server's scheduler created from the watch deployment's interval
    scheduled = _api(
        lambda c: c.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["beamline-watch"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=1,
        )
    )
    assert scheduled, "the server's scheduler created no run of beamline-watch"
    (tick,) = scheduled
    _api(lambda c: c.set_flow_run_state(tick.id, Scheduled(), force=True))  # due now
    tick = _wait_final(tick.id)
    assert tick.state_type == StateType.COMPLETED, (tick.state, stack.running[-1].tail())
    # The 5-minute interval may have made an earlier watch run due while the test ran (a
    # slow machine): the new proposal is cooked by exactly one of the completed watch runs.
    watch_runs = _api(
        lambda c: c.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["beamline-watch"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))
            ),
        )
    )
    assert tick.id in {r.id for r in watch_runs}
    new = {f"2021-06/{s}/rsm" for s in load_samples.PROPOSALS["2021-06"]}
    deadline = time.monotonic() + 600
    while True:  # task runs arrive as events, after the runs' own states
        tree = [i for r in watch_runs for i in _subtree(r.id)]
        tasks = _task_runs(tree)
        if all(tasks.get(n) for n in new) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert {n: tasks.get(n) for n in new} == dict.fromkeys(new, "COMPLETED"), tasks
    assert not per_scan & set(tasks), "watch cooked scans that were already up to date"
    _check_referrers("2021-06", tree)

    # the tasks ran on the stack's Dask scheduler, not in the flow-run process
    from distributed import Client

    with Client(client_env["BASINFLOW_DASK_SCHEDULER"], timeout=30) as c:
        prefixes = c.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
    assert any("cook" in p for p in prefixes), prefixes
