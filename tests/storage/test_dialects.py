"""Small h5py-written files reproducing each dialect beamlines write; every value is
compared with h5py's own read of the same file."""

from __future__ import annotations

import json

import h5py
import hdf5plugin
import numpy as np
import pytest

import basinflow as bf
from basinflow import errors
from basinflow.recipes.registry import get_recipe
from basinflow.storage import codecs
from basinflow.storage.sources import VirtualStack

RNG = np.random.default_rng(7)


def _repo(root, name="{scan}.h5", fragment="#entry", **kw):
    return bf.Repository(f"file://{root}/{{proposal}}/{name}{fragment}", **kw)


def _frames(n=6, y=8, x=10, dtype="uint32"):
    return RNG.poisson(20, size=(n, y, x)).astype(dtype)


def _nxentry(f, name="entry"):
    e = f.create_group(name)
    e.attrs["NX_class"] = "NXentry"
    return e


def _signal_file(path, frames, **create):
    """``entry/data`` (NXdata) whose signal ``data`` is ``frames``, stored as ``create`` says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        d = _nxentry(f).create_group("data")
        d.attrs.update({"NX_class": "NXdata", "signal": "data"})
        d.create_dataset("data", data=frames, **create)


def _vds_file(root, frames, per=2, drop=None):
    """A NXmx/BLISS-like scan: entry/data/data is a VDS over detector files beside it."""
    (root / "p" / "det").mkdir(parents=True)
    n = frames.shape[0]
    layout = h5py.VirtualLayout(shape=frames.shape, dtype=frames.dtype)
    for k, i in enumerate(range(0, n, per)):
        src = root / "p" / "det" / f"data_{k:06d}.h5"
        with h5py.File(src, "w") as f:
            f.create_dataset("data", data=frames[i : i + per], chunks=(1, *frames.shape[1:]))
        layout[i : i + per] = h5py.VirtualSource(
            f"det/data_{k:06d}.h5", "data", (per, *frames.shape[1:])
        )
    with h5py.File(root / "p" / "s1.h5", "w") as f:
        e = _nxentry(f)
        d = e.create_group("data")
        d.attrs["NX_class"] = "NXdata"
        d.attrs["signal"] = "data"
        d.create_virtual_dataset("data", layout, fillvalue=0)
        d["omega"] = np.arange(n, dtype=float)
        d.attrs["axes"] = ["omega", ".", "."]
    if drop is not None:
        (root / "p" / "det" / f"data_{drop:06d}.h5").unlink()


def test_vds_with_absent_source_is_an_error_not_zeros(tmp_path):
    frames = _frames()
    _vds_file(tmp_path, frames, drop=1)
    with h5py.File(tmp_path / "p/s1.h5") as f:  # what HDF5 itself does: zeros, silently
        assert not f["entry/data/data"][2:4].any()
    scan = _repo(tmp_path)["p"]["s1"]
    with pytest.raises(errors.MissingSourceError) as e:
        scan.raw  # noqa: B018
    assert "det/data_000001.h5" in str(e.value) and "s1.h5#entry" in str(e.value)
    assert isinstance(e.value, FileNotFoundError)


def test_vds_reads_per_source_and_its_sources_are_pinned(tmp_path):
    frames = _frames()
    _vds_file(tmp_path, frames)
    scan = _repo(tmp_path, chunk_mb=0.0001)["p"]["s1"]
    raw = scan.raw
    with h5py.File(tmp_path / "p/s1.h5") as f:
        np.testing.assert_array_equal(raw.frames.values, f["entry/data/data"][()])
    np.testing.assert_array_equal(raw.omega.values, np.arange(6.0))
    assert max(raw.frames.data.chunks[0]) <= 2  # never the whole stack in one chunk
    stack = scan._indexed.source  # read per source file, each on the direct chunk path
    assert isinstance(stack, VirtualStack) and len(stack.parts) == 3
    assert all(p.index is not None for p in stack.parts)
    pin = scan.pin
    assert len(pin["sources"]) == 3
    with h5py.File(tmp_path / "p/det/data_000002.h5", "a") as f:
        f["data"][0] = 0
        f.attrs["touched"] = 1
    assert scan.refresh().pin != pin  # a changed detector file makes the scan different


def test_external_link_to_absent_file(tmp_path):
    (tmp_path / "p").mkdir()
    with h5py.File(tmp_path / "p/s1.h5", "w") as f:
        e = _nxentry(f)
        d = e.create_group("data")
        d.attrs["NX_class"] = "NXdata"
        d.attrs["signal"] = "data"
        d["data"] = h5py.ExternalLink("s1_data.h5", "/entry/data/data")
    with pytest.raises(errors.MissingSourceError, match=r"s1_data\.h5.*absent"):
        _repo(tmp_path)["p"]["s1"].summary  # noqa: B018


def test_gda_array_attributes_and_old_style_signal(tmp_path):
    """Diamond GDA: attributes as 1-element arrays; NeXus < 2014: @signal=1, @axis=1."""
    (tmp_path / "p").mkdir()
    frames = _frames(4)
    with h5py.File(tmp_path / "p/s1.h5", "w") as f:
        e = f.create_group("entry1")
        e.attrs["NX_class"] = np.array([b"NXentry"])
        d = e.create_group("pilatus")
        d.attrs["NX_class"] = np.array([b"NXdata"])
        d.create_dataset("data", data=frames).attrs["signal"] = np.array([1], dtype=np.int32)
        d.create_dataset("theta", data=np.linspace(1, 2, 4)).attrs["axis"] = np.array([b"1"])
        f.attrs["default"] = np.array([b"entry1"])
    scan = _repo(tmp_path, fragment="")["p"]["s1"]  # no fragment: the default entry
    raw = scan.raw
    np.testing.assert_array_equal(raw.frames.values, frames)
    np.testing.assert_array_equal(raw.theta.values, np.linspace(1, 2, 4))
    assert raw.theta.attrs["role"] == "positioner"


def test_pixel_axes_are_not_columns(tmp_path):
    """axes = sample_times, vertical, horizontal: the last two span the image."""
    (tmp_path / "p").mkdir()
    frames = _frames(5, 6, 7)
    with h5py.File(tmp_path / "p/s1.h5", "w") as f:
        e = _nxentry(f)
        e.attrs["default"] = "plot"
        d = e.create_group("plot")
        d.attrs.update({"NX_class": "NXdata", "signal": "data"})
        d.attrs["axes"] = np.array(["sample_times", "vertical", "horizontal"], dtype=object)
        d.attrs["vertical_indices"] = 1
        d.attrs["horizontal_indices"] = np.array([2])
        d["data"] = frames
        d["sample_times"] = np.arange(5) * 0.1
        d["vertical"] = np.arange(6) * 0.5
        d["horizontal"] = np.arange(7) * 0.25
    raw = _repo(tmp_path, fragment="#*")["p"]["s1"].raw
    assert raw.sample_times.dims == ("index",)
    assert raw.vertical.dims == ("y",) and raw.horizontal.dims == ("x",)
    np.testing.assert_array_equal(raw.horizontal.values, np.arange(7) * 0.25)


def test_single_image_and_mesh(tmp_path):
    (tmp_path / "p").mkdir()
    image = _frames(1)[0]
    mesh = RNG.poisson(5, size=(3, 4, 6, 7)).astype("uint16")
    with h5py.File(tmp_path / "p/saxs.h5", "w") as f:
        d = _nxentry(f).create_group("data")
        d.attrs.update({"NX_class": "NXdata", "signal": "data"})
        d["data"] = image
    with h5py.File(tmp_path / "p/mesh.h5", "w") as f:
        d = _nxentry(f).create_group("data")
        d.attrs.update({"NX_class": "NXdata", "signal": "data", "axes": ["sy", "sx", ".", "."]})
        d.create_dataset("data", data=mesh, chunks=(1, 1, 6, 7))
        d["sy"], d["sx"] = np.arange(3.0), np.arange(4.0) * 10
    prop = _repo(tmp_path)["p"]
    saxs = prop["saxs"].raw
    np.testing.assert_array_equal(saxs.frames.values, image[None])
    m = prop["mesh"].raw
    assert m.attrs["scan_shape"] == [3, 4]
    np.testing.assert_array_equal(m.frames.values, mesh.reshape(12, 6, 7))
    np.testing.assert_array_equal(m.frames[5:9].values, mesh.reshape(12, 6, 7)[5:9])
    np.testing.assert_array_equal(m.sx.values, np.tile(np.arange(4.0) * 10, 3))
    np.testing.assert_array_equal(m.sy.values, np.repeat(np.arange(3.0), 4))


def test_contiguous_stack_is_chunked_per_frame(tmp_path):
    frames = _frames(10, 32, 32)
    _signal_file(tmp_path / "p/s1.h5", frames)  # contiguous, like LIMA
    raw = _repo(tmp_path, chunk_mb=3 * 32 * 32 * 4 / 2**20)["p"]["s1"].raw
    assert raw.frames.data.chunks[0] == (3, 3, 3, 1)
    np.testing.assert_array_equal(raw.frames.values, frames)


@pytest.mark.parametrize("codec", ["bslz4", "lz4"])
def test_detector_codecs_equal_hdf5plugin(tmp_path, codec):
    frames = _frames(5, 37, 29)  # 1073 pixels: not a multiple of 8 (the unshuffled tail)
    filt = hdf5plugin.Bitshuffle(cname="lz4") if codec == "bslz4" else hdf5plugin.LZ4()
    _signal_file(tmp_path / "p/s1.h5", frames, chunks=(1, 37, 29), **filt)
    scan = _repo(tmp_path)["p"]["s1"]
    raw = scan.raw
    assert scan._indexed.source.codec == codec  # the direct path, not h5py
    with h5py.File(tmp_path / "p/s1.h5") as f:
        np.testing.assert_array_equal(raw.frames.values, f["entry/data/data"][()])


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int32", "float64"])
def test_bslz4_chunks_decode_like_hdf5plugin(tmp_path, dtype):
    data = (RNG.poisson(3, size=(3, 301, 97)) - 1).astype(dtype)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        ds = f.create_dataset(
            "d", data=data, chunks=(3, 301, 97), **hdf5plugin.Bitshuffle(cname="lz4")
        )
        _, chunk = ds.id.read_direct_chunk((0, 0, 0))
        ours = np.frombuffer(codecs.bslz4_decode(chunk, data.dtype.itemsize), dtype)
        np.testing.assert_array_equal(ours.reshape(data.shape), ds[()])
    with pytest.raises(codecs.CodecError):
        codecs.bslz4_decode(chunk[: len(chunk) // 2], data.dtype.itemsize)


def test_eiger_gap_pixels_and_pixel_mask_are_left_out(tmp_path):
    (tmp_path / "p").mkdir()
    frames = _frames(4, 8, 10)
    frames[:, 3, :] = 2**32 - 1  # a gap row, as Eiger/LIMA write it
    mask = np.zeros((8, 10), np.uint32)
    mask[0, 0] = 1  # a dead pixel the detector's pixel_mask names
    with h5py.File(tmp_path / "p/s1.h5", "w") as f:
        e = _nxentry(f)
        det = e.create_group("instrument").create_group("eiger")
        det.attrs["NX_class"] = "NXdetector"
        det.create_dataset("data", data=frames, chunks=(1, 8, 10), compression="gzip")
        det["pixel_mask"] = mask
    raw = _repo(tmp_path)["p"]["s1"].raw
    with h5py.File(tmp_path / "p/s1.h5") as f:
        truth = f["entry/instrument/eiger/data"][()].astype(float)
    bad = (truth == 2**32 - 1) | (mask != 0)[None]
    roi = get_recipe("roi").cook(raw, None, regions={"all": [0, 8, 0, 10]}).compute()
    np.testing.assert_array_equal(roi.intensity[:, 0], np.where(bad, 0, truth).sum(axis=(1, 2)))
    np.testing.assert_array_equal(roi.nonfinite[:, 0], bad.sum(axis=(1, 2)))
    assert "pixel_mask" in roi.attrs["mask"] and "4294967295" in roi.attrs["mask"]
    norm = get_recipe("normalize").cook(raw, None, flat_normalize=True).compute()
    assert np.isnan(norm.normalized.values[bad]).all()
    np.testing.assert_allclose(norm.normalized.values[~bad], truth[~bad])
    assert "pixel_mask" in norm.attrs["mask"]


def test_bliss_master_file_links_resolve_against_the_dataset_file(tmp_path, monkeypatch):
    """proposal.h5 links into sample/dataset/dataset.h5, whose VDS names LIMA files
    relative to itself: read from another working directory, values are h5py's."""
    frames = _frames(4, 5, 6)
    ds_dir = tmp_path / "p" / "sample" / "sample_0001"
    (ds_dir / "scan0001").mkdir(parents=True)
    with h5py.File(ds_dir / "scan0001/eiger_0000.h5", "w") as f:
        f.create_dataset("entry_0000/measurement/data", data=frames, **hdf5plugin.Bitshuffle())
    layout = h5py.VirtualLayout(shape=frames.shape, dtype=frames.dtype)
    layout[:] = h5py.VirtualSource(
        "scan0001/eiger_0000.h5", "entry_0000/measurement/data", frames.shape
    )
    with h5py.File(ds_dir / "sample_0001.h5", "w") as f:
        f.attrs["creator"] = "blissdata"
        s = _nxentry(f, "1.1")
        s["title"] = "loopscan 4 0.1"
        m = s.create_group("measurement")
        m.create_virtual_dataset("eiger", layout)
        m["I0"] = np.arange(4.0) + 100
        m["epoch"] = np.arange(5.0)  # one point longer, as BLISS sometimes writes
    with h5py.File(tmp_path / "p" / "p.h5", "w") as f:
        f.attrs["creator"] = "blissdata"
        f["sample_0001_1.1"] = h5py.ExternalLink("sample/sample_0001/sample_0001.h5", "/1.1")
        f["sample_0002_1.1"] = h5py.ExternalLink("sample/sample_0002/sample_0002.h5", "/1.1")
    monkeypatch.chdir(tmp_path)
    repo = bf.Repository(f"file://{tmp_path}/{{proposal}}/{{proposal}}.h5#{{scan}}")
    prop = repo["p"]
    with pytest.warns(errors.UnlistedEntriesWarning, match=r"sample_0002_1\.1"):
        assert prop.scans() == ["sample_0001_1.1"]
    raw = prop["sample_0001_1.1"].raw
    np.testing.assert_array_equal(raw.frames.values, frames)
    assert raw.I0.attrs["role"] == "monitor"
    assert "epoch" not in raw and "epoch(5)" in raw.attrs["skipped_columns"]
    assert raw.attrs["layout"] == "bliss" and raw.attrs["detector"] == "eiger"


