"""The catalog lists and loads every template form on file, HTTP and S3 alike."""

from __future__ import annotations

import numpy as np
import pytest

import basinflow as bf
from basinflow import samples

FORMS = list(samples.TEMPLATES.items())


@pytest.mark.parametrize(("layout", "form"), FORMS)
def test_lists_and_loads_every_form_on_every_scheme(remote_root, layout, form, truth):
    root, options = remote_root
    repo = bf.Repository(f"{root}/{form}", storage_options=options)
    assert repo.proposals() == list(truth["proposals"])
    prop = repo["2022-11"]
    assert prop.scans() == ["9", "10"]  # natural order, not lexicographic
    scan = prop.r10
    s = scan.summary
    assert s["frames"] == truth["nframes"]
    assert s["detector"] == tuple(truth["detector_shape"])
    assert s["dtype"] == "uint32"
    assert set(s["axes"]) == {"theta", "delay"}
    raw = scan.raw
    assert raw.frames.dims == ("index", "y", "x")
    assert raw.frames.shape == (truth["nframes"], *truth["detector_shape"])
    np.testing.assert_allclose(raw.delay.values[: len(truth["delays"])], truth["delays"])
    assert raw.attrs["url"] == scan.url
    assert raw.attrs["pin_size"] > 0


# what users write: a range, one frame (dask hands the layout an integer), the last frame,
# strides with a pixel, a list of frames
SELECTIONS = [
    np.s_[5:9],
    np.s_[5],
    np.s_[-1],
    np.s_[::3, 10:20, 7],
    np.s_[[1, 4]],
]


def test_same_frames_from_every_layout_and_scheme(remote_root, sample_root):
    root, options = remote_root
    ref = bf.Repository(f"{sample_root.as_uri()}/nexus/{{proposal}}/{{scan}}.h5#entry")
    whole = ref["2021-05"]["0041"].raw.frames.values
    for form in samples.TEMPLATES.values():
        frames = bf.Repository(f"{root}/{form}", storage_options=options)["2021-05"]["0041"]
        for sel in SELECTIONS:
            got = frames.raw.frames[sel].values
            np.testing.assert_array_equal(got, whole[sel], err_msg=f"{form} {sel}")


def test_chunks_are_whole_storage_chunks(sample_root):
    repo = bf.Repository(
        f"{sample_root.as_uri()}/nexus/{{proposal}}/{{scan}}.h5#entry", chunk_mb=1.2
    )
    raw = repo["2021-05"]["0040"].raw
    storage = raw.frames.encoding["storage_chunks"]
    assert storage == (1, 195, 487)
    for c in raw.frames.data.chunks[0][:-1]:
        assert c % storage[0] == 0
    assert raw.frames.data.chunks[0][0] == 3  # 1.2 MiB / 380 KB frames


def test_handles_and_attribute_access(sample_root):
    repo = bf.Repository(f"{sample_root.as_uri()}/groups/{{proposal}}.h5#{{scan}}")
    assert repo.p2021_05 is repo["2021-05"]
    assert "p2021_05" in dir(repo)
    assert repo.p2021_05.r0040.key == "0040"
    assert "r0040" in dir(repo.p2021_05)


def test_graph_holds_no_open_handles(sample_root):
    import pickle

    repo = bf.Repository(f"{sample_root.as_uri()}/nexus/{{proposal}}/{{scan}}.h5#entry")
    raw = repo["2021-05"]["0040"].raw
    blob = pickle.dumps(raw.frames.data.__dask_graph__())
    graph = pickle.loads(blob)
    assert graph is not None


def test_refresh_sees_new_scans(tmp_path):
    spec = samples.SampleSpec(proposals={"p1": ("1",)}, ntheta=2, layouts=("nexus",))
    samples.generate(tmp_path, spec)
    repo = bf.Repository(f"{tmp_path.as_uri()}/nexus/{{proposal}}/{{scan}}.h5#entry")
    assert repo["p1"].scans() == ["1"]
    samples.generate(
        tmp_path, samples.SampleSpec(proposals={"p1": ("2",)}, ntheta=2, layouts=("nexus",))
    )
    assert repo["p1"].scans() == ["1"]  # cached
    assert repo["p1"].refresh().scans() == ["1", "2"]


def test_html_reprs(sample_root):
    repo = bf.Repository(f"{sample_root.as_uri()}/nexus/{{proposal}}/{{scan}}.h5#entry")
    assert "2021-05" in repo._repr_html_()
    assert "ascan" in repo["2021-05"]._repr_html_()
    assert "frames" in repo["2021-05"]["0040"]._repr_html_()
