"""B1 / B1b / B1c: RSM gridding, basinflow vs xrayutilities, warm against warm.

Every contender is timed by the method of :mod:`benchmarks.common` (warmed the same way,
at least 5 interleaved rounds, median with min and max, ratios of medians, load recorded).

B1   the same frames (in memory) and the same Q grid: xrayutilities (``Ang2Q.area`` +
     ``Gridder3D``) with 1 and with 2 OpenMP threads vs the ``rsm`` recipe on one core
     (synchronous scheduler) and on 2 threads; the kernel alone (one task's work on the
     same frames) in ns per pixel, split into binning (pixel -> Q -> bin index, SIMD) and
     the rest (the scatter into the grid and the sparse partial). With ``--scale-frames``,
     1 vs 2 single-threaded worker processes that read a larger scan from an HDF5 file.
B1b  end to end from a gzip-compressed NeXus scan on local disk (``basinflow.samples``,
     one frame per chunk): the catalog's cook vs reading and decompressing the same frames
     with h5py (the floor), and vs h5py + xrayutilities.
B1c  small scans: a warm cook (open the scan in the catalog, build, compute) of scans of
     1 to 64 frames; the fixed cost is the intercept of a line fitted to the medians.

Usage::

    .venv/bin/python -m benchmarks.bench_rsm [--frames 400] [--b1b-frames 200]
        [--scale-frames 2000] [--rounds 5] [--skip-cluster] [--skip-b1b] [--skip-b1c]
        [--out benchmarks/results/B1.md]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import dask
import dask.array as da
import h5py
import numpy as np
import xarray as xr
from numba import njit

from basinflow import samples
from basinflow.recipes import get_recipe, kernels, rsm_gridding, rsm_setup
from basinflow.recipes import rsm as rsm_module
from benchmarks.common import header, interleaved, markdown_table, stderr, write_report

QSIZE = (100, 100, 100)
B1B_QSIZE = (50, 50, 50)  # per delay group: 4 partial grids per task
SHAPE = (195, 487)
RSM = get_recipe("rsm")


def frames_and_columns(n: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Float32 Poisson frames of a theta rocking scan through the film (002) reflection."""
    rng = np.random.default_rng(seed)
    frames = rng.poisson(2.0, size=(n, *SHAPE)).astype(np.float32)
    tth = samples.bragg_two_theta(samples.film_q()[2])
    theta = tth / 2 + np.linspace(-0.4, 0.4, n)
    return frames, {"theta": theta, "tth": np.full(n, tth)}


def raw_from_memory(frames, columns, chunk=20) -> xr.Dataset:
    data = da.from_array(frames, chunks=(chunk, -1, -1))
    return xr.Dataset(
        {"frames": (("index", "y", "x"), data)} | {k: ("index", v) for k, v in columns.items()}
    )


def _read_rows(path: str, start: int, stop: int) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["frames"][start:stop]


def raw_from_h5(path: str, columns, n: int, chunk: int = 40) -> xr.Dataset:
    """Frames read lazily inside the workers (as the catalog does), ``chunk`` per task."""
    blocks = [
        da.from_delayed(
            dask.delayed(_read_rows)(path, s, min(s + chunk, n)),
            shape=(min(s + chunk, n) - s, *SHAPE),
            dtype=np.float32,
        )
        for s in range(0, n, chunk)
    ]
    data = da.concatenate(blocks, axis=0)
    return xr.Dataset(
        {"frames": (("index", "y", "x"), data)} | {k: ("index", v) for k, v in columns.items()}
    )


def xu_grid(frames, columns, cooked, threads: int, shape=SHAPE, qsize=QSIZE):
    """xrayutilities as its documentation shows it: Ang2Q.area, then Gridder3D."""
    import xrayutilities as xu

    xu.config.NTHREADS = threads
    spice = samples.rsm_spice(shape)
    qconv = xu.QConversion(["x+"], ["x+"], spice["beamDirection"])
    hx = xu.HXRD(
        spice["beamDirection"],
        spice["sampleNormal"],
        en=spice["beamEnergy"],
        qconv=qconv,
        sampleor=spice["sampleFaceUp"],
    )
    hx.Ang2Q.init_area(
        *spice["imageAxes"],
        *spice["imageCenter"],
        *spice["imageSize"],
        distance=spice["imageDistance"],
        pwidth1=0.172,
        pwidth2=0.172,
    )
    qx, qy, qz = hx.Ang2Q.area(columns["theta"], columns["tth"])
    g = xu.Gridder3D(*qsize)
    g.dataRange(
        *[
            v
            for d in ("qx", "qy", "qz")
            for v in (cooked[d].attrs["qmin"], cooked[d].attrs["qmax"])
        ],
        fixed=True,
    )
    g(qx, qy, qz, frames)
    return g.data, g._gnorm


