"""reprocess: many proposals, one cook sub-flow each, batches of at most batch_size tasks."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import pytest

from .conftest import seed

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_reprocess_batches_subflows(make_repo, dask_address, tmp_path):
    from prefect.client.orchestration import get_client

    from basinflow import samples
    from basinflow.flows.reporting import results_of
    from basinflow.flows.runtime import prefect_api
    from basinflow.flows.watch import reprocess, watch

    cfg, root = make_repo(("1", "2"), batch_size=1)
    samples.generate(
        root, samples.SampleSpec(proposals={"p2": ("7",)}, ntheta=3, layouts=("nexus",))
    )
    seed(cfg, "p2")
    t0 = datetime.now(UTC)
    with prefect_api():
        state = reprocess(str(cfg), "demo", None, "rsm", False, dask_address, return_state=True)
        results = results_of(state)
        assert sorted((r.proposal, r.scan, r.status) for r in results) == [
            ("p1", "1", "cooked"),
            ("p1", "2", "cooked"),
            ("p2", "7", "cooked"),
        ]
        quiet = watch(str(cfg), "demo", None, "rsm", dask_address)
        assert quiet == []  # nothing new or stale: no cook sub-flows, no cluster work

    async def runs():
        async with get_client() as client:
            flow_runs = await client.read_flow_runs()
            tasks = await client.read_task_runs()
            return flow_runs, tasks

    flow_runs, tasks = asyncio.run(runs())
    mine = {
        r.id: r.name
        for r in flow_runs
        if r.name.startswith(("cook/demo/p1", "cook/demo/p2")) and r.created >= t0
    }
    per_run = Counter(
        mine[t.flow_run_id]
        for t in tasks
        if t.flow_run_id in mine and t.name.startswith(("p1/", "p2/"))
    )
    assert per_run and max(per_run.values()) <= 1, per_run
    assert {
        "cook/demo/p1/rsm/batch-0",
        "cook/demo/p1/rsm/batch-1",
        "cook/demo/p2/rsm/batch-0",
    } <= set(mine.values())
    # both proposals were cooked as sub-flows of the reprocess run (that they may run at the
    # same time, bounded, is test_in_parallel_is_bounded_ordered_and_keeps_the_context's job:
    # on an idle machine one proposal can finish before the other starts)
    (p1,) = [r for r in flow_runs if r.name == "cook/demo/p1/rsm" and r.created >= t0]
    (p2,) = [r for r in flow_runs if r.name == "cook/demo/p2/rsm" and r.created >= t0]
    assert p1.parent_task_run_id and p2.parent_task_run_id


def test_in_parallel_is_bounded_ordered_and_keeps_the_context():
    import contextvars
    import threading
    import time

    from basinflow.flows.watch import in_parallel

    var = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    lock, running, peak = threading.Lock(), [0], [0]

    def work(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)  # long enough for the others to start, even under load
        with lock:
            running[0] -= 1
        return i, var.get()

    out = in_parallel(work, range(12), 3)
    assert out == [(i, "caller") for i in range(12)]
    assert peak[0] == 3
