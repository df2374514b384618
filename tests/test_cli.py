"""The command line a user meets first: typos end at once with one line, output fits
80 columns, ``--help`` reads cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from basinflow import cli_checks
from basinflow.cli_flows import results_table
from basinflow.report import relative, scan_line, size
from basinflow.tasks.results import CookResult

#: Runs the CLI in a fresh interpreter and reports its exit code and which of the slow
#: parts were imported: none of them may be, so no cluster or Prefect server started.
_PROBE = """
import json, sys
from basinflow.cli import main
try:
    main(sys.argv[1:])
    rc = 0
except SystemExit as exc:
    rc = exc.code
slow = ("prefect", "distributed", "dask.array", "xarray", "basinflow.flows")
print(json.dumps({"rc": rc, "started": [m for m in slow if m in sys.modules]}))
"""


@pytest.fixture(scope="module")
def config(sample_root, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "basinflow.yaml"
    path.write_text(
        "repositories:\n  demo:\n"
        f'    raw: "file://{sample_root}/nexus/{{proposal}}/{{scan}}.h5#entry"\n'
        f'    spice: "file://{sample_root}/spice/{{proposal}}"\n'
    )
    return path


def probe(*args: str, cwd: Path | None = None) -> tuple[dict, list[str]]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )
    return json.loads(run.stdout.splitlines()[-1]), run.stderr.splitlines()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["demo", "2021-05", "--recipe", "rsn"],
            "no recipe 'rsn' in the registered recipes; did you mean 'rsm'?",
        ),
        (["demo", "2021-05", "0043"], "no scan '0043' in proposal '2021-05'; did you mean"),
        (["demo", "2021-5"], "no proposal '2021-5' in repository 'demo'; did you mean '2021-05'"),
        (["dem", "2021-05"], "no repository 'dem' in the config; did you mean 'demo'?"),
    ],
)
def test_cook_typo_is_one_line_before_anything_starts(config, args, expected):
    result, err = probe("cook", "--config", str(config), *args)
    assert result == {"rc": 1, "started": []}
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


def test_template_root_typo_is_an_error_not_an_empty_table(sample_root):
    result, err = probe("ls", f"{sample_root}/nexsu/{{proposal}}/{{scan}}.h5#entry")
    assert result == {"rc": 1, "started": []}
    assert len(err) == 1 and "does not exist" in err[0] and "did you mean 'nexus'?" in err[0]


def test_ls_repository_name_without_config_says_what_to_give(sample_root):
    result, err = probe("ls", "demo")
    assert result["rc"] == 1 and len(err) == 1 and "--config FILE" in err[0], err


def test_ls_proposal_typo(config):
    result, err = probe("ls", "--config", str(config), "demo", "2021-5")
    assert result["rc"] == 1 and len(err) == 1 and "did you mean '2021-05'" in err[0]


def test_ls_lists_within_80_columns(config, sample_root):
    env = {**os.environ, "COLUMNS": "80"}
    run = subprocess.run(
        [Path(sys.executable).with_name("basinflow"), "ls", "-c", str(config), "demo", "2021-05"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert "0042" in run.stdout
    assert max(map(len, run.stdout.splitlines())) <= 80


def test_did_you_mean():
    assert cli_checks.did_you_mean("rsn", ["normalize", "roi", "rsm"]) == "; did you mean 'rsm'?"
    assert cli_checks.did_you_mean("RSM", ["rsm"]) == "; did you mean 'rsm'?"
    assert cli_checks.did_you_mean("xyz", ["rsm"]) == ""


@pytest.mark.parametrize("command", [[], ["cook"], ["ls"], ["ui"], ["export"], ["spice", "seed"]])
def test_help_reads_cleanly(command):
    env = {**os.environ, "COLUMNS": "80"}
    run = subprocess.run(
        [Path(sys.executable).with_name("basinflow"), *command, "--help"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert "``" not in run.stdout and "<bool>" not in run.stdout
    assert max(map(len, run.stdout.splitlines())) <= 80
    if command == ["cook"]:
        assert "--force / --no-force" in run.stdout


def _result(scan, status, output=None, reason=""):
    return CookResult("p1", scan, "rsm", status, output, 1.234, 1_234_567, 0, reason)


def test_failed_scan_row_names_no_output_and_paths_are_relative(tmp_path, monkeypatch):
    from rich.console import Console

    monkeypatch.chdir(tmp_path)
    out = f"file://{tmp_path}/cooked/p1/1/rsm.h5"
    rows = [
        _result("1", "cooked", out),
        _result("2", "failed", f"file://{tmp_path}/cooked/p1/2/rsm.h5", "not HDF5"),
    ]
    console = Console(width=80, record=True)
    console.print(results_table(rows, "t"))
    text = console.export_text()
    assert "cooked/p1/1/rsm.h5" in text and "file://" not in text
    assert "p1/2/rsm.h5" not in text  # never written: not named
    assert max(map(len, text.splitlines())) <= 80
    assert scan_line(rows[1]) == "p1/2 failed in 1.2 s, read 1.2 MB, wrote 0 B: not HDF5"
    assert relative(out) == "cooked/p1/1/rsm.h5"
    assert relative("s3://b/k.h5") == "s3://b/k.h5"
    assert [size(n) for n in (999, 1000, 2_500_000)] == ["999 B", "1.0 kB", "2.5 MB"]


def test_progress_is_one_line_per_scan_when_piped_and_a_bar_on_a_terminal():
    import io

    from rich.console import Console

    from basinflow.cli_flows import progress

    results = [_result(s, "cooked", f"file:///data/{s}.h5") for s in ("1", "2", "3")]
    piped = Console(file=io.StringIO(), width=80, force_terminal=False)
    with progress(piped, "demo / p1 / rsm", 3) as on_result:
        for r in results:
            on_result(r)
    lines = piped.file.getvalue().splitlines()
    assert lines[0] == "cook demo / p1 / rsm: 3 scans"
    assert [x.split()[0] for x in lines[1:] if " cooked in " in x] == ["p1/1", "p1/2", "p1/3"]
    assert max(map(len, lines)) <= 80

    tty = Console(file=io.StringIO(), width=80, force_terminal=True)
    with progress(tty, "demo / p1 / rsm", 3) as on_result:
        for r in results:
            on_result(r)
    shown = tty.file.getvalue()
    assert "3/3" in shown and "━" in shown  # the bar, advanced per scan
    assert " cooked in " not in shown  # no plain lines under the bar
