"""The environment is the lock: uv.lock satisfies pyproject.toml, the deploy files carry the
lock's versions, and the runtime package does not carry test code."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import basinflow

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy"))
import versions  # noqa: E402  (deploy/versions.py)


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def test_lock_satisfies_pyproject():
    """Every requirement of pyproject.toml (extras included) is met by the locked version:
    editing one without the other (e.g. raising a lower bound, not re-locking) fails here."""
    locked = {canonicalize_name(n): v for n, v in versions.locked_sets().items()}
    bad = []
    for req in _requirements():
        name = canonicalize_name(req.name)
        if name not in locked:
            bad.append(f"{req}: not in uv.lock")
        for v in sorted(locked.get(name, ())):
            if not req.specifier.contains(v, prereleases=True):
                bad.append(f"{req}: uv.lock has {v}")
    assert not bad, "uv.lock is out of step with pyproject.toml (run `make lock`):\n" + "\n".join(
        bad
    )


def test_lock_records_pyproject_requirements():
    """uv's own record of what it resolved from: the root package's requirements in the lock are
    pyproject's, so `uv sync --locked` would refuse a drifted lock rather than re-resolve."""
    doc = tomllib.loads((ROOT / "uv.lock").read_text())
    root = next(p for p in doc["package"] if p["name"] == "basinflow")
    recorded = {canonicalize_name(r["name"]) for r in root["metadata"]["requires-dist"]}
    assert {canonicalize_name(r.name) for r in _requirements()} == recorded


def test_installed_is_locked():
    """What runs the suite is what the lock pins (no stray upgrade from a hand install)."""
    from importlib.metadata import version

    locked = versions.locked_sets()
    for name in ("prefect", "dask", "distributed", "xarray", "h5py", "fsspec", "numpy"):
        assert version(name) in locked[name], name


def test_deploy_files_carry_the_locked_versions():
    assert versions.mismatches() == []


def test_deploy_check_notices_a_drifted_file(tmp_path, monkeypatch):
    """The check can fail: a compose file naming another server version is reported."""
    (tmp_path / "deploy").mkdir()
    for pin in versions.PINS:
        (tmp_path / pin.path).write_text((ROOT / pin.path).read_text())
    compose = tmp_path / "deploy/compose.yaml"
    compose.write_text(
        compose.read_text().replace(
            f"prefecthq/prefect:{versions.locked_versions()['prefect']}", "prefecthq/prefect:3.0.0"
        )
    )
    for name in ("uv.lock", "Makefile"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    monkeypatch.setattr(versions, "ROOT", tmp_path)
    monkeypatch.setattr(versions.locked_sets, "__defaults__", (tmp_path / "uv.lock",))
    monkeypatch.setattr(versions.locked_versions, "__defaults__", (tmp_path / "uv.lock",))
    monkeypatch.setattr(versions.uv_version, "__defaults__", (tmp_path / "Makefile",))
    (bad,) = versions.mismatches()
    assert bad.startswith("deploy/compose.yaml: prefect 3.0.0, lock says")


@pytest.mark.parametrize(
    "module", [m.name for m in pkgutil.walk_packages(basinflow.__path__, "basinflow.")]
)
def test_runtime_package_carries_no_test_code(module):
    """Test servers and the fault proxy live in tests/support, never in what users install."""
    assert ".testing" not in module
    mod = importlib.import_module(module)
    assert "tests" not in (getattr(mod, "__file__", "") or "").split("/")[-3:-1]
