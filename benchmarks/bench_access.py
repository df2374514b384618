"""B2: bytes, requests and seconds per access pattern over S3 and HTTP, basinflow vs h5py.

Run: ``.venv/bin/python -m benchmarks.bench_access [--scans 50] [--rounds 5] [--out FILE]``.

Three access patterns on NeXus files (one HDF5 file per scan, one gzip frame per chunk):
(a) listing plus summaries of every scan, (b) one frame, (c) a whole scan; and (d) the
listing plus summaries of ``--local-scans`` scans on local disk. Contenders, each in the
best configuration a competent user would write:

* ``basinflow``: ``Repository(...)`` (a new one per call, so nothing is cached across calls);
* ``h5py + fsspec defaults``: ``h5py.File(fsspec.open(url).open())``;
* ``h5py + fsspec tuned``: the same with ``block_size=8192, cache_type="blockcache"`` (HDF5
  reads its metadata in small pieces; small cached blocks fetch little beyond them).

Timing follows :mod:`benchmarks.common` (warm-up call per contender, ``--rounds``
interleaved rounds, median with min and max, ratios of medians, load recorded); fsspec's
filesystem instances are cleared before every call, so every call starts cold on the data.
Bytes and requests are counted at the server (the HTTP server's ``/__stats__``; a counting
reverse proxy in front of moto for S3), both separate processes on loopback.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import fsspec
import h5py
import numpy as np

import basinflow as bf
from basinflow import samples
from benchmarks.common import (
    Run,
    header,
    human_bytes,
    interleaved,
    markdown_table,
    stderr,
    write_report,
)
from tests.support import servers

TEMPLATE = samples.TEMPLATES["nexus"]
FRAMES = "entry/data/data"
FRAME = 5  # the frame read in case (b)
TUNED = {"block_size": 8192, "cache_type": "blockcache"}
CONTENDERS = ("basinflow", "h5py + fsspec defaults", "h5py + fsspec tuned")


def _fresh_fsspec():
    # fsspec caches filesystem instances (and their listings, sessions, connections): start
    # each call cold. basinflow's subclasses (storage/fs.py EXTENSIONS) have caches of their
    # own, which clearing fsspec's classes leaves alone: clear those too
    from basinflow.storage import fs

    for proto in ("http", "s3"):
        fsspec.get_filesystem_class(proto).clear_instance_cache()
        fs.filesystem_class(f"{proto}://x").clear_instance_cache()


def counted(server, fn: Callable[[], object]) -> Callable[[], dict]:
    """``fn`` from cold fsspec caches, returning what the server saw (bytes, requests)."""

    def go():
        _fresh_fsspec()
        if server is not None:
            server.reset()
        fn()
        return server.stats() if server is not None else {"bytes": 0, "requests": 0}

    return go


# --- basinflow --------------------------------------------------------------------------
def ours(root: str, options: dict, proposal: str, scan: str) -> dict[str, Callable]:
    def repo():
        return bf.Repository(f"{root}/{TEMPLATE}", storage_options=options)

    def listing():
        r = repo()
        n = 0
        for p in r.proposals():
            for k in r[p].scans():
                r[p][k].summary  # noqa: B018
                n += 1
        return n

    # (b) and (c) start from a Scan object: the listing is case (a)
    return {
        "a": listing,
        "b": lambda: repo()[proposal][scan].raw.frames[FRAME].values,
        "c": lambda: repo()[proposal][scan].raw.frames.values,
    }


# --- the baselines a user would pick ------------------------------------------------------
def baseline(root: str, options: dict, proposal: str, scan: str, open_kw: dict) -> dict:
    def files():
        fs, path = fsspec.core.url_to_fs(f"{root}/nexus", **options)
        # fs.glob(".../*/*.h5") finds nothing over HTTP (fsspec takes directory links for
        # files), so list level by level, as a user would after that surprise
        found = sorted(
            f
            for d in fs.ls(path.rstrip("/") + "/", detail=False)
            for f in fs.ls(d.rstrip("/") + "/", detail=False)
            if f.endswith(".h5")
        )
        if not found:
            raise RuntimeError(f"baseline listing found nothing under {root}/nexus")
        proto = root.split("://", 1)[0]
        return [p if "://" in p else f"{proto}://{p}" for p in found]

    def open_(url):
        # the file's options (block size, cache) go to fs.open; fsspec.open would hand them
        # to the filesystem's constructor, where S3 rejects and HTTP ignores them
        fs, path = fsspec.core.url_to_fs(url, **options)
        return fs.open(path, "rb", **open_kw)

    def listing():
        urls = files()
        for url in urls:
            with open_(url) as fo, h5py.File(fo, "r") as f:
                summarise(f)
        return len(urls)

    url = f"{root}/nexus/{proposal}/{scan}.h5"

    def read(sel):
        def go():
            with open_(url) as fo, h5py.File(fo, "r") as f:
                return f[FRAMES][sel]

        return go

    return {"a": listing, "b": read(FRAME), "c": read(())}


def summarise(f: h5py.File) -> None:
    """What basinflow's summary holds: frames shape and dtype, title, positioner ranges."""
    e = f["entry"]
    _ = (f[FRAMES].shape, f[FRAMES].dtype, e["title"][()])
    for name in ("theta", "tth", "delay"):
        v = e[f"instrument/{name}/value"][()]
        _ = (np.min(v), np.max(v))


