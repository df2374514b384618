"""The example configs and deploy files parse, and name only flows, parameters and images
that exist."""

from __future__ import annotations

import importlib
import inspect
import tomllib
from pathlib import Path

import pytest
import yaml

from basinflow.config import load_config
from basinflow.flows.cluster import cluster_spec

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "basinflow:0.1.0"
# The Prefect server image follows the lock (deploy/versions.py), never the installed version.
PREFECT = tomllib.loads((ROOT / "uv.lock").read_text())
PREFECT = next(p["version"] for p in PREFECT["package"] if p["name"] == "prefect")
PREFECT_IMAGE = f"prefecthq/prefect:{PREFECT}-python3.11"
EXTERNAL_IMAGES = {"postgres:16", PREFECT_IMAGE, "chrislusf/seaweedfs:3.80"}


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
def test_configs_load(path):
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

    path, _, name = entrypoint.partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    obj = getattr(module, name)
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
        assert (ROOT / d["parameters"]["config"].replace("/etc/basinflow/", "deploy/")).exists()
        assert d["work_pool"]["name"] == "basinflow"


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
        assert services[name]["environment"]["PREFECT_API_URL"].startswith("http://prefect-server")
    # images named in the README table are the compose images
    readme = (ROOT / "deploy/README.md").read_text()
    for image in set(images.values()):
        assert image in readme
