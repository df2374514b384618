"""Distributed: input from the S3 server, outputs to S3 and to files, on a Dask scheduler
and two worker processes; credentials never reach the Prefect API."""

from __future__ import annotations

import asyncio
import json

import fsspec
import pytest

from basinflow import samples
from tests.support import servers

from .conftest import seed, write_config

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def s3_repo(tmp_path, s3_server, s3_options):
    local = tmp_path / "local"
    samples.generate(
        local, samples.SampleSpec(proposals={"p1": ("1", "2")}, ntheta=3, layouts=("nexus",))
    )
    prefix = f"s3://raw/flows-{tmp_path.name.lower().replace('_', '-')}"
    servers.upload(local, prefix, s3_options)
    return prefix


@pytest.mark.parametrize("target", ["s3", "file"])
def test_s3_input_on_dask_processes(target, s3_repo, s3_options, tmp_path, dask_address):
    from prefect.client.orchestration import get_client

    from basinflow.flows.run import cook_proposal

    out = (
        f"{s3_repo}-out/{{proposal}}/{{scan}}/{{recipe}}-{{spice}}.h5"
        if target == "s3"
        else f"file://{tmp_path}/out/{{proposal}}/{{scan}}/{{recipe}}-{{spice}}.h5"
    )
    cfg = write_config(
        tmp_path / "s3.yaml",
        raw=f"{s3_repo}/nexus/{{proposal}}/{{scan}}.h5#entry",
        spice=f"{s3_repo}/spice/{{proposal}}",
        output=out,
        repo={"storage_options": s3_options},
    )
    seed(cfg, "p1")
    from basinflow.config import load_config

    config = load_config(cfg)  # passed as an object: its secrets must not reach the API
    results = cook_proposal(config, "demo", "p1", None, "rsm", cluster_address=dask_address)
    assert [(r.scan, r.status) for r in results] == [("1", "cooked"), ("2", "cooked")], results
    fs, _ = fsspec.core.url_to_fs(results[0].output, **(s3_options if target == "s3" else {}))
    for r in results:
        assert r.output.startswith("s3://" if target == "s3" else "file://")
        assert fs.exists(r.output) and fs.info(r.output)["size"] == r.bytes_written

    async def params():
        async with get_client() as client:
            runs = await client.read_flow_runs()
            return [r.parameters for r in runs if r.name == "cook/demo/p1/rsm"]

    text = json.dumps(asyncio.run(params()))
    assert s3_options["secret"] not in text.replace("**********", "")
    assert '"secret": "**********"' in text


def test_scan_graph_on_the_cluster_from_a_task(make_repo, dask_address):
    """``use_cluster=True``: inside a worker task the scan's graph runs through the worker's
    client (seceded, so single-thread workers do not deadlock)."""
    from distributed import Client

    from basinflow.config import load_config
    from basinflow.tasks import worker

    cfg, _ = make_repo(("1",))
    settings = load_config(cfg).repository("demo").model_dump()
    requests = worker.plan_scans(settings, "demo", "p1", ["1"], "rsm", force=True).todo
    with Client(dask_address) as client:
        fut = client.submit(worker.run_batch, settings, requests, use_cluster=True, pure=False)
        (result,) = fut.result(timeout=120)
    assert result.status == "cooked", result


def test_a_quicklook_does_not_wait_for_the_cluster(make_repo):
    """The report's quicklook reads one small output in the flow's own process: a client
    whose cluster has no worker (all killed, none back yet) does not hold the flow up."""
    from concurrent.futures import ThreadPoolExecutor

    from distributed import Client, LocalCluster

    from basinflow.config import load_config
    from basinflow.tasks import worker

    cfg, _ = make_repo(("1",))
    settings = load_config(cfg).repository("demo").model_dump()
    requests = worker.plan_scans(settings, "demo", "p1", ["1"], "rsm", force=True).todo
    (result,) = worker.run_batch(settings, requests, force=True)
    assert result.status == "cooked", result
    pool = ThreadPoolExecutor(1)
    try:
        with (
            LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster,
            Client(cluster),
        ):
            png = pool.submit(worker.quicklook_png, settings, "demo", result.output).result(60)
    finally:
        pool.shutdown(wait=False)  # a quicklook queued on the cluster never returns
    assert png is not None and png.startswith("data:image/png;base64,")
