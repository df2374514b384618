"""Cluster configurations: SLURM job scripts that are right, a Prefect API remote workers
reach, and the workers of a long-lived scheduler reporting to whichever API the flow uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from basinflow.config import ClusterConfig, load_config
from basinflow.flows.cluster import cluster_spec, worker_environment
from basinflow.flows.runtime import PrefectApiError, check_cluster_api

ROOT = Path(__file__).resolve().parents[2]


def _slurm_script(api_url: str) -> tuple[str, dict]:
    from dask_jobqueue.slurm import SLURMJob

    cfg = load_config(ROOT / "deploy/slurm.yaml")
    dotted, kwargs = cluster_spec(cfg.cluster, worker_environment(api_url))
    assert dotted == "dask_jobqueue.SLURMCluster"
    scheduler = kwargs.pop("scheduler_options")
    job = SLURMJob(scheduler="tcp://login1:8786", name="basinflow-worker", **kwargs)
    return job.job_script(), scheduler


def test_slurm_job_script(monkeypatch):
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "INFO")
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_do-not-leak")
    script, scheduler = _slurm_script("http://prefect.facility.org:4200/api")
    lines = script.splitlines()
    # the scheduler listens on the login node's interface, the workers on the compute nodes'
    assert scheduler == {"interface": "eth0"}
    (worker,) = [line for line in lines if "distributed.cli.dask_worker" in line]
    assert "--interface ib0" in worker
    # the worker runs the python of the environment the prologue activated, after it
    assert worker.split()[0] == "python", worker
    activate = lines.index("source /opt/basinflow/.venv/bin/activate")
    assert activate < lines.index(worker)
    # the Prefect settings reach the job; credentials never do
    assert "export PREFECT_API_URL=http://prefect.facility.org:4200/api" in lines
    assert "export PREFECT_LOGGING_LEVEL=INFO" in lines
    assert "pnu_do-not-leak" not in script and "PREFECT_HOME" not in script


def test_interface_for_both_is_refused(tmp_path):
    from basinflow.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text(
        "repositories: {r: {raw: 'file:///d/{proposal}/{scan}.h5', output: "
        "'file:///o/{proposal}/{scan}.h5'}}\n"
        "cluster: {jobqueue: {kind: slurm, options: {interface: ib0}}}\n"
    )
    with pytest.raises(ConfigError, match=r"worker_interface .* scheduler_interface"):
        load_config(path)


def test_kubernetes_cluster_spec():
    cluster = ClusterConfig(
        kubernetes={"name": "bf", "namespace": "beamline", "workers": 3, "options": {}}
    )
    dotted, kwargs = cluster_spec(cluster, {"PREFECT_API_URL": "http://prefect:4200/api"})
    assert dotted == "dask_kubernetes.operator.KubeCluster"
    assert kwargs["n_workers"] == 3 and kwargs["namespace"] == "beamline"
    assert kwargs["env"]["PREFECT_API_URL"] == "http://prefect:4200/api"


@pytest.mark.parametrize(
    ("cluster", "address"),
    [
        (ClusterConfig(jobqueue={"kind": "slurm"}), None),
        (ClusterConfig(), "tcp://dask.facility.org:8786"),
        (ClusterConfig(address="tcp://10.0.0.5:8786"), None),
    ],
)
def test_cluster_needs_a_reachable_api(cluster, address, monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    cases = [
        (None, r"embedded Prefect server .* PREFECT_API_URL"),
        ("http://127.0.0.1:4200/api", "loopback address"),
        ("http://prefect.invalid:4200/api", "does not answer"),  # .invalid never resolves
    ]
    for url, message in cases:
        change = (
            {"updates": {PREFECT_API_URL: url}} if url else {"restore_defaults": {PREFECT_API_URL}}
        )
        with temporary_settings(**change), pytest.raises(PrefectApiError, match=message):
            check_cluster_api(cluster, address)


def test_single_machine_needs_no_api():
    assert check_cluster_api(ClusterConfig(), None) is None
    assert check_cluster_api(ClusterConfig(), "tcp://127.0.0.1:8786") is None


def _task_run_names(expected: set[str], timeout: float = 120) -> set[str]:
    """Task run names in the current API once ``expected`` are there (task runs arrive as
    events, after the flow returns), or whatever is there at the deadline."""
    import time

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            names = {t.name for t in client.read_task_runs()}
        if expected <= names or time.monotonic() > deadline:
            return names
        time.sleep(1)


@pytest.mark.slow
@pytest.mark.timeout(900)  # two Prefect servers and a Dask cluster on a shared machine
def test_task_runs_reach_each_api_on_long_lived_workers(make_repo, tmp_path):
    """Two flows, each with its own Prefect API (the embedded server takes a new port every
    run), on the same long-lived Dask worker processes: every scan's task run is recorded
    in the API of the flow that ran it (before: 0 in the second)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from basinflow.flows.run import cook_proposal
    from basinflow.flows.runtime import EmbeddedServer

    from .conftest import dask_processes

    cfg, _ = make_repo(("1", "2"))
    old = os.environ.get("PREFECT_API_URL")
    try:
        with dask_processes(1) as address:
            for force in (False, True):
                db = f"sqlite+aiosqlite:///{tmp_path}/prefect-{force}.db"  # one API each
                server = EmbeddedServer(database=db).start(timeout=600)  # a loaded machine
                with server:
                    os.environ["PREFECT_API_URL"] = server.api_url
                    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
                        results = cook_proposal(
                            cfg, "demo", "p1", None, "rsm", force=force, cluster_address=address
                        )
                        assert [r.status for r in results] == ["cooked", "cooked"]
                        wanted = {"p1/1/rsm", "p1/2/rsm"}
                        names = _task_run_names(wanted)
                    assert wanted <= names, (server.api_url, names)
    finally:
        if old is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = old
