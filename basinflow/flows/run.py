"""Plain entry points for the CLI and the demo: no Prefect objects in or out."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from basinflow.config import Config, load_config

if TYPE_CHECKING:
    from basinflow.tasks.results import CookResult


def cook_proposal(
    config: Config | str | os.PathLike,
    repository: str,
    proposal: str,
    scans: list[str] | None = None,
    recipe: str = "rsm",
    *,
    force: bool = False,
    cluster_address: str | None = None,
    progress: Callable[[CookResult], Any] | None = None,
) -> list[CookResult]:
    """Run the ``cook`` flow and return every scan's result (failed ones included).

    Uses ``PREFECT_API_URL`` when set, else an embedded server
    (:mod:`basinflow.flows.runtime`); the Dask cluster is ``cluster_address``, the config's
    ``cluster`` section, or a local cluster. ``progress`` is called with each result as it
    arrives (skipped ones first).
    """
    from prefect import tags

    from basinflow.flows import cook as cook_mod
    from basinflow.flows import parameters, reporting
    from basinflow.flows.runtime import prefect_api

    cfg = config if isinstance(config, Config) else load_config(config)
    cfg.repository(repository)  # fail early on an unknown name
    param = (
        parameters.config_parameter(cfg)
        if isinstance(config, Config)
        else os.fspath(os.path.abspath(config))
    )
    token = reporting.PROGRESS.set(progress)
    try:
        with prefect_api(), tags(*parameters.run_tags(repository, proposal, recipe)):
            state = cook_mod.cook(
                param,
                repository,
                proposal,
                list(scans) if scans else None,
                recipe,
                force,
                cluster_address,
                return_state=True,
            )
            return reporting.results_of(state)
    finally:
        reporting.PROGRESS.reset(token)


__all__ = ["cook_proposal"]
