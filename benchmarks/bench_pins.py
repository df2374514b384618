"""What each pin part costs (``storage/pins.py``), locally and over HTTP (B10).

For a sample NeXus scan (~1 MiB) and a ~1 GiB frame file (2,048 unfiltered 512x512
uint16 frames, one chunk each, plus counters), by the method of ``benchmarks/common.py``:
the identity (``stat`` / ``HEAD``), the sampled ``content_id``, the HDF5 ``layout``
digest and the full ``digest``. Over HTTP (the loopback aiohttp server of the tests) the
requests and bytes one call costs are counted by the server. The local full digest of a
file just written is what hashing at write time would cost (the file is in the page
cache then, as it is here after the warm-up).

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
