"""``basinflow inspect`` trusts exactly what it is told: its own directory, ``--trusted``,
and with ``--config`` the roots of the configured repositories."""

from __future__ import annotations

import pytest

from basinflow.cli import main


def _config(tmp_path, repo) -> str:
    path = tmp_path / "basinflow.yaml"
    path.write_text(f"repositories:\n  site:\n    raw: {repo.url!r}\n    output: {repo.output!r}\n")
    return str(path)


def run(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_inspect_untrusted_without_config(cooked, capsys):
    _, _, result = cooked
    assert run(["inspect", result.output]) == 0
    out = capsys.readouterr().out
    assert "untrusted" in out


def test_inspect_with_config_trusts_the_repository(cooked, tmp_path, capsys):
    repo, _, result = cooked
    assert run(["inspect", "--config", _config(tmp_path, repo), result.output]) == 0
    out = capsys.readouterr().out
    assert "untrusted" not in out
    assert '"recipe": "halve"' in out


def test_inspect_bad_config_is_one_line(cooked, tmp_path, capsys):
    _, _, result = cooked
    with pytest.raises(SystemExit) as exc:
        main(["inspect", "--config", str(tmp_path / "missing.yaml"), result.output])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "missing.yaml" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["provenance", "basin", "spice"])
def test_inspect_shows_referrer_text_as_text(cooked, tmp_path, capsys, monkeypatch, where):
    """Text from a referrer is data: rich markup in it is printed, not interpreted."""
    import json
    import shutil

    import h5py

    _, _, result = cooked
    ref = tmp_path / "ref.h5"
    shutil.copy(result.output.removeprefix("file://"), ref)
    evil = "[/bold]x[red]y[link=http://evil.invalid]z"
    with h5py.File(ref, "a") as f:
        prov = json.loads(f["provenance/document"][()])
        if where == "provenance":
            prov["comment"] = evil
        elif where == "spice":
            prov["spice"] = [{"handle": evil, "revision": 1, "uuid": "u"}]
        else:
            (key,) = f["basins"]
            basin = json.loads(f["basins"][key][()])
            basin["identifier"] = basin["name"] = evil.replace("/", "|")
            del f["basins"][key]
            f["basins"][key] = json.dumps(basin)
        del f["provenance/document"]
        f["provenance/document"] = json.dumps(prov)
    monkeypatch.setenv("COLUMNS", "1000")  # wide enough that no table cell wraps
    assert run(["inspect", str(ref)]) == 0
    out = capsys.readouterr().out
    assert (evil if where != "basin" else evil.replace("/", "|")) in out  # as it is
