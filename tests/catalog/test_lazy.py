"""Listing and summaries are lazy, cheap and cached; ``refresh()`` invalidates.

Counted at the HTTP server (``/__stats__``: requests and response bytes), so the numbers
are what really crossed the wire.
"""

from __future__ import annotations

import h5py
import pytest

import basinflow as bf
from basinflow import samples

SUMMARY_BYTES = 64 * 1024  # per scan, the B2 target


def _scans(repo):
    return [repo[p][k] for p in repo.proposals() for k in repo[p].scans()]


@pytest.mark.parametrize("layout", list(samples.TEMPLATES))
def test_summaries_are_bounded_and_read_no_frames(http_server, sample_root, layout):
    repo = bf.Repository(f"{http_server.url}/{samples.TEMPLATES[layout]}")
    http_server.reset()
    scans = _scans(repo)
    listing = http_server.stats()
    assert listing["bytes"] < 200 * 1024  # an index file and metadata, never frames
    http_server.reset()
    n0 = len(http_server.requests())
    for scan in scans:
        assert scan.summary["frames"] > 0
    got = http_server.stats()
    assert got["bytes"] <= SUMMARY_BYTES * len(scans), got
    if layout == "nexus":  # no request touched a frame chunk's bytes
        for req in http_server.requests()[n0:]:
            if req["range"] is None or not req["path"].endswith(".h5"):
                continue
            lo, hi = (int(x) for x in req["range"].split("=")[1].split("-"))
            local = sample_root / req["path"].lstrip("/")
            chunks: list[tuple[int, int]] = []
            with h5py.File(local) as f:
                f["entry/data/data"].id.chunk_iter(
                    lambda c, out=chunks: out.append((c.byte_offset, c.byte_offset + c.size))
                )
            whole = [c for c in chunks if lo <= c[0] and c[1] <= hi + 1]
            assert not whole, f"{req} fetched whole frame chunks {whole}"


def test_listing_and_summaries_are_cached(http_server):
    repo = bf.Repository(f"{http_server.url}/{samples.TEMPLATES['nexus']}")
    scans = _scans(repo)
    for s in scans:
        s.summary  # noqa: B018
    http_server.reset()
    assert _scans(repo) == scans  # same objects, from the cache
    for s in scans:
        s.summary  # noqa: B018
    assert http_server.stats()["requests"] == 0


def test_raw_builds_a_graph_without_reading_frames(http_server):
    repo = bf.Repository(f"{http_server.url}/{samples.TEMPLATES['nexus']}")
    scan = repo["2021-05"]["0040"]
    scan.summary  # noqa: B018
    http_server.reset()
    raw = scan.raw
    built = http_server.stats()
    frame_bytes = raw.frames.dtype.itemsize * raw.frames[0].size
    # pin (size + 2 x 64 KiB content sample) and the chunk index, not the frames
    assert built["bytes"] < 3 * 64 * 1024 + 16 * 1024
    assert built["bytes"] < raw.frames.size * raw.frames.dtype.itemsize / 4
    http_server.reset()
    raw.frames[3].values  # noqa: B018
    one = http_server.stats()
    assert one["requests"] <= 2 and one["bytes"] < frame_bytes  # one compressed chunk


def test_refresh_invalidates_listing_summary_and_layout(tmp_path):
    spec = samples.SampleSpec(proposals={"p1": ("1",)}, ntheta=2, layouts=("nexus",))
    samples.generate(tmp_path, spec)
    repo = bf.Repository(f"{tmp_path.as_uri()}/nexus/{{proposal}}/{{scan}}.h5#entry")
    scan = repo["p1"]["1"]
    assert scan.summary["frames"] == 8
    samples.generate(
        tmp_path,
        samples.SampleSpec(
            proposals={"p1": ("1", "2"), "p2": ("1",)}, ntheta=3, layouts=("nexus",)
        ),
    )
    assert repo.proposals() == ["p1"]  # cached
    assert scan.summary["frames"] == 8  # cached
    assert scan.refresh().summary["frames"] == 12
    repo.refresh()
    assert repo.proposals() == ["p1", "p2"]
    assert repo["p1"].scans() == ["1", "2"]
    assert repo["p1"] is not scan.proposal  # children rebuilt after refresh


def test_the_first_scan_of_an_auto_repository_is_opened_once(http_server):
    """Layout detection and the summary read share one open of the file (one HEAD)."""
    repo = bf.Repository(f"{http_server.url}/{samples.TEMPLATES['nexus']}")
    scan = repo[repo.proposals()[0]][repo[repo.proposals()[0]].scans()[0]]
    n0 = len(http_server.requests())
    assert scan.summary["frames"] > 0 and scan.layout_name == "nexus"
    heads = [r for r in http_server.requests()[n0:] if r["method"] == "HEAD"]
    assert len(heads) == 1, heads
