"""Two flows cooking the same scans at once leave one valid output per scan: each writer
commits a whole file by rename, so the last rename wins and no reader ever sees a mix.

The overlap is made, not hoped for: the first flow is held just before it renames one
output (``CommitGate``), the second flow
cooks and commits every scan while that temporary file exists, then the first is released
and its rename lands over the second's output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CommitGate, cooked_arrays, flow_runs_of, sample_config

pytestmark = pytest.mark.usefixtures("prefect_server")

SCANS = ("1", "2", "3")


def _finished(proc: subprocess.Popen) -> None:
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert "3 cooked" in stdout.decode(), stdout.decode()


def test_two_flows_cook_the_same_scans(tmp_path):
    from basinflow.config import open_repository
    from basinflow.storage.referrer.read import open_referrer
    from basinflow.tasks.cooking import cook
    from basinflow.tasks.outputs import current_output

    out = tmp_path / "out"
    cfg = sample_config(tmp_path, SCANS, f"file://{out}/{{proposal}}/{{scan}}/{{recipe}}.h5")
    exe = Path(sys.executable).with_name("basinflow")
    cmd = [str(exe), "cook", "--config", str(cfg), "demo", "p1", "--recipe", "normalize", "--force"]
    gate = CommitGate(tmp_path)
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=gate.env)
    try:
        partial = gate.wait(first)
        assert partial.exists() and f".{first.pid}@" in partial.name, partial
        second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _finished(second)  # every scan committed while the first flow's file was uncommitted
        assert partial.exists(), "the second flow removed the first flow's live temporary file"
        held_inode = partial.stat().st_ino
        assert (partial.parent / "normalize.h5").stat().st_ino != held_inode
    finally:
        gate.release()
    _finished(first)
    # the second flow's start looked for runs left by dead processes: the first, alive
    # and held at that moment, was left alone and completed
    states = {r.state.type.value for p in (first.pid, second.pid) for r in flow_runs_of(p)}
    assert states == {"COMPLETED"}, states
    assert not partial.exists()
    # the last rename wins: the held flow's file replaced the one the second flow committed
    assert (partial.parent / "normalize.h5").stat().st_ino == held_inode

    repo = open_repository(cfg, "demo")
    for scan in SCANS:
        files = sorted(os.listdir(out / "p1" / scan))
        assert files == ["normalize.current.json", "normalize.h5", "normalize.h5.pin.json"], (
            scan,
            files,
        )
        url = (out / "p1" / scan / "normalize.h5").as_uri()
        ref = cook(repo["p1"][scan], "normalize", output=f"file://{tmp_path}/ref/{{scan}}.h5")
        assert cooked_arrays(url) == cooked_arrays(ref.output), scan
        assert current_output(repo["p1"][scan], "normalize") == url
        pointer = json.loads((out / "p1" / scan / "normalize.current.json").read_text())
        assert pointer["url"] == url and pointer["history"] == []
        ds = open_referrer(url, trusted=[repo])
        assert ds.sizes["index"] == 44 and "frames" in ds
