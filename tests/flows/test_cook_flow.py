"""The cook flow end to end on a real Prefect server: cook, skip, force, artifacts, failures."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from basinflow.flows.run import cook_proposal

pytestmark = pytest.mark.usefixtures("prefect_server")


def _api(coro_fn):
    from prefect.client.orchestration import get_client

    async def go():
        async with get_client() as client:
            return await coro_fn(client)

    return asyncio.run(go())


def test_cook_skip_force_and_artifacts(make_repo):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    cfg, _ = make_repo(("1", "2"))
    seen = []
    results = cook_proposal(cfg, "demo", "p1", None, "rsm", progress=seen.append)
    assert [(r.scan, r.status) for r in results] == [("1", "cooked"), ("2", "cooked")]
    assert sorted(r.scan for r in seen) == ["1", "2"]
    for r in results:
        assert r.bytes_written > 0 and r.bytes_read > 0
        assert Path(r.output.removeprefix("file://")).exists()

    again = cook_proposal(cfg, "demo", "p1", None, "rsm")
    assert [(r.scan, r.status) for r in again] == [("1", "skipped"), ("2", "skipped")]
    assert [r.output for r in again] == [r.output for r in results]
    assert all(r.bytes_read == 0 for r in again)

    forced = cook_proposal(cfg, "demo", "p1", ["2"], "rsm", force=True)
    assert [(r.scan, r.status) for r in forced] == [("2", "cooked")]

    async def read(client):
        arts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(
                    any_=["cook-demo-p1-rsm", "quicklook-demo-p1-rsm", "progress-demo-p1-rsm"]
                )
            ),
        )
        runs = await client.read_flow_runs()
        return arts, runs

    arts, runs = _api(read)
    tables = [a for a in arts if a.type == "table"]
    assert tables, "no table artifact"
    latest = max(tables, key=lambda a: a.created)
    rows = latest.data if isinstance(latest.data, list) else json.loads(latest.data)
    assert [row["scan"] for row in rows] == ["2"] and rows[0]["status"] == "cooked"
    kinds = {a.type for a in arts}
    assert {"table", "markdown", "progress"} <= kinds, kinds
    looks = [a for a in arts if a.type == "markdown"]
    assert all("data:image/png;base64," in a.data for a in looks)
    assert max(len(a.data) for a in looks) < 1_000_000
    progress = [a for a in arts if a.type == "progress"]
    assert all(float(a.data) == 100.0 for a in progress), [a.data for a in progress]
    names = {r.name for r in runs}
    assert "cook/demo/p1/rsm" in names
    assert "cook/demo/p1/rsm/batch-0" in names
    cook_runs = [r for r in runs if r.name == "cook/demo/p1/rsm"]
    assert cook_runs and all(
        {"basinflow", "repository:demo", "proposal:p1", "recipe:rsm"} <= set(r.tags)
        for r in cook_runs
    )


def test_one_corrupt_scan_is_reported_alone(make_repo, dask_address):
    cfg, root = make_repo(("1", "2", "3"))
    bad = root / "nexus" / "p1" / "2.h5"
    bad.write_bytes(b"this is not an HDF5 file" * 100)
    results = cook_proposal(cfg, "demo", "p1", None, "rsm", cluster_address=dask_address)
    status = {r.scan: r.status for r in results}
    assert status == {"1": "cooked", "2": "failed", "3": "cooked"}
    failed = next(r for r in results if r.status == "failed")
    assert failed.reason and "2.h5" in failed.reason
    assert failed.output is None or not Path(failed.output.removeprefix("file://")).exists()