def contenders(root, options, proposal, scan) -> dict[str, dict[str, Callable]]:
    return {
        "basinflow": ours(root, options, proposal, scan),
        "h5py + fsspec defaults": baseline(root, options, proposal, scan, {}),
        "h5py + fsspec tuned": baseline(root, options, proposal, scan, TUNED),
    }


def measure(server, fns: dict[str, dict[str, Callable]], rounds: int, scheme: str) -> dict:
    """Per case: one interleaved run of every contender."""
    out = {}
    for case in "abc":
        out[case] = interleaved(
            {name: counted(server, f[case]) for name, f in fns.items()},
            rounds=rounds,
            log=lambda m, c=case: stderr(f"{scheme} ({c}) {m}"),
        )
    return out


def local_summaries(root: Path, rounds: int) -> Run:
    """(d): listing + summaries of every scan under ``root`` on local disk.

    ``basinflow`` runs with its summary cache (catalog/summaries.py), which the warm-up
    call fills: the figure is a listing of unchanged files, as in every listing after the
    first. ``basinflow, no cache`` (``BASINFLOW_CACHE=off``) is the first listing, or
    every listing of files that all changed."""
    uri = root.as_uri()
    fns = contenders(uri, {}, "", "")

    def uncached():
        before = os.environ.get("BASINFLOW_CACHE")
        os.environ["BASINFLOW_CACHE"] = "off"
        try:
            return fns["basinflow"]["a"]()
        finally:
            if before is None:
                del os.environ["BASINFLOW_CACHE"]
            else:
                os.environ["BASINFLOW_CACHE"] = before

    return interleaved(
        {
            "basinflow": counted(None, fns["basinflow"]["a"]),
            "basinflow, no cache": counted(None, uncached),
            "h5py (local files)": counted(None, lambda: _h5py_local(root)),
        },
        rounds=rounds,
        log=lambda m: stderr(f"local (d) {m}"),
    )


def _h5py_local(root: Path) -> int:
    n = 0
    for path in sorted((root / "nexus").glob("*/*.h5")):
        with h5py.File(path, "r") as f:
            summarise(f)
        n += 1
    return n


def reference(local: Path, proposal: str, scan: str) -> dict:
    path = local / "nexus" / proposal / f"{scan}.h5"
    with h5py.File(path) as f:
        info = f[FRAMES].id.get_chunk_info(FRAME)
    return {"file": path.stat().st_size, "chunk": info.size}


def _generate(local: Path, spec) -> None:
    """One simulated scan copied to every name: the bytes on the wire are what B2 counts,
    and simulating 50 distinct scans would take most of the time budget."""
    import shutil

    first_p, first_scans = next(iter(spec.proposals.items()))
    one = samples.SampleSpec(
        proposals={first_p: first_scans[:1]}, ntheta=spec.ntheta, layouts=spec.layouts
    )
    samples.generate(local, one)
    src = local / "nexus" / first_p / f"{first_scans[0]}.h5"
    for p, scans in spec.proposals.items():
        (local / "nexus" / p).mkdir(parents=True, exist_ok=True)
        for k in scans:
            dst = local / "nexus" / p / f"{k}.h5"
            if dst != src:
                shutil.copyfile(src, dst)
    samples.write_index(local)


def _spec(nscans: int, ntheta: int) -> samples.SampleSpec:
    per = nscans // 2
    return samples.SampleSpec(
        proposals={
            "2024-01": tuple(f"{i:04d}" for i in range(1, per + 1)),
            "2024-02": tuple(f"{i}" for i in range(1, nscans - per + 1)),
        },
        ntheta=ntheta,
        layouts=("nexus",),
    )


