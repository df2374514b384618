# ruff: noqa: E501
"""B4: chunk-aligned parallel writer vs dask.array.to_hdf5 vs a single-process h5py loop,
plus alternative (b): one shard file per task stitched by a virtual dataset.

    python benchmarks/bench_writer.py --gib 2      # the B4 size
    python benchmarks/bench_writer.py --gib 0.25   # quick
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

import dask
import dask.array as da
import h5py
import numpy as np
import xarray as xr

from basinflow.storage.writer import write_dataset

FRAME = (512, 1024)


def data(gib: float) -> da.Array:
    n = max(8, int(gib * 2**30 / (4 * FRAME[0] * FRAME[1])))

    # normalize-like: smooth signal + Poisson-ish noise, float32, 4 frames per chunk
    def block(i):
        rng = np.random.default_rng(i)
        return (rng.poisson(50, (4, *FRAME)) / 3.0).astype("float32")

    blocks = [
        da.from_delayed(dask.delayed(block)(i), (4, *FRAME), "float32") for i in range(n // 4)
    ]
    return da.concatenate(blocks)


def ours(a, path, client):
    with h5py.File(path, "w") as f:
        write_dataset(f, xr.Dataset({"v": (("i", "y", "x"), a)}), window=4)


def to_hdf5(a, path, client):
    with dask.config.set(scheduler="threads", num_workers=2):
        da.to_hdf5(
            path, "/v", a, chunks=(4, *FRAME), compression="gzip", compression_opts=1, shuffle=True
        )


def loop(a, path, client):
    with h5py.File(path, "w") as f, dask.config.set(scheduler="sync"):
        d = f.create_dataset(
            "v",
            a.shape,
            "float32",
            chunks=(4, *FRAME),
            compression="gzip",
            compression_opts=1,
            shuffle=True,
        )
        for i in range(0, a.shape[0], 4):
            d[i : i + 4] = a[i : i + 4].compute()


def shards_vds(a, path, client):
    d = os.path.dirname(path)

    def shard(blk, i):
        p = os.path.join(d, f"shard{i:05d}.h5")
        with h5py.File(p, "w") as f:
            f.create_dataset(
                "v",
                data=blk,
                chunks=blk.shape,
                compression="gzip",
                compression_opts=1,
                shuffle=True,
            )
        return p

    tasks = [dask.delayed(shard)(b, i) for i, b in enumerate(a.to_delayed().ravel())]
    files = dask.compute(*tasks)
    layout = h5py.VirtualLayout(a.shape, "float32")
    for i, p in enumerate(files):
        layout[i * 4 : (i + 1) * 4] = h5py.VirtualSource(p, "v", (4, *FRAME))
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("v", layout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2.0)
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    a = data(args.gib)
    rows = []
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cl,
        Client(cl) as client,
    ):
        for name, fn, use_client in (
            ("parallel direct-chunk writer (ours, 2 workers)", ours, True),
            ("shard per task + VDS (alternative b, 2 workers)", shards_vds, True),
            ("dask.array.to_hdf5 (2 threads, lock)", to_hdf5, False),
            ("single-process h5py loop", loop, False),
        ):
            tmp = tempfile.mkdtemp(prefix="bench-writer-")
            path = os.path.join(tmp, "out.h5")
            t0 = time.perf_counter()
            if use_client:
                fn(a, path, client)
            else:
                with dask.config.set(scheduler="threads"):
                    import distributed

                    with distributed.client.temp_default_client(None) if False else _nullctx():
                        fn(a, path, None)
            dt = time.perf_counter() - t0
            size = sum(os.path.getsize(os.path.join(tmp, x)) for x in os.listdir(tmp))
            rows.append((name, dt, size))
            shutil.rmtree(tmp)
    base = next(dt for n, dt, _ in rows if n.startswith("dask.array.to_hdf5"))
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"h5py {h5py.__version__}, HDF5 {h5py.version.hdf5_version}; date {time.strftime('%Y-%m-%d')}"
    )
    print(f"command: python {' '.join(sys.argv)}; data {a.nbytes / 2**30:.2f} GiB float32\n")
    print("| writer | seconds | GiB/s (uncompressed) | bytes on disk | vs to_hdf5 |")
    print("|---|---|---|---|---|")
    for name, dt, size in rows:
        print(
            f"| {name} | {dt:.2f} | {a.nbytes / 2**30 / dt:.2f} | {size / 2**20:.0f} MiB | {base / dt:.2f}x |"
        )


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


if __name__ == "__main__":
    main()