# --- the kernel alone -------------------------------------------------------------------
class KernelCase:
    """One task's work on in-memory frames, and its binning half alone (for the profile)."""

    def __init__(self, frames, columns, chunk: int = 40):
        n = frames.shape[0]
        raw = raw_from_memory(frames, columns)
        spice = rsm_module.RsmSpice(**samples.rsm_spice(SHAPE), qsize=QSIZE)
        setup = rsm_module.Setup(raw, spice, n)
        grid = rsm_module.build_grid(setup, spice)
        self.params = np.concatenate(
            [setup.a.reshape(n, 9), setup.b, np.ones((n, 1)), np.zeros((n, 1))], axis=1
        )
        self.mask = np.zeros(SHAPE, dtype=bool)
        self.units = grid.bin_units()
        self.kw = {
            "nd": 3,
            "ngroups": 1,
            "nbins": grid.nbins,
            "units": self.units,
            "dirs_key": setup.dirs_key,
        }
        self.chunks = [frames[s : s + chunk] for s in range(0, n, chunk)]
        self.pixels = frames.size

    def task(self):
        return rsm_gridding.grid_chunks(self.chunks, self.params, self.mask, **self.kw)

    def binning(self):
        rows, step2, inorm, jf = rsm_setup.detector_pixels(self.kw["dirs_key"])
        a, b = rsm_gridding.folded(self.params, 3, self.units)
        start = 0
        for frames in self.chunks:
            m = frames.shape[0]
            _bin_all(
                frames, self.mask, a[start : start + m], b[start : start + m], rows, step2,
                inorm, jf, self.units.umax, self.units.stride,
            )  # fmt: skip
            start += m


@njit(nogil=True)
def _bin_all(frames, mask, a, b, rows, step2, inorm, jf, umax, stride):
    """The kernel's binning pass over every row and frame, without the scatter."""
    m, n1, n2 = frames.shape
    idx = np.empty(n2, np.int64)
    vals = np.empty(n2)
    c = np.empty(3)
    e = np.empty(3)
    for i in range(n1):
        p = rows[i]
        for f in range(m):
            for d in range(3):
                c[d] = a[f, d, 0] * p[0] + a[f, d, 1] * p[1] + a[f, d, 2] * p[2]
                e[d] = a[f, d, 0] * step2[0] + a[f, d, 1] * step2[1] + a[f, d, 2] * step2[2]
            kernels._bin_row(
                frames[f, i], inorm[i], mask[i], jf, c, e, b[f], umax, stride, 1.0, -1, idx, vals
            )


