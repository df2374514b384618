"""Flow runs whose process died are marked ``Crashed`` instead of staying ``Running``.

A flow run started from the CLI, the demo or Python has no runner watching it: when its
process is SIGKILLed (or the node is lost) the Prefect API keeps showing it ``Running``
forever, and the UI counts it as active work. Prefect's own answer (runner heartbeats plus
a zombie automation) covers only runs a runner or worker launched.

So every basinflow flow labels its run with the process that runs it (host, pid and the
process's start time: a pid alone can be reused), and the start of every flow looks at the
``Running`` basinflow runs of *this* host: a run whose process is gone is set to
``Crashed`` with a message saying so (its ``Running`` task runs too). Only this host's
clock and process table are consulted, so clock skew against the API server cannot make a
live run look dead. Like the cleanup of temporary output files
(:func:`basinflow.storage.commit.sweep_partials`) this trusts host names to tell machines
apart, and never judges a run on another host.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

import psutil

logger = logging.getLogger(__name__)

#: the most Running runs looked at per flow start, all hosts together (newest first: a
#: zombie older than the newest ``MAX_CHECKED`` is beyond what a facility should see)
MAX_CHECKED, PAGE = 2000, 200
HOST, PID, STARTED = "basinflow.host", "basinflow.pid", "basinflow.process_started"


def _started(pid: int) -> str:
    return f"{psutil.Process(pid).create_time():.2f}"


def owner_labels() -> dict[str, str]:
    """The labels naming this process as the one running a flow run."""
    pid = os.getpid()
    return {HOST: socket.gethostname(), PID: str(pid), STARTED: _started(pid)}


def owner_gone(labels: Mapping[str, Any] | None) -> int | None:
    """The pid of a run's process if the labels say it ran on this host and that process
    is gone (or the pid now belongs to another process), else ``None``."""
    labels = labels or {}
    pid = str(labels.get(PID, ""))
    try:
        started = float(labels.get(STARTED, ""))
    except (TypeError, ValueError):
        return None  # not labelled by us: not ours to judge
    if labels.get(HOST) != socket.gethostname() or not pid.isdigit():
        return None
    try:
        proc = psutil.Process(int(pid))
        # start times are kernel ticks (10 ms): equal within a tick means the same process
        if proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - started) < 0.05:
            return None
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        pass
    except psutil.AccessDenied:  # another user's live process: not ours to judge
        return None
    return int(pid)


#: the flows whose runs are labelled and looked after
FLOWS = ("cook", "cook-batch", "watch", "reprocess")


def claim_and_reap() -> list[str]:
    """Label the current flow run with this process; if it is a top-level run (sub-flows
    leave it to their parent), crash the ``Running`` runs of basinflow's flows on this host
    whose process is gone. Returns the ids crashed.

    Never fails the flow: the API being briefly unreachable only delays the cleanup.
    """
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx is not None else None
    flow_run_id = str(run.id) if run is not None else None
    reap = run is None or run.parent_task_run_id is None
    try:
        return _claim_and_reap(flow_run_id, reap)
    except Exception as exc:  # noqa: BLE001 - housekeeping must not fail a cook
        logger.warning("could not check for flow runs left behind by dead processes: %s", exc)
        return []


def _claim_and_reap(flow_run_id: str | None, reap: bool) -> list[str]:
    from prefect.client.orchestration import get_client

    crashed: list[str] = []
    with get_client(sync_client=True) as client:
        if flow_run_id is not None:
            client.update_flow_run_labels(flow_run_id, owner_labels())
        if not reap:
            return crashed
        for run in _running(client):
            pid = None if str(run.id) == flow_run_id else owner_gone(run.labels)
            if pid is None:
                continue
            message = (
                f"the process running this flow run (pid {pid} on {socket.gethostname()}) "
                "ended while the run was Running (killed?); basinflow marked the run crashed "
                "when the next flow started on that host. Committed outputs are whole; "
                "rerun to cook the rest"
            )
            _crash(client, run.id, message)
            logger.warning("flow run %s (%s): %s", run.name, run.id, message)
            crashed.append(str(run.id))
    return crashed


def _running(client) -> list:
    """The Running runs of basinflow's flows, newest first, at most ``MAX_CHECKED``."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    running: list = []
    for offset in range(0, MAX_CHECKED, PAGE):
        page = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOWS))),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=PAGE,
            offset=offset,
        )
        running.extend(page)
        if len(page) < PAGE:
            break
    return running


def _crash(client, flow_run_id, message: str) -> None:
    """Set a flow run and its Running task runs to ``Crashed`` with ``message``."""
    from prefect.client.schemas.filters import (
        TaskRunFilter,
        TaskRunFilterFlowRunId,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    tasks = client.read_task_runs(
        task_run_filter=TaskRunFilter(
            flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id]),
            state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.RUNNING])),
        )
    )
    for task_run in tasks:
        client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
    client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)


__all__ = ["claim_and_reap", "owner_gone", "owner_labels"]
