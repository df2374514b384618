"""The Prefect API the flows talk to: the configured one, or an embedded server.

With ``PREFECT_API_URL`` set (environment, profile or settings context), flows use it and
nothing is started. Without it, :func:`prefect_api` starts an **embedded server**: Prefect's
own ASGI app (``prefect.server.api.server:create_app``) under uvicorn, in a subprocess on a
free loopback port, against the SQLite database in ``PREFECT_HOME`` (the same database a later
``prefect server start`` opens, so the runs can be browsed in the UI afterwards). While the
context is open ``PREFECT_API_URL`` points at it, in the settings context *and* in
``os.environ``, so Dask worker processes started inside reach the same server.

Why not Prefect's ephemeral mode (the default with no API URL): every Dask *process* worker
then starts its own temporary server the first time it runs a task (18-28 s for a tiny
flow here, and the task runs end up in databases nobody looks at). Measured on the 2-core
development machine (prefect 3.8.8, SQLite):

==================================================  =================
option                                              ready after
==================================================  =================
``prefect server start`` subprocess, fresh db        ~16.5 s
``SubprocessASGIServer`` (uvicorn), fresh db         ~13.4 s (+3.3 s import)
``SubprocessASGIServer`` (uvicorn), existing db      ~8.9 s
ephemeral mode, 2 Dask process workers               18-28 s per run
==================================================  =================

The uvicorn subprocess is what ``SubprocessASGIServer`` does; we start it ourselves to pick
the port (free, loopback), turn the UI off (serving it costs a copy of the UI bundle per
start) and, for ``serve``, keep the server's background services on (the scheduler creates
the runs of interval/cron deployments; Prefect's ephemeral app turns services off).

**The embedded server is for one machine.** It listens on 127.0.0.1 only, so Dask workers
on other hosts (SLURM jobs, a remote scheduler's workers) could never report their task runs
to it. :func:`check_cluster_api` refuses it for such clusters: they need ``PREFECT_API_URL``
set to a server the workers reach (``prefect server start``, ``make stack``, or the compose
file in ``deploy/``), and it is checked at start.

**Every task run reaches the API the flow uses.** Prefect keeps process-wide services (the
events worker that records task runs, the log worker) bound to the first API URL they saw; a
long-lived Dask worker that served a flow of one API would silently send a later flow's task
runs to the first one (or to a dead port: the embedded server takes a new one every run).
:class:`basinflow.flows.binding.PrefectApiPlugin`, registered on the cluster by every
flow, rebinds them: when the
API differs from the one a worker last served, Prefect's services there are drained and
restart bound to the new API; a worker still running tasks for another API refuses.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from basinflow.errors import Error

#: Settings that keep Prefect quiet and offline; applied with ``setdefault``.
OFFLINE_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
}


class PrefectServerError(Error, RuntimeError):
    """The embedded Prefect server did not start."""


class PrefectApiError(Error, RuntimeError):
    """The Prefect API a cluster needs is missing, unreachable, or taken by other work."""


def configure_environment(home: str | os.PathLike | None = None) -> None:
    """Offline defaults for Prefect; call before Prefect is imported (CLI start-up).

    ``home`` sets ``PREFECT_HOME`` if it is not already set.
    """
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    if home is not None:
        os.environ.setdefault("PREFECT_HOME", str(home))


def configured_api_url() -> str | None:
    """``PREFECT_API_URL`` from the current Prefect settings, or ``None``."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class EmbeddedServer:
    """A Prefect API server in a subprocess on ``127.0.0.1:<free port>``.

    Parameters
    ----------
    services
        Run the server's background services (scheduler, late runs, ...). Needed for
        deployments with schedules; not needed to record flow runs.
    database
        SQLAlchemy URL; default the SQLite database in ``PREFECT_HOME``.
    """

    def __init__(self, *, services: bool = False, database: str | None = None):
        self.services = services
        self.database = database
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self._log = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, timeout: float = 90.0) -> EmbeddedServer:
        import prefect
        from prefect.settings import get_current_settings

        t0 = time.perf_counter()
        self.port = _free_port()
        env = {
            **os.environ,
            **get_current_settings().to_environment_variables(exclude_unset=True),
            "PREFECT_UI_ENABLED": "0",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        env.pop("PREFECT_API_URL", None)
        if not self.services:
            env["PREFECT__SERVER_EPHEMERAL"] = "1"
        if self.database:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.database
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(Path(prefect.__file__).parent.parent),
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not _healthy(self.api_url):
            if self.process.poll() is not None:
                code, out = self.process.returncode, self._output()
                self.stop()
                raise PrefectServerError(f"embedded Prefect server exited with {code}: {out}")
            if time.monotonic() > deadline:
                self.stop()
                raise PrefectServerError(
                    f"embedded Prefect server not healthy after {timeout:.0f} s; "
                    "set PREFECT_API_URL to a running server instead"
                )
            time.sleep(0.1)
        self.startup_seconds = time.perf_counter() - t0
        return self

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedServer:
        running = self.process is not None and self.process.poll() is None
        return self if running else self.start()  # ``with server.start(timeout=...):``

    def __exit__(self, *exc) -> None:
        self.stop()


def _loopback(url_or_address: str) -> bool:
    from urllib.parse import urlsplit

    host = urlsplit(url_or_address if "://" in url_or_address else f"x://{url_or_address}")
    return (host.hostname or "") in ("127.0.0.1", "localhost", "::1") or (
        host.hostname or ""
    ).startswith("127.")


def is_cluster(cluster: Any, address: str | None = None) -> bool:
    """Whether Dask workers may run on other machines: a dask-jobqueue cluster, or a
    scheduler address that is not loopback."""
    address = address or getattr(cluster, "address", None)
    if getattr(cluster, "jobqueue", None) is not None:
        return True
    return bool(address) and not _loopback(address)


def check_cluster_api(cluster: Any, address: str | None = None) -> str | None:
    """For a cluster (:func:`is_cluster`): the configured API URL, checked to answer and not
    to be loopback; :class:`PrefectApiError` otherwise. ``None`` for a single machine."""
    if not is_cluster(cluster, address):
        return None
    url = configured_api_url()
    where = address or getattr(cluster, "address", None) or "dask-jobqueue jobs"
    if not url:
        raise PrefectApiError(
            f"the Dask cluster ({where}) runs workers on other machines, which cannot report "
            "their task runs to the embedded Prefect server (it serves this machine only); "
            "set PREFECT_API_URL to a Prefect server they reach (`prefect server start --host "
            "0.0.0.0`, `make stack`, or deploy/compose.yaml)"
        )
    if _loopback(url):
        raise PrefectApiError(
            f"PREFECT_API_URL={url} is a loopback address, which workers of the Dask cluster "
            f"({where}) on other machines cannot reach; use the server's network name"
        )
    if not _healthy(url):
        raise PrefectApiError(
            f"the Prefect API at PREFECT_API_URL={url} does not answer ({url}/health); start "
            "the server or correct the URL"
        )
    return url


_EMBEDDED: dict[tuple, EmbeddedServer] = {}
_EMBEDDED_LOCK = threading.Lock()


def embedded_server(*, services: bool = False, database: str | None = None) -> EmbeddedServer:
    """The process's embedded server, started on first use and stopped at exit.

    One per process on purpose: Prefect keeps process-wide clients (events, concurrency
    leases) bound to the first API URL they saw, so a second server in the same process
    would leave them talking to a dead port. A server with services also serves callers
    that do not need them.
    """
    with _EMBEDDED_LOCK:
        for (svc, db), server in list(_EMBEDDED.items()):
            alive = server.process is not None and server.process.poll() is None
            if not alive:
                del _EMBEDDED[(svc, db)]
            elif db == database and (svc or not services):
                return server
        server = EmbeddedServer(services=services, database=database).start()
        _EMBEDDED[(services, database)] = server
        atexit.register(server.stop)
        return server


@contextmanager
def prefect_api(*, services: bool = False, database: str | None = None) -> Iterator[str]:
    """Yield the API URL flows should use: the configured one, or the embedded server's.

    Inside the block ``PREFECT_API_URL`` is set (settings context and environment) so that
    flows, the Dask task runner and worker processes started inside all use one server.
    The embedded server outlives the block (see :func:`embedded_server`).
    """
    url = configured_api_url()
    if url:
        yield url
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = embedded_server(services=services, database=database)
    old = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        if old is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = old


__all__ = [
    "OFFLINE_ENV",
    "EmbeddedServer",
    "PrefectApiError",
    "PrefectServerError",
    "check_cluster_api",
    "configure_environment",
    "configured_api_url",
    "embedded_server",
    "is_cluster",
    "prefect_api",
]
