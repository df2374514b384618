"""``basinflow cook``: results table, exit code 1 when a scan failed."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from basinflow import cli_flows

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def app():
    app = typer.Typer()
    cli_flows.register(app)
    app.command("noop", hidden=True)(lambda: None)  # keep `cook` a sub-command
    return app


def test_cook_command_exit_codes(app, make_repo, dask_address):
    cfg, root = make_repo(("1", "2"))
    runner = CliRunner()
    ok = runner.invoke(
        app, ["cook", "--config", str(cfg), "demo", "p1", "1", "--cluster", dask_address]
    )
    assert ok.exit_code == 0, ok.output
    assert "1 cooked" in ok.output

    (root / "nexus" / "p1" / "2.h5").write_bytes(b"garbage" * 50)
    bad = runner.invoke(
        app, ["cook", "--config", str(cfg), "demo", "p1", "--cluster", dask_address]
    )
    assert bad.exit_code == 1, bad.output
    assert "1 skipped" in bad.output and "1 failed" in bad.output
    line = next(x for x in bad.output.splitlines() if x.startswith("failed p1/2: "))
    assert "2.h5" in line and "HDF5" in line
