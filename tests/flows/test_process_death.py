"""Process death: the flow process is SIGKILLed while it writes a large output.

Nothing may exist at that output's final URL (local files and S3), outputs committed
before the kill stay valid, and the rerun cooks the rest and skips what was committed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest

from .conftest import CommitGate, flow_runs_of, sample_config

pytestmark = pytest.mark.usefixtures("prefect_server")

SCANS = ("1", "2", "3", "4")


def _kill_mid_write(cfg: Path, tmpdir: Path, committed, writing) -> tuple[set[str], int]:
    """Run ``basinflow cook`` in its own session and SIGKILL its whole process group once
    one output is committed and another is being written; returns the outputs whose
    temporary files outlived the kill (their commit never happened), and the killed pid.

    The moment is polled for: the group is stopped (SIGSTOP), checked again while frozen
    and killed only if a write is still in flight, else resumed. A ``CommitGate`` holding
    the cook just before its second commit makes sure such a moment comes.
    """
    gate = CommitGate(tmpdir.parent, nth=2)
    env = {**gate.env, "TMPDIR": str(tmpdir)}
    exe = Path(sys.executable).with_name("basinflow")
    proc = subprocess.Popen(
        [str(exe), "cook", "--config", str(cfg), "demo", "p1", "--recipe", "normalize"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    held = gate.flag.with_suffix(".held")
    deadline = time.monotonic() + 240
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if held.exists() or (committed() and writing()):
                _freeze(proc.pid)
                in_flight = writing()
                if committed() and in_flight:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(30)
                    return in_flight, proc.pid
                os.killpg(proc.pid, signal.SIGCONT)
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    err = proc.stderr.read().decode() if proc.stderr else ""
    pytest.fail(f"the cook ended (rc {proc.returncode}) before it was caught mid-write: {err}")


def _freeze(pid: int) -> None:
    """SIGSTOP the process group and wait until every thread of ``pid`` is stopped (the
    signal is delivered asynchronously)."""
    os.killpg(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # a thread that ended
        if all(state in "TtZX" for state in states):
            return
        time.sleep(0.001)
    pytest.fail(f"process {pid} did not stop")


def _rerun(cfg: Path) -> dict[str, str]:
    from basinflow.flows.run import cook_proposal

    results = cook_proposal(cfg, "demo", "p1", None, "normalize")
    return {r.scan: r.status for r in results}


def _assert_crashed(pid: int) -> None:
    """The runs the killed process left Running, and their Running task runs, are Crashed
    with a message naming the process."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    runs = flow_runs_of(pid)
    assert len(runs) == 2, runs
    for run in runs:
        assert run.state.type.value == "CRASHED", (run.name, run.state)
        assert f"pid {pid} " in run.state.message and "rerun" in run.state.message
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            task_run_filter=TaskRunFilter(
                flow_run_id=TaskRunFilterFlowRunId(any_=[r.id for r in runs])
            )
        )
    assert tasks and all(t.state.type.value != "RUNNING" for t in tasks), tasks


def _check_valid(url: str, storage_options: dict | None = None) -> None:
    from basinflow.storage.referrer.read import read_meta

    meta = read_meta(url, storage_options)
    assert meta.provenance["recipe"] == "normalize"


def test_sigkill_mid_write_local(tmp_path):
    out = tmp_path / "out"
    cfg = sample_config(tmp_path, SCANS, f"file://{out}/{{proposal}}/{{scan}}/{{recipe}}.h5")
    stage = tmp_path / "stage"
    stage.mkdir()

    def committed() -> set[str]:
        return {p.parent.name for p in out.glob("p1/*/normalize.h5")}

    def writing() -> set[str]:
        # the output's own temporary file: .normalize.h5.<pid>@<host>.<random>.partial (the
        # digest record written right after the commit is .normalize.h5.pin.json.<pid>@...)
        return {p.parent.name for p in out.glob("p1/*/.normalize.h5.[0-9]*.partial")}

    in_flight, pid = _kill_mid_write(cfg, stage, committed, writing)
    # what the UI shows for the killed process: the cook run and its batch sub-flow run
    assert sorted((r.name.split("/")[-1], r.state.type.value) for r in flow_runs_of(pid)) == [
        ("batch-0", "RUNNING"),
        ("normalize", "RUNNING"),
    ]
    for scan in in_flight:  # the output being written is not at its final URL
        assert not (out / "p1" / scan / "normalize.h5").exists()
    for scan in committed():  # what was committed before the kill is whole
        _check_valid((out / "p1" / scan / "normalize.h5").as_uri())

    before = committed()
    statuses = _rerun(cfg)
    _assert_crashed(pid)
    assert {s for s, st in statuses.items() if st == "skipped"} == before, statuses
    assert {s for s, st in statuses.items() if st == "cooked"} == set(SCANS) - before
    for scan in SCANS:
        _check_valid((out / "p1" / scan / "normalize.h5").as_uri())
    # the rerun removed the dead writer's temporary files as it rewrote those outputs (a
    # digest record the kill interrupted stays beside its committed output, which is
    # skipped, until that record is written again: a hidden file, never read)
    assert not list(out.rglob(".normalize.h5.[0-9]*.partial"))


def test_sigkill_mid_write_s3(tmp_path, s3_server, s3_options):
    prefix = f"s3://out-{tmp_path.name.lower().replace('_', '-')[-40:]}".rstrip("-")
    s3 = fsspec.filesystem("s3", **s3_options)
    s3.mkdir(prefix[len("s3://") :])
    output = f"{prefix}/{{proposal}}/{{scan}}/{{recipe}}.h5"
    cfg = sample_config(tmp_path, SCANS, output, s3_options)
    stage = tmp_path / "stage"
    stage.mkdir()

    def committed() -> set[str]:
        s3.invalidate_cache()
        return {p.split("/")[-2] for p in s3.glob(f"{prefix[5:]}/p1/*/normalize.h5")}

    def writing() -> set[str]:
        return {p.name for p in stage.glob(".basinflow-upload.h5.*.partial") if p.stat().st_size}

    in_flight, pid = _kill_mid_write(cfg, stage, committed, writing)
    assert in_flight
    now = committed()
    assert len(now) < len(SCANS), "every output was committed: nothing was killed mid-write"
    for scan in now:
        _check_valid(f"{prefix}/p1/{scan}/normalize.h5", s3_options)

    statuses = _rerun(cfg)
    _assert_crashed(pid)
    assert {s for s, st in statuses.items() if st == "skipped"} == now, statuses
    assert {s for s, st in statuses.items() if st == "cooked"} == set(SCANS) - now
    for scan in SCANS:
        _check_valid(f"{prefix}/p1/{scan}/normalize.h5", s3_options)