# --- B1 ------------------------------------------------------------------------------------
def b1(n: int, rounds: int) -> list[str]:
    spice = {"rsm": samples.rsm_spice(SHAPE)}
    frames, columns = frames_and_columns(n)
    mb = frames.nbytes / 1e6
    raw = raw_from_memory(frames, columns)
    cooked = RSM.cook(raw, spice, qsize=QSIZE)
    kc = KernelCase(frames, columns)
    run = interleaved(
        {
            "xu1": lambda: xu_grid(frames, columns, cooked, 1),
            "xu2": lambda: xu_grid(frames, columns, cooked, 2),
            "bf1": lambda: cooked.compute(scheduler="sync"),
            "bf2": lambda: cooked.compute(scheduler="threads", num_workers=2),
            "kernel": kc.task,
            "binning": kc.binning,
        },
        rounds=rounds,
        log=stderr,
    )
    result = run["bf1"].result
    xu_data, xu_counts = run["xu1"].result
    same = bool(np.array_equal(result.counts.values, xu_counts))
    filled = xu_counts > 0
    close = bool(np.allclose(result.intensity.values[filled], xu_data[filled], rtol=1e-10))
    ns = 1e9 / kc.pixels
    names = {
        "xu1": "xrayutilities Ang2Q.area + Gridder3D, 1 thread",
        "xu2": "xrayutilities Ang2Q.area + Gridder3D, 2 threads",
        "bf1": "basinflow rsm cook, 1 core (sync scheduler)",
        "bf2": "basinflow rsm cook, 2 threads (threaded scheduler)",
    }
    rows = [
        [
            label,
            run[k].wall.fmt(),
            f"{mb / run[k].wall.median:.0f}",
            run[k].cpu.fmt(),
            f"{run[k].wall.median * ns:.2f}",
            f"{run.ratio('xu1', k):.1f}x",
            f"{run.ratio('xu2', k):.1f}x",
        ]
        for k, label in names.items()
    ]
    kernel_ns, binning_ns = run["kernel"].cpu.median * ns, run["binning"].cpu.median * ns
    return [
        "### B1: RSM gridding of the same frames on the same grid (in memory)",
        "",
        f"{n} x {SHAPE[0]} x {SHAPE[1]} float32 frames ({mb:.0f} MB, {kc.pixels / 1e6:.1f} M "
        f"pixels), 3-D grid {QSIZE}, rocking scan of the sample geometry. Bin-for-bin "
        f"agreement with xrayutilities: counts identical = {same}, intensities equal "
        f"(rtol 1e-10) = {close}. {run.load_line()}.",
        "",
        markdown_table(
            rows,
            [
                "contender",
                "wall s, median (min-max)",
                "MB/s",
                "CPU s, median (min-max)",
                "ns/pixel (wall)",
                "vs xu 1 thread",
                "vs xu 2 threads",
            ],
        ),
        "",
        f"- per core, warm against warm: basinflow **{run.ratio('xu1', 'bf1'):.1f}x** "
        f"xrayutilities by wall time ({run.ratio('xu1', 'bf1', cpu=True):.1f}x by CPU time); "
        f"2 threads each: **{run.ratio('xu2', 'bf2'):.1f}x** (target per core >= 15x, "
        "goal 25x)",
        f"- kernel alone (one task's work, 1 core, CPU time): **{kernel_ns:.2f} ns/pixel** "
        f"({run['kernel'].cpu.fmt(ns, 2)}) (target <= 1 ns/pixel); of which binning (pixel "
        f"-> Q -> bin index, SIMD) {binning_ns:.2f} ns and the scatter into the grid plus the "
        f"sparse partial {kernel_ns - binning_ns:.2f} ns; xrayutilities (1 thread) "
        f"{run['xu1'].cpu.median * ns:.1f} ns/pixel",
    ]


def scaling(n: int, workdir: Path, rounds: int) -> list[str]:
    """1 vs 2 single-threaded worker processes on ``n`` frames the workers read themselves."""
    from distributed import Client, LocalCluster

    spice = {"rsm": samples.rsm_spice(SHAPE)}
    tth = samples.bragg_two_theta(samples.film_q()[2])
    columns = {"theta": tth / 2 + np.linspace(-0.4, 0.4, n), "tth": np.full(n, tth)}
    path = workdir / "frames.h5"
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("frames", shape=(n, *SHAPE), dtype=np.float32, chunks=(1, *SHAPE))
        for s in range(0, n, 200):
            e = min(s + 200, n)
            ds[s:e] = rng.poisson(2.0, size=(e - s, *SHAPE)).astype(np.float32)
    mb = n * SHAPE[0] * SHAPE[1] * 4 / 1e6
    raw_h5 = raw_from_h5(str(path), columns, n)
    cooked = RSM.cook(raw_h5, spice, qsize=QSIZE)
    total = raw_h5.frames.data.sum()
    kw = {"threads_per_worker": 1, "processes": True, "dashboard_address": ":0"}
    with (
        LocalCluster(n_workers=1, **kw) as c1,
        Client(c1) as k1,
        LocalCluster(n_workers=2, **kw) as c2,
        Client(c2) as k2,
    ):
        run = interleaved(
            {
                "cook1": lambda: k1.compute(cooked).result(),
                "cook2": lambda: k2.compute(cooked).result(),
                "read1": lambda: k1.compute(total).result(),
                "read2": lambda: k2.compute(total).result(),
            },
            rounds=rounds,
            warmup=2,  # every worker loads the kernels (merges included)
            log=stderr,
        )
    same = bool(np.array_equal(run["cook1"].result.counts, run["cook2"].result.counts))
    labels = {
        "cook1": "rsm cook, 1 worker x 1 thread",
        "cook2": "rsm cook, 2 workers x 1 thread",
        "read1": "only reading the frames (sum), 1 worker",
        "read2": "only reading the frames (sum), 2 workers",
    }
    rows = [[v, run[k].wall.fmt(), f"{mb / run[k].wall.median:.0f}"] for k, v in labels.items()]
    return [
        "### B1 scaling: local process cluster, frames read by the workers",
        "",
        f"{n} x {SHAPE[0]} x {SHAPE[1]} float32 frames ({mb:.0f} MB, uncompressed HDF5, "
        f"read in 40-frame tasks), 3-D grid {QSIZE}; results of 1 and 2 workers identical: "
        f"{same}. {run.load_line()}.",
        "",
        markdown_table(rows, ["run", "wall s, median (min-max)", "MB/s"]),
        "",
        f"Scaling 1 -> 2 workers: **{run.ratio('cook1', 'cook2'):.2f}x** (target >= 1.8x); "
        f"reading alone scales {run.ratio('read1', 'read2'):.2f}x on this machine.",
    ]


