"""The Dask cluster under the flows, from the ``cluster:`` section of the config.

Three cases, in order of precedence:

* an explicit address (``--cluster`` or ``cluster.address``): connect, start nothing;
* ``cluster.jobqueue``: a dask-jobqueue cluster (``SLURMCluster``, ``PBSCluster``, ...) with
  ``jobqueue.options`` as its keyword arguments, scaled to ``jobqueue.jobs`` jobs;
* otherwise a ``distributed.LocalCluster``: ``workers`` processes, one thread each by default
  (h5py serialises reads within a process), ``dashboard_address=":0"``.

:func:`dask_cluster` starts the cluster once and yields its scheduler address; every flow
inside gets a ``DaskTaskRunner(address=...)`` so sub-flows share one cluster.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from basinflow.errors import ConfigError

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


def cluster_spec(cluster: ClusterConfig) -> tuple[str, dict[str, Any]]:
    """``(cluster_class dotted path, kwargs)`` for a cluster to start (no address)."""
    if cluster.jobqueue is not None:
        return JOBQUEUE_CLASSES[cluster.jobqueue.kind], dict(cluster.jobqueue.options)
    kwargs: dict[str, Any] = {
        "n_workers": cluster.workers,
        "threads_per_worker": cluster.threads_per_worker,
        "processes": cluster.processes,
        "dashboard_address": ":0",
    }
    if cluster.memory_limit:
        kwargs["memory_limit"] = cluster.memory_limit
    return "distributed.LocalCluster", kwargs


def _import(dotted: str) -> Any:
    module, _, attr = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        hint = " (pip install 'basinflow[hpc]')" if module.startswith("dask_jobqueue") else ""
        raise ConfigError(f"cannot import cluster class {dotted!r}{hint}: {exc}") from None


@contextmanager
def dask_cluster(cluster: ClusterConfig, address: str | None = None) -> Iterator[str]:
    """Yield a scheduler address: ``address``/``cluster.address``, or a cluster started here."""
    address = address or cluster.address
    if address:
        yield address
        return
    dotted, kwargs = cluster_spec(cluster)
    cls = _import(dotted)
    with cls(**kwargs) as c:
        if cluster.jobqueue is not None:
            c.scale(jobs=cluster.jobqueue.jobs)
        yield c.scheduler_address


def task_runner(address: str) -> DaskTaskRunner:
    """A prefect-dask runner on an existing scheduler."""
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=address)


__all__ = ["JOBQUEUE_CLASSES", "cluster_spec", "dask_cluster", "task_runner"]
