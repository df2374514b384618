"""Virtual-dataset source names as libhdf5 reads them (``%%`` and printf ``%b``): the
missing-source check and the scan's pin see the files libhdf5 opens, on small h5py-written
files, values compared with h5py's own read."""

from __future__ import annotations

import fsspec
import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import basinflow as bf
from basinflow import errors
from basinflow.storage.hdf5_links import block_of, substituted
from basinflow.storage.sources import VirtualStack
from tests.support import servers

RNG = np.random.default_rng(12)
SHAPE = (4, 5)  # one frame


def _repo(root):
    return bf.Repository(f"file://{root}/{{proposal}}/{{scan}}.h5#entry")


def _scan_file(path, make_vds):
    """``entry/data/data`` (NXdata signal), a virtual dataset made by ``make_vds(group)``."""
    with h5py.File(path, "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        d = e.create_group("data")
        d.attrs.update({"NX_class": "NXdata", "signal": "data"})
        make_vds(d)


def _printf_scan(root, blocks=3, per=2, name="det/src_%b.h5"):
    """A scan whose frames are a printf mapping: block ``b`` (``per`` frames) is the file
    ``name`` with ``%b`` = b, written beside the scan file as detector writers do."""
    (root / "p" / "det").mkdir(parents=True)
    frames = RNG.poisson(30, size=(blocks * per, *SHAPE)).astype("uint16")
    for b in range(blocks):
        with h5py.File(root / "p" / substituted(name, b)[0], "w") as f:
            f.create_dataset("data", data=frames[b * per : (b + 1) * per], chunks=(1, *SHAPE))

    def make(group):
        vspace = h5py.h5s.create_simple((0, *SHAPE), (h5py.h5s.UNLIMITED, *SHAPE))
        vspace.select_hyperslab((0, 0, 0), (h5py.h5s.UNLIMITED, 1, 1), (per, 1, 1), (per, *SHAPE))
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_virtual(vspace, name.encode(), b"data", h5py.h5s.create_simple((per, *SHAPE)))
        h5py.h5d.create(group.id, b"data", h5py.h5t.NATIVE_UINT16, vspace, dcpl=dcpl)

    _scan_file(root / "p" / "s1.h5", make)
    return frames


def test_printf_sources_are_read_and_pinned_as_libhdf5_opens_them(tmp_path, monkeypatch):
    frames = _printf_scan(tmp_path)
    det = tmp_path / "p" / "det"
    (det / "src_01.h5").write_bytes(b"not a block: libhdf5 writes 1, not 01")
    (det / "src_x.h5").write_bytes(b"no block at all")
    monkeypatch.chdir(tmp_path)  # sources resolve against the scan file, not here
    scan = _repo(tmp_path)["p"]["s1"]
    raw = scan.raw
    with h5py.File(tmp_path / "p/s1.h5") as f:
        truth = f["entry/data/data"][()]
    assert truth.shape == (6, *SHAPE)
    np.testing.assert_array_equal(truth, frames)
    np.testing.assert_array_equal(raw.frames.values, truth)
    stack = scan._indexed.source
    assert isinstance(stack, VirtualStack)
    assert [p.url for p in stack.parts] == [f"file://{det}/src_{b}.h5" for b in range(3)]
    assert sorted(scan.pin["sources"]) == [f"file://{det}/src_{b}.h5" for b in range(3)]


def test_a_missing_printf_block_is_named_not_hidden(tmp_path):
    _printf_scan(tmp_path)
    (tmp_path / "p/det/src_1.h5").unlink()
    with h5py.File(tmp_path / "p/s1.h5") as f:  # libhdf5: the scan silently ends before it
        assert f["entry/data/data"].shape[0] == 2
    with pytest.raises(errors.MissingSourceError) as e:
        _repo(tmp_path)["p"]["s1"].raw  # noqa: B018
    msg = str(e.value)
    assert f"file://{tmp_path}/p/det/src_1.h5" in msg and "src_2.h5" not in msg
    assert "s1.h5#entry" in msg and isinstance(e.value, bf.Error)


def test_a_printf_mapping_without_any_block_is_an_absent_source(tmp_path):
    _printf_scan(tmp_path, blocks=1)
    (tmp_path / "p/det/src_0.h5").unlink()
    with pytest.raises(errors.MissingSourceError, match=r"det/src_0\.h5"):
        _repo(tmp_path)["p"]["s1"].raw  # noqa: B018


def _escaped_scan(root):
    """Frames in ``det/s%.h5``, which the VDS names ``det/s%%.h5`` (libhdf5's escape);
    a decoy file literally called ``s%%.h5`` is *not* what libhdf5 opens."""
    (root / "p" / "det").mkdir(parents=True)
    frames = RNG.poisson(30, size=(3, *SHAPE)).astype("int32")
    with h5py.File(root / "p/det/s%.h5", "w") as f:
        f["data"] = frames
    with h5py.File(root / "p/det/s%%.h5", "w") as f:
        f["data"] = np.full_like(frames, -7)
    layout = h5py.VirtualLayout(shape=frames.shape, dtype=frames.dtype)
    layout[:] = h5py.VirtualSource("det/s%%.h5", "data", shape=frames.shape)
    _scan_file(root / "p/s1.h5", lambda g: g.create_virtual_dataset("data", layout))


def test_percent_escape_names_the_file_libhdf5_opens(tmp_path):
    _escaped_scan(tmp_path)
    scan = _repo(tmp_path)["p"]["s1"]
    with h5py.File(tmp_path / "p/s1.h5") as f:
        truth = f["entry/data/data"][()]
    assert (truth != -7).all()  # libhdf5 read s%.h5
    np.testing.assert_array_equal(scan.raw.frames.values, truth)
    assert list(scan.pin["sources"]) == [f"file://{tmp_path}/p/det/s%.h5"]
    (tmp_path / "p/det/s%.h5").unlink()
    with pytest.raises(errors.MissingSourceError) as e:
        scan.refresh().raw  # noqa: B018
    assert f"'file://{tmp_path}/p/det/s%.h5'" in str(e.value)


NAME_PART = st.text(alphabet="ab_.-0123456789/", max_size=6)


@given(
    parts=st.lists(st.sampled_from(["%%", "%b"]) | NAME_PART, min_size=1, max_size=8),
    block=st.integers(0, 10**6),
)
def test_block_names_round_trip(parts, block):
    """``block_of`` inverts ``substituted(name, b)`` for any printf name, and only for
    the plain decimal ``b`` libhdf5 writes."""
    name = "".join(parts)
    text, pattern = substituted(name, block)
    if pattern is None:
        assert "%b" not in name.replace("%%", "")
        assert block_of(name, text) is None
        return
    assert pattern.fullmatch(text)
    assert block_of(name, text) == block
    assert block_of(name, substituted(name, f"0{block}")[0]) is None


def test_printf_blocks_on_s3_are_listed_read_and_named(tmp_path, s3_options):
    """Remotely libhdf5 finds no source at all; the blocks are found by listing the
    scan's directory, read per block, and a missing one is named."""
    frames = _printf_scan(tmp_path / "site")
    servers.upload(tmp_path / "site", "s3://raw/printf", s3_options)
    repo = bf.Repository("s3://raw/printf/{proposal}/{scan}.h5#entry", storage_options=s3_options)
    scan = repo["p"]["s1"]
    with h5py.File(tmp_path / "site/p/s1.h5") as f:
        truth = f["entry/data/data"][()]
    np.testing.assert_array_equal(truth, frames)
    np.testing.assert_array_equal(scan.raw.frames.values, truth)
    assert sorted(scan.pin["sources"]) == [f"s3://raw/printf/p/det/src_{b}.h5" for b in range(3)]
    s3 = fsspec.filesystem("s3", **s3_options)
    s3.rm("raw/printf/p/det/src_1.h5")
    s3.invalidate_cache()
    again = bf.Repository("s3://raw/printf/{proposal}/{scan}.h5#entry", storage_options=s3_options)[
        "p"
    ]["s1"]
    with pytest.raises(errors.MissingSourceError, match=r"s3://raw/printf/p/det/src_1\.h5"):
        again.raw  # noqa: B018
