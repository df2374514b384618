"""Helpers every benchmark shares: a machine description and markdown tables."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

KEY_PACKAGES = (
    "basinflow",
    "numpy",
    "h5py",
    "xarray",
    "dask",
    "fsspec",
    "s3fs",
    "aiohttp",
    "moto",
    "prefect",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> str:
    try:
        import psutil

        return f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except ImportError:
        try:
            return f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB"
        except (ValueError, OSError, AttributeError):
            return "unknown"


def package_versions(names: Iterable[str] = KEY_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine_info() -> str:
    """One paragraph: CPU model, cores, RAM, OS, Python and key package versions."""
    import h5py

    versions = package_versions()
    versions["HDF5"] = h5py.version.hdf5_version
    pkgs = ", ".join(f"{k} {v}" for k, v in versions.items())
    return (
        f"{_cpu_model()}, {os.cpu_count()} cores, {_ram_gib()} RAM; "
        f"{platform.system()} {platform.release()}; Python {sys.version.split()[0]}; {pkgs}"
    )


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def markdown_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """A GitHub markdown table; numbers right-aligned, everything else left."""

    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    def numeric(col: int) -> bool:
        vals = [r[col] for r in rows if col < len(r) and r[col] not in ("", None)]
        return bool(vals) and all(isinstance(v, int | float) for v in vals)

    align = ["---:" if numeric(i) else ":---" for i in range(len(headers))]
    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "| " + " | ".join(align) + " |",
    ]
    for r in rows:
        lines.append("| " + " | ".join(cell(v) for v in r) + " |")
    return "\n".join(lines)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def write_report(text: str, out: str | None) -> None:
    """Print a benchmark's report, and write it to ``out`` (``--out``) when given."""
    print(text)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
