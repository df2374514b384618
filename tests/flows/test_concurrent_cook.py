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


def test_two_flows_cook_the_same_scans(tmp_path):
    from basinflow.catalog import Repository
    from basinflow.storage.referrer.read import open_referrer
    from basinflow.tasks.cook import cook, current_output

    out = tmp_path / "out"
    cfg = sample_config(tmp_path, SCANS, f"file://{out}/{{proposal}}/{{scan}}/{{recipe}}.h5")
    exe = Path(sys.executable).with_name("basinflow")
    cmd = [str(exe), "cook", "--config", str(cfg), "demo", "p1", "--recipe", "normalize"]
    procs = [
        subprocess.Popen([*cmd, "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    most = 0  # the most temporary files seen at one moment: 2+ means the writes overlapped
    while any(p.poll() is None for p in procs):
        most = max(most, len(list(out.glob("p1/*/.normalize.h5.*.partial"))))
        time.sleep(0.01)
    for p in procs:
        stdout, stderr = p.communicate()
        assert p.returncode == 0, stderr.decode()[-2000:]
        assert "3 cooked" in stdout.decode(), stdout.decode()
    assert most >= 2, "the two flows never wrote at the same time: the test proved nothing"

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
