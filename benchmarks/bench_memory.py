# ruff: noqa: E501
"""B6: cook a scan several times larger than a worker's memory limit on a LocalCluster.

A NeXus scan of ``--frames`` frames (195x487 uint32, gzip) is generated with
``basinflow.samples``; it is cooked with the ``rsm`` recipe (and the ``normalize`` recipe
written through the referrer writer) on ``LocalCluster(n_workers=2, threads_per_worker=1,
memory_limit=--limit)``. A background thread polls the RSS of every worker process every
50 ms; at the end each worker's ``ru_maxrss`` is read too, and the worker logs are
searched for memory warnings, pauses, spills and restarts. The baseline is what a user
would write without Dask: ``h5py`` reads the whole frames array, then NumPy sums it (run
in a subprocess, its peak RSS measured the same way).

    python benchmarks/bench_memory.py                       # 2800 frames (1.0 GiB), 256 MiB: B6
    python benchmarks/bench_memory.py --frames 400 --limit 256MiB   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dask
import numpy as np
import psutil
from dask.utils import parse_bytes

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "B6.md"
FRAME = (195, 487)
FRAME_BYTES = FRAME[0] * FRAME[1] * 4
MIB = 2**20
LOG_PATTERNS = (
    "memory use is high",
    "exceeded",
    "restart",
    "pausing",
    "paused",
    "spill",
    "killed",
    "memory limit",
)

sys.path.insert(0, str(HERE))
from common import machine_info, markdown_table, now  # noqa: E402


class RssPoller:
    """Poll the RSS of a set of pids every ``interval`` s; keep the peak of each."""

    def __init__(self, pids: list[int], interval: float = 0.05) -> None:
        self.peak = dict.fromkeys(pids, 0)
        self.interval = interval
        self._stop = threading.Event()
        self._procs = {p: psutil.Process(p) for p in pids}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, proc in self._procs.items():
                with contextlib.suppress(psutil.Error):
                    self.peak[pid] = max(self.peak[pid], proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _maxrss() -> int:
    """This process's RSS high-water mark (VmHWM), in bytes.

    Not ``ru_maxrss``: on Linux it survives fork+exec, so a worker or subprocess spawned
    from a large parent reports the parent's peak.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def generate(root: Path, frames: int) -> Path:
    import basinflow.samples as samples

    ntheta = max(1, frames // 4)
    spec = samples.SampleSpec(proposals={"p1": ("1",)}, ntheta=ntheta, layouts=("nexus",))
    marker = root / f".ntheta-{ntheta}"
    if not marker.exists():
        shutil.rmtree(root / "nexus", ignore_errors=True)
        shutil.rmtree(root / "spice", ignore_errors=True)
        samples.generate(root, spec)
        marker.touch()
    return root / "nexus" / "p1" / "1.h5"


def open_proposal(root: Path):
    import basinflow
    import basinflow.samples as samples

    repo = basinflow.Repository(
        f"file://{root}/nexus/{{proposal}}/{{scan}}.h5#entry",
        spice=f"file://{root}/spice/{{proposal}}",
        chunk_mb=16,
    )
    prop = repo["p1"]
    prop.spice.seed(
        "rsm",
        **samples.rsm_spice(),
        dims=["qx", "qy", "qz"],
        qsize=[40, 40, 80],
        group_by="delay",
        normalize_by="monitor",
    )
    prop.spice.seed("normalize", dark=0.0, flat=1.0, monitor="monitor", monitor_reference=1e5)
    return prop


def worker_state(client) -> dict[str, tuple[int, int]]:
    """worker address -> (pid, ru_maxrss bytes)."""
    pids = client.run(os.getpid)
    maxrss = client.run(_maxrss)
    return {a: (pids[a], maxrss[a]) for a in pids}


def memory_log_lines(client) -> list[str]:
    lines = []
    logs = {"scheduler": client.get_scheduler_logs(n=10_000)}
    logs.update(client.get_worker_logs(n=10_000))
    for who, entries in logs.items():
        for _level, msg in entries:
            if any(p in msg.lower() for p in LOG_PATTERNS):
                lines.append(f"{who}: {msg.splitlines()[0][:200]}")
    return lines


def run_case(name: str, client, fn) -> dict:
    """Run ``fn()`` on the cluster while polling worker RSS."""
    before = worker_state(client)
    pids = [pid for pid, _ in before.values()]
    n_logs = len(memory_log_lines(client))
    with RssPoller(pids) as poller:
        t0 = time.perf_counter()
        error = ""
        try:
            check = fn()
        except Exception as exc:  # noqa: BLE001 - a failure is a result here
            check, error = "", f"{type(exc).__name__}: {str(exc)[:150]}"
        wall = time.perf_counter() - t0
    after = worker_state(client)
    restarted = sorted(set(after) ^ set(before)) + [
        a for a in after if a in before and after[a][0] != before[a][0]
    ]
    logs = memory_log_lines(client)[n_logs:]
    return {
        "name": name,
        "wall": wall,
        "poll_peak": [poller.peak[p] for p in pids],
        "maxrss": [after[a][1] for a in sorted(after)],
        "restarted": restarted,
        "logs": logs,
        "check": check,
        "error": error,
    }


def cook_rsm(prop, nframes: int) -> str:
    import basinflow

    cooked = basinflow.cooked(prop["1"], "rsm")
    out = cooked.compute()
    counts = out["counts"].values if "counts" in out else None
    parts = [f"vars {sorted(out.data_vars)}"]
    if counts is not None and "intensity" in out:
        inten = np.asarray(out["intensity"].values, dtype=float)
        bins = counts > 0
        if inten.shape == counts.shape:
            parts.append(
                f"intensity finite in all {int(bins.sum())} filled bins: {bool(np.isfinite(inten[bins]).all())}"
            )
    if "nonfinite" in out:
        parts.append(f"nonfinite pixels {int(np.asarray(out['nonfinite'].values).sum())}")
    if counts is not None:
        parts.append(f"sum(counts) {counts.sum():.0f} of {nframes * FRAME[0] * FRAME[1]} pixels")
    return "; ".join(parts)


def cook_normalize(prop, outdir: Path, nframes: int) -> str:
    import h5py

    import basinflow

    res = basinflow.cook(
        prop["1"],
        "normalize",
        output=f"file://{outdir}/{{proposal}}/{{scan}}/{{recipe}}.h5",
        force=True,
    )
    status = getattr(res, "status", res)
    files = sorted(outdir.rglob("*.h5"))
    shapes = []
    for f in files:
        with h5py.File(f, "r") as h:
            h.visititems(
                lambda n, o, f=f: (
                    shapes.append(f"{n}{o.shape}")
                    if isinstance(o, h5py.Dataset) and o.ndim == 3
                    else None
                )
            )
    if str(status).lower().endswith("failed"):
        raise RuntimeError(
            f"cook failed: {getattr(res, 'error', '') or getattr(res, 'reason', '') or res}"
        )
    return f"status {status}; 3-D datasets {shapes[:2]}; expected {nframes} frames"


BASELINE = r"""
import sys, time, h5py, numpy as np
t0 = time.perf_counter()
with h5py.File(sys.argv[1], "r") as f:
    name = [n for n in sys.argv[2:]][0]
    a = f[name][()]
s = float(a.sum(dtype=np.float64))
hwm = [int(x.split()[1]) * 1024 for x in open("/proc/self/status") if x.startswith("VmHWM:")][0]
print(time.perf_counter() - t0, hwm, a.nbytes, s)
"""


def frames_dataset(path: Path) -> str:
    import h5py

    found = []
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda n, o: (
                found.append(n)
                if isinstance(o, h5py.Dataset) and o.ndim == 3 and o.shape[1:] == FRAME
                else None
            )
        )
    return found[0]


