"""The ``cook`` flow: the scans of one proposal, one Prefect task per scan.

``cook`` plans first (one task that reads output metadata and raw pins, never frames),
reports up-to-date scans as skipped, and only then starts or connects to the Dask cluster
and cooks the rest in ``cook-batch`` sub-flows of at most ``batch_size`` task runs each.
A scan that fails for a reason of its own fails its task; the others finish; the batch and
the flow then fail with :class:`ScansFailed` ("1 of 3 scans failed: ..."), which carries
every result. Each scan's result is one line in the cook run's own log (and its batch's),
through Prefect's run logger, as it arrives.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from prefect import flow, get_run_logger, tags, task
from prefect.context import TagsContext, get_run_context
from prefect.futures import as_completed
from prefect.tasks import exponential_backoff
from pydantic import SecretStr

from basinflow.config import Config, is_secret_key, load_config
from basinflow.errors import FlowError
from basinflow.flows import artifacts, liveness
from basinflow.flows.cluster import dask_cluster, task_runner
from basinflow.tasks import worker
from basinflow.tasks.freshness import Plan
from basinflow.tasks.request import CookRequest
from basinflow.tasks.results import BatchFailed, CookResult, is_transient, reason_of

#: Called with each CookResult as it arrives (set by :func:`basinflow.flows.run.cook_proposal`).
PROGRESS: contextvars.ContextVar[Callable[[Any], None] | None] = contextvars.ContextVar(
    "basinflow_progress", default=None
)
#: The ``cook`` run's logger, so its batches log each scan in the run the user opens.
RUN_LOGGER: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "basinflow_run_logger", default=None
)
QUICKLOOKS = artifacts.GALLERY


class ScansFailed(FlowError):
    """Some scans failed; ``results`` holds every scan's CookResult."""

    def __init__(self, message: str, results: list):
        super().__init__(message)
        self.results = results

    def __reduce__(self):
        return (type(self), (self.args[0], self.results))


# --- parameters ---------------------------------------------------------------------------
def config_parameter(config: Config | str | Any) -> str | dict[str, Any]:
    """What to pass as a flow's ``config`` parameter: a path, or the config as a dict with
    credential-looking storage options wrapped in :class:`SecretStr` (the API sees ``****``)."""
    if not isinstance(config, Config):
        return str(config)
    data = config.model_dump()
    for rc in data["repositories"].values():
        rc["storage_options"] = _secretize(rc["storage_options"])
    return data


def _secretize(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k: SecretStr(v) if isinstance(v, str) and is_secret_key(k) else _secretize(v)
            for k, v in value.items()
        }
    return value


def _conceal(request: CookRequest) -> CookRequest:
    """A request to hand to a task or sub-flow: its storage options' credentials wrapped
    in :class:`SecretStr` (the API and persisted results see ``****``)."""
    return dataclasses.replace(request, storage_options=_secretize(request.storage_options))


def _reveal(value: Any) -> Any:
    if isinstance(value, CookRequest):
        return dataclasses.replace(value, storage_options=_reveal(value.storage_options))
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Mapping):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    return value


def load(config: str | Mapping[str, Any] | Config) -> Config:
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return Config.model_validate(_reveal(config))
    return load_config(config)


def settings_parameter(config: Config, repository: str) -> dict[str, Any]:
    """A repository's settings for task arguments (secrets wrapped as in ``config_parameter``)."""
    data = config.repository(repository).model_dump()
    data["storage_options"] = _secretize(data["storage_options"])
    return data


def run_tags(repository: str, proposal: str, recipe: str) -> tuple[str, ...]:
    return ("basinflow", f"repository:{repository}", f"proposal:{proposal}", f"recipe:{recipe}")


def _flow_run_id() -> str | None:
    try:
        return str(get_run_context().flow_run.id)
    except Exception:  # noqa: BLE001 - outside a flow run
        return None


def _notify(result: Any) -> None:
    cb = PROGRESS.get()
    if cb is not None:
        cb(result)
    # the cook run's log (the run a user opens) and, inside a batch, the batch's own
    loggers = {
        (getattr(lg, "extra", None) or {}).get("flow_run_id", id(lg)): lg
        for lg in (RUN_LOGGER.get(), _run_logger())
        if lg is not None
    }
    for logger in loggers.values():
        artifacts.log_result(logger, result)


def _run_logger() -> Any:
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


