"""Two flows cooking the same scans at once leave one valid output per scan: each writer
commits a whole file by rename, so the last rename wins and no reader ever sees a mix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import cooked_arrays, sample_config

pytestmark = pytest.mark.usefixtures("prefect_server")

SCANS = ("1", "2", "3")


def _cook_twice_at_once(cmd: list[str], out: Path) -> bool:
    """Run ``cmd --force`` twice at once; whether both processes were seen writing at
    the same moment (temporary names carry the writer's pid)."""
    procs = [
        subprocess.Popen([*cmd, "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    overlapped = False
    while any(p.poll() is None for p in procs):
        names = [p.name for p in out.glob("p1/*/.normalize.h5.*.partial")]
        writers = {n.split(".h5.", 1)[1].split("@", 1)[0] for n in names}
        overlapped = overlapped or len(writers) >= 2
        time.sleep(0.01)
    for p in procs:
        stdout, stderr = p.communicate()
        assert p.returncode == 0, stderr.decode()[-2000:]
        assert "3 cooked" in stdout.decode(), stdout.decode()
    return overlapped


def test_two_flows_cook_the_same_scans(tmp_path):
    from basinflow.catalog import Repository
    from basinflow.storage.referrer.read import open_referrer
    from basinflow.tasks.cook import cook, current_output

    out = tmp_path / "out"
    cfg = sample_config(tmp_path, SCANS, f"file://{out}/{{proposal}}/{{scan}}/{{recipe}}.h5")
    exe = Path(sys.executable).with_name("basinflow")
    cmd = [str(exe), "cook", "--config", str(cfg), "demo", "p1", "--recipe", "normalize"]
    for _attempt in range(3):  # until the two flows are seen writing at the same moment
        if _cook_twice_at_once(cmd, out):
            break
    else:
        pytest.fail("the two flows never wrote at the same time: the test proved nothing")

    repo = Repository.from_config(cfg, "demo")
    for scan in SCANS:
        files = sorted(os.listdir(out / "p1" / scan))
        assert files == ["normalize.current.json", "normalize.h5"], files
        url = (out / "p1" / scan / "normalize.h5").as_uri()
        ref = cook(repo["p1"][scan], "normalize", output=f"file://{tmp_path}/ref/{{scan}}.h5")
        assert cooked_arrays(url) == cooked_arrays(ref.output), scan
        assert current_output(repo["p1"][scan], "normalize") == url
        pointer = json.loads((out / "p1" / scan / "normalize.current.json").read_text())
        assert pointer["url"] == url and pointer["history"] == []
        ds = open_referrer(url, trusted=[repo])
        assert ds.sizes["index"] == 44 and "frames" in ds
