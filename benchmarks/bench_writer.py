# ruff: noqa: E501
"""B4: chunk-aligned parallel writer vs dask.array.to_hdf5 vs a single-process h5py loop,
plus alternative (b): one shard file per task stitched by a virtual dataset.

All contenders write the same normalize-like float32 array (frames of 512x1024, storage
chunks of 4 frames, gzip level 1 + shuffle), in one process run.

The source is a cheap deterministic Dask expression: a pool of ``POOL`` distinct blocks of
Poisson noise is generated once, before any timing (persisted on the cluster workers for
the cluster contenders, a NumPy array in this process for the others), and block ``i`` of
the source is ``pool[i % POOL] * (1 + i * 1e-6)`` (distinct bytes in every chunk, the
compressibility of noisy normalized frames). Each contender's "generation" time is
measured separately (computing the source on the same scheduler and discarding it), and
the table reports the total write time and the time excluding generation
(total - generation; generation is a few percent of the total).

    python benchmarks/bench_writer.py --gib 2      # the B4 size (5 interleaved rounds), writes results/B4.md
    python benchmarks/bench_writer.py --gib 0.25   # quick
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import dask
import dask.array as da
import h5py
import numpy as np
import xarray as xr

from basinflow.storage.writer import write_dataset

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "B4.md"
FRAME = (512, 1024)
PER_CHUNK = 4
POOL = 8
CHUNKS = (PER_CHUNK, *FRAME)

sys.path.insert(0, str(HERE))
from common import MIN_ROUNDS, Stats, machine_info, write_report  # noqa: E402 - after the path insert


def make_pool() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.poisson(50, (POOL * PER_CHUNK, *FRAME)) / 3.0).astype("float32")


def source(pool: da.Array, gib: float) -> da.Array:
    """``pool`` (one Dask block per storage chunk) tiled to ``gib``, each block distinct."""
    n = max(POOL, int(gib * 2**30 / (4 * PER_CHUNK * FRAME[0] * FRAME[1])))
    blocks = [
        pool[(i % POOL) * PER_CHUNK : (i % POOL + 1) * PER_CHUNK] * np.float32(1 + i * 1e-6)
        for i in range(n)
    ]
    return da.concatenate(blocks)


# --- contenders ----------------------------------------------------------------------------------
def ours(a, path):
    with h5py.File(path, "w") as f:
        write_dataset(f, xr.Dataset({"v": (("i", "y", "x"), a)}), window=4)


def to_hdf5(a, path):
    with dask.config.set(scheduler="threads", num_workers=2):
        da.to_hdf5(
            path, "/v", a, chunks=CHUNKS, compression="gzip", compression_opts=1, shuffle=True
        )


def loop(a, path):
    with h5py.File(path, "w") as f, dask.config.set(scheduler="sync"):
        d = f.create_dataset(
            "v",
            a.shape,
            "float32",
            chunks=CHUNKS,
            compression="gzip",
            compression_opts=1,
            shuffle=True,
        )
        for i in range(0, a.shape[0], PER_CHUNK):
            d[i : i + PER_CHUNK] = a[i : i + PER_CHUNK].compute()


def shards_vds(a, path):
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
        layout[i * PER_CHUNK : (i + 1) * PER_CHUNK] = h5py.VirtualSource(p, "v", CHUNKS)
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("v", layout)


def _drop(b):
    return np.zeros((1, 1, 1), "float32")


def generation(a, where: str, client) -> float:
    """Seconds to compute every block of ``a`` on a contender's scheduler, discarding it."""
    tiny = a.map_blocks(_drop, chunks=(1, 1, 1), dtype="float32")
    t0 = time.perf_counter()
    if where == "cluster":
        client.compute(tiny).result()
    elif where == "threads":
        tiny.compute(scheduler="threads", num_workers=2)
    else:
        with dask.config.set(scheduler="sync"):
            for i in range(0, a.shape[0], PER_CHUNK):
                a[i : i + PER_CHUNK].compute()
    return time.perf_counter() - t0


def _load(v) -> str:
    return "/".join(f"{x:.1f}" for x in v)


