"""The ``cook`` flow over flaky S3: a fault-injecting proxy in front of the S3 server (moto),
the embedded Prefect server, a local Dask cluster.

* at 20 % faults (500/503, dropped connections, stalls past the read timeout) every scan
  is cooked, through retries, to exactly what a clean run gives;
* with one scan's raw file failing every request, that scan fails with a reason naming its
  URL, nothing is written for it, and the other scans are cooked.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

import basinflow as bf
from basinflow import samples
from basinflow.storage import fs
from tests.support import servers
from tests.support.proxy import NO_FAULTS, mixed_faults

from .conftest import write_config

pytestmark = pytest.mark.usefixtures("prefect_server")

SPEC = samples.SampleSpec(proposals={"p1": ("1", "2", "3")}, ntheta=3, layouts=("nexus",))
PREFIX = "s3://raw/flaky-flow"
MIXED = mixed_faults(seed=11)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """Three small scans with rsm spice on disk, and the same uploaded to ``PREFIX``."""
    root = tmp_path_factory.mktemp("flaky-flow")
    samples.generate(root, SPEC)
    repo = bf.Repository(
        f"{root.as_uri()}/nexus/{{proposal}}/{{scan}}.h5#entry",
        spice=f"{root.as_uri()}/spice/{{proposal}}",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo["p1"].spice.seed("rsm", **samples.rsm_spice())
    return root, repo


@pytest.fixture(scope="module")
def s3_proxy(local, s3_server, s3_options):
    servers.upload(local[0], PREFIX, s3_options)
    with servers.proxy(s3_server.url) as px:
        yield px


@pytest.fixture
def proxy(s3_proxy):
    s3_proxy.faults(**NO_FAULTS)
    s3_proxy.reset()
    yield s3_proxy
    s3_proxy.faults(**NO_FAULTS)


@pytest.fixture(scope="module")
def clean(local, tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
    """The cooked variables of a clean run (the same files on disk, no proxy)."""
    out = tmp_path_factory.mktemp("clean").as_uri() + "/{proposal}/{scan}/{recipe}.h5"
    _, repo = local
    results = {k: bf.cook(repo["p1"][k], "rsm", output=out) for k in ("1", "2", "3")}
    assert all(r.status == "cooked" for r in results.values()), results
    return {k: _cooked(r.output) for k, r in results.items()}


@pytest.fixture
def quick_task_retries(monkeypatch):
    """The flow's own retries of transient failures (3, after 2/4/8 s) with short delays."""
    from basinflow.flows import cook as cook_mod

    quick = cook_mod.cook_scans_task.with_options(retry_delay_seconds=0.2)
    monkeypatch.setattr(cook_mod, "cook_scans_task", quick)


def _cooked(url: str) -> dict[str, np.ndarray]:
    with xr.open_dataset(fs.local_path(url), engine="h5netcdf") as ds:
        return {name: np.asarray(v.values) for name, v in ds.variables.items()}


def _config(tmp_path, px, retries: int):
    # short read timeout; ``retries`` (attempts per call) becomes botocore's own retries
    # (storage/s3.py): since issue 14 nothing patches s3fs to retry on top of botocore
    options = {
        **servers.s3_options(px.url),
        "read_timeout": 0.5,
        "connect_timeout": 5,
        "retries": retries,
    }
    return write_config(
        tmp_path / "flaky.yaml",
        raw=f"{PREFIX}/nexus/{{proposal}}/{{scan}}.h5#entry",
        spice=f"{PREFIX}/spice/{{proposal}}",
        output=f"file://{tmp_path}/out/{{proposal}}/{{scan}}/{{recipe}}-{{spice}}.h5",
        repo={"storage_options": options},
    )


def test_cook_flow_at_20_percent_faults_matches_a_clean_run(
    proxy, clean, tmp_path, quick_task_retries
):
    from basinflow.flows.run import cook_proposal

    cfg = _config(tmp_path, proxy, retries=8)
    proxy.faults(**MIXED)
    results = cook_proposal(cfg, "demo", "p1", None, "rsm")
    stats = proxy.stats()
    assert stats["faults"] > 0, f"no fault was injected: {stats}"
    assert [(r.scan, r.status) for r in results] == [(k, "cooked") for k in ("1", "2", "3")], (
        results
    )
    for r in results:
        got, want = _cooked(r.output), clean[r.scan]
        assert sorted(got) == sorted(want) and got, r.scan
        for name, value in want.items():
            assert np.array_equal(got[name], value, equal_nan=value.dtype.kind == "f"), (
                r.scan,
                name,
            )


def test_one_unreachable_raw_file_fails_its_scan_and_the_rest_are_cooked(
    proxy, clean, tmp_path, quick_task_retries
):
    from basinflow.flows.run import cook_proposal

    cfg = _config(tmp_path, proxy, retries=2)
    proxy.faults(fail_rate=1.0, fail_status=503, fail_paths=[r"/flaky-flow/nexus/p1/2\.h5$"])
    results = {r.scan: r for r in cook_proposal(cfg, "demo", "p1", None, "rsm")}
    assert sorted(results) == ["1", "2", "3"]
    bad = results["2"]
    assert bad.status == "failed", bad
    url = f"{PREFIX}/nexus/p1/2.h5"
    assert url in bad.reason and "unreachable" in bad.reason and "Retry" in bad.reason, bad
    assert bad.output is None
    assert not list((tmp_path / "out" / "p1" / "2").rglob("*")), "output written for scan 2"
    for key in ("1", "3"):
        assert results[key].status == "cooked", results[key]
        got, want = _cooked(results[key].output), clean[key]
        assert all(np.array_equal(got[n], want[n], equal_nan=True) for n in want), key
    stats = proxy.stats()
    assert stats["paths"]["/raw/flaky-flow/nexus/p1/2.h5"] == stats["faults"] > 0


def _task_run_counts(name: str, since) -> list[int]:
    """``run_count`` of every task run called ``name`` that started after ``since``."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        TaskRunFilter,
        TaskRunFilterName,
        TaskRunFilterStartTime,
    )

    async def read():
        async with get_client() as client:
            runs = await client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    name=TaskRunFilterName(any_=[name]),
                    start_time=TaskRunFilterStartTime(after_=since),
                )
            )
            return [r.run_count for r in runs]

    return asyncio.run(read())


def test_an_unreachable_scan_is_retried_by_the_flow_then_fails(
    proxy, clean, tmp_path, quick_task_retries
):
    """Storage retries run out, the error is transient, so Prefect runs the scan's task
    again (3 retries); bad input would not be retried (``test_is_transient``)."""
    import datetime

    from basinflow.flows import cook as cook_mod
    from basinflow.flows.run import cook_proposal

    cfg = _config(tmp_path, proxy, retries=1)
    proxy.faults(fail_rate=1.0, fail_status=503, fail_paths=[r"/flaky-flow/nexus/p1/3\.h5$"])
    since = datetime.datetime.now(datetime.UTC)
    results = {r.scan: r for r in cook_proposal(cfg, "demo", "p1", ["3"], "rsm", force=True)}
    assert results["3"].status == "failed" and "unreachable" in results["3"].reason
    retries = cook_mod.cook_scans_task.retries
    assert retries >= 1
    assert _task_run_counts("p1/3/rsm", since) == [1 + retries]
