"""Real ESRF files (BLISS, LIMA/Eiger): read as h5py reads them, or a clear error."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import basinflow as bf
from basinflow import errors
from basinflow.recipes.registry import get_recipe
from tests.storage.realfiles import fetch

NISO4 = "ewoksxas/resources/data/NiSO4"


@pytest.fixture(scope="session")
def real():
    return fetch()


def test_eiger_frames_equal_h5py_and_gap_pixels_are_not_counted(real):
    path = real / "ewoksscxrd/tests/data/eiger_0000.h5"
    repo = bf.Repository(f"file://{real}/{{proposal}}/tests/data/{{scan}}.h5")  # @default entry
    scan = repo["ewoksscxrd"]["eiger_0000"]
    assert scan.summary["frames"] == 2 and scan.summary["detector"] == (2162, 2068)
    raw = scan.raw
    with h5py.File(path) as f:
        truth = f["entry_0000/ESRF-ID11/eiger/data"][()]
    np.testing.assert_array_equal(raw.frames.values, truth)
    gap = truth == np.iinfo(np.uint32).max
    assert gap.any()
    assert raw.frames.attrs["invalid_value"] == 2**32 - 1
    out = get_recipe("roi").cook(raw, None, regions={"all": [0, 2162, 0, 2068]}).compute()
    expected = np.where(gap, 0, truth).sum(axis=(1, 2), dtype=np.float64)
    np.testing.assert_array_equal(out.intensity.values[:, 0], expected)
    np.testing.assert_array_equal(out.nonfinite.values[:, 0], gap.sum(axis=(1, 2)))
    assert expected.max() < 1e9  # the gap pixels alone would be ~1e15
    assert "invalid value 4294967295" in out.attrs["mask"]


def test_bliss_scan_with_absent_lima_source_is_a_clear_error(real):
    d = real / NISO4
    repo = bf.Repository(f"file://{d}/{{proposal}}/{{proposal}}.h5#{{scan}}")
    scan = repo["NiSO4_SKa_XES_0001"]["1.1"]
    with h5py.File(d / "NiSO4_SKa_XES_0001/NiSO4_SKa_XES_0001.h5") as f:
        assert f["1.1/measurement/p100k_kit"].is_virtual  # h5py would read zeros
    with pytest.raises(errors.MissingSourceError) as e:
        scan.raw  # noqa: B018
    msg = str(e.value)
    assert "scan0001/p100k_kit_0000.h5" in msg and "NiSO4_SKa_XES_0001.h5#1.1" in msg
    assert "absent" in msg and "copy" in msg


def test_bliss_alignment_scan_is_counters(real):
    d = real / NISO4
    repo = bf.Repository(f"file://{d}/{{proposal}}/{{proposal}}.h5#{{scan}}")
    prop = repo["NiSO4_align_mirrors_0001"]
    assert prop.scans() == ["1.1", "2.1"]
    raw = prop["2.1"].raw
    assert "frames" not in raw and raw.attrs["layout"] == "bliss"
    with h5py.File(d / "NiSO4_align_mirrors_0001/NiSO4_align_mirrors_0001.h5") as f:
        m = f["2.1/measurement"]
        for name in ("pvfm", "I0t", "I00", "mon4" if "mon4" in m else "IFt"):
            np.testing.assert_array_equal(raw[name].values, m[name][()])
    assert raw["pvfm"].attrs["role"] == "positioner"
    assert raw["I0t"].attrs["role"] == "monitor" and raw["I00"].attrs["role"] == "monitor"
    assert raw["IFt"].attrs["role"] == "counter"
    assert prop["2.1"].summary["axes"].keys() == {"pvfm"}
    with pytest.raises(errors.LayoutError, match="no frames variable"):
        get_recipe("roi").cook(raw, None, regions={"a": [0, 1, 0, 1]})


def test_master_file_lists_what_it_can_and_names_the_rest(real):
    d = real / NISO4
    repo = bf.Repository(f"file://{d}/{{proposal}}.h5#{{scan}}")
    prop = repo["blc16742_NiSO4"]
    with pytest.warns(errors.UnlistedEntriesWarning, match=r"NiSO4_SKa_xanes_0001_1\.1"):
        keys = prop.scans()
    assert "NiSO4_align_mirrors_0001_2.1" in keys
    raw = prop["NiSO4_align_mirrors_0001_2.1"].raw
    with h5py.File(d / "NiSO4_align_mirrors_0001/NiSO4_align_mirrors_0001.h5") as f:
        np.testing.assert_array_equal(raw["pvfm"].values, f["2.1/measurement/pvfm"][()])
    # the scan lives in the dataset file: its pin covers it
    pin = prop["NiSO4_align_mirrors_0001_2.1"].pin
    assert any("NiSO4_align_mirrors_0001.h5" in u for u in pin["sources"])
    # a scan of the master file whose dataset file holds a VDS into absent LIMA files
    with pytest.raises(errors.MissingSourceError, match=r"p100k_kit_0000\.h5"):
        prop["NiSO4_SKa_XES_0001_1.1"].raw  # noqa: B018
