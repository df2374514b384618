"""B2: bytes and requests fetched from S3 and HTTP, basinflow vs plain h5py over fsspec.

Run: ``.venv/bin/python -m benchmarks.bench_access [--scans 50] [--out FILE]``.

Three access patterns on NeXus files (one HDF5 file per scan, one gzip frame per chunk):
(a) listing plus summaries of every scan, (b) one frame, (c) a whole scan. The baseline is
what a user would write instead: ``h5py.File(fsspec.open(url).open())`` with fsspec's
defaults (glob for the listing). Everything is counted at the server: the HTTP server's
``/__stats__``, and a counting reverse proxy in front of moto's S3 server. Both run as
separate processes on loopback.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import fsspec
import h5py
import numpy as np

import basinflow as bf
from basinflow import samples
from benchmarks.common import human_bytes, machine_info, markdown_table, now
from tests.support import servers

TEMPLATE = samples.TEMPLATES["nexus"]
FRAMES = "entry/data/data"
FRAME = 5  # the frame read in case (b)
TARGET_SUMMARY = 64 * 1024


def _measure(server, fn):
    server.reset()
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    s = server.stats()
    return s["bytes"], s["requests"], dt


def _fresh_fsspec():
    # fsspec caches filesystem instances (and their listings): start each case cold
    fsspec.filesystem("http").clear_instance_cache()


# --- basinflow --------------------------------------------------------------------------
def ours(root: str, options: dict, proposal: str, scan: str, server) -> dict:
    out = {}

    def listing():
        repo = bf.Repository(f"{root}/{TEMPLATE}", storage_options=options)
        n = 0
        for p in repo.proposals():
            for k in repo[p].scans():
                repo[p][k].summary  # noqa: B018
                n += 1
        out["nscans"] = n

    _fresh_fsspec()
    out["a"] = _measure(server, listing)

    def one_frame_setup():
        repo = bf.Repository(f"{root}/{TEMPLATE}", storage_options=options)
        return repo[proposal][scan]

    _fresh_fsspec()
    s = one_frame_setup()  # listing is case (a); count from the scan on
    out["b"] = _measure(server, lambda: s.raw.frames[FRAME].values)
    _fresh_fsspec()
    s = one_frame_setup()
    out["c"] = _measure(server, lambda: s.raw.frames.values)
    return out


# --- the baseline a user would pick -----------------------------------------------------------
def baseline(root: str, options: dict, proposal: str, scan: str, server) -> dict:
    out = {}

    def listing():
        fs, path = fsspec.core.url_to_fs(f"{root}/nexus", **options)
        # fs.glob(".../*/*.h5") finds nothing over HTTP (fsspec takes directory links for
        # files), so list level by level, as a user would after that surprise
        files = sorted(
            f
            for d in fs.ls(path.rstrip("/") + "/", detail=False)
            for f in fs.ls(d.rstrip("/") + "/", detail=False)
            if f.endswith(".h5")
        )
        if not files:
            raise RuntimeError(f"baseline glob found nothing under {root}/nexus")
        proto = root.split("://", 1)[0]
        for p in files:
            url = p if "://" in p else f"{proto}://{p}"
            with fsspec.open(url, "rb", **options) as fo, h5py.File(fo, "r") as f:
                e = f["entry"]
                _ = (f[FRAMES].shape, f[FRAMES].dtype, e["title"][()])
                for name in ("theta", "tth", "delay"):
                    v = e[f"instrument/{name}/value"][()]
                    _ = (np.min(v), np.max(v))
        out["nscans"] = len(files)

    _fresh_fsspec()
    out["a"] = _measure(server, listing)
    url = f"{root}/nexus/{proposal}/{scan}.h5"

    def read(sel):
        def go():
            with fsspec.open(url, "rb", **options) as fo, h5py.File(fo, "r") as f:
                return f[FRAMES][sel]

        return go

    _fresh_fsspec()
    out["b"] = _measure(server, read(FRAME))
    _fresh_fsspec()
    out["c"] = _measure(server, read(()))
    return out


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


def run(nscans: int = 50, ntheta: int = 11) -> str:
    per = nscans // 2
    spec = samples.SampleSpec(
        proposals={
            "2024-01": tuple(f"{i:04d}" for i in range(1, per + 1)),
            "2024-02": tuple(f"{i}" for i in range(1, nscans - per + 1)),
        },
        ntheta=ntheta,
        layouts=("nexus",),
    )
    proposal, scan = "2024-01", "0003"
    with tempfile.TemporaryDirectory(prefix="basinflow-b2-") as tmp:
        local = Path(tmp)
        t0 = time.perf_counter()
        _generate(local, spec)
        print(f"generated {nscans} scans in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        ref = reference(local, proposal, scan)
        results = {}
        with servers.http_server(local) as http:
            results["HTTP"] = (
                ours(http.url, {}, proposal, scan, http),
                baseline(http.url, {}, proposal, scan, http),
            )
        with servers.s3_server() as s3, servers.proxy(s3.url) as px:
            servers.upload(local, "s3://raw/b2", servers.s3_options(s3.url))
            opts = servers.s3_options(px.url)
            results["S3"] = (
                ours("s3://raw/b2", opts, proposal, scan, px),
                baseline("s3://raw/b2", opts, proposal, scan, px),
            )
    return report(results, ref, nscans, spec)


def report(results: dict, ref: dict, nscans: int, spec) -> str:
    targets = {
        "a": ("summary <= 64 KiB / scan", TARGET_SUMMARY * nscans),
        "b": ("<= 2 x chunk + metadata (64 KiB)", 2 * ref["chunk"] + 64 * 1024),
        "c": ("<= 1.1 x file", 1.1 * ref["file"]),
    }
    names = {"a": f"(a) list + {nscans} summaries", "b": "(b) one frame", "c": "(c) whole scan"}
    rows = []
    for scheme, (mine, base) in results.items():
        for case in "abc":
            b, r, dt = mine[case]
            bb, br, bdt = base[case]
            per = f" ({human_bytes(b / mine['nscans'])}/scan)" if case == "a" else ""
            label, limit = targets[case]
            rows.append(
                [
                    scheme,
                    names[case],
                    human_bytes(b) + per,
                    r,
                    f"{dt:.2f}",
                    human_bytes(bb),
                    br,
                    f"{bdt:.2f}",
                    f"{bb / b:.1f}x" if b else "-",
                    f"{label}: {'met' if b <= limit else 'MISSED'}",
                ]
            )
    headers = [
        "server",
        "case",
        "basinflow bytes",
        "requests",
        "s",
        "baseline bytes",
        "requests",
        "s",
        "baseline / basinflow bytes",
        "target",
    ]
    cmd = "python -m benchmarks.bench_access " + " ".join(sys.argv[1:])
    return "\n".join(
        [
            "## B2: bytes and requests fetched per access pattern",
            "",
            f"- machine: {machine_info()}",
            f"- date: {now()}",
            f"- command: `{cmd.strip()}`",
            f"- data: {nscans} NeXus scans ({spec.nframes} frames of 195x487 uint32, one gzip "
            f"frame per chunk); scan file {human_bytes(ref['file'])}, frame {FRAME}'s "
            f"compressed chunk {human_bytes(ref['chunk'])}",
            "- baseline: `h5py.File(fsspec.open(url).open())` with fsspec defaults "
            "(listing: `fs.ls` per directory); counted at the server (HTTP server stats; a "
            "counting reverse proxy in front of moto for S3); bytes are response bodies",
            "- (b) and (c) start from a `Scan` object (the listing is case (a)) and include "
            "its metadata, pin and chunk index reads",
            "",
            markdown_table(rows, headers),
            "",
            "Notes:",
            "- basinflow fetches 8 KiB metadata blocks (fsspec `blockcache`); with the former "
            "64 KiB blocks a summary cost ~256 KiB, with fsspec's default read-ahead the "
            "baseline reads whole files (~1.1 MiB each).",
            "- (b): the chunk itself is one exact request; the rest is one metadata read (the "
            "layout reads the summary and the chunk index through one open handle, ~24 KiB) "
            "and the pin (HEAD + 2 x 16 KiB).",
            "- basinflow makes more, smaller requests than the baseline: seconds on loopback "
            "favour the baseline; on a real WAN, bytes and per-request latency both count.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scans", type=int, default=50)
    ap.add_argument("--ntheta", type=int, default=11, help="theta steps (x4 delays = frames)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "B2.md"))
    a = ap.parse_args(argv)
    text = run(a.scans, a.ntheta)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
