"""The README's tour runs as written, in order, on a fresh demo.

Every ```python and ```console block of the "A 5-minute tour" section is run: Python
blocks in one namespace (as a user pastes them into one session), console blocks line by
line through bash, from a directory that holds a fresh ``demo-data`` (written by the
command ``make demo`` runs) and the project's ``.venv``. Commands run without any
Prefect settings in their environment, so the ones the README gives must keep Prefect
offline and record their runs where the README says. ``basinflow ui`` (a server that runs
until Ctrl-C) is started as written on a free port (``PREFECT_SERVER_API_PORT``), checked
and stopped.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import free_port

#: a fresh demo plus the tour: minutes, more on a loaded machine
pytestmark = pytest.mark.timeout(1800)

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV = Path(sys.executable).parent.parent
_BLOCK = re.compile(r"^```(python|console)\n(.*?)^```", re.M | re.S)


def tour_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of each python/console block of the tour, in order."""
    start = text.index("## A 5-minute tour")
    end = text.index("\n## ", start + 1)
    return [(m[1], m[2]) for m in _BLOCK.finditer(text[start:end])]


def console_commands(code: str) -> list[str]:
    return [line[2:] for line in code.splitlines() if line.startswith("$ ")]


def clean_env() -> dict[str, str]:
    """The environment of a user's shell: no Prefect settings, no test-session API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DASK_"))}
    env.pop("DO_NOT_TRACK", None)
    env["COLUMNS"] = "80"
    return env


def test_tour_blocks_are_found():
    blocks = tour_blocks(README.read_text())
    langs = [lang for lang, _ in blocks]
    assert langs.count("python") >= 4 and langs.count("console") >= 5
    commands = [c for lang, code in blocks if lang == "console" for c in console_commands(code)]
    assert all(c.startswith(".venv/bin/") for c in commands), commands
    assert not any("..." in c or "/abs/" in c for c in commands), commands


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """A fresh demo, as after ``make demo``: ``.venv`` and ``demo-data`` side by side."""
    where = tmp_path_factory.mktemp("tour")
    (where / ".venv").symlink_to(VENV)
    run = subprocess.run(
        [".venv/bin/basinflow", "demo", "demo-data"],
        cwd=where,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return where


def _ui_shots():
    """docs/ui_shots.py (start, wait for and stop a server): one way to run one."""
    spec = importlib.util.spec_from_file_location("ui_shots", ROOT / "docs" / "ui_shots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_ui(command: str, cwd: Path) -> dict:
    """Start ``basinflow ui`` as written on a free port; return the server's settings and
    the names of the runs it shows."""
    shots = _ui_shots()
    port = free_port()
    env = {**clean_env(), "PREFECT_SERVER_API_PORT": str(port)}
    proc = shots.start(["bash", "-c", f"exec {command}"], env, cwd)
    api = f"http://127.0.0.1:{port}/api"
    try:
        shots.wait_healthy(api, proc, timeout=240)
        settings = shots.api(api, "/admin/settings")
        runs = shots.api(api, "/flow_runs/filter", {"flow_runs": {"name": {"like_": "cook/demo/"}}})
        settings["_runs"] = [run["name"] for run in runs]
        return settings
    finally:
        shots.stop(proc)


def test_tour_runs_as_written(demo_dir, monkeypatch):
    monkeypatch.chdir(demo_dir)
    namespace: dict = {"__name__": "__tour__"}
    ui_settings = None
    for lang, code in tour_blocks(README.read_text()):
        if lang == "python":
            exec(compile(code, "README.md (tour)", "exec"), namespace)  # the README is ours
            continue
        for command in console_commands(code):
            if " ui " in f"{command} ":
                ui_settings = _run_ui(command, demo_dir)
                continue
            run = subprocess.run(
                ["bash", "-c", command],
                cwd=demo_dir,
                env=clean_env(),
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert run.returncode == 0, f"$ {command}\n{run.stdout}\n{run.stderr}"
            assert "Traceback" not in run.stderr, run.stderr
            wide = [line for line in run.stdout.splitlines() if len(line) > 80]
            assert not wide, f"$ {command}: lines wider than 80 columns: {wide}"

    # what the Python steps said they would do
    assert namespace["result"].status == "cooked"
    assert "raw_delay" in namespace["ds"] and namespace["ds"].raw_delay.sizes["index"] == 44
    # one place for runs: the UI shows the demo's runs and the tour's CLI cook, with
    # analytics off although nothing in the environment asked for it
    assert ui_settings is not None
    assert ui_settings["server"]["analytics_enabled"] is False
    assert ui_settings["_runs"].count("cook/demo/2021-05/rsm") >= 2, ui_settings["_runs"]
    # one output per scan: the tour's cooks wrote where the demo did, under one name
    outputs = sorted(p.name for p in (demo_dir / "demo-data" / "cooked").rglob("*.h5"))
    assert outputs == ["rsm-1.0.0.h5"] * 5, outputs
    copy = demo_dir / "demo-data" / "0042-rsm-copy.h5"
    import h5py

    with h5py.File(copy) as f:
        assert f["entry/data"].attrs["signal"] == "intensity"