def test_plain_hdf5_image_needs_one_config_line(tmp_path):
    """No NeXus classes, one 2-D image: the error gives the line; with it, one frame."""
    (tmp_path / "p").mkdir()
    image = _frames(1, 9, 11)[0]
    with h5py.File(tmp_path / "p/s1.h5", "w") as f:
        f.create_group("scan").create_dataset("detector/image", data=image)
    with pytest.raises(errors.LayoutError) as e:
        _repo(tmp_path, fragment="#scan", layout="groups")["p"]["s1"].raw  # noqa: B018
    assert "layout_options: {frames: detector/image}" in str(e.value)
    repo = _repo(
        tmp_path, fragment="#scan", layout="groups", layout_options={"frames": "detector/image"}
    )
    raw = repo["p"]["s1"].raw
    with h5py.File(tmp_path / "p/s1.h5") as f:
        np.testing.assert_array_equal(raw.frames.values, f["scan/detector/image"][()][None])


def test_vds_frames_mapped_to_no_source_are_an_error(tmp_path):
    """An aborted BLISS scan: the VDS is declared longer than its sources."""
    (tmp_path / "p").mkdir()
    frames = _frames(6)
    with h5py.File(tmp_path / "p/det.h5", "w") as f:
        f["data"] = frames[:4]
    layout = h5py.VirtualLayout(shape=frames.shape, dtype=frames.dtype)
    layout[0:4] = h5py.VirtualSource("det.h5", "data", (4, *frames.shape[1:]))
    with h5py.File(tmp_path / "p/s1.h5", "w") as f:
        d = _nxentry(f).create_group("data")
        d.attrs.update({"NX_class": "NXdata", "signal": "data"})
        d.create_virtual_dataset("data", layout, fillvalue=0)
    with pytest.raises(errors.LayoutError, match=r"frames 4\.\.5 .* map to no source"):
        _repo(tmp_path)["p"]["s1"].raw  # noqa: B018