def _failed(results: list) -> None:
    """Raise :class:`ScansFailed` counting the failed scans, if any."""
    failed = [r for r in results if r.status == "failed"]
    if failed:
        names = ", ".join(f"{r.scan} ({r.reason})" for r in failed[:10])
        raise ScansFailed(f"{len(failed)} of {len(results)} scans failed: {names}", results)


# --- tasks ----------------------------------------------------------------------------------
def _retry_transient(task, task_run, state) -> bool:
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # noqa: BLE001 - no result to look at
            return False
    return isinstance(exc, BaseException) and is_transient(exc)


@task(
    name="plan",
    task_run_name="plan/{proposal}/{recipe}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=_retry_transient,
)
def plan_task(
    settings: dict[str, Any],
    repository: str,
    proposal: str,
    scans: list[str] | None,
    recipe: str,
    force: bool = False,
) -> Plan:
    """One request per scan to cook, and the up-to-date ones (reads metadata only)."""
    planned = worker.plan_scans(_reveal(settings), repository, proposal, scans, recipe, force=force)
    planned.todo = [_conceal(r) for r in planned.todo]
    return planned


@task(
    name="cook-scans",
    task_run_name="{label}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_transient,
)
def cook_scans_task(
    settings: dict[str, Any],
    requests: list[CookRequest],
    force: bool = False,
    flow_run_id: str | None = None,
    label: str = "",
    inline_bytes: int | None = None,
) -> list[CookResult]:
    """Cook one scan (or a small batch) on the cluster; each scan's Dask graph runs through
    the worker's client. Fails (with every result attached) if any scan failed."""
    return worker.run_batch(
        _reveal(settings),
        [_reveal(r) for r in requests],
        strict=True,
        force=force,
        flow_run_id=flow_run_id,
        inline_bytes=inline_bytes,
    )


def auto_scans_per_task(n: int, threads: int) -> int:
    """One scan per task while there are few per worker thread; else small batches so that
    each thread gets about four tasks (Prefect's per-task cost on Dask is ~0.1 s here),
    at most 25 scans per task."""
    per_thread = 4 * max(1, threads)
    if n <= per_thread:
        return 1
    return min(25, math.ceil(n / per_thread))


def _label(chunk: list[CookRequest]) -> str:
    first, last = chunk[0], chunk[-1]
    scans = first.scan if len(chunk) == 1 else f"{first.scan}..{last.scan}"
    return f"{first.proposal}/{scans}/{first.recipe}"


@task(name="quicklook", task_run_name="quicklook/{proposal}")
def quicklook_task(settings: dict[str, Any], repository: str, proposal: str, outputs: list):
    return [
        (scan, worker.quicklook_png(_reveal(settings), repository, url), url)
        for scan, url in outputs
    ]


# --- flows ----------------------------------------------------------------------------------
@flow(
    name="cook-batch",
    flow_run_name="cook/{repository}/{proposal}/{recipe}/batch-{index}",
    validate_parameters=False,
)
def cook_batch(
    settings: dict[str, Any],
    repository: str,
    proposal: str,
    requests: list[CookRequest],
    recipe: str,
    force: bool = False,
    index: int = 0,
    progress_id: str | None = None,
    done_before: int = 0,
    total: int | None = None,
    per_task: int = 1,
    inline_bytes: int | None = None,
) -> list:
    """Cook ``requests`` (at most ``batch_size`` of them), ``per_task`` scans per task run;
    every scan is cooked; raises :class:`ScansFailed` (with every result) if one failed."""
    liveness.claim_and_reap()
    total = total or len(requests)
    run_id = _flow_run_id()
    per = max(1, per_task)
    chunks = [requests[i : i + per] for i in range(0, len(requests), per)]
    futures = {}
    # Task runs carry no tags (the flow runs do): every tag would cost each task run a
    # concurrency-slot round trip to the API.
    with TagsContext(current_tags=set()):
        for chunk in chunks:
            fut = cook_scans_task.submit(
                settings, chunk, force, run_id, _label(chunk), inline_bytes
            )
            futures[fut.task_run_id] = (chunk, fut)
    results = {}
    done = done_before
    for fut in as_completed([f for _, f in futures.values()]):
        chunk = futures[fut.task_run_id][0]
        for r in _results_of(fut, chunk):
            results[r.scan] = r
            done += 1
            _notify(r)
        artifacts.set_progress(progress_id, done, total)  # per task run: per scan or batch
    out = [results[r.scan] for r in requests]
    _failed(out)  # the batch is Failed too, with the count
    return out


