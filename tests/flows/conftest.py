"""Fixtures for the flows: a real Prefect server and a Dask cluster as processes, on loopback.

* ``prefect_server`` (session): the embedded Prefect server (uvicorn subprocess, SQLite in
  the session's PREFECT_HOME) with its scheduler on, so interval deployments create runs;
  ``PREFECT_API_URL`` points at it for the session (settings context and environment).
* ``dask_address`` (session): ``dask scheduler`` and two ``dask worker`` processes.
* ``make_repo``: a small sample repository with rsm spice and a config file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from basinflow import samples
from tests.support.servers import free_port

os.environ.setdefault("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", "1")


@pytest.fixture(scope="session")
def prefect_server():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from basinflow.flows.runtime import EmbeddedServer

    # a start-up deadline only: on a shared machine under load the server takes minutes
    server = EmbeddedServer(services=True).start(timeout=600)
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def _dask(*args: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("dask")
    return subprocess.Popen(
        [str(exe), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ
    )


@contextmanager
def dask_processes(workers: int = 2, *, nanny: bool = False) -> Iterator[str]:
    """A ``dask scheduler`` and ``workers`` single-thread ``dask worker`` processes; yields
    the scheduler address. With ``nanny`` each worker has a nanny that restarts it when it
    dies (the production set-up)."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"
    procs = [
        _dask(
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            address.rsplit(":", 1)[1],
            "--dashboard-address",
            ":0",
        )
    ]
    try:
        for _ in range(workers):
            procs.append(
                _dask(
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--nanny" if nanny else "--no-nanny",
                    "--host",
                    "127.0.0.1",
                )
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(address, timeout=5) as c:
                    c.wait_for_workers(workers, timeout=60)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="session")
def dask_address(prefect_server):
    """A ``dask scheduler`` and two single-thread ``dask worker`` processes."""
    with dask_processes(2) as address:
        yield address


_GATE_HOOK = """
import os, threading, time

import basinflow.storage.commit as _commit

_HOLD = os.environ["BASINFLOW_TEST_GATE"]
_NTH = int(os.environ["BASINFLOW_TEST_GATE_NTH"])
_lock, _seen = threading.Lock(), []


def _gate(src, dst):
    if not str(dst).endswith(".h5"):
        return
    with _lock:
        _seen.append(src)
        if len(_seen) != _NTH:
            return
    with open(_HOLD + ".tmp", "w") as f:
        f.write(str(src))
    os.replace(_HOLD + ".tmp", _HOLD + ".held")  # seen whole or not at all
    while not os.path.exists(_HOLD + ".go"):
        time.sleep(0.01)


def _wrap(fn):
    def wrapped(src, dst, *args, **kwargs):
        _gate(src, dst)
        return fn(src, dst, *args, **kwargs)

    return wrapped


os.replace = _wrap(os.replace)  # local outputs: the rename of the temporary file
_commit.put = _wrap(_commit.put)  # remote outputs: the upload of the staged file
"""


class CommitGate:
    """Holds a child process just before it commits its ``nth`` output, so a test can act
    at that exact moment instead of polling for it and hoping.

    A ``sitecustomize`` on the child's ``PYTHONPATH`` wraps the two ways an output becomes
    visible (``os.replace`` of the local temporary file, ``commit.put`` of the staged
    upload). ``env`` is the child's environment, ``wait(proc)`` returns the held temporary
    file once the child is at the gate, ``release()`` lets it go on.
    """

    def __init__(self, tmp_path: Path, nth: int = 1) -> None:
        hook = tmp_path / "gate-hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(_GATE_HOOK)
        self.flag = tmp_path / "gate"
        self.env = dict(
            os.environ, BASINFLOW_TEST_GATE=str(self.flag), BASINFLOW_TEST_GATE_NTH=str(nth)
        )
        self.env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(hook), self.env.get("PYTHONPATH")])
        )

    def wait(self, proc: subprocess.Popen, timeout: float = 240.0) -> Path:
        held = self.flag.with_suffix(".held")
        deadline = time.monotonic() + timeout
        while not held.exists():
            if proc.poll() is not None:
                pytest.fail(f"the process ended (rc {proc.returncode}) before the gate")
            if time.monotonic() > deadline:
                pytest.fail("the process never reached the gate")
            time.sleep(0.01)
        return Path(held.read_text())

    def release(self) -> None:
        self.flag.with_suffix(".go").touch()