def test_truncated_bslz4_chunk_is_a_layout_error(tmp_path):
    frames = _frames(3, 40, 40)
    bslz4 = hdf5plugin.Bitshuffle(cname="lz4")
    _signal_file(tmp_path / "p/s1.h5", frames, chunks=(1, 40, 40), **bslz4)
    with h5py.File(tmp_path / "p/s1.h5") as f:
        info = f["entry/data/data"].id.get_chunk_info(1)
    with open(tmp_path / "p/s1.h5", "r+b") as fh:  # cut chunk 1's block size field
        fh.seek(info.byte_offset + 12)
        fh.write((2**31).to_bytes(4, "big"))
    raw = _repo(tmp_path)["p"]["s1"].raw
    np.testing.assert_array_equal(raw.frames[0].values, frames[0])
    with pytest.raises(errors.LayoutError, match="corrupt bslz4 chunk"):
        raw.frames[1].values  # noqa: B018


def test_a_changed_detector_file_makes_the_cooked_output_stale(tmp_path):
    """The referrer's input pin covers the VDS sources: cooked once, skipped while nothing
    changes, cooked again when a detector file changes, with the new values."""
    from basinflow.tasks.cooking import cook

    frames = _frames()
    _vds_file(tmp_path, frames)
    repo = _repo(tmp_path)
    scan = repo["p"]["s1"]
    out = f"file://{tmp_path}/out/{{scan}}.h5"
    regions = {"all": [0, 8, 0, 10]}
    assert cook(scan, "roi", out, regions=regions).status == "cooked"
    assert cook(repo.refresh()["p"]["s1"], "roi", out, regions=regions).status == "skipped"
    with h5py.File(tmp_path / "p/det/data_000001.h5", "a") as f:
        f["data"][0] = 0  # frame 2 of the scan
    scan = repo.refresh()["p"]["s1"]
    assert cook(scan, "roi", out, regions=regions).status == "cooked"
    ds = bf.open_referrer(out.format(scan="s1"), trusted=[repo])
    assert float(ds.intensity[2, 0]) == 0.0
    assert float(ds.intensity[3, 0]) == float(frames[3].sum())


