"""How a cook run reports: each scan as it arrives, the failure count, the UI at the end.

Kept apart from the flows, which only schedule: a result is handed to the caller's
progress callback (:data:`PROGRESS`, the CLI's progress bar) and logged as one line in the
cook run's log and its batch's, as it arrives; a run with failed scans fails with
:class:`ScansFailed`, which carries every result (:func:`results_of` reads them back from
a run's state); at the end the run shows its results table and a quicklook gallery
(:mod:`basinflow.flows.artifacts` renders them).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from typing import Any

from prefect import get_run_logger
from prefect.context import TagsContext

from basinflow.errors import FlowError
from basinflow.flows import artifacts
from basinflow.flows.cook_tasks import quicklook_task

#: Called with each CookResult as it arrives (set by :func:`basinflow.flows.run.cook_proposal`).
PROGRESS: contextvars.ContextVar[Callable[[Any], None] | None] = contextvars.ContextVar(
    "basinflow_progress", default=None
)
#: The ``cook`` run's logger, so its batches log each scan in the run the user opens.
RUN_LOGGER: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "basinflow_run_logger", default=None
)


class ScansFailed(FlowError):
    """Some scans failed; ``results`` holds every scan's CookResult."""

    def __init__(self, message: str, results: list):
        super().__init__(message)
        self.results = results

    def __reduce__(self):
        return (type(self), (self.args[0], self.results))


def notify(result: Any) -> None:
    """Hand one scan's result to the progress callback and log it in the runs' logs."""
    cb = PROGRESS.get()
    if cb is not None:
        cb(result)
    # the cook run's log (the run a user opens) and, inside a batch, the batch's own
    loggers = {
        (getattr(lg, "extra", None) or {}).get("flow_run_id", id(lg)): lg
        for lg in (RUN_LOGGER.get(), run_logger())
        if lg is not None
    }
    for logger in loggers.values():
        artifacts.log_result(logger, result)


def run_logger() -> Any:
    """The current run's logger, at INFO at least (``None`` outside a run)."""
    try:
        logger = get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run: nothing to log to
        return None
    # The run's log is the UI's record of each scan: INFO reaches the API even where
    # PREFECT_LOGGING_LEVEL quiets the console (the CLI, tests); the console handler's own
    # level still decides what a terminal shows.
    if logger.logger.getEffectiveLevel() > logging.INFO:
        logger.logger.setLevel(logging.INFO)
    return logger


def raise_if_failed(results: list) -> None:
    """Raise :class:`ScansFailed` counting the failed scans, if any."""
    failed = [r for r in results if r.status == "failed"]
    if failed:
        names = ", ".join(f"{r.scan} ({r.reason})" for r in failed[:10])
        raise ScansFailed(f"{len(failed)} of {len(results)} scans failed: {names}", results)


def report(results, settings, repository, proposal, recipe, title, quicklooks) -> None:
    """The end of a cook run in the UI: the results table, then quicklooks of at most
    ``quicklooks`` cooked scans."""
    artifacts.results_table(
        results, key=artifacts.artifact_key("cook", repository, proposal, recipe), title=title
    )
    cooked = [(r.scan, r.output) for r in results if r.status == "cooked" and r.output]
    if cooked and quicklooks > 0:
        with TagsContext(current_tags=set()):  # no tags: no concurrency-slot round trip
            images = quicklook_task(settings, repository, proposal, cooked[:quicklooks])
        artifacts.quicklook(
            images,
            key=artifacts.artifact_key("quicklook", repository, proposal, recipe),
            title=f"quicklook {title}",
            total=len(cooked),
        )


def results_of(state) -> list:
    """CookResults from a finished ``cook`` flow run's state (completed or ScansFailed)."""
    value = state.result(raise_on_failure=False)
    if isinstance(value, ScansFailed):
        return value.results
    if isinstance(value, BaseException):
        raise value
    return value
