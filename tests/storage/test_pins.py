"""Pins notice any content change: a rewrite that keeps the size and restores the mtime,
a same-size change between the sampled ends, a same-size re-upload to S3. A copy is
recognised only by a full digest (taken for referrers read as basins).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

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
        pin=pins.pin(str(dl / "raw.h5")),
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
    now = pins.pin(str(path))
    old = {k: now[k] for k in ("size", "mtime", "content_id")}  # written before identities
    assert pins.pin_matches(old, str(path))
    os.utime(path, (1, 1))
    assert not pins.pin_matches(old, str(path))


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
        pin=pins.pin(url, s3_options),
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
    pin = {**pins.pin(str(dl / "raw.h5")), "sources": {src: pins.pin(src)}}
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


def _compressed_frames(path, n: int = 32) -> None:
    """Noisy frames in gzip chunks, one per frame, between two 256 KiB contiguous datasets,
    each written in its own session: the frames' metadata (object header, chunk index)
    lies in the middle of the file, where the content id's two 16 KiB samples do not
    reach, as in a scan file written over time."""
    rng = np.random.default_rng(7)
    with h5py.File(path, "w") as f:
        f["head"] = np.zeros(32 * 1024)
    with h5py.File(path, "a") as f:
        f.create_dataset(
            "a",
            data=rng.integers(0, 100, (n, 64, 64), dtype="u2"),
            chunks=(1, 64, 64),
            compression="gzip",
        )
        f["a"].attrs["energy"] = 9.5
    with h5py.File(path, "a") as f:
        f["tail"] = np.ones(32 * 1024)


def _chunks(path) -> list[tuple]:
    out: list[tuple] = []
    with h5py.File(path) as f:
        f["a"].id.chunk_iter(lambda c: out.append((c.chunk_offset, c.byte_offset, c.size)))
    return out


def test_a_rewritten_chunk_is_stale_where_the_server_gives_no_identity(tmp_path):
    """An HTTP server that sends neither ETag nor Last-Modified: the pin records the HDF5
    layout, which sees a same-size rewrite of a compressed chunk (HDF5 stores it in place,
    smaller); the sampled ends alone would have called it unchanged."""
    www = tmp_path / "www"
    www.mkdir()
    raw = www / "raw.h5"
    _compressed_frames(raw)
    with servers.http_server(www, validators=False) as server:
        url = f"{server.url}/raw.h5"
        pin = pins.pin(url)
        assert not set(pins.IDENTITY_KEYS) & set(pin), pin  # the server gave no identity
        assert pin["layout"].startswith("h5l:")
        basin = Basin(
            name="far",
            type="remote",
            format="http",
            urls=[url],
            datasets={"a": {"path": "/a", "dims": ["i", "y", "x"]}},
            pin=pin,
        )
        ref = _plain_ref(
            tmp_path / "refs" / "ref.h5", [basin], ds=xr.Dataset({"v": ("i", np.zeros(32))})
        )
        assert bf.open_referrer(str(ref), trusted_hosts=[server.url]).a.values[16, 0, 0] > 0
        assert pins.verdict(pin, url) == (True, "same HDF5 layout and sampled content")

        before, size, sampled = _chunks(raw), raw.stat().st_size, pins.content_id(url)
        with h5py.File(raw, "a") as f:
            f["a"][16] = 0  # recompresses smaller: stored in place, the file keeps its size
        assert raw.stat().st_size == size
        moved = [(b, a) for b, a in zip(before, _chunks(raw), strict=True) if b != a]
        assert [(b[0], a[1] == b[1], a[2] < b[2]) for b, a in moved] == [((16, 0, 0), True, True)]
        assert pins.content_id(url) == sampled  # the control: the sampled ends cannot tell
        assert pins.verdict({k: v for k, v in pin.items() if k != "layout"}, url)[0]

        assert pins.verdict(pin, url) == (
            False,
            "its HDF5 layout changed (metadata, a small dataset's values, or where a chunk "
            "is stored and how large it is)",
        )
        with pytest.raises(StaleBasinError, match="HDF5 layout changed"):
            bf.open_referrer(str(ref), trusted_hosts=[server.url])


def test_an_edited_attribute_is_stale_where_the_server_gives_no_identity(tmp_path):
    """Metadata edited in place (same size): the layout digest hashes attribute values."""
    www = tmp_path / "www"
    www.mkdir()
    _compressed_frames(www / "raw.h5")
    with servers.http_server(www, validators=False) as server:
        url = f"{server.url}/raw.h5"
        pin = pins.pin(url)
        size = (www / "raw.h5").stat().st_size
        with h5py.File(www / "raw.h5", "a") as f:
            f["a"].attrs.modify("energy", 9.6)
        assert (www / "raw.h5").stat().st_size == size
        assert pins.content_id(url) == pin["content_id"]  # the control: outside the samples
        ok, why = pins.verdict(pin, url)
        assert not ok and "HDF5 layout changed" in why


def test_a_changed_layout_spares_the_full_read(tmp_path):
    """A pin with a full digest records the layout too: when the identity changed, a
    changed layout decides without reading every byte; an unchanged one leaves it to the
    digest (a copy still matches)."""
    www = tmp_path / "www"
    www.mkdir()
    raw = www / "raw.h5"
    _compressed_frames(raw, n=256)  # ~2.3 MiB
    with servers.http_server(www) as server:
        url = f"{server.url}/raw.h5"
        pin = pins.pin(url, full=True)
        assert pin["etag"] and pin["layout"] and pin["digest"]
        with h5py.File(raw, "a") as f:
            f["a"][100] = 0
        server.reset()
        ok, why = pins.verdict(pin, url)
        assert not ok and "HDF5 layout changed" in why
        read = server.stats()["bytes"]
        assert read < raw.stat().st_size / 4, read  # metadata only, not every byte
        # a copy (another mtime, so another ETag) of the original still matches by digest
        _compressed_frames(www / "copy.h5", n=256)
        ok, why = pins.verdict(pin, f"{server.url}/copy.h5")
        assert (ok, why) == (True, "same content (full digest)")


def test_a_written_referrer_records_its_digest_for_later_pins(cooked, tmp_path):
    """The cook hashes its output before the commit and records the digest beside it;
    a later full pin takes it from there (shown by a record edited with the identity
    kept: its value is what the pin returns, so the file was not read), until the file
    changes, is copied or moved: then the pin reads every byte."""
    _repo, _scan, result = cooked
    out = local(result.output)
    record_path = out + pins.RECORD_SUFFIX
    record = json.loads(Path(record_path).read_text())
    st = os.stat(out)
    assert record["digest"] == pins.digest(out)
    assert (record["size"], record["ino"], record["ctime_ns"]) == (
        st.st_size,
        st.st_ino,
        st.st_ctime_ns,
    )
    assert pins.pin(result.output, full=True)["digest"] == record["digest"]
    marked = {**record, "digest": "b2full:" + "0" * 64}
    with open(record_path, "w") as f:
        json.dump(marked, f)
    assert pins.pin(result.output, full=True)["digest"] == marked["digest"]  # not read
    assert "digest" not in pins.pin(result.output)  # only asked for
    # a copy (with its record) is another inode: the record does not vouch for it
    copy = tmp_path / "copies" / "halve.h5"
    copy.parent.mkdir()
    shutil.copy(out, copy)
    shutil.copy(record_path, str(copy) + pins.RECORD_SUFFIX)
    assert pins.pin(str(copy), full=True)["digest"] == record["digest"]  # read, and true
    assert "digest" not in pins.pin(str(copy), full="recorded")
    # a change in place (size and mtime kept): ctime moved, the record is ignored
    middle = os.path.getsize(out) // 2
    with open(out, "rb") as f:
        f.seek(middle)
        flipped = bytes([f.read(1)[0] ^ 0xFF])
    _rewrite_keeping_mtime(out, middle, flipped)
    now = pins.pin(result.output, full=True)["digest"]
    assert now == pins.digest(out) and now not in (record["digest"], marked["digest"])


def test_a_referrer_cooked_from_a_referrer_pins_it_by_the_recorded_digest(cooked, tmp_path):
    """cook_referrer records the source's written digest in its basin pin (no full read):
    the source, copied elsewhere, still matches by it."""
    from basinflow.tasks.cooking import cook_referrer

    repo, _scan, result = cooked
    second = cook_referrer(
        result.output, "profile", (tmp_path / "second.h5").as_uri(), trusted=[repo]
    )
    assert second.status == "cooked", second.reason
    recorded = json.loads(Path(local(result.output) + pins.RECORD_SUFFIX).read_text())["digest"]
    with h5py.File(local(second.output)) as f:
        (key,) = f["basins"]
        basin = json.loads(f["basins"][key][()])
    assert basin["pin"]["digest"] == recorded
    copy = tmp_path / "moved" / "halve.h5"
    copy.parent.mkdir()
    shutil.copy(local(result.output), copy)
    assert pins.verdict(basin["pin"], str(copy)) == (True, "same content (full digest)")


def test_a_referrer_written_to_s3_records_its_digest_by_etag(s3_server, s3_options):
    """On S3 the record carries the object's ETag (asked right after the upload); a
    re-upload of other bytes has another ETag and the record is ignored."""
    from basinflow.tasks.outputs import write_output

    url = "s3://pinned/out/ref.h5"
    filesystem, _ = fs.url_to_fs(url, s3_options)
    if not filesystem.exists("pinned"):
        filesystem.mkdir("pinned")
    ds = xr.Dataset({"v": ("index", np.arange(1000.0))})
    write_output(url, ds, basins=[], provenance={}, storage_options=s3_options)
    record = json.loads(filesystem.cat_file("pinned/out/ref.h5" + pins.RECORD_SUFFIX))
    assert record["etag"] == pins.pin(url, s3_options)["etag"]
    assert record["digest"] == pins.digest(url, s3_options)
    assert pins.recorded_digest(url, s3_options) == record["digest"]
    write_output(
        url,
        ds.assign(v=ds.v * 2),
        basins=[],
        provenance={},
        storage_options=s3_options,
        record_digest=False,
    )
    assert pins.recorded_digest(url, s3_options) is None  # the old record, another ETag
    assert pins.pin(url, s3_options, full=True)["digest"] == pins.digest(url, s3_options)


def test_the_layout_names_outside_files_but_never_opens_them(tmp_path):
    """A basin's layout is taken by opening it: its external link, virtual dataset and
    external raw storage (all small) are hashed by name; the files they name are not
    opened (inotify), and moving one of their targets elsewhere changes the layout."""
    from tests.storage.test_hostile_referrers import Watched

    secret = Watched(tmp_path / "outside" / "secret.h5")
    raw = Watched(tmp_path / "outside" / "raw.bin", np.arange(4.0).tobytes())
    path = tmp_path / "basin.h5"
    with h5py.File(path, "w") as f:
        f["link"] = h5py.ExternalLink(str(secret.path), "/x")
        layout = h5py.VirtualLayout(shape=(3,), dtype="f8")
        layout[:] = h5py.VirtualSource(str(secret.path), "x", shape=(3,))
        f.create_virtual_dataset("v", layout)
        f.create_dataset("e", shape=(4,), dtype="f8", external=[(str(raw.path), 0, 32)])
    before = pins.layout_id(str(path))
    assert (secret.opens(), raw.opens()) == (0, 0)
    with h5py.File(path, "a") as f:
        del f["link"]
        f["link"] = h5py.ExternalLink(str(tmp_path / "elsewhere.h5"), "/x")
    assert pins.layout_id(str(path)) != before
    assert (secret.opens(), raw.opens()) == (0, 0)
    with h5py.File(path) as f:  # the control: reading the values does open them
        f["e"][()], f["v"][()]
    assert secret.opens() > 0 and raw.opens() > 0
    secret.close()
    raw.close()


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
