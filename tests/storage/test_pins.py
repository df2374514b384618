"""Pins notice any content change: a rewrite that keeps the size and restores the mtime,
a same-size change between the sampled ends, a same-size re-upload to S3. A copy is
recognised only by a full digest (taken for referrers read as basins).
"""

from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest
import xarray as xr

import basinflow as bf
from basinflow.errors import StaleBasinError, StaleBasinWarning
from basinflow.storage import fs, pins
from basinflow.storage.referrer.basins import Basin, referrer_as_basin
from tests.storage.conftest import local
from tests.storage.test_hostile_referrers import _plain_ref
from tests.support import servers


def _contiguous_column(path: str) -> tuple[str, int, np.ndarray]:
    """A 1-d float dataset stored contiguously: (name, byte offset, values)."""
    found = []

    def visit(name, obj):
        column = isinstance(obj, h5py.Dataset) and obj.ndim == 1 and obj.dtype.kind == "f"
        if column and obj.id.get_offset() is not None and obj.size > 1:
            found.append((obj.name, obj.id.get_offset(), obj[()]))

    with h5py.File(path) as f:
        f.visititems(visit)
    assert found, "the sample scan has a contiguous 1-d column"
    return found[0]


def _rewrite_keeping_mtime(path: str, offset: int, data: bytes) -> None:
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # `touch -r`: the mtime is back
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns


def test_a_rewrite_with_the_same_size_and_mtime_is_stale(cooked):
    repo, scan, result = cooked
    raw = local(scan.path_url)
    name, offset, values = _contiguous_column(raw)
    forged = np.full_like(values, 7.2e16)
    _rewrite_keeping_mtime(raw, offset, forged.tobytes())
    with pytest.raises(StaleBasinError, match="rewritten, copied or moved") as err:
        bf.open_referrer(result.output, trusted=[repo])
    assert "ctime_ns" in str(err.value) and "re-cook" in str(err.value)
    # the control: the forged values are what an unchecked read would return
    with h5py.File(raw) as f:
        assert f[name][0] == 7.2e16