def _results_of(fut, chunk: list[CookRequest]) -> list[CookResult]:
    fut.wait()
    state = fut.state
    if state.is_completed():
        return fut.result()
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, BatchFailed):
        return exc.results
    reason = reason_of(exc) if isinstance(exc, BaseException) else str(state.message)
    return [CookResult.failed(r.proposal, r.scan, r.recipe, reason) for r in chunk]


@flow(
    name="cook",
    flow_run_name="cook/{repository}/{proposal}/{recipe}",
    validate_parameters=False,
)
def cook(
    config: str | dict[str, Any],
    repository: str,
    proposal: str,
    scans: list[str] | None = None,
    recipe: str = "rsm",
    force: bool = False,
    cluster_address: str | None = None,
    batch_size: int | None = None,
    quicklooks: int = QUICKLOOKS,
    scans_per_task: int | None = None,
) -> list:
    """Cook the scans of one proposal (all when ``scans`` is None) with ``recipe``.

    Up-to-date outputs are skipped unless ``force``. ``scans_per_task`` (default: one while
    there are few scans per worker thread, else small batches) groups scans into task runs.
    Returns every scan's CookResult;
    raises :class:`ScansFailed` (with the results) if any scan failed.
    """
    liveness.claim_and_reap()
    RUN_LOGGER.set(_run_logger())
    cfg = load(config)
    settings = settings_parameter(cfg, repository)
    limit = batch_size or cfg.batch_size
    title = f"cook/{repository}/{proposal}/{recipe}"
    with tags(*run_tags(repository, proposal, recipe)):
        planned = plan_task(settings, repository, proposal, scans, recipe, force)
        todo = planned.todo
        results = {r.scan: r for r in [*planned.fresh, *planned.failed]}
        names = [r.scan for r in todo]
        _run_logger().info(
            f"{title}: {len(todo)} to cook, {len(planned.fresh)} up to date"
            + (f" ({', '.join(names[:20])}{' ...' if len(names) > 20 else ''})" if todo else "")
        )
        for r in results.values():
            _notify(r)
        if todo:
            results.update(
                _cook_todo(
                    cfg,
                    settings,
                    repository,
                    proposal,
                    todo,
                    recipe,
                    force,
                    limit,
                    cluster_address,
                    title,
                    scans_per_task,
                )
            )
    out = [results[s] for s in _natural(list(results))]
    _report(out, settings, repository, proposal, recipe, title, quicklooks)
    _failed(out)
    return out


def _natural(keys: list[str]) -> list[str]:
    from basinflow.keys import natural_sorted

    return list(natural_sorted(keys))


def _threads(address: str) -> int:
    from distributed import Client

    with Client(address, timeout=30) as client:
        return sum(client.nthreads().values())


def _cook_todo(
    cfg, settings, repository, proposal, todo, recipe, force, limit, address, title, per_task
):
    key = artifacts.artifact_key("progress", repository, proposal, recipe)
    progress_id = artifacts.progress(key, f"{title}: {len(todo)} scans to cook")
    results = {}
    with dask_cluster(cfg.cluster, address) as addr:
        runner = task_runner(addr)
        per = per_task or auto_scans_per_task(min(len(todo), limit), _threads(addr))
        for i in range(0, len(todo), limit):
            chunk = todo[i : i + limit]
            sub = cook_batch.with_options(task_runner=runner)
            state = sub(
                settings,
                repository,
                proposal,
                chunk,
                recipe,
                force,
                i // limit,
                str(progress_id),
                i,
                len(todo),
                per,
                int(cfg.cluster.inline_scan_mib * 2**20),
                return_state=True,
            )
            for r in results_of(state):  # a Failed batch still carries every result
                results[r.scan] = r
    return results


def _report(results, settings, repository, proposal, recipe, title, quicklooks) -> None:
    artifacts.results_table(
        results, key=artifacts.artifact_key("cook", repository, proposal, recipe), title=title
    )
    cooked = [(r.scan, r.output) for r in results if r.status == "cooked" and r.output]
    if cooked and quicklooks > 0:
        with TagsContext(current_tags=set()):  # no concurrency-slot round trip (see above)
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


__all__ = [
    "PROGRESS",
    "ScansFailed",
    "auto_scans_per_task",
    "config_parameter",
    "cook",
    "cook_batch",
    "cook_scans_task",
    "load",
    "plan_task",
    "results_of",
]
