"""B8: Bitshuffle-LZ4 detector frames, basinflow's direct chunk path vs h5py + hdf5plugin.

An Eiger-like scan (uint32 frames of 2162 x 2068 pixels, sparse Poisson counts with gap rows
at 2**32 - 1, one frame per chunk, Bitshuffle-LZ4 as LIMA writes it) is read whole by

* **h5py + hdf5plugin**: ``ds[i:i + k]`` slabs of whole chunks (the best a user writes:
  chunk-aligned reads, no per-frame calls), one thread (libhdf5 serialises anyway);
* **basinflow**: the scan's ``H5Array`` (``storage/hdf5.py``: chunk bytes by ``pread``,
  decoded by ``storage/codecs.py``: the ``bitshuffle`` library's C decoder after a compiled
  check of the block headers), one thread, and
  through Dask with 2 threads (no global HDF5 lock on this path).

Method (benchmarks/common.py ``interleaved``): every contender warmed once (imports, numba
JIT, page cache), then >= 5 rounds in rotated order; median with min and max; the ratio of
medians. Bytes: what each
reads from the file (compressed chunk bytes) against the decoded size.

Usage::

    .venv/bin/python benchmarks/bench_codecs.py [--frames 16] [--rounds 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from basinflow.storage.hdf5 import H5Array
from benchmarks.common import (
    human_bytes,
    interleaved,
    machine_info,
    markdown_table,
    now,
    write_report,
)

SHAPE = (2162, 2068)


def make(path: Path, frames: int) -> None:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            "entry/data",
            shape=(frames, *SHAPE),
            dtype="uint32",
            chunks=(1, *SHAPE),
            **hdf5plugin.Bitshuffle(cname="lz4"),
        )
        for i in range(frames):
            frame = rng.poisson(0.3, SHAPE).astype("uint32")
            frame[513:551, :] = np.iinfo(np.uint32).max  # a module gap
            frame[:, 1029:1039] = np.iinfo(np.uint32).max
            ds[i] = frame


def run(frames: int, rounds: int) -> str:
    import dask
    import dask.array as da

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "eiger.h5"
        make(path, frames)
        url = "file://" + str(path)
        arr = H5Array(url, "/entry/data", (frames, *SHAPE), np.uint32, (1, *SHAPE)).with_index()
        assert arr.codec == "bslz4"
        f = h5py.File(path)
        ds = f["entry/data"]
        slab = 4

        def h5py_read():
            out = np.empty(ds.shape, ds.dtype)
            for i in range(0, frames, slab):
                out[i : i + slab] = ds[i : i + slab]
            return out

        def ours_1():
            out = np.empty(arr.shape, arr.dtype)
            for i in range(0, frames, slab):
                out[i : i + slab] = arr[i : i + slab]
            return out

        def ours_2():
            x = da.from_array(arr, chunks=(slab, *SHAPE), asarray=True, lock=False)
            with dask.config.set(scheduler="threads", num_workers=2):
                return x.compute()

        contenders = {
            "h5py + hdf5plugin": h5py_read,
            "basinflow, 1 thread": ours_1,
            "basinflow, 2 threads (dask)": ours_2,
        }
        truth = h5py_read()
        for fn in contenders.values():  # values checked equal before any timing
            np.testing.assert_array_equal(fn(), truth)
        del truth
        run = interleaved(contenders, rounds=rounds)
        f.close()
        compressed = int(arr.index.sizes.sum())
    decoded = frames * SHAPE[0] * SHAPE[1] * 4
    base = "h5py + hdf5plugin"
    rows = []
    for name, timing in run.timings.items():
        wall, cpu = timing.wall, timing.cpu
        rows.append(
            [
                name,
                round(wall.median, 3),
                round(wall.min, 3),
                round(wall.max, 3),
                round(cpu.median, 3),
                round(decoded / wall.median / 2**20),
                round(run.ratio(base, name), 2),
                human_bytes(compressed),
            ]
        )
    table = markdown_table(
        rows,
        [
            "contender",
            "median s",
            "min s",
            "max s",
            "CPU s",
            "MiB/s decoded",
            "x h5py",
            "bytes read",
        ],
    )
    return (
        f"# B8: Bitshuffle-LZ4 frames, direct chunk path vs h5py + hdf5plugin\n\n"
        f"{now()}; {machine_info()}; {run.load_line()}\n\n"
        f"Command: `.venv/bin/python benchmarks/bench_codecs.py --frames {frames} "
        f"--rounds {rounds}`\n\n{frames} frames of {SHAPE[0]}x{SHAPE[1]} uint32 "
        f"({human_bytes(decoded)} decoded, {human_bytes(compressed)} compressed, "
        f"{decoded / compressed:.1f}x); the method of benchmarks/common.py (one warm-up each, "
        f"{rounds} rounds in rotated order, medians); values checked equal to h5py's.\n\n{table}\n"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    write_report(run(a.frames, a.rounds), a.out)


if __name__ == "__main__":
    main()
