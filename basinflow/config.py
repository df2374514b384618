"""One YAML file, validated by pydantic: repositories, schedules, cluster.

Credentials do not belong here: s3fs/botocore read them from the environment or the usual
credential files. ``storage_options`` is for endpoints and tuning; values of the form
``${NAME}`` are taken from the environment at load time and never written back.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from basinflow.catalog.template import Template
from basinflow.errors import ConfigError, Error

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RepositoryConfig(_Model):
    raw: str = Field(description="URL template of raw scans with {proposal} and {scan}")
    layout: str = "auto"
    layout_options: dict[str, Any] = Field(default_factory=dict)
    storage_options: dict[str, Any] = Field(default_factory=dict)
    spice: str | None = Field(None, description="spice store URL template with {proposal}")
    output: str | None = Field(
        None,
        description="referrer URL template: {proposal} {scan} {recipe} {recipe_version} {spice}",
    )
    trusted: list[str] = Field(default_factory=list, description="extra trusted basin roots")
    trusted_hosts: list[str] = Field(default_factory=list)
    chunk_mb: float = Field(32.0, gt=0)

    @field_validator("raw")
    @classmethod
    def _raw(cls, v: str) -> str:
        Template(v)
        return v

    @field_validator("spice")
    @classmethod
    def _spice(cls, v: str | None) -> str | None:
        if v is not None:
            Template(v, fields=("proposal",), required=())
        return v

    @field_validator("output")
    @classmethod
    def _output(cls, v: str | None) -> str | None:
        if v is not None:
            Template(v, fields=OUTPUT_FIELDS, required=("scan",))
        return v


OUTPUT_FIELDS = ("proposal", "scan", "recipe", "recipe_version", "spice")


class ScheduleConfig(_Model):
    name: str
    repository: str
    proposals: list[str] = Field(default_factory=list, description="empty = all")
    recipe: str = "rsm"
    cron: str | None = None
    interval: float | None = Field(None, gt=0, description="seconds")

    @model_validator(mode="after")
    def _one_timer(self) -> ScheduleConfig:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("give exactly one of 'cron' or 'interval'")
        return self


class JobqueueConfig(_Model):
    kind: Literal["slurm", "pbs", "sge", "lsf", "htcondor"] = "slurm"
    jobs: int = Field(2, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


class ClusterConfig(_Model):
    address: str | None = None
    workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str | None = None
    processes: bool = True
    jobqueue: JobqueueConfig | None = None


class Config(_Model):
    repositories: dict[str, RepositoryConfig]
    schedules: list[ScheduleConfig] = Field(default_factory=list)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    batch_size: int = Field(500, ge=1, description="max task runs per flow run")

    @model_validator(mode="after")
    def _refs(self) -> Config:
        for s in self.schedules:
            if s.repository not in self.repositories:
                raise ValueError(
                    f"schedule {s.name!r} names repository {s.repository!r}, "
                    f"not one of {sorted(self.repositories)}"
                )
        return self

    def repository(self, name: str) -> RepositoryConfig:
        try:
            return self.repositories[name]
        except KeyError:
            known = ", ".join(sorted(self.repositories))
            raise ConfigError(f"no repository {name!r} in the config; known: {known}") from None


def _expand(value: Any) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match) -> str:
            if m.group(1) not in os.environ:
                raise ConfigError(f"config refers to ${{{m.group(1)}}} but it is not set")
            return os.environ[m.group(1)]

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate a config file; ``{here}`` in values is the file's directory."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {str(path)!r}: {exc.strerror or exc}") from None
    text = text.replace("{here}", str(path.resolve().parent))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {str(path)!r} must be a mapping with 'repositories'")
    try:
        return Config.model_validate(_expand(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigError(f"config {str(path)!r}: {where}: {err['msg']}") from None
    except Error:
        raise
