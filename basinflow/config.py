"""One YAML file, validated by pydantic: repositories, schedules, cluster.

Credentials do not belong here: s3fs/botocore read them from the environment or the usual
credential files. ``storage_options`` is for endpoints and tuning; values of the form
``${NAME}`` are taken from the environment at load time and never written back, and
:func:`redact` hides credential-looking ones wherever settings are shown.

This module owns turning settings into objects: :func:`open_repository` builds the
:class:`~basinflow.catalog.Repository` a config names (the catalog knows nothing of
configs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from basinflow.catalog.template import Template, output_template
from basinflow.errors import ConfigError, yaml_problem

if TYPE_CHECKING:
    from basinflow.catalog import Repository

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
            output_template(v)
        return v


_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,?#LW-]+")
_CRON_NICKNAMES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)


class ScheduleConfig(_Model):
    name: str
    repository: str
    proposals: list[str] = Field(default_factory=list, description="empty = all")
    recipe: str = "rsm"
    cron: str | None = None
    interval: float | None = Field(None, gt=0, description="seconds")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        # the shape only (Prefect checks the values when it schedules); a cron that cannot
        # be one fails here, at load, instead of when `serve` registers the deployment
        if v is not None and v.strip() not in _CRON_NICKNAMES:
            fields = v.split()
            if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(f) for f in fields):
                raise ValueError(
                    f"{v!r} is not a cron expression; use five fields 'minute hour day month "
                    "weekday' (e.g. '0 2 * * *') or @daily, @hourly, ..."
                )
        return v

    @model_validator(mode="after")
    def _one_timer(self) -> ScheduleConfig:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("give exactly one of 'cron' or 'interval'")
        return self


class JobqueueConfig(_Model):
    """Dask workers as batch jobs (dask-jobqueue). The scheduler runs where the flow runs
    (a login node), the workers on compute nodes: their networks differ, so each has its own
    interface. ``options`` are the cluster class's keyword arguments."""

    kind: Literal["slurm", "pbs", "sge", "lsf", "htcondor"] = "slurm"
    jobs: int = Field(2, ge=1)
    scheduler_interface: str | None = Field(
        None, description="network interface the scheduler listens on (the login node's)"
    )
    worker_interface: str | None = Field(
        None, description="network interface of the workers (the compute nodes', e.g. ib0)"
    )
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("options")
    @classmethod
    def _no_shared_interface(cls, v: dict[str, Any]) -> dict[str, Any]:
        if "interface" in v:
            raise ValueError(
                "'interface' in options applies to the scheduler on the login node too; give "
                "worker_interface (compute nodes) and scheduler_interface (login node) instead"
            )
        return v


