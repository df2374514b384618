"""Dask workers report every task run to the Prefect API of the flow that sent it.

Prefect keeps process-wide queue services (the events worker, which is how task runs reach
the server, and the log worker) bound to the first API URL they saw. A long-lived Dask worker
that served a flow of one API would send a later flow's task runs to the first API (or a dead
port: the embedded server takes a new one every run), and the only trace would be
``EventsWorker failed`` in its log. :class:`PrefectApiPlugin` is a Dask worker plugin that
every flow registers on its cluster (:func:`bind_workers`, from
:func:`basinflow.flows.cluster.dask_cluster`): when a worker's API changes it drains and
stops Prefect's services there, and the next task run starts them bound to the API of its
settings context. A worker still running tasks for another API refuses instead (its flow's
history would be lost), with :class:`basinflow.flows.runtime.PrefectApiError`.
"""

from __future__ import annotations

from distributed import Client, WorkerPlugin

from basinflow.flows.runtime import PrefectApiError, configured_api_url

#: In a Dask worker process: the API its Prefect services were last bound to.
BOUND: dict[str, str] = {}


class PrefectApiPlugin(WorkerPlugin):
    """Bind a worker's Prefect services to ``api_url``. Registered under one name, so the
    next flow's registration replaces it and rebinds every worker (and those that join)."""

    name = "basinflow-prefect-api"

    def __init__(self, api_url: str):
        self.api_url = api_url

    async def setup(self, worker) -> None:
        bound = BOUND.get("url")
        if bound == self.api_url:
            return
        if bound is not None and worker.state.executing_count:
            raise PrefectApiError(
                f"Dask worker {worker.address} is running tasks of a flow that reports to "
                f"{bound}; a flow reporting to {self.api_url} would lose their history. Give "
                "each Prefect API its own Dask cluster, or wait for the running flow"
            )
        from prefect.events.worker import EventsWorker

        # Drains (sends what is queued) and stops every Prefect queue service of this
        # process; the next task run starts them again, bound to its own API.
        await EventsWorker.drain_all(timeout=10)
        BOUND["url"] = self.api_url


def bind_workers(address: str, api_url: str | None = None) -> None:
    """Register :class:`PrefectApiPlugin` for ``api_url`` (default: the configured API) on
    the scheduler at ``address``."""
    url = api_url or configured_api_url()
    if not url:
        return
    with Client(address, timeout=30) as client:
        client.register_plugin(PrefectApiPlugin(url), name=PrefectApiPlugin.name)


__all__ = ["BOUND", "PrefectApiPlugin", "bind_workers"]
