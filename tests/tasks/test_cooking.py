"""Cooking through the task layer: input scans, spice read per recipe, output options."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import basinflow as bf
from basinflow.spice.document import SpiceDocument
from basinflow.tasks.cooking import cook, cook_referrer, cooked
from basinflow.tasks.freshness import up_to_date
from basinflow.tasks.provenance import read_provenance
from basinflow.tasks.request import prepare
from tests.storage.conftest import local, make_repo, stand_in_recipes  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("stand_in_recipes")


@pytest.fixture
def site(tmp_path):
    return make_repo(tmp_path / "site", spice=f"file://{tmp_path}/spice/{{proposal}}")


def test_a_dark_scan_is_read_and_pinned(site):
    """``normalize`` with ``dark={"scan": ...}``: the task layer opens the dark scan, the
    output is the frames minus the dark scan's mean frame, and the dark scan's pin is in
    the provenance, so changing the dark scan makes the output stale."""
    prop = site["p1"]
    dark, scan = prop["1"], prop["2"]
    prop.spice.seed("normalize", dark={"scan": "1"})
    result = cook(scan, "normalize")
    assert result.status == "cooked", result.reason

    ds = bf.open_referrer(result.output, trusted=[site])
    frames = scan.raw.frames.values.astype(np.float32)
    mean_dark = dark.raw.frames.values.astype(np.float64).mean(axis=0).astype(np.float32)
    np.testing.assert_allclose(ds.normalized.values, frames - mean_dark, rtol=1e-6)

    prov = read_provenance(result.output)
    assert set(prov["inputs"]) == {scan.url, dark.url}
    assert prov["inputs"][dark.url]["size"] == dark.pin["size"] > 0
    request = prepare(scan, "normalize")
    assert [(i.name, i.scan) for i in request.inputs] == [("dark", "1")]
    assert up_to_date(request, site.storage_options)

    with h5py.File(local(dark.path_url), "a") as f:  # the dark scan changes
        f.attrs["note"] = np.arange(4096)
    assert not up_to_date(request, site.storage_options)
    assert cook(site.refresh()["p1"]["2"], "normalize").status == "cooked"


def test_lazy_cooked_reads_the_dark_scan_too(site):
    prop = site["p1"]
    prop.spice.seed("normalize", dark={"scan": "1"})
    out = cooked(prop["2"], "normalize").normalized.values
    mean_dark = prop["1"].raw.frames.values.astype(np.float64).mean(axis=0)
    frames = prop["2"].raw.frames.values.astype(np.float32)
    np.testing.assert_allclose(out, frames - mean_dark.astype(np.float32), rtol=1e-6)


@pytest.mark.filterwarnings("ignore::basinflow.errors.UntypedSpiceWarning")
def test_a_conflict_in_an_unrelated_handle_does_not_block_a_cook(site):
    """Only the handles of the spice types the recipe needs are resolved."""
    prop = site["p1"]
    prop.spice.seed("normalize", dark=5.0)
    base = prop.spice.seed("notes", text="first")
    for n, text in ((1, "mine"), (2, "theirs")):  # two updates from revision 1 at once
        prop.spice.store.put(
            SpiceDocument(
                type="notes",
                handle="notes",
                uuid=f"notes-conflict-{n}",
                revision=2,
                parent=base.uuid,
                data={"text": text},
            )
        )
    prop.spice.refresh()
    assert prop.spice.conflicts()  # the conflict is real ...
    result = cook(prop["2"], "normalize")  # ... and does not concern normalize
    assert result.status == "cooked", result.reason
    frames = prop["2"].raw.frames.values.astype(np.float32)
    ds = bf.open_referrer(result.output, trusted=[site])
    np.testing.assert_allclose(ds.normalized.values, frames - 5.0, rtol=1e-6)


def test_a_referrer_is_written_with_the_outputs_storage_options(s3_site, s3_options):
    """An ``s3://`` output of a referrer cook goes to the configured endpoint (here a
    server on loopback), not to AWS."""
    s3, repo = s3_site
    first = cook(repo["p1"]["1"], "halve")
    assert first.status == "cooked", first.reason
    out = "s3://cooked/p1/1/profile-of-halve.h5"
    res = cook_referrer(first.output, "profile", out, trusted=[repo], storage_options=s3_options)
    assert res.status == "cooked", res.reason
    s3.invalidate_cache()
    assert s3.info("cooked/p1/1/profile-of-halve.h5")["size"] == res.bytes_written > 0
    ds = bf.open_referrer(out, storage_options=s3_options, trusted=[repo])
    np.testing.assert_allclose(ds.profile.values, ds.norm.values.sum(axis=2), rtol=1e-6)


def test_the_referrer_provenance_says_which_mask_was_used(tmp_path):
    """The mask the recipe applied is in /provenance (JSON and attribute), not only on the
    cooked variables: read back with h5py, for a scan with a detector mask and without."""
    frames = np.arange(3 * 4 * 5, dtype="uint32").reshape(3, 4, 5)
    pixel_mask = np.zeros((4, 5), "uint32")
    pixel_mask[1, 1] = 1
    (tmp_path / "raw/p").mkdir(parents=True)
    for scan, masked in (("1", True), ("2", False)):
        with h5py.File(tmp_path / f"raw/p/{scan}.h5", "w") as f:
            e = f.create_group("entry")
            e.attrs["NX_class"] = "NXentry"
            det = e.create_group("instrument").create_group("det")
            det.attrs["NX_class"] = "NXdetector"
            det["data"] = frames.astype("int32")  # int32: no automatic invalid value
            if masked:
                det["pixel_mask"] = pixel_mask
                det["saturation_value"] = 50
    repo = bf.Repository(
        f"file://{tmp_path}/raw/{{proposal}}/{{scan}}.h5#entry",
        output=f"file://{tmp_path}/out/{{proposal}}/{{scan}}/{{recipe}}.h5",
    )
    results = {s: cook(repo["p"][s], "roi", regions={"all": [0, 4, 0, 5]}) for s in "12"}
    assert all(r.status == "cooked" for r in results.values()), results
    with h5py.File(local(results["1"].output)) as f:
        prov = json.loads(f["provenance/document"][()])
        attr = f["provenance"].attrs["mask"]
        cooked_attr = f.attrs["mask"]
        intensity = f["intensity"][()]
    with h5py.File(tmp_path / "raw/p/1.h5") as f:
        det = f["entry/instrument/det"]
        truth = det["data"][()].astype(float)
        bad = (det["pixel_mask"][()] != 0)[None] | (truth >= det["saturation_value"][()])
    np.testing.assert_array_equal(intensity[:, 0], np.where(bad, 0, truth).sum(axis=(1, 2)))
    assert prov["mask"] == attr == cooked_attr
    assert f"{tmp_path}/raw/p/1.h5#/entry/instrument/det/pixel_mask (1 pixels)" in prov["mask"]
    assert "saturation value 50" in prov["mask"]
    assert "/entry/instrument/det/saturation_value" in prov["mask"]
    assert read_provenance(results["1"].output)["mask"] == prov["mask"]
    with h5py.File(local(results["2"].output)) as f:
        assert json.loads(f["provenance/document"][()])["mask"] == "none"
        assert f["provenance"].attrs["mask"] == "none"