def run_baseline(path: Path) -> dict:
    name = frames_dataset(path)
    proc = subprocess.Popen(
        [sys.executable, "-c", BASELINE, str(path), name], stdout=subprocess.PIPE, text=True
    )
    with RssPoller([proc.pid]) as poller:
        out, _ = proc.communicate()
    wall, maxrss, nbytes, _s = out.split()
    return {
        "wall": float(wall),
        "poll_peak": poller.peak[proc.pid],
        "maxrss": int(maxrss),
        "nbytes": int(nbytes),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--frames", type=int, default=2800, help="frames in the scan (multiple of 4)")
    ap.add_argument("--limit", default="256MiB", help="memory_limit of each worker")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", type=Path, default=None, help="keep/reuse the generated scan here")
    ap.add_argument("--no-normalize", action="store_true", help="skip the normalize+writer case")
    ap.add_argument("--no-write", action="store_true", help="do not write results/B6.md")
    ap.add_argument(
        "--append", action="store_true", help="append to results/B6.md instead of replacing it"
    )
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    limit = parse_bytes(args.limit)
    root = args.data or Path(tempfile.mkdtemp(prefix="bench_memory_"))
    t0 = time.perf_counter()
    path = generate(root, args.frames)
    gen_s = time.perf_counter() - t0
    disk = path.stat().st_size
    nframes = (args.frames // 4) * 4
    raw_bytes = nframes * FRAME_BYTES
    print(
        f"scan {path} ({disk / MIB:.0f} MiB on disk, {raw_bytes / MIB:.0f} MiB raw), generated in {gen_s:.0f} s",
        flush=True,
    )

    prop = open_proposal(root)
    results = []
    with (
        dask.config.set({"distributed.worker.daemon": False}),
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=limit,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: __import__("basinflow.recipes.rsm"))  # imports count as baseline
        idle = worker_state(client)
        idle_s = ", ".join(
            f"{psutil.Process(p).memory_info().rss / MIB:.0f} MiB" for p, _ in idle.values()
        )
        print(f"worker idle RSS (basinflow imported): {idle_s}", flush=True)
        results.append(run_case("rsm (cooked.compute())", client, lambda: cook_rsm(prop, nframes)))
        print(results[-1], flush=True)
        if not args.no_normalize:
            outdir = root / "out"
            shutil.rmtree(outdir, ignore_errors=True)
            results.append(
                run_case(
                    "normalize (bf.cook, referrer writer)",
                    client,
                    lambda: cook_normalize(prop, outdir, nframes),
                )
            )
            print(results[-1], flush=True)
    base = run_baseline(path)
    print(base, flush=True)
    if args.data is None:
        shutil.rmtree(root, ignore_errors=True)

    rows = []
    for r in results:
        peak = max(r["poll_peak"] + r["maxrss"])
        ok = not r["error"] and peak <= limit and not r["restarted"]
        rows.append(
            [
                r["name"],
                ", ".join(f"{b / MIB:.0f}" for b in r["poll_peak"]),
                ", ".join(f"{b / MIB:.0f}" for b in r["maxrss"]),
                round(r["wall"], 1),
                "yes" if r["restarted"] else "no",
                len(r["logs"]),
                "PASS" if ok else "FAIL",
            ]
        )
    rows.append(
        [
            "baseline: h5py read all + numpy sum (1 process)",
            f"{base['poll_peak'] / MIB:.0f}",
            f"{base['maxrss'] / MIB:.0f}",
            round(base["wall"], 1),
            "-",
            "-",
            "-",
        ]
    )
    table = markdown_table(
        rows,
        [
            "case",
            "peak RSS per worker, polled 50 ms (MiB)",
            "VmHWM per worker (MiB)",
            "wall (s)",
            "worker restarted",
            "memory log lines",
            f"peak <= {limit / MIB:.0f} MiB",
        ],
    )
    notes = [f"- {r['name']}: {r['check'] or r['error']}" for r in results]
    for r in results:
        notes += [f"  - log: {line}" for line in r["logs"][:10]]
    cmd = "python " + " ".join(
        shlex.quote(a) for a in ["benchmarks/bench_memory.py", *sys.argv[1:]]
    )
    text = "\n".join(
        [
            "# B6: cook a scan larger than a worker's memory limit",
            "",
            f"Date: {now()}. Command: `{cmd}`.",
            "",
            f"Machine: {machine_info()}.",
            "",
            f"Scan: {nframes} frames of 195x487 uint32 = {raw_bytes / MIB:.0f} MiB uncompressed ({disk / MIB:.0f} MiB gzip on disk). "
            f"LocalCluster: {args.workers} worker processes x 1 thread, memory_limit {limit / MIB:.0f} MiB each; "
            f"scan / limit = {raw_bytes / limit:.1f}x. Worker idle RSS before the cook: "
            + idle_s
            + ". Baseline array: "
            f"{base['nbytes'] / MIB:.0f} MiB.",
            "",
            table,
            "",
            *notes,
            "",
        ]
    )
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(exist_ok=True)
        if args.append and RESULTS.exists():
            text = (
                RESULTS.read_text()
                + "\n"
                + text.replace("# B6: cook", "## B6 (another size): cook", 1)
            )
        RESULTS.write_text(text)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