def test_a_same_size_change_between_the_sampled_ends_is_stale(tmp_path):
    dl = tmp_path / "downloads"
    dl.mkdir()
    n = 64 * 1024  # 512 KiB: far more than the 2 x 16 KiB content_id samples
    with h5py.File(dl / "raw.h5", "w") as f:
        f["a"] = np.arange(n, dtype="f8")
    basin = Basin(
        name="raw",
        type="file",
        paths=["raw.h5"],
        datasets={"a": {"path": "/a", "dims": ["i"]}},
        pin=fs.pin(str(dl / "raw.h5")),
    )
    ref = _plain_ref(dl / "ref.h5", [basin], ds=xr.Dataset({"v": ("i", np.zeros(n))}))
    assert bf.open_referrer(str(ref)).a.values[n // 2] == n // 2
    with h5py.File(dl / "raw.h5") as f:
        offset = f["a"].id.get_offset() + (n // 2) * 8
    before = pins.content_id(str(dl / "raw.h5"))
    _rewrite_keeping_mtime(str(dl / "raw.h5"), offset, np.float64(-1).tobytes())
    assert pins.content_id(str(dl / "raw.h5")) == before  # the sampled ends cannot tell
    with pytest.raises(StaleBasinError):
        bf.open_referrer(str(ref))
    with pytest.warns(StaleBasinWarning):
        assert bf.open_referrer(str(ref), check_pins=False).a.values[n // 2] == -1.0


def test_a_copied_referrer_basin_matches_by_its_full_digest(cooked, tmp_path):
    """A referrer read as a basin is pinned with a full digest: a copy (new inode and
    ctime) still matches, a same-size change in the copy does not."""
    _repo, _scan, result = cooked
    src = local(result.output)
    basin = referrer_as_basin(result.output, (tmp_path / "second.h5").as_uri())
    assert basin.pin["digest"].startswith("b2full:")
    copy = tmp_path / "copies" / "halve.h5"
    copy.parent.mkdir()
    shutil.copy(src, copy)
    basin.paths = [str(copy)]
    assert pins.verdict(basin.pin, str(copy)) == (True, "same content (full digest)")
    with open(copy, "r+b") as f:
        f.seek(os.path.getsize(copy) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    ok, why = pins.verdict(basin.pin, str(copy))
    assert not ok and why == "its content changed (full digest)"


def test_old_pins_still_need_mtime_and_sampled_content(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"x" * 100)
    now = fs.pin(str(path))
    old = {k: now[k] for k in ("size", "mtime", "content_id")}  # written before identities
    assert fs.pin_matches(old, str(path))
    os.utime(path, (1, 1))
    assert not fs.pin_matches(old, str(path))


def test_a_same_size_reupload_to_s3_is_stale(tmp_path, s3_server, s3_options):
    local_file = tmp_path / "src" / "b.h5"
    local_file.parent.mkdir()
    n = 64 * 1024
    with h5py.File(local_file, "w") as f:
        f.create_dataset("a", data=np.arange(n, dtype="f8"), chunks=(8192,))
    servers.upload(local_file.parent, "s3://pinned", s3_options)
    url = "s3://pinned/b.h5"
    basin = Basin(
        name="far",
        type="remote",
        format="s3",
        urls=[url],
        datasets={"a": {"path": "/a", "dims": ["i"]}},
        pin=fs.pin(url, s3_options),
    )
    assert basin.pin["etag"]
    ref = _plain_ref(
        tmp_path / "refs" / "ref.h5", [basin], ds=xr.Dataset({"v": ("i", np.zeros(n))})
    )
    trusted = [("s3://pinned", s3_options)]
    assert bf.open_referrer(str(ref), trusted=trusted).a.values[5] == 5.0
    with h5py.File(local_file, "a") as f:
        f["a"][n // 2] = -1.0  # same size, a change in the middle
    servers.upload(local_file.parent, "s3://pinned", s3_options)
    with pytest.raises(StaleBasinError, match="etag"):
        bf.open_referrer(str(ref), trusted=trusted)


def test_a_changed_source_of_a_basin_is_stale(tmp_path):
    """A basin's pin lists the files its frames live in (virtual dataset sources): a
    rewrite of one of them is noticed though the basin file itself is unchanged."""
    dl = tmp_path / "downloads"
    dl.mkdir()
    with h5py.File(dl / "src.h5", "w") as f:
        f["x"] = np.arange(4.0)
    with h5py.File(dl / "raw.h5", "w") as f:
        layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
        layout[:] = h5py.VirtualSource("src.h5", "x", shape=(4,))
        f.create_virtual_dataset("v", layout)
    src = (dl / "src.h5").as_uri()
    pin = {**fs.pin(str(dl / "raw.h5")), "sources": {src: fs.pin(src)}}
    basin = Basin(
        name="raw", type="file", paths=["raw.h5"], datasets={"v": {"path": "/v"}}, pin=pin
    )
    ref = _plain_ref(dl / "ref.h5", [basin], ds=xr.Dataset({"u": ("v_dim0", np.zeros(4))}))
    np.testing.assert_array_equal(bf.open_referrer(str(ref)).v.values, np.arange(4.0))
    with h5py.File(dl / "src.h5") as f:
        offset = f["x"].id.get_offset()
    _rewrite_keeping_mtime(str(dl / "src.h5"), offset, np.float64(-1).tobytes())
    with pytest.raises(StaleBasinError, match="its source") as err:
        bf.open_referrer(str(ref))
    assert "src.h5" in str(err.value)


def test_scan_pins_sample_content_only_where_cheap_or_needed(http_server, sample_root):
    """``content="auto"``: a remote file with an ETag is pinned by it alone (no 2 x 16 KiB
    ranges); a local file keeps its sampled content id (two preads)."""
    path = next((sample_root / "nexus").glob("*/*.h5"))
    url = f"{http_server.url}/{path.relative_to(sample_root).as_posix()}"
    http_server.reset()
    remote = pins.pin(url, content="auto")
    assert remote.get("etag") and "content_id" not in remote
    assert http_server.stats()["requests"] == 1  # the HEAD
    assert pins.verdict(remote, url) == (True, "same identity")
    assert "content_id" in pins.pin(str(path), content="auto")
