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