# --- B1b ------------------------------------------------------------------------------------
def _sample_scan(root: Path, ntheta: int, name: str = "1"):
    import basinflow as bf

    spec = samples.SampleSpec(proposals={"bench": (name,)}, ntheta=ntheta, layouts=("nexus",))
    samples.generate(root, spec)
    repo = bf.Repository(f"{root.as_uri()}/nexus/{{proposal}}/{{scan}}.h5#entry")
    return spec, root / "nexus" / "bench" / f"{name}.h5", repo


def b1b(n: int, workdir: Path, rounds: int) -> list[str]:
    spec, path, repo = _sample_scan(workdir / "samples", max(1, n // 4))
    size_mb = path.stat().st_size / 1e6
    scan = repo["bench"]["1"]
    spice = {"rsm": samples.rsm_spice(spec.detector_shape)}

    def read_only():
        total = 0
        with h5py.File(path, "r") as f:
            ds = f["entry/data/data"]
            for i in range(ds.shape[0]):
                total += int(ds[i][0, 0])
        return total

    def h5py_xu(threads):
        with h5py.File(path, "r") as f:
            e = f["entry"]
            frames = e["data/data"][()]
            cols = {k: e[f"instrument/{k}/value"][()] for k in ("theta", "tth")}
        return xu_grid(frames, cols, cooked_1, threads, spec.detector_shape, B1B_QSIZE)

    def cook(scheduler, **kw):
        out = RSM.cook(scan.raw, spice, qsize=B1B_QSIZE, group_by="delay")
        return out.compute(scheduler=scheduler, **kw)

    def read_dask(scheduler, **kw):
        return float(scan.raw.frames.data[:, 0, 0].sum().compute(scheduler=scheduler, **kw))

    cooked_1 = RSM.cook(scan.raw, spice, qsize=B1B_QSIZE)  # the range xrayutilities uses
    run = interleaved(
        {
            "floor": read_only,
            "read": lambda: read_dask("sync"),
            "cook": lambda: cook("sync"),
            "xu1": lambda: h5py_xu(1),
            "read2": lambda: read_dask("threads", num_workers=2),
            "cook2": lambda: cook("threads", num_workers=2),
            "xu2": lambda: h5py_xu(2),
        },
        rounds=rounds,
        log=stderr,
    )
    raw_mb = spec.nframes * SHAPE[0] * SHAPE[1] * 4 / 1e6
    labels = {
        "floor": "h5py read + decompress, frame by frame, 1 thread (the floor)",
        "read": "catalog raw read (Dask, sync)",
        "cook": "catalog raw + rsm cook per delay (Dask, sync)",
        "xu1": "h5py read + xrayutilities (all frames, no groups), 1 thread",
        "read2": "catalog raw read (Dask, 2 threads)",
        "cook2": "catalog raw + rsm cook per delay (Dask, 2 threads)",
        "xu2": "h5py read + xrayutilities, 2 threads",
    }
    rows = [
        [v, run[k].wall.fmt(), f"{raw_mb / run[k].wall.median:.0f}", run[k].cpu.fmt()]
        for k, v in labels.items()
    ]
    return [
        "### B1b: end-to-end cook of a compressed scan vs reading it",
        "",
        f"{spec.nframes} uint32 frames ({raw_mb:.0f} MB raw, {size_mb:.0f} MB gzip-1 + shuffle "
        f"on disk, one frame per HDF5 chunk), rsm per delay on a {B1B_QSIZE} grid (4 grids). "
        f"{run.load_line()}.",
        "",
        markdown_table(rows, ["run", "wall s, median (min-max)", "raw MB/s", "CPU s"]),
        "",
        f"- cook / floor: **{run.ratio('cook', 'floor'):.2f}x** (1 core; target <= 1.1x); "
        f"cook / catalog read {run.ratio('cook', 'read'):.2f}x; with 2 threads cook / read "
        f"{run.ratio('cook2', 'read2'):.2f}x",
        f"- vs h5py + xrayutilities, end to end: **{run.ratio('xu1', 'cook'):.1f}x** "
        f"(1 thread each), **{run.ratio('xu2', 'cook2'):.1f}x** (2 threads each); "
        "xrayutilities grids all frames into one map, basinflow one map per delay",
    ]


# --- B1c ------------------------------------------------------------------------------------
def b1c(workdir: Path, rounds: int, nthetas=(1, 2, 4, 16)) -> list[str]:
    """Warm cooks of small scans from file: open in the catalog, build, compute (sync)."""
    spice = {"rsm": samples.rsm_spice(SHAPE)}
    scans = {}
    for ntheta in nthetas:
        spec, _, repo = _sample_scan(workdir / f"small-{ntheta}", ntheta)
        scans[spec.nframes] = repo

    def cook(repo):
        def go():
            scan = repo["bench"]["1"]
            return RSM.cook(scan.raw, spice, qsize=(50, 50, 50)).compute(scheduler="sync")

        return go

    run = interleaved(
        {str(n): cook(repo) for n, repo in scans.items()}, rounds=rounds, warmup=2, log=stderr
    )
    x = np.array(list(scans), float)
    y = np.array([run[str(n)].wall.median for n in scans])
    slope, intercept = np.polyfit(x, y, 1)
    cpu_slope, cpu_intercept = np.polyfit(x, [run[str(n)].cpu.median for n in scans], 1)
    rows = [[n, run[str(n)].wall.fmt(1e3, 1), run[str(n)].cpu.fmt(1e3, 1)] for n in scans]
    return [
        "### B1c: small scans, warm cook from file (catalog open + build + compute, sync)",
        "",
        f"Scans of 195 x 487 uint32 gzip frames, rsm on a 50^3 grid. {run.load_line()}.",
        "",
        markdown_table(rows, ["frames", "wall ms, median (min-max)", "CPU ms"]),
        "",
        f"Linear fit to the medians: **{intercept * 1e3:.1f} ms fixed** + "
        f"{slope * 1e3:.2f} ms per frame (target fixed <= 20 ms); by CPU time "
        f"{cpu_intercept * 1e3:.1f} ms fixed + {cpu_slope * 1e3:.2f} ms per frame.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=400, help="B1 frames (default 400)")
    parser.add_argument("--b1b-frames", type=int, default=200, help="B1b frames (default 200)")
    parser.add_argument(
        "--scale-frames", type=int, default=2000, help="frames for the 1 vs 2 workers run"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-b1", action="store_true")
    parser.add_argument("--skip-cluster", action="store_true", help="B1 without LocalCluster")
    parser.add_argument("--skip-b1b", action="store_true")
    parser.add_argument("--skip-b1c", action="store_true")
    parser.add_argument("--out", default="", help="markdown file to write")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-rsm-"))
    try:
        lines = header("B1: RSM benchmarks (B1, B1b, B1c)")
        if not args.skip_b1:
            lines += [*b1(args.frames, args.rounds), ""]
        if not args.skip_cluster:
            lines += [*scaling(args.scale_frames, workdir, args.rounds), ""]
        if not args.skip_b1b:
            lines += [*b1b(args.b1b_frames, workdir, args.rounds), ""]
        if not args.skip_b1c:
            lines += [*b1c(workdir, args.rounds), ""]
        write_report("\n".join(lines), args.out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
