"""The Kubernetes example (deploy/kubernetes/) against the Kubernetes API's own schema: every
object is checked field by field with the models of the `kubernetes` client (an unknown or
misspelt field, a wrong type or a missing required field fails), after the Prefect work pool's
template is filled the way its worker fills it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"


def check(value, kind: str, path: str = "") -> list[str]:
    """Problems of ``value`` as the Kubernetes type ``kind`` (``V1Job``, ``V1PodSpec``...):
    the client's models are pydantic models of the API schema that forbid unknown fields and
    check types and required fields."""
    import kubernetes.client as k
    from pydantic import ValidationError

    try:
        getattr(k, kind).model_validate(value)
    except ValidationError as exc:
        return [f"{path}: {exc}"]
    return []


def test_check_finds_schema_errors():
    """The checker itself: a typo, a wrong type and a missing required field are found."""
    good = {"name": "w", "image": "basinflow:0.1.0", "args": ["dask", "worker"]}
    assert check(good, "V1Container") == []
    assert check({**good, "imagePullPolicyy": "Always"}, "V1Container")
    assert check({**good, "args": "dask worker"}, "V1Container")
    assert check({"image": "basinflow:0.1.0"}, "V1Container")  # no name


def _fill(template: dict) -> dict:
    """The job manifest as the Prefect worker makes it: ``{{ var }}`` -> the variable's value
    (its default; a flow run's command for ``command``)."""
    variables = template["variables"]["properties"]
    values = {n: v.get("default") for n, v in variables.items()}
    values["command"] = ["prefect", "flow-run", "execute", "00000000-0000-0000-0000-000000000000"]

    def fill(node):
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        if isinstance(node, str):
            m = re.fullmatch(r"\{\{ (\w+) \}\}", node)
            if m:
                return values[m.group(1)]
            return re.sub(r"\{\{ (\w+) \}\}", lambda m: str(values[m.group(1)]), node)
        return node

    return fill(template["job_configuration"]["job_manifest"])


def test_prefect_work_pool_job_template():
    template = json.loads((K8S / "base-job-template.json").read_text())
    for name in re.findall(r"\{\{ (\w+) \}\}", json.dumps(template["job_configuration"])):
        assert name in template["variables"]["properties"], name
    job = _fill(template)
    assert check(job, "V1Job", "job") == []
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    # the flow-run pod reaches the same API and scheduler as the Dask pods
    assert env == _dask_env()


def _dask_cluster() -> dict:
    (doc,) = yaml.safe_load_all((K8S / "dask-cluster.yaml").read_text())
    return doc


def _dask_env() -> dict[str, str]:
    spec = _dask_cluster()["spec"]["worker"]["spec"]
    return {e["name"]: e["value"] for e in spec["containers"][0]["env"]}


def test_dask_operator_cluster():
    """A DaskCluster (kubernetes.dask.org/v1) embeds a pod spec for the workers and for the
    scheduler and a service spec: each is checked as that Kubernetes type."""
    doc = _dask_cluster()
    assert doc["apiVersion"] == "kubernetes.dask.org/v1" and doc["kind"] == "DaskCluster"
    assert check(doc["metadata"], "V1ObjectMeta", "metadata") == []
    spec = doc["spec"]
    assert set(spec) == {"worker", "scheduler"}
    assert set(spec["worker"]) == {"replicas", "spec"} and spec["worker"]["replicas"] >= 1
    assert check(spec["worker"]["spec"], "V1PodSpec", "worker.spec") == []
    assert set(spec["scheduler"]) == {"spec", "service"}
    assert check(spec["scheduler"]["spec"], "V1PodSpec", "scheduler.spec") == []
    assert check(spec["scheduler"]["service"], "V1ServiceSpec", "scheduler.service") == []
    # the flows find the scheduler at the Service the operator names <cluster>-scheduler
    name, ns = doc["metadata"]["name"], doc["metadata"]["namespace"]
    assert _dask_env()["BASINFLOW_DASK_SCHEDULER"] == f"tcp://{name}-scheduler.{ns}:8786"
    assert not any("SECRET" in k or "KEY" in k for k in _dask_env())  # from the Secret