def _limits_file(path, frames, *, saturation=None, underload=None):
    """A NeXus scan whose NXdetector names its trusted range, as NXmx/CCD writers do."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        det = _nxentry(f).create_group("instrument").create_group("ccd")
        det.attrs["NX_class"] = "NXdetector"
        det.create_dataset("data", data=frames, chunks=(1, *frames.shape[1:]))
        if saturation is not None:
            det["saturation_value"] = saturation
        if underload is not None:
            det["underload_value"] = underload


def test_saturated_and_underloaded_pixels_are_left_out(tmp_path):
    frames = _frames(5, 8, 10, dtype="int32")
    frames[1, 2, 3] = 60  # saturated: at the limit
    frames[2, 4, 4:6] = 99  # above it
    frames[3, 0, 0] = -1  # underloaded: at the limit
    frames[4, 7, 9] = -5  # below it
    _limits_file(tmp_path / "p/s1.h5", frames, saturation=np.int32(60), underload=np.int32(-1))
    raw = _repo(tmp_path)["p"]["s1"].raw
    with h5py.File(tmp_path / "p/s1.h5") as f:
        truth = f["entry/instrument/ccd/data"][()].astype(float)
        sat = f["entry/instrument/ccd/saturation_value"][()]
        under = f["entry/instrument/ccd/underload_value"][()]
    assert raw.frames.attrs["saturation_value"] == sat == 60
    assert raw.frames.attrs["underload_value"] == under == -1
    np.testing.assert_array_equal(raw.frames.values, truth)  # raw frames stay as written
    bad = (truth >= sat) | (truth <= under)
    assert bad.sum() == 5
    roi = get_recipe("roi").cook(raw, None, regions={"all": [0, 8, 0, 10]}).compute()
    np.testing.assert_array_equal(roi.intensity[:, 0], np.where(bad, 0, truth).sum(axis=(1, 2)))
    np.testing.assert_array_equal(roi.nonfinite[:, 0], bad.sum(axis=(1, 2)))
    assert "saturation value 60" in roi.attrs["mask"]
    assert "underload value -1" in roi.attrs["mask"]
    assert "s1.h5#/entry/instrument/ccd/saturation_value" in roi.attrs["mask"]
    norm = get_recipe("normalize").cook(raw, None, flat_normalize=True).compute()
    assert np.isnan(norm.normalized.values[bad]).all()
    np.testing.assert_allclose(norm.normalized.values[~bad], truth[~bad])
    assert norm.attrs["mask"] == roi.attrs["mask"]


def test_layout_options_override_the_detector_limits(tmp_path):
    frames = _frames(3, 4, 5, dtype="uint16")
    frames[0, 0, 0] = 500
    frames[1, 1, 1] = 0
    _limits_file(tmp_path / "p/s1.h5", frames, saturation=np.uint16(65535))
    with h5py.File(tmp_path / "p/s1.h5") as f:
        truth = f["entry/instrument/ccd/data"][()].astype(float)
    # a number replaces the file's (a detector that writes a wrong one); null ignores it
    repo = _repo(tmp_path, layout_options={"saturation_value": 400, "underload_value": 0})
    raw = repo["p"]["s1"].raw
    assert raw.frames.attrs["saturation_value"] == 400
    assert raw.frames.attrs["underload_value"] == 0
    assert "layout option" in raw.attrs["mask"]
    roi = get_recipe("roi").cook(raw, None, regions={"all": [0, 4, 0, 5]}).compute()
    bad = (truth >= 400) | (truth <= 0)
    np.testing.assert_array_equal(roi.intensity[:, 0], np.where(bad, 0, truth).sum(axis=(1, 2)))
    raw = _repo(tmp_path, layout_options={"saturation_value": None})["p"]["s1"].raw
    assert "saturation_value" not in raw.frames.attrs and "mask" not in raw.attrs
    with pytest.raises(errors.LayoutError, match="layout option 'saturation_value' is 'high'"):
        _repo(tmp_path, layout_options={"saturation_value": "high"})["p"]["s1"].raw  # noqa: B018


@pytest.mark.parametrize(
    "value", [np.array([10, 20, 30], "int32"), np.bytes_(b"65535"), np.float64(np.nan)]
)
def test_a_detector_limit_that_is_not_one_number_is_an_error(tmp_path, value):
    _limits_file(tmp_path / "p/s1.h5", _frames(2, 4, 5), saturation=value)
    with pytest.raises(errors.LayoutError) as e:
        _repo(tmp_path)["p"]["s1"].raw  # noqa: B018
    msg = str(e.value)
    assert "s1.h5#/entry/instrument/ccd/saturation_value" in msg
    assert "layout option 'saturation_value'" in msg


def test_bliss_detector_limits_come_from_the_instrument_group(tmp_path):
    """BLISS puts the image in measurement/ and the detector's fields in instrument/<det>."""
    frames = _frames(3, 5, 6)
    frames[1, 2, 2] = 1000
    (tmp_path / "p").mkdir()
    with h5py.File(tmp_path / "p/p.h5", "w") as f:
        f.attrs["creator"] = "blissdata"
        s = _nxentry(f, "1.1")
        det = s.create_group("instrument").create_group("pilatus")
        det.attrs["NX_class"] = "NXdetector"
        det.create_dataset("data", data=frames)
        det["saturation_value"] = 1000
        m = s.create_group("measurement")
        m["pilatus"] = h5py.SoftLink("/1.1/instrument/pilatus/data")
        m["I0"] = np.arange(3.0) + 1
    repo = bf.Repository(f"file://{tmp_path}/{{proposal}}/{{proposal}}.h5#{{scan}}")
    raw = repo["p"]["1.1"].raw
    assert raw.attrs["layout"] == "bliss"
    assert raw.frames.attrs["saturation_value"] == 1000
    with h5py.File(tmp_path / "p/p.h5") as f:
        truth = f["1.1/measurement/pilatus"][()].astype(float)
    roi = get_recipe("roi").cook(raw, None, regions={"all": [0, 5, 0, 6]}).compute()
    bad = truth >= 1000
    np.testing.assert_array_equal(roi.intensity[:, 0], np.where(bad, 0, truth).sum(axis=(1, 2)))
    np.testing.assert_array_equal(roi.nonfinite[:, 0], bad.sum(axis=(1, 2)))


