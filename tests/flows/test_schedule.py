"""A deployment with a short interval fires and cooks a scan added after it started."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import yaml

from .conftest import add_scan

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_interval_deployment_cooks_new_scan(make_repo, tmp_path, dask_address):
    from basinflow.flows.serve import make_runner

    cfg, root = make_repo(
        ("1",),
        schedules=[
            {"name": "watch-demo", "repository": "demo", "proposals": ["p1"], "interval": 1}
        ],
    )
    data = yaml.safe_load(cfg.read_text())
    data["cluster"] = {"address": dask_address}
    cfg.write_text(yaml.safe_dump(data))

    runner = make_runner(cfg, query_seconds=1, limit=1)
    time.sleep(0.5)
    add_scan(root, "p1", "2", tmp_path)  # after the deployment exists

    out = tmp_path / "out" / "p1"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        asyncio.run(runner.start(run_once=True))
        if len(list(out.glob("*/rsm-*.h5"))) >= 2:
            break
        time.sleep(1)
    cooked = sorted(p.parent.name for p in out.glob("*/rsm-*.h5"))
    assert cooked == ["1", "2"], cooked
    assert all(Path(p).stat().st_size > 0 for p in out.glob("*/rsm-*.h5"))
