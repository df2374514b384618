"""Worker death: a Dask worker process is SIGKILLed while it cooks; the flow still
completes and every cooked dataset is byte-identical to a clean run's.

Two places to die: the worker running a scan's Prefect task (small scans cook inside
their task), and a worker computing chunks of a scan whose graph is spread over the
cluster (``cluster.inline_scan_mib: 0``).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from .conftest import cooked_arrays, dask_processes, sample_config

pytestmark = pytest.mark.usefixtures("prefect_server")

SCANS = ("1", "2", "3", "4")


@pytest.fixture(params=["task", "chunks"])
def where(request) -> str:
    return request.param


@pytest.fixture
def repo(tmp_path, where):
    return sample_config(
        tmp_path,
        SCANS,
        f"file://{tmp_path}/out/{{proposal}}/{{scan}}/{{recipe}}-{{spice}}.h5",
        ntheta=5,
        cluster={"inline_scan_mib": 256 if where == "task" else 0},
    )


class Killer(threading.Thread):
    """SIGKILL the first worker seen running a cook task (``where="task"``) or a chunk of a
    scan's graph while a cook task runs (``"chunks"``); its nanny starts a new one."""

    def __init__(self, address: str, where: str):
        super().__init__(daemon=True)
        from distributed import Client

        self.client = Client(address, timeout=30)
        self.pids = self.client.run(os.getpid)
        self.where = where
        self.killed: list[tuple[str, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            processing = {w: [str(k) for k in ks] for w, ks in self.client.processing().items()}
            tasks = {
                w: [k for k in ks if k.startswith("cook_scans_task")]
                for w, ks in processing.items()
            }
            for worker, keys in processing.items():
                if self.where == "task":
                    victims = tasks[worker]
                elif any(tasks.values()):
                    victims = [k for k in keys if not k.startswith("cook_scans_task")]
                else:
                    victims = []
                if victims and worker in self.pids:
                    os.kill(self.pids[worker], signal.SIGKILL)
                    self.killed.append((worker, victims[0]))
                    return
            time.sleep(0.005)

    def close(self) -> None:
        self.stop.set()
        self.join(10)
        self.client.close()


def test_killed_worker_loses_nothing(repo, tmp_path, where):
    from basinflow.config import open_repository
    from basinflow.flows.run import cook_proposal
    from basinflow.tasks.cooking import cook

    with dask_processes(2, nanny=True) as address:
        killer = Killer(address, where)
        killer.start()
        try:
            results = cook_proposal(repo, "demo", "p1", None, "rsm", cluster_address=address)
        finally:
            killer.close()
    assert killer.killed, "no worker was killed while cooking: the test proved nothing"
    assert [(r.scan, r.status) for r in results] == [(s, "cooked") for s in SCANS], results

    clean = tmp_path / "clean"
    scans = open_repository(repo, "demo")["p1"]
    for r in results:
        ref = cook(scans[r.scan], "rsm", output=f"file://{clean}/{{scan}}.h5")
        assert ref.status == "cooked", ref
        got, want = cooked_arrays(r.output), cooked_arrays(ref.output)
        assert got.keys() == want.keys() and got, r.scan
        for name in want:
            assert got[name] == want[name], f"scan {r.scan}: {name} differs from a clean run"
    leftovers = [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".partial")]
    assert not leftovers, leftovers


_DIE_AFTER_COMMIT = """
import os, signal

_FLAG = os.environ["BASINFLOW_TEST_DIE_AFTER_COMMIT"]
_replace = os.replace


def _replace_then_die(src, dst, *args, **kwargs):
    _replace(src, dst, *args, **kwargs)
    if not str(dst).endswith(".h5"):
        return
    try:  # the first output committed by any worker, once
        fd = os.open(_FLAG, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(dst).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


os.replace = _replace_then_die
"""


def test_scan_committed_by_a_worker_that_died_is_reported_cooked(tmp_path, monkeypatch):
    """The worker dies right after committing a scan's output, before it could report it;
    the task runs again elsewhere and finds the output up to date. This run cooked that
    output, so the scan is "cooked", not "skipped" (issue 15, item 7)."""
    from pathlib import Path

    from basinflow.flows.run import cook_proposal

    cfg = sample_config(
        tmp_path,
        ("1", "2"),
        f"file://{tmp_path}/out/{{proposal}}/{{scan}}/{{recipe}}-{{spice}}.h5",
        ntheta=3,
    )
    hook = tmp_path / "die-hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_DIE_AFTER_COMMIT)
    flag = tmp_path / "died"
    monkeypatch.setenv("BASINFLOW_TEST_DIE_AFTER_COMMIT", str(flag))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    )
    with dask_processes(2, nanny=True) as address:
        results = cook_proposal(cfg, "demo", "p1", None, "rsm", cluster_address=address)
    assert flag.exists(), "no worker died after a commit: the test proved nothing"
    died_on = Path(flag.read_text())
    assert [(r.scan, r.status) for r in results] == [("1", "cooked"), ("2", "cooked")], results
    assert died_on.as_uri() in {r.output for r in results} or any(
        r.output.endswith(died_on.name) for r in results
    )
