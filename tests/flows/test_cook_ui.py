"""What the Prefect UI shows of a cook run, read back from a real server's API: a log line
per scan in the run itself, Failed batch and run counting the failed scans, progress per
scan, a quicklook per cooked scan, human units, a failed row without an output, and keys
that keep the last cook visible after a skip-only rerun."""

from __future__ import annotations

import json
import time

import pytest

from basinflow.flows.run import cook_proposal
from tests.flows.test_cook_flow import _api

#: two cooks and a dozen API reads: minutes on a loaded machine
pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.timeout(900)]


def _runs_and_logs(proposal: str, until=lambda runs, logs: True, timeout: float = 60.0):
    """Runs and their logs, read again until ``until(runs, logs)`` holds: Prefect's log
    handler sends logs to the API in batches every few seconds, so the last lines of a run
    that has just ended may still be on their way when the flow call returns."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )

    async def read(client):
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=f"cook/demo/{proposal}/rsm"))
        )
        logs = {}
        for run in runs:
            logs[run.id] = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))
            )
        return runs, logs

    deadline = time.monotonic() + timeout
    runs, logs = _api(read)
    while not until(runs, logs) and time.monotonic() < deadline:
        time.sleep(1.0)
        runs, logs = _api(read)
    return runs, logs


def _artifacts(flow_run_id):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read(client):
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )

    return _api(read)


def _latest_keyed(key: str):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read(client):
        arts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
        return max(arts, key=lambda a: a.created)

    return _api(read)


def test_the_ui_shows_every_scan(make_repo, dask_address):
    cfg, root = make_repo(("1", "2", "3"), proposal="ui")
    (root / "nexus" / "ui" / "2.h5").write_bytes(b"this is not an HDF5 file" * 100)
    results = cook_proposal(cfg, "demo", "ui", None, "rsm", cluster_address=dask_address)
    assert {r.scan: r.status for r in results} == {"1": "cooked", "2": "failed", "3": "cooked"}

    def _all_scans_logged(runs, logs):
        top = next(r for r in runs if r.name == "cook/demo/ui/rsm")
        return sum(x.message.startswith("ui/") for x in logs[top.id]) >= 3

    runs, logs = _runs_and_logs("ui", until=_all_scans_logged)
    top = next(r for r in runs if r.name == "cook/demo/ui/rsm")
    batch = next(r for r in runs if r.name == "cook/demo/ui/rsm/batch-0")
    # Failed, with a message that counts the failed scans: the batch and the run
    for run in (top, batch):
        assert run.state.is_failed(), run.state
        assert "1 of 3 scans failed" in run.state.message, run.state.message
    # one line per scan in the run the user opens, through Prefect's run logger
    lines = [log.message for log in logs[top.id]]
    for scan in ("1", "3"):
        line = next(x for x in lines if x.startswith(f"ui/{scan} cooked in "))
        assert " s, read " in line and "B, wrote " in line and f"/ui/{scan}/rsm-" in line
    failed = next(log for log in logs[top.id] if log.message.startswith("ui/2 failed"))
    assert failed.level >= 40 and "2.h5" in failed.message
    assert any("3 to cook, 0 up to date" in x for x in lines)

    arts = _artifacts(top.id)
    table = next(a for a in arts if a.type == "table")
    data = json.loads(table.data) if isinstance(table.data, str) else table.data
    rows = {row["scan"]: row for row in data}
    assert rows["2"]["output"] == "" and "2.h5" in rows["2"]["reason"]  # names no output
    assert rows["1"]["output"].endswith(".h5") and rows["1"]["read"].endswith("B")
    assert rows["1"]["seconds"].endswith(" s")
    gallery = next(a for a in arts if a.type == "markdown")
    assert gallery.data.count("data:image/png;base64,") == 2  # each cooked scan, not the first
    assert "## scan 1" in gallery.data and "## scan 3" in gallery.data
    progress = [a for a in _artifacts(top.id) if a.type == "progress"]
    assert progress and float(progress[0].data) == 100.0

    # a skip-only rerun (the bad scan left out) keeps the cook's table as the keyed latest
    again = cook_proposal(cfg, "demo", "ui", ["1", "3"], "rsm", cluster_address=dask_address)
    assert {r.status for r in again} == {"skipped"}
    latest = _latest_keyed("cook-demo-ui-rsm")
    assert latest.flow_run_id == top.id

    def _newest(runs):
        return max((r for r in runs if r.name == "cook/demo/ui/rsm"), key=lambda r: r.created)

    def _rerun_logged(runs, logs):
        return any(x.message.startswith("ui/1 skipped") for x in logs[_newest(runs).id])

    runs, logs = _runs_and_logs("ui", until=_rerun_logged)
    rerun = _newest(runs)
    assert rerun.id != top.id and rerun.state.is_completed()
    assert any(a.type == "table" for a in _artifacts(rerun.id))  # on its own page
    assert any(log.message.startswith("ui/1 skipped (up to date)") for log in logs[rerun.id])