class KubernetesConfig(_Model):
    """Dask workers as pods of the Dask Kubernetes operator (``dask_kubernetes.operator.
    KubeCluster``, ``pip install dask-kubernetes``): a DaskCluster resource is created when the
    flow starts and deleted when it ends. ``options`` are further KubeCluster arguments."""

    name: str = "basinflow"
    namespace: str | None = None
    image: str = "basinflow:0.1.0"
    workers: int = Field(2, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


class ClusterConfig(_Model):
    address: str | None = None
    workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str | None = None
    processes: bool = True
    jobqueue: JobqueueConfig | None = None
    kubernetes: KubernetesConfig | None = None
    inline_scan_mib: float = Field(
        256,
        ge=0,
        description="scans with at most this many MiB of frames cook inside their task with "
        "Dask's synchronous scheduler; larger ones spread their chunks over the cluster",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> ClusterConfig:
        if self.jobqueue is not None and self.kubernetes is not None:
            raise ValueError("give either 'jobqueue' or 'kubernetes', not both")
        return self


class Config(_Model):
    repositories: dict[str, RepositoryConfig]
    schedules: list[ScheduleConfig] = Field(default_factory=list)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    batch_size: int = Field(500, ge=1, description="max task runs per flow run")
    proposals_in_parallel: int = Field(
        4,
        ge=1,
        description="watch/reprocess plan and cook this many proposals at a time (each costs "
        "seconds of orchestration, mostly waiting on the API and the cluster)",
    )

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
            raise ConfigError(
                f"no repository {name!r} in the config; known: {known or 'none'}; use one of "
                "those names or add it under 'repositories:'"
            ) from None


def _expand(value: Any) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match) -> str:
            if m.group(1) not in os.environ:
                raise ConfigError(
                    f"config refers to ${{{m.group(1)}}} but it is not set; set it in the "
                    "environment or remove the reference"
                )
            return os.environ[m.group(1)]

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML would
    silently keep the last one, dropping e.g. a whole repository)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: let the base constructor report it
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _known_keys(loc: tuple) -> list[str]:
    """The keys allowed where ``loc`` (a pydantic error location) points."""
    import typing

    model: Any = Config
    parts = list(loc[:-1])
    while parts:
        fields = getattr(model, "model_fields", None)
        if fields is None or parts[0] not in fields:
            return []
        model = fields[parts.pop(0)].annotation
        # unwrap X | None, then dict[str, X] / list[X] (whose key or index is in loc)
        while getattr(model, "model_fields", None) is None:
            origin = typing.get_origin(model)
            args = [a for a in typing.get_args(model) if a is not type(None)]
            if not args:
                return []
            if origin in (dict, list):
                if not parts:
                    return []
                parts.pop(0)
            model = args[-1]
    return sorted(getattr(model, "model_fields", {}))


def _message(err: dict) -> str:
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        known = _known_keys(tuple(err["loc"]))
        hint = f"; known keys here: {', '.join(known)}" if known else ""
        return f"{where}: unknown key {err['loc'][-1]!r}; remove it or fix its spelling{hint}"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{where}: {msg}; add it (see configs/demo.yaml)"
    return f"{where}: {msg}; fix that value"


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate a config file; ``{here}`` in values is the file's directory."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read config {str(path)!r}: {exc.strerror or exc}; check the path "
            "(--config FILE)"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"config {str(path)!r} is not UTF-8 text; point --config at the YAML file"
        ) from None
    text = text.replace("{here}", str(path.resolve().parent))
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no python tags
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config {str(path)!r} is not valid YAML: {yaml_problem(exc)}; fix the syntax"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config {str(path)!r} must be a mapping with 'repositories'; put your "
            "repositories under a top-level 'repositories:' key (see configs/demo.yaml)"
        )
    try:
        return Config.model_validate(_expand(data))
    except ValidationError as exc:
        raise ConfigError(f"config {str(path)!r}: {_message(exc.errors()[0])}") from None
    except ConfigError as exc:
        raise ConfigError(f"config {str(path)!r}: {exc}") from None


def open_repository(config: Config | RepositoryConfig | str | os.PathLike, name: str) -> Repository:
    """The repository ``name`` of a config (a file path or a loaded :class:`Config`), or
    of one repository's settings (a :class:`RepositoryConfig`)."""
    from basinflow.catalog import Repository

    if isinstance(config, RepositoryConfig):
        rc = config
    else:
        cfg = config if isinstance(config, Config) else load_config(config)
        rc = cfg.repository(name)
    return Repository(
        rc.raw,
        spice=rc.spice,
        storage_options=rc.storage_options,
        layout=rc.layout,
        layout_options=rc.layout_options,
        output=rc.output,
        name=name,
        trusted=rc.trusted,
        trusted_hosts=rc.trusted_hosts,
        chunk_mb=rc.chunk_mb,
    )


# --- credentials ------------------------------------------------------------------------------
_SECRET_KEY = re.compile(r"(secret|password|passwd|token|credential|session|^key$|_key$)", re.I)


def is_secret_key(key: str) -> bool:
    """Whether a storage option's name looks like a credential (``secret``, ``key``, ...)."""
    return bool(_SECRET_KEY.search(str(key)))


def redact(value: Any) -> Any:
    """``value`` with every credential-looking mapping entry replaced by ``"***"``."""
    if isinstance(value, Mapping):
        return {k: "***" if is_secret_key(k) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value