def flow_runs_of(pid: int) -> list:
    """Flow runs labelled as run by process ``pid`` (``basinflow.flows.liveness``)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    from basinflow.flows.liveness import PID

    with get_client(sync_client=True) as client:  # the newest: the session has many
        runs = client.read_flow_runs(sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=200)
    return [r for r in runs if (r.labels or {}).get(PID) == str(pid)]


def write_config(path: Path, raw: str, spice: str, output: str, **extra) -> Path:
    import yaml

    repo = {"raw": raw, "spice": spice, "output": output}
    repo.update(extra.pop("repo", {}))
    # threads in-process by default: quick to start; the process cases use ``dask_address``
    data = {"repositories": {"demo": repo}, "cluster": {"workers": 2, "processes": False}}
    data.update(extra)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def make_repo(tmp_path):
    """``make(scans=("1","2"), **config extras) -> (config path, data root)``."""

    def make(scans=("1", "2"), proposal="p1", **extra):
        root = tmp_path / "data"
        samples.generate(
            root, samples.SampleSpec(proposals={proposal: scans}, ntheta=3, layouts=("nexus",))
        )
        cfg = write_config(
            tmp_path / "basinflow.yaml",
            raw=f"file://{root}/nexus/{{proposal}}/{{scan}}.h5#entry",
            spice=f"file://{root}/spice/{{proposal}}",
            output=f"file://{tmp_path}/out/{{proposal}}/{{scan}}/{{recipe}}-{{spice}}.h5",
            **extra,
        )
        seed(cfg, proposal)
        return cfg, root

    return make


def seed(cfg: Path, proposal: str) -> None:
    import warnings

    from basinflow.config import open_repository

    repo = open_repository(cfg, "demo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo[proposal].spice.seed("rsm", **samples.rsm_spice())


def add_scan(root: Path, proposal: str, scan: str, tmp: Path) -> Path:
    """Write one more nexus scan into ``root`` (generated elsewhere, moved in whole)."""
    import shutil

    other = tmp / f"extra-{scan}"
    samples.generate(
        other, samples.SampleSpec(proposals={proposal: (scan,)}, ntheta=3, layouts=("nexus",))
    )
    dest = root / "nexus" / proposal / f"{scan}.h5"
    shutil.move(other / "nexus" / proposal / f"{scan}.h5", dest)
    return dest


def cooked_arrays(url: str) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    """``{dataset path: (dtype, shape, raw bytes)}`` of a referrer's innate variables
    (provenance, basin definitions and links left out): what "byte-identical" compares."""
    import h5py

    from basinflow.storage import fs

    out: dict[str, tuple[str, tuple[int, ...], bytes]] = {}
    with h5py.File(fs.local_path(url), "r") as f:

        def visit(name: str) -> None:
            if name.split("/")[0] in ("basins", "provenance", "basin_data", "basinmaps"):
                return
            link = f.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                return
            obj = f[name]
            if isinstance(obj, h5py.Dataset):
                out[name] = (obj.dtype.str, obj.shape, obj[()].tobytes())

        f.visit(visit)
    return out


def sample_config(
    tmp_path: Path,
    scans: tuple[str, ...],
    output: str,
    storage_options: dict | None = None,
    *,
    ntheta: int = 11,
    cluster: dict | None = None,
) -> Path:
    """A config for ``scans`` (``ntheta=11``: ~16 MiB of frames each) with ``rsm`` and
    ``normalize`` spice, cooked by default by one in-process worker with two threads."""
    root = tmp_path / "data"
    samples.generate(
        root, samples.SampleSpec(proposals={"p1": scans}, ntheta=ntheta, layouts=("nexus",))
    )
    cfg = write_config(
        tmp_path / "basinflow.yaml",
        raw=f"file://{root}/nexus/{{proposal}}/{{scan}}.h5#entry",
        spice=f"file://{root}/spice/{{proposal}}",
        output=output,
        repo={"storage_options": storage_options or {}},
        cluster=cluster or {"workers": 1, "threads_per_worker": 2, "processes": False},
    )
    seed(cfg, "p1")
    from basinflow.config import open_repository

    open_repository(cfg, "demo")["p1"].spice.seed("normalize", anchor="1", dark=5.0)
    return cfg
