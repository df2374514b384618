"""What crosses the Prefect API as flow and task parameters, credentials concealed.

Kept apart from the flows because every flow and task of this package passes the same
things (the config, a repository's settings, the scans' :class:`CookRequest`) and must
pass them the same way: storage options whose keys look like credentials are wrapped in
:class:`SecretStr` before they reach the API (the UI and persisted parameters and results
see ``****``), and are revealed only inside the task or flow that uses them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from basinflow.config import Config, is_secret_key, load_config
from basinflow.tasks.request import CookRequest


def config_parameter(config: Config | str | Any) -> str | dict[str, Any]:
    """What to pass as a flow's ``config`` parameter: a path, or the config as a dict with
    credential-looking storage options wrapped in :class:`SecretStr` (the API sees ``****``)."""
    if not isinstance(config, Config):
        return str(config)
    data = config.model_dump()
    for rc in data["repositories"].values():
        rc["storage_options"] = secretize(rc["storage_options"])
    return data


def secretize(value: Any) -> Any:
    """``value`` with every string under a credential-looking key wrapped in SecretStr."""
    if isinstance(value, Mapping):
        return {
            k: SecretStr(v) if isinstance(v, str) and is_secret_key(k) else secretize(v)
            for k, v in value.items()
        }
    return value


def conceal(request: CookRequest) -> CookRequest:
    """A request to hand to a task or sub-flow: its storage options' credentials wrapped
    in :class:`SecretStr` (the API and persisted results see ``****``)."""
    return dataclasses.replace(request, storage_options=secretize(request.storage_options))


def reveal(value: Any) -> Any:
    """The plain values behind :func:`secretize` / :func:`conceal` (inside a task)."""
    if isinstance(value, CookRequest):
        return dataclasses.replace(value, storage_options=reveal(value.storage_options))
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Mapping):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def load(config: str | Mapping[str, Any] | Config) -> Config:
    """The config behind a flow's ``config`` parameter (see :func:`config_parameter`)."""
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return Config.model_validate(reveal(config))
    return load_config(config)


def settings_parameter(config: Config, repository: str) -> dict[str, Any]:
    """A repository's settings for task arguments (secrets wrapped as in ``config_parameter``)."""
    data = config.repository(repository).model_dump()
    data["storage_options"] = secretize(data["storage_options"])
    return data


def run_tags(repository: str, proposal: str, recipe: str) -> tuple[str, ...]:
    """The tags of a cook run, by which the UI filters runs."""
    return ("basinflow", f"repository:{repository}", f"proposal:{proposal}", f"recipe:{recipe}")
