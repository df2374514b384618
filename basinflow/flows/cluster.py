"""The Dask cluster under the flows, from the ``cluster:`` section of the config.

Four cases, in order of precedence:

* an explicit address (``--cluster`` or ``cluster.address``): connect, start nothing;
* ``cluster.jobqueue``: a dask-jobqueue cluster (``SLURMCluster``, ``PBSCluster``, ...) with
  ``jobqueue.options`` as its keyword arguments, scaled to ``jobqueue.jobs`` jobs; the
  scheduler and the workers each get their own network interface, the job script runs
  ``python`` from the environment its prologue activates (not this host's interpreter path),
  and it exports the Prefect settings the workers need (``PREFECT_API_URL`` first);
* ``cluster.kubernetes``: a Dask Kubernetes operator cluster (``KubeCluster``) with the same
  Prefect settings in its pods' environment;
* otherwise a ``distributed.LocalCluster``: ``workers`` processes, one thread each by default
  (h5py serialises reads within a process), ``dashboard_address=":0"``.

:func:`dask_cluster` checks that a cluster whose workers may run elsewhere has a Prefect API
they reach (:func:`basinflow.flows.runtime.check_cluster_api`), starts the cluster once,
binds the workers of an existing one to the flow's API
(:func:`basinflow.flows.binding.bind_workers`) and yields the scheduler address; every flow
inside gets a ``DaskTaskRunner(address=...)`` so sub-flows share one cluster.
"""

from __future__ import annotations

import importlib
import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from basinflow.errors import ConfigError
from basinflow.flows.runtime import OFFLINE_ENV, check_cluster_api

if TYPE_CHECKING:
    from prefect_dask import DaskTaskRunner

    from basinflow.config import ClusterConfig

JOBQUEUE_CLASSES = {
    "slurm": "dask_jobqueue.SLURMCluster",
    "pbs": "dask_jobqueue.PBSCluster",
    "sge": "dask_jobqueue.SGECluster",
    "lsf": "dask_jobqueue.LSFCluster",
    "htcondor": "dask_jobqueue.HTCondorCluster",
}


KUBERNETES_CLASS = "dask_kubernetes.operator.KubeCluster"
#: Never written into job scripts or pod specs (which others on the cluster can read).
_SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN")


def worker_environment(api_url: str | None) -> dict[str, str]:
    """The Prefect settings remote workers need: the API, the offline defaults, and the
    ``PREFECT_*`` variables of this process that are not credentials."""
    env = dict(OFFLINE_ENV)
    env.update(
        {
            k: v
            for k, v in os.environ.items()
            if k.startswith("PREFECT_")
            and k != "PREFECT_HOME"  # a path on this host; workers use their own
            and not any(w in k for w in _SECRET_WORDS)
        }
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def cluster_spec(
    cluster: ClusterConfig, env: dict[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    """``(cluster_class dotted path, kwargs)`` for a cluster to start (no address); ``env``
    is exported to remote workers (job scripts, pods)."""
    if cluster.jobqueue is not None:
        return JOBQUEUE_CLASSES[cluster.jobqueue.kind], _jobqueue_kwargs(cluster, env or {})
    if cluster.kubernetes is not None:
        k8s = cluster.kubernetes
        kwargs = {"name": k8s.name, "image": k8s.image, "n_workers": k8s.workers}
        if k8s.namespace:
            kwargs["namespace"] = k8s.namespace
        kwargs.update(k8s.options)
        kwargs["env"] = {**(env or {}), **dict(kwargs.get("env") or {})}
        return KUBERNETES_CLASS, kwargs
    kwargs: dict[str, Any] = {
        "n_workers": cluster.workers,
        "threads_per_worker": cluster.threads_per_worker,
        "processes": cluster.processes,
        "dashboard_address": ":0",
    }
    if cluster.memory_limit:
        kwargs["memory_limit"] = cluster.memory_limit
    return "distributed.LocalCluster", kwargs


def _jobqueue_kwargs(cluster: ClusterConfig, env: dict[str, str]) -> dict[str, Any]:
    jq = cluster.jobqueue
    kwargs = dict(jq.options)
    if jq.worker_interface:
        kwargs["interface"] = jq.worker_interface
    if jq.scheduler_interface:
        kwargs["scheduler_options"] = {
            **dict(kwargs.get("scheduler_options") or {}),
            "interface": jq.scheduler_interface,
        }
    prologue = list(kwargs.get("job_script_prologue") or [])
    if prologue and "python" not in kwargs:
        # the prologue activates the job's environment: run its python, not this host's path
        kwargs["python"] = "python"
    exports = [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    if exports:
        kwargs["job_script_prologue"] = prologue + exports
    return kwargs


def _import(dotted: str) -> Any:
    module, _, attr = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        hint = (
            " (pip install 'basinflow[hpc]')"
            if module.startswith("dask_jobqueue")
            else " (pip install dask-kubernetes)"
            if module.startswith("dask_kubernetes")
            else ""
        )
        raise ConfigError(f"cannot import cluster class {dotted!r}{hint}: {exc}") from None


@contextmanager
def dask_cluster(cluster: ClusterConfig, address: str | None = None) -> Iterator[str]:
    """Yield a scheduler address: ``address``/``cluster.address``, or a cluster started here.

    Workers that may run on other machines need a Prefect API they reach (checked first);
    the workers of an existing scheduler are bound to the flow's API before any task runs.
    """
    from basinflow.flows.binding import bind_workers

    address = address or cluster.address
    api_url = check_cluster_api(cluster, address)
    if address:
        bind_workers(address)  # long-lived workers may have served another API
        yield address
        return
    dotted, kwargs = cluster_spec(cluster, worker_environment(api_url) if api_url else None)
    cls = _import(dotted)
    with cls(**kwargs) as c:
        if cluster.jobqueue is not None:
            c.scale(jobs=cluster.jobqueue.jobs)
        yield c.scheduler_address


def task_runner(address: str) -> DaskTaskRunner:
    """A prefect-dask runner on an existing scheduler."""
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=address)


__all__ = [
    "JOBQUEUE_CLASSES",
    "KUBERNETES_CLASS",
    "cluster_spec",
    "dask_cluster",
    "task_runner",
    "worker_environment",
]
