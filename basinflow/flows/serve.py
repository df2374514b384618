"""Scheduled deployments from the config's ``schedules:`` and a Runner that serves them.

Each schedule becomes a deployment of the ``watch`` flow named after it, with the config
*path* as its parameter (deployments store parameters in the API, so the config is read
by the run, and credentials come from the environment of the process that runs it).
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any

from basinflow.config import Config, ScheduleConfig, load_config


def deployment(schedule: ScheduleConfig, config_path: str, **extra: Any):
    """The ``watch`` deployment for one schedule."""
    from basinflow.flows.watch import watch

    timer: dict[str, Any] = (
        {"cron": schedule.cron}
        if schedule.cron
        else {"interval": timedelta(seconds=float(schedule.interval or 0))}
    )
    return watch.to_deployment(
        name=schedule.name,
        parameters={
            "config": config_path,
            "repository": schedule.repository,
            "proposals": list(schedule.proposals) or None,
            "recipe": schedule.recipe,
        },
        tags=["basinflow", "watch", f"repository:{schedule.repository}"],
        description=f"watch {schedule.repository} for new or stale scans ({schedule.recipe})",
        **timer,
        **extra,
    )


def deployments(config: str | os.PathLike, names: list[str] | None = None) -> list:
    path = os.path.abspath(os.fspath(config))
    cfg: Config = load_config(path)
    chosen = [s for s in cfg.schedules if not names or s.name in names]
    return [deployment(s, path) for s in chosen]


def make_runner(
    config: str | os.PathLike,
    *,
    query_seconds: float | None = None,
    names: list[str] | None = None,
    limit: int | None = None,
):
    """A Runner with the config's schedules added (not started); ``limit`` caps
    concurrent runs."""
    from prefect.runner import Runner

    runner = Runner(
        name="basinflow", query_seconds=query_seconds, pause_on_shutdown=False, limit=limit
    )
    for d in deployments(config, names):
        runner.add_deployment(d)
    return runner


def serve(
    config: str | os.PathLike,
    *,
    names: list[str] | None = None,
    query_seconds: float | None = None,
    run_once: bool = False,
) -> None:
    """Serve the config's schedules until interrupted (or one polling round with ``run_once``).

    Uses ``PREFECT_API_URL`` when set, else the embedded server with its scheduler on.
    """
    from basinflow.errors import ConfigError
    from basinflow.flows.runtime import prefect_api

    if not deployments(config, names):
        raise ConfigError(f"config {os.fspath(config)!r} has no schedules to serve")
    with prefect_api(services=True):
        runner = make_runner(config, query_seconds=query_seconds, names=names)
        asyncio.run(runner.start(run_once=run_once))


__all__ = ["deployment", "deployments", "make_runner", "serve"]
