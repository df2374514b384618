"""What each pin part costs (``storage/pins.py``), locally and over HTTP (B10).

For a sample NeXus scan (~1 MiB) and a ~1 GiB frame file (2,048 unfiltered 512x512
uint16 frames, one chunk each, plus counters), by the method of ``benchmarks/common.py``:
the identity (``stat`` / ``HEAD``), the sampled ``content_id``, the HDF5 ``layout``
digest and the full ``digest``. Over HTTP (the loopback aiohttp server of the tests) the
requests and bytes one call costs are counted by the server. Then what recording the
full digest at write time costs: ``write_output`` of a cooked float32 referrer (gzip level
1, as cooks write) with and without ``record_digest``, committed to local disk.

    python -m benchmarks.bench_pins [--rounds 5] [--big-rounds 5] \
        [--out benchmarks/results/B10.md]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from basinflow import samples
from basinflow.storage import pins
from benchmarks.common import header, interleaved, markdown_table, stderr, write_report
from tests.support import servers


def _big_file(path: Path, frames: int = 2048) -> float:
    """A ~1 GiB scan-like file; returns the seconds writing it took."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 1000, (512, 512), dtype="u2")
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        ds = entry.create_dataset("frames", (frames, 512, 512), "u2", chunks=(1, 512, 512))
        for i in range(frames):
            ds[i] = frame + i
        for name in ("monitor", "theta", "delta", "time"):
            entry[name] = rng.random(frames)
        entry.attrs["energy"] = 9.5
    return time.perf_counter() - t0


def _write_costs(root: Path, mib: int, rounds: int) -> tuple[list, str]:
    """Rows for ``write_output`` with and without the recorded digest."""
    import xarray as xr

    from basinflow.tasks.outputs import write_output

    n = max(1, mib * 2**20 // (512 * 512 * 4))
    rng = np.random.default_rng(1)
    data = (rng.random((n, 512, 512), dtype="f4") * 100).round(1)
    cooked = xr.Dataset({"norm": (("index", "y", "x"), data)})
    out = root / "out"

    def write(record: bool, name: str) -> int:
        return write_output(
            (out / name).as_uri(), cooked, basins=[], provenance={}, record_digest=record
        )

    run = interleaved(
        {
            "without": lambda: write(False, "plain.h5"),
            "with record": lambda: write(True, "recorded.h5"),
        },
        rounds=rounds,
        log=stderr,
    )
    size = run["with record"].result
    label = f"write_output, {n} frames float32 ({size / 2**20:.0f} MiB on disk)"
    rows = [
        [label, "local", name, run[name].wall.fmt(1e3, 1), ""]
        for name in ("without", "with record")
    ]
    rows.append(
        [label, "local", "ratio of medians", f"{run.ratio('with record', 'without'):.3f}", ""]
    )
    return rows, f"- {label}: {run.load_line()}"


def _contenders(url: str) -> dict:
    return {
        "identity": lambda: pins.identity(url),
        "content_id": lambda: pins.content_id(url),
        "layout": lambda: pins.layout_id(url),
        "digest": lambda: pins.digest(url),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--big-rounds", type=int, default=5)
    ap.add_argument("--frames", type=int, default=2048, help="frames of the big file")
    ap.add_argument("--write-mib", type=int, default=256, help="size of the written referrer")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    rows, notes = [], []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
        root = Path(d)
        samples.generate(
            root / "site", samples.SampleSpec(proposals={"p1": ("1",)}, layouts=("nexus",))
        )
        scan = sorted((root / "site" / "nexus").rglob("*.h5"))[0]
        os.link(scan, root / "scan.h5")
        wrote = _big_file(root / "big.h5", a.frames)
        notes.append(
            f"- writing the big file took {wrote:.1f} s (h5py, one frame per call, "
            "page cache: no fsync)"
        )
        with servers.http_server(root) as server:
            for label, name, rounds in (
                ("sample scan", "scan.h5", a.rounds),
                ("big file", "big.h5", a.big_rounds),
            ):
                size = (root / name).stat().st_size
                for where, url in (("local", str(root / name)), ("HTTP", f"{server.url}/{name}")):
                    stderr(f"{label} {where}")
                    run = interleaved(_contenders(url), rounds=rounds, log=stderr)
                    for part in ("identity", "content_id", "layout", "digest"):
                        cost = ""
                        if where == "HTTP":
                            server.reset()
                            _contenders(url)[part]()
                            st = server.stats()
                            cost = f"{st['requests']} req, {st['bytes'] / 1024:.0f} KiB"
                        rows.append(
                            [
                                f"{label} ({size / 2**20:.1f} MiB)",
                                where,
                                part,
                                run[part].wall.fmt(1e3, 1),
                                cost,
                            ]
                        )
                    notes.append(f"- {label}, {where}: {run.load_line()}")
        (root / "big.h5").unlink()
        stderr("write_output")
        more, note = _write_costs(root, a.write_mib, a.rounds)
        rows += more
        notes.append(note)
    text = "\n".join(
        [
            *header("B10: what each pin part costs"),
            markdown_table(rows, ["file", "where", "pin part", "ms (min-max)", "one call"]),
            "",
            *notes,
            "",
        ]
    )
    write_report(text, a.out)


if __name__ == "__main__":
    main()