def test_nxmx_detector_beside_the_plotted_data_gives_its_limits_and_mask(tmp_path):
    """NXmx: frames in entry/data/data, the NXdetector (no data of its own) in
    entry/instrument/detector with saturation_value and pixel_mask."""
    (tmp_path / "p").mkdir()
    frames = _frames(3, 4, 5, dtype="int32")
    frames[2, 3, 3] = 70
    mask = np.zeros((4, 5), "int32")
    mask[0, 4] = 1
    with h5py.File(tmp_path / "p/s1.h5", "w") as f:
        e = _nxentry(f)
        d = e.create_group("data")
        d.attrs.update({"NX_class": "NXdata", "signal": "data"})
        d["data"] = frames
        det = e.create_group("instrument").create_group("detector")
        det.attrs["NX_class"] = "NXdetector"
        det["saturation_value"] = 70
        det["pixel_mask"] = mask
    raw = _repo(tmp_path)["p"]["s1"].raw
    assert raw.frames.attrs["saturation_value"] == 70
    with h5py.File(tmp_path / "p/s1.h5") as f:
        truth = f["entry/data/data"][()].astype(float)
        bad = (truth >= f["entry/instrument/detector/saturation_value"][()]) | (
            f["entry/instrument/detector/pixel_mask"][()] != 0
        )[None]
    np.testing.assert_array_equal(raw.pixel_mask.values, mask != 0)
    roi = get_recipe("roi").cook(raw, None, regions={"all": [0, 4, 0, 5]}).compute()
    np.testing.assert_array_equal(roi.intensity[:, 0], np.where(bad, 0, truth).sum(axis=(1, 2)))
    np.testing.assert_array_equal(roi.nonfinite[:, 0], bad.sum(axis=(1, 2)))