def run(nscans: int = 50, ntheta: int = 11, rounds: int = 5, local_scans: int = 2000) -> str:
    spec = _spec(nscans, ntheta)
    proposal, scan = "2024-01", "0003"
    results = {}
    with tempfile.TemporaryDirectory(prefix="basinflow-b2-") as tmp:
        # basinflow's summary cache in the run's own directory (it serves local scans only)
        os.environ["BASINFLOW_CACHE"] = str(Path(tmp) / "cache")
        local = Path(tmp) / "remote"
        t0 = time.perf_counter()
        _generate(local, spec)
        stderr(f"generated {nscans} scans in {time.perf_counter() - t0:.1f} s")
        ref = reference(local, proposal, scan)
        with servers.http_server(local) as http:
            results["HTTP"] = measure(
                http, contenders(http.url, {}, proposal, scan), rounds, "HTTP"
            )
        with servers.s3_server() as s3, servers.proxy(s3.url) as px:
            servers.upload(local, "s3://raw/b2", servers.s3_options(s3.url))
            opts = servers.s3_options(px.url)
            results["S3"] = measure(
                px, contenders("s3://raw/b2", opts, proposal, scan), rounds, "S3"
            )
        d = None
        if local_scans:
            many = Path(tmp) / "many"
            _generate(many, _spec(local_scans, 1))
            time.sleep(2.5)  # the cache records only files that rested 2 s (SETTLE_NS)
            d = local_summaries(many, rounds)
    return report(results, ref, nscans, spec, d, local_scans)


def report(results: dict, ref: dict, nscans: int, spec, d: Run | None, local_scans: int) -> str:
    names = {"a": f"(a) list + {nscans} summaries", "b": "(b) one frame", "c": "(c) whole scan"}
    rows = []
    verdicts = []
    for scheme, cases in results.items():
        for case, run in cases.items():
            for name in CONTENDERS:
                st = run[name].result
                rows.append(
                    [
                        scheme,
                        names[case],
                        name,
                        human_bytes(st["bytes"]),
                        st["requests"],
                        run[name].wall.fmt(),
                        f"{run.ratio(name, 'basinflow'):.2f}x",
                    ]
                )
            ours_b = run["basinflow"].result["bytes"]
            tuned = run["h5py + fsspec tuned"]
            t_ratio = run.ratio("h5py + fsspec tuned", "basinflow")
            b_ratio = tuned.result["bytes"] / ours_b if ours_b else float("inf")
            met = b_ratio >= 1 and (case == "b" or t_ratio >= 1)
            verdicts.append(
                f"- {scheme} {names[case]}: tuned baseline / basinflow = {t_ratio:.2f}x time, "
                f"{b_ratio:.2f}x bytes -> {'met' if met else '**not met**'}"
            )
        verdicts.append(f"- {scheme}: {next(iter(cases.values())).load_line()}")
    lines = [
        *header(
            "B2: bytes, requests and seconds per access pattern",
            [
                f"- data: {nscans} NeXus scans ({spec.nframes} frames of 195x487 uint32, one "
                f"gzip frame per chunk); scan file {human_bytes(ref['file'])}, frame {FRAME}'s "
                f"compressed chunk {human_bytes(ref['chunk'])}",
                "- bytes are response bodies counted at the server; seconds are wall time of "
                "the whole pattern from a new Repository / a new fsspec file object",
            ],
        ),
        markdown_table(
            rows,
            [
                "server",
                "case",
                "contender",
                "bytes",
                "requests",
                "wall s, median (min-max)",
                "time vs basinflow",
            ],
        ),
        "",
        "Targets (basinflow at most the tuned baseline's time and bytes; one frame: its bytes):",
        *verdicts,
    ]
    if d is not None:
        lines += [
            "",
            f"(d) listing + summaries of {local_scans} scans on local disk: basinflow "
            f"**{d['basinflow'].wall.fmt()} s** (summary cache warm: files unchanged since "
            f"the last listing), **{d['basinflow, no cache'].wall.fmt()} s** without the "
            f"cache (a first listing); plain h5py over the same files "
            f"{d['h5py (local files)'].wall.fmt()} s (target basinflow <= 2 s). "
            f"{d.load_line()}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scans", type=int, default=50)
    ap.add_argument("--ntheta", type=int, default=11, help="theta steps (x4 delays = frames)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--local-scans", type=int, default=2000, help="(d); 0 to skip")
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    write_report(run(a.scans, a.ntheta, a.rounds, a.local_scans), a.out)


if __name__ == "__main__":
    main()