CONTENDERS = {
    "ours": ("parallel direct-chunk writer (ours, 2 workers)", ours, "cluster"),
    "vds": ("shard per task + VDS (alternative b, 2 workers)", shards_vds, "cluster"),
    "to_hdf5": ("dask.array.to_hdf5 (2 threads, lock)", to_hdf5, "threads"),
    "loop": ("single-process h5py loop", loop, "sync"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--contenders", default="ours,vds,to_hdf5,loop")
    ap.add_argument("--out", default=str(RESULTS), help="markdown file to write ('' = none)")
    ap.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds (>= 5); medians are reported"
    )
    ap.add_argument("--tmp", default=None, help="directory for the outputs (default: system temp)")
    args = ap.parse_args()
    command = "python " + " ".join(
        shlex.quote(x) for x in [os.path.relpath(sys.argv[0]), *sys.argv[1:]]
    )
    from distributed import Client, LocalCluster

    t_start = time.perf_counter()
    load0 = os.getloadavg()
    pool_np = make_pool()
    rows = []
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cl,
        Client(cl) as client,
    ):
        pool_cluster = da.from_array(pool_np, chunks=CHUNKS).persist()  # lives on the workers
        sources = {
            "cluster": source(pool_cluster, args.gib),
            "threads": source(da.from_array(pool_np, chunks=CHUNKS), args.gib),
        }
        sources["sync"] = sources["threads"]
        nbytes = sources["threads"].nbytes
        runs: dict[str, list] = {}
        keys = args.contenders.split(",")
        loads = []
        if args.rounds < MIN_ROUNDS:
            raise SystemExit(f"--rounds must be at least {MIN_ROUNDS}")
        for key in keys:  # warm-up, the same for every contender: a small write each
            name, fn, where = CONTENDERS[key]
            tmp = tempfile.mkdtemp(prefix="bench-writer-", dir=args.tmp)
            fn(sources[where][: 4 * PER_CHUNK], os.path.join(tmp, "out.h5"))
            shutil.rmtree(tmp)
        for rnd in range(args.rounds):  # interleaved, so a change in machine load hits all
            loads.append(os.getloadavg()[0])
            for key in keys[rnd % len(keys) :] + keys[: rnd % len(keys)]:
                name, fn, where = CONTENDERS[key]
                a = sources[where]
                gen = generation(a, where, client)
                tmp = tempfile.mkdtemp(prefix="bench-writer-", dir=args.tmp)
                path = os.path.join(tmp, "out.h5")
                t0 = time.perf_counter()
                fn(a, path)
                dt = time.perf_counter() - t0
                size = sum(os.path.getsize(os.path.join(tmp, x)) for x in os.listdir(tmp))
                runs.setdefault(key, []).append((dt, gen, size))
                print(
                    f"round {rnd + 1} {name}: {dt:.2f} s (generation alone {gen:.2f} s) "
                    f"load {_load(os.getloadavg())}",
                    file=sys.stderr,
                    flush=True,
                )
                shutil.rmtree(tmp)
        for key, rs in runs.items():
            wall = Stats(tuple(r[0] for r in rs))
            gen = Stats(tuple(r[1] for r in rs)).median
            rows.append((key, CONTENDERS[key][0], wall, gen, rs[-1][2]))
    base = next((r for r in rows if r[0] == "to_hdf5"), None)
    gib = nbytes / 2**30
    lines = [
        "# B4: chunk-aligned parallel writer vs dask.array.to_hdf5 vs h5py loop",
        "",
        f"- machine: {machine_info()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- command: `{command}`",
        f"- data: {gib:.2f} GiB float32, {sources['threads'].shape[0]} frames of {FRAME[0]}x{FRAME[1]}, "
        f"storage chunks {CHUNKS}, gzip level 1 + shuffle; normalize-like noise (Poisson(50)/3); "
        f"whole run {time.perf_counter() - t_start:.0f} s",
        f"- load average (1, 5, 15 min) at start {_load(load0)}, at end {_load(os.getloadavg())} "
        f"({os.cpu_count()} cores; a load above the core count means other processes shared the CPUs)",
        "- total = the timed write, source computed inside it (cheap: pool block x scalar); "
        "excl. generation = total - the time to compute the same source alone on the same scheduler",
        f"- method: benchmarks/common.py: a small warm-up write per contender, {args.rounds} rounds "
        f"(order rotated each round), median (min-max), ratios of medians; 1-min load before "
        f"each round {Stats(tuple(loads)).fmt(digits=1)}",
        "",
        "| writer | total s, median (min-max) | generation alone s (median) | excl. generation s | GiB/s (uncompressed, total) | bytes on disk | vs to_hdf5 (total) | vs to_hdf5 (excl. generation) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _key, name, wall, gen, size in rows:
        dt = wall.median
        net = max(dt - gen, 1e-9)
        vs = f"{base[2].median / dt:.2f}x" if base else "n/a"
        vs_net = f"{(base[2].median - base[3]) / net:.2f}x" if base else "n/a"
        lines.append(
            f"| {name} | {wall.fmt(digits=2)} | {gen:.2f} | {net:.2f} | {gib / dt:.2f} | {size / 2**20:,.0f} MiB | {vs} | {vs_net} |"
        )
    if base:
        ours_row = next((r for r in rows if r[0] == "ours"), None)
        if ours_row:
            ratio = base[2].median / ours_row[2].median
            lines += [
                "",
                f"Target ours >= 1.7x to_hdf5 (total): {ratio:.2f}x -> {'met' if ratio >= 1.7 else '**not met**'}",
            ]
    text = "\n".join(lines) + "\n"
    write_report(text, args.out)


if __name__ == "__main__":
    main()
