"""What fsync around the atomic rename costs (``storage/commit.py``).

Side by side in one process: an output committed by :func:`atomic_output` (fsync of the
file, rename, fsync of the directory) against the same write committed by a bare rename
(what a crash-unsafe writer does), for small referrers (1 MiB) and large outputs
(64 MiB), interleaved rounds, medians with min and max.

    python -m benchmarks.bench_commit [--rounds 5] [--out benchmarks/results/B9.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from basinflow.storage.commit import atomic_output
from benchmarks.common import machine_info, markdown_table, now, write_report


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def with_fsync(directory: str, data: bytes, i: int) -> None:
    with atomic_output(os.path.join(directory, f"a{i}.h5")) as tmp:
        _write(tmp, data)


def bare_rename(directory: str, data: bytes, i: int) -> None:
    tmp = os.path.join(directory, f".b{i}.partial")
    _write(tmp, data)
    os.replace(tmp, os.path.join(directory, f"b{i}.h5"))


def _ms(values: list[float]) -> str:
    lo, mid, hi = (v * 1e3 for v in (min(values), statistics.median(values), max(values)))
    return f"{mid:.1f} ({lo:.1f}-{hi:.1f})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    rows = []
    for label, size, files in (("1 MiB referrer", 2**20, 20), ("64 MiB output", 64 * 2**20, 2)):
        data = os.urandom(size)
        times: dict[str, list[float]] = {"fsync": [], "bare": []}
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
            with_fsync(d, data, -1)  # warm both the same way
            bare_rename(d, data, -1)
            for r in range(a.rounds):
                for name, fn in (("fsync", with_fsync), ("bare", bare_rename)):
                    t0 = time.perf_counter()
                    for i in range(files):
                        fn(d, data, r * files + i)
                    times[name].append((time.perf_counter() - t0) / files)
        ratio = statistics.median(times["fsync"]) / statistics.median(times["bare"])
        rows.append([label, _ms(times["fsync"]), _ms(times["bare"]), round(ratio, 2)])
    text = (
        f"# B9: fsync around the atomic rename\n\n{now()}; {machine_info()}\n\n"
        + markdown_table(rows, ["output", "fsync ms/file (min-max)", "bare ms/file", "ratio"])
        + "\n"
    )
    write_report(text, a.out)


if __name__ == "__main__":
    main()