def test_a_referrer_reads_its_raw_basin_with_the_repository_layout_options(tmp_path):
    """The frames path configured for the repository is recorded in the raw basin: reading
    the referrer back gives the same frames (without it the basin could not be read)."""
    from basinflow.tasks.cooking import cook

    (tmp_path / "p").mkdir()
    frames = _frames(1, 9, 11)
    with h5py.File(tmp_path / "p/s1.h5", "w") as f:  # one 2-D image: found only if named
        f.create_group("scan").create_dataset("detector/image", data=frames[0])
    options = {"frames": "detector/image"}
    repo = _repo(tmp_path, fragment="#scan", layout="groups", layout_options=options)
    out = f"file://{tmp_path}/out/{{scan}}.h5"
    assert cook(repo["p"]["s1"], "roi", out, regions={"all": [0, 9, 0, 11]}).status == "cooked"
    ds = bf.open_referrer(out.format(scan="s1"), trusted=[repo])
    with h5py.File(tmp_path / "p/s1.h5") as f:
        np.testing.assert_array_equal(ds.frames.values, f["scan/detector/image"][()][None])
    np.testing.assert_array_equal(ds.intensity[:, 0], frames.sum(axis=(1, 2)))
    with h5py.File(tmp_path / "out/s1.h5") as f:
        (basin,) = (json.loads(f["basins"][k][()]) for k in f["basins"])
    assert basin["options"] == options


def test_a_dangling_link_beside_the_scan_data_is_not_a_crash(tmp_path):
    """An external link to an absent file in a group the scan does not need (a sample
    description kept elsewhere): the frames and columns read; nothing else is opened."""
    frames = _frames(3)
    _signal_file(tmp_path / "p/s1.h5", frames)
    with h5py.File(tmp_path / "p/s1.h5", "a") as f:
        f["entry/sample"] = h5py.ExternalLink("gone.h5", "/sample")
        f["entry/instrument/theta/value"] = np.arange(3.0)
        f["entry/instrument"].attrs["NX_class"] = "NXinstrument"
        f["entry/instrument/theta"].attrs["NX_class"] = "NXpositioner"
    raw = _repo(tmp_path)["p"]["s1"].raw
    with h5py.File(tmp_path / "p/s1.h5") as f:
        np.testing.assert_array_equal(raw.frames.values, f["entry/data/data"][()])
        np.testing.assert_array_equal(raw.theta.values, f["entry/instrument/theta/value"][()])
