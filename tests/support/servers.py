"""Start and stop loopback servers as separate processes (used by fixtures and benchmarks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path | None = None

    def stats(self) -> dict:
        import json

        with urllib.request.urlopen(f"{self.url}/__stats__", timeout=5) as r:
            return json.loads(r.read())

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/__reset__", method="POST")
        urllib.request.urlopen(req, timeout=5).close()

    def faults(self, **faults) -> dict:
        """Change a :func:`proxy`'s faults now (``fail_rate=0`` and so on); returns them all."""
        import json

        req = urllib.request.Request(
            f"{self.url}/__faults__",
            data=json.dumps(faults).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def requests(self) -> list[dict]:
        import json

        if self.log is None or not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def http_server(
    root: str | os.PathLike,
    log: str | os.PathLike | None = None,
    redirects: dict[str, str] | None = None,
    validators: bool = True,
):
    """A Range-honouring static HTTP server on 127.0.0.1 serving ``root``; ``redirects``
    maps path prefixes to the location a ``302`` sends their requests to (the rest of the
    path appended); ``validators=False``: answers carry no ``ETag``/``Last-Modified``."""
    cmd = [sys.executable, str(HERE / "httpserver.py"), str(root)]
    if not validators:
        cmd.append("--no-validators")
    if log:
        cmd += ["--log", str(log)]
    for prefix, location in (redirects or {}).items():
        cmd += ["--redirect", f"{prefix}={location}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"HTTP server did not start: {line!r}")
        yield Server(f"http://127.0.0.1:{int(line.split()[1])}", proc, Path(log) if log else None)
    finally:
        _stop(proc)


@contextmanager
def proxy(upstream: str, **faults):
    """A counting reverse proxy in front of ``upstream`` (`proxy.py` beside this file).

    ``faults``: ``fail_rate``, ``fail_status`` (an int or a list of them), ``reset_rate``,
    ``stall_rate``, ``stall``, ``fail_paths`` (a regex or a list of them: faults only for
    matching request paths), ``fail_methods`` (e.g. ``["GET"]``), ``seed``.
    ``Server.faults(...)`` changes them later.
    """
    cmd = [sys.executable, str(HERE / "proxy.py"), upstream]
    for k, v in faults.items():
        if k in ("fail_paths", "fail_methods"):
            for item in [v] if isinstance(v, str) else v:
                cmd += ["--" + k.replace("_", "-"), item]
        elif k == "fail_status" and isinstance(v, list | tuple):
            cmd += ["--fail-status", ",".join(str(s) for s in v)]
        else:
            cmd += ["--" + k.replace("_", "-"), str(v)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"proxy did not start: {line!r}")
        yield Server(f"http://127.0.0.1:{int(line.split()[1])}", proc)
    finally:
        _stop(proc)


@contextmanager
def s3_server():
    """moto's S3 server on 127.0.0.1 as its own process; yields its endpoint URL."""
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    cmd = [str(exe) if exe.exists() else "moto_server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **S3_ENV}
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto S3 server did not start") from None
                time.sleep(0.1)
        yield Server(url, proc)
    finally:
        _stop(proc)


def s3_options(endpoint: str) -> dict:
    """storage_options for s3fs talking to a loopback endpoint (credentials from env)."""
    return {
        "client_kwargs": {"endpoint_url": endpoint},
        "key": S3_ENV["AWS_ACCESS_KEY_ID"],
        "secret": S3_ENV["AWS_SECRET_ACCESS_KEY"],
    }


def upload(local_root: str | os.PathLike, url: str, storage_options: dict) -> None:
    """Copy a local directory tree to ``s3://bucket/prefix``."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **storage_options)
    bucket = path.split("/", 1)[0]
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    fs.put(str(local_root).rstrip("/") + "/", path.rstrip("/") + "/", recursive=True)
    fs.invalidate_cache()
