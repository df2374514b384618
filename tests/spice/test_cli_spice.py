"""``basinflow spice ...`` through typer's CliRunner: output, one-line errors, exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from basinflow.cli_spice import app
from basinflow.spice import FsspecSpiceStore

from .conftest import snapshot

runner = CliRunner()


@pytest.fixture
def store(tmp_path) -> str:
    return (tmp_path / "spice").as_uri()


def run(*args: str, ok: bool = True):
    result = runner.invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_seed_view_update_anchor_history_ls(store, tmp_path):
    out = run("seed", "geom", "beamEnergy=8048", "imageCenter=[1, 2]", "--store", store).stdout
    assert "wrote geom r1" in out
    assert (
        "unchanged geom r1"
        in run("seed", "geom", "beamEnergy=8048.0", "--store", store, "imageCenter=[1,2]").stdout
    )
    run("anchor", "r9", "geom", "imageDistance=700", "--store", store, "-m", "detector moved")
    run("update", "r10", "--handle", "geom", "label=after the move", "--store", store)

    rows = json.loads(run("view", "r10", "--json", "--store", store).stdout)
    assert rows[0]["data"]["imageDistance"] == 700.0
    assert rows[0]["data"]["label"] == "after the move"
    assert rows[0]["revision"] == 2 and rows[0]["anchor"] == "r9"
    assert "8048" in run("view", "r10", "--store", store).stdout

    history = json.loads(run("history", "geom", "--json", "--store", store).stdout)
    assert [(d["anchor"], d["revision"]) for d in history] == [("", 1), ("r9", 1), ("r9", 2)]
    assert history[1]["comment"] == "detector moved"
    assert "history of spice geom" in run("history", "geom", "--store", store).stdout

    table = json.loads(run("ls", "--json", "--store", store).stdout)
    assert [r["anchor"] for r in table["rows"]] == ["", "r9"] and table["conflicts"] == []
    assert "(first scan)" in run("ls", "--store", store).stdout
    assert "no conflicts" in run("conflicts", "--store", store).stdout


def test_values_from_file_and_arguments(store, tmp_path):
    values = tmp_path / "geom.yaml"
    values.write_text("beamEnergy: 8048.0\nimageCenter: [3, 4]\nlabel: from file\n")
    run("seed", "geom", "--file", str(values), "label=from args", "--store", store)
    rows = json.loads(run("view", "r1", "--json", "--store", store).stdout)
    assert rows[0]["data"]["imageCenter"] == [3, 4]
    assert rows[0]["data"]["label"] == "from args"


def test_update_by_uuid(store):
    run("seed", "geom", "beamEnergy=1", "--store", store)
    (doc,) = FsspecSpiceStore(store).documents()
    run("update", doc.uuid, "beamEnergy=2", "--store", store)
    assert json.loads(run("view", "r1", "--json", "--store", store).stdout)[0]["revision"] == 2


def test_store_from_environment(store):
    result = runner.invoke(
        app, ["seed", "geom", "beamEnergy=1"], env={"BASINFLOW_SPICE_STORE": store}
    )
    assert result.exit_code == 0, result.output


def test_dry_run_writes_nothing(store, tmp_path):
    result = run("seed", "geom", "beamEnergy=1", "--dry-run", "--store", store)
    assert "dry run" in result.stdout and '"revision": 1' in result.stdout
    assert snapshot(tmp_path) == {}


def test_untyped_spice_warns_on_one_line(store):
    result = run("seed", "free_notes", "text=hello", "--store", store)
    assert result.stderr.startswith("warning: spice type 'free_notes' is not registered")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["seed", "geom", "beamEnergy=high"], ["field 'beamEnergy'", "float"]),
        (["seed", "geom", "beamEnrgy=1"], ["unknown field 'beamEnrgy'"]),
        (["seed", "geom", "--handle", "../x", "beamEnergy=1"], ["invalid spice handle '../x'"]),
        (["seed", "ge/om", "beamEnergy=1"], ["invalid spice type name"]),
        (["seed", "geom", "--anchor", "a/b", "beamEnergy=1"], ["invalid spice anchor"]),
        (["seed", "geom", "novalue"], ["'novalue' is not KEY=VALUE"]),
        (["seed", "geom", "--file", "/no/such/file.yaml"], ["cannot read values file"]),
        (["update", "r1", "--handle", "nothing", "x=1"], ["no spice handle 'nothing'"]),
        (["update", "r1", "x=1"], ["needs handle="]),
        (["anchor", "r9", "nothing"], ["no spice handle 'nothing'"]),
        (["view", "../r1"], ["invalid scan"]),
        (["history", "nothing"], ["no spice handle 'nothing'"]),
        (["import", "/no/such/dir"], ["does not exist"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(store, tmp_path, args, fragments):
    result = run(*args, "--store", store, ok=False)
    assert_one_line_error(result, *fragments)
    assert snapshot(tmp_path) == {}


def test_values_file_must_be_a_mapping(store, tmp_path):
    values = tmp_path / "v.yaml"
    values.write_text("- 1\n- 2\n")
    result = run("seed", "geom", "--file", str(values), "--store", store, ok=False)
    assert_one_line_error(result, "must hold a mapping")


def test_malformed_store_document_is_named(store, tmp_path):
    run("seed", "geom", "beamEnergy=1", "--store", store)
    (tmp_path / "spice" / "broken.json").write_text("{")
    result = run("view", "r1", "--store", store, ok=False)
    assert_one_line_error(result, "malformed spice document", "broken.json")


def test_conflicts_exit_code(store, tmp_path):
    run("seed", "geom", "beamEnergy=1", "--store", store)
    (base,) = FsspecSpiceStore(store).documents()
    root = tmp_path / "spice"
    for energy in (2.0, 3.0):  # two revision-2 documents written "at once"
        d = base.to_dict() | {
            "uuid": f"c0ffee00-0000-4000-8000-00000000000{int(energy)}",
            "revision": 2,
            "parent": base.uuid,
            "data": {"beamEnergy": energy},
        }
        (root / f"{d['uuid']}.json").write_text(json.dumps(d))
    result = run("conflicts", "--store", store, ok=False)
    assert result.exit_code == 1 and "c0ffee00-0000-4000-8000-000000000002" in result.stdout
    assert_one_line_error(
        run("view", "r1", "--store", store, ok=False), "c0ffee00-0000-4000-8000-000000000003"
    )
    assert "CONFLICT" in run("ls", "--store", store).stdout
    run("update", "c0ffee00-0000-4000-8000-000000000003", "--store", store)
    assert json.loads(run("view", "r1", "--json", "--store", store).stdout)[0]["revision"] == 3


def test_import(store, tmp_path):
    src = tmp_path / "nx5d.json"
    src.write_text(
        json.dumps([{"version": "kmc3/1a", "type": "settings", "uuid": "u1", "data": {"a": 1}}])
    )
    assert "would import 1" in run("import", str(src), "--dry-run", "--store", store).stdout
    assert "imported 1" in run("import", str(src), "--store", store).stdout
    assert "1 already present" in run("import", str(src), "--store", store).stdout
