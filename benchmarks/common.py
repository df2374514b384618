"""Helpers every benchmark shares: the timing method, a machine description, tables.

The method (every benchmark that times contenders uses :func:`interleaved`):

* every contender is warmed the same way before any timing (``warmup`` untimed calls each:
  kernels compiled, caches and pages filled, thread pools started), so none pays a
  first-call cost the others do not;
* then ``rounds`` (at least 5) rounds; in each round every contender runs once, in an order
  rotated from round to round, so a change in the shared machine's load hits all alike;
* each contender is summarised by the median of its rounds with min and max (wall and this
  process's CPU time), and comparisons are ratios of medians;
* the machine's load average is recorded before every round and reported with the run:
  this machine is shared, and a load above the core count means other processes had the
  CPUs part of the time.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

KEY_PACKAGES = (
    "basinflow",
    "numpy",
    "numba",
    "h5py",
    "hdf5plugin",
    "xrayutilities",
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


MIN_ROUNDS = 5


@dataclass(frozen=True)
class Stats:
    """Median, min and max of a contender's rounds."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def fmt(self, scale: float = 1.0, digits: int = 3) -> str:
        """``median (min-max)`` after multiplying by ``scale``."""
        m, lo, hi = (v * scale for v in (self.median, self.min, self.max))
        return f"{m:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


@dataclass
class Timing:
    """Wall and CPU seconds of one contender over the rounds, plus its last result."""

    wall: Stats
    cpu: Stats
    result: object = None


@dataclass
class Run:
    """What :func:`interleaved` measured: per contender timings and the load per round."""

    timings: dict[str, Timing]
    rounds: int
    warmup: int
    loads: list[float] = field(default_factory=list)  # 1-min load average before each round

    def __getitem__(self, name: str) -> Timing:
        return self.timings[name]

    def ratio(self, slower: str, faster: str, *, cpu: bool = False) -> float:
        """``median(slower) / median(faster)``: how many times faster ``faster`` is."""
        a, b = self.timings[slower], self.timings[faster]
        if cpu:
            return a.cpu.median / b.cpu.median
        return a.wall.median / b.wall.median

    def load_line(self) -> str:
        return (
            f"load average (1 min) over {self.rounds} interleaved rounds after {self.warmup} "
            f"warm-up call(s) per contender: {Stats(tuple(self.loads)).fmt(digits=1)} on "
            f"{os.cpu_count()} cores (median (min-max))"
        )


def interleaved(
    contenders: Mapping[str, Callable[[], object]],
    *,
    rounds: int = MIN_ROUNDS,
    warmup: int = 1,
    log: Callable[[str], None] | None = None,
) -> Run:
    """Time ``contenders`` by the method in this module's docstring.

    ``contenders`` maps a name to a callable taking no arguments; each is called ``warmup``
    times untimed, then once per round, the order rotated by one each round.
    """
    if rounds < MIN_ROUNDS:
        raise ValueError(f"at least {MIN_ROUNDS} rounds, got {rounds}")
    names = list(contenders)
    last: dict[str, object] = {}
    for _ in range(warmup):
        for name in names:
            last[name] = contenders[name]()
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    loads = []
    for r in range(rounds):
        loads.append(os.getloadavg()[0])
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            c, t = time.process_time(), time.perf_counter()
            last[name] = contenders[name]()
            walls[name].append(time.perf_counter() - t)
            cpus[name].append(time.process_time() - c)
            if log:
                log(f"round {r + 1}/{rounds} {name}: {walls[name][-1]:.3f} s")
    return Run(
        timings={
            n: Timing(Stats(tuple(walls[n])), Stats(tuple(cpus[n])), last.get(n)) for n in names
        },
        rounds=rounds,
        warmup=warmup,
        loads=loads,
    )


def stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def header(title: str, extra: Sequence[str] = ()) -> list[str]:
    """The lines every report starts with: title, machine, date, command, load now."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    cmd = " ".join([Path(sys.executable).name, *sys.argv])
    return [
        f"## {title}",
        "",
        f"- machine: {machine_info()}",
        f"- date: {now()}",
        f"- command: `{cmd}`",
        f"- load average (1, 5, 15 min) at start: {load} ({os.cpu_count()} cores, shared "
        "with other engineers' work)",
        *extra,
        "",
    ]


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
