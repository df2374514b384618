"""Hostile HDF5 structures: ways a file makes libhdf5 open *another* file, one level
deeper than :mod:`tests.storage.test_hostile_referrers` goes (virtual datasets whose
source is the file itself but whose dataset path runs through a link, libhdf5's name
substitution in virtual source names, printf-mapped sources, chains of virtual datasets).

Every case is observed, not assumed: the file outside is a sentinel that counts each
``open()`` (inotify), and each test's control shows that libhdf5 alone *would* open it.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

import basinflow as bf
from basinflow.errors import ReferrerError, UntrustedBasinError
from basinflow.storage.hdf5_links import substituted
from basinflow.storage.referrer.basins import Basin
from basinflow.storage.referrer.export import export
from basinflow.storage.referrer.write import internal_basin
from tests.storage.test_hostile_referrers import Watched, _h5, _plain_ref


@pytest.fixture
def secret(tmp_path):
    watched = Watched(tmp_path / "outside" / "secret.h5")
    yield watched
    watched.close()


def _vds(f: h5py.File, name: str, filename: str, source: str, n: int = 3) -> None:
    layout = h5py.VirtualLayout(shape=(n,), dtype="f8")
    layout[:] = h5py.VirtualSource(filename, source, shape=(n,))
    f.create_virtual_dataset(name, layout)


def _printf_vds(f: h5py.File, name: str, pattern: str, source: str = "x", block: int = 3):
    """An unlimited virtual dataset whose blocks come from ``pattern`` with ``%b`` = 0, 1, ..."""
    vspace = h5py.h5s.create_simple((block,), (h5py.h5s.UNLIMITED,))
    vspace.select_hyperslab((0,), (h5py.h5s.UNLIMITED,), stride=(block,), block=(block,))
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_virtual(vspace, pattern.encode(), source.encode(), h5py.h5s.create_simple((block,)))
    space = h5py.h5s.create_simple((0,), (h5py.h5s.UNLIMITED,))
    h5py.h5d.create(f.id, name.encode(), h5py.h5t.IEEE_F64LE, space, dcpl=dcpl)


# --- 1. the referrer itself: a "." virtual source whose path runs through a link ----------------
def _self_vds_ref(tmp_path: Path, secret_path: Path, how: str) -> Path:
    """A referrer (no basins, no trusted roots needed) with a top-level virtual dataset
    ``leak`` mapped onto the referrer itself, reaching ``secret.h5`` by ``how``."""
    path = _plain_ref(
        tmp_path / "downloads" / "ref.h5",
        [internal_basin("dark", ["dark"])],
        internal={"dark": xr.Dataset({"dark": ("index", np.ones(2))})},
        dims={"index": 2},
    )
    with h5py.File(path, "a") as f:
        where = "basin_data/dark/leak" if how == "internal-basin" else "leak"
        if how == "soft-then-external":
            f["entry/hidden"] = h5py.ExternalLink(str(secret_path), "/")
            f["entry/alias"] = h5py.SoftLink("/entry/hidden")
            _vds(f, where, ".", "/entry/alias/x")
        elif how == "chain":  # leak -> "."/entry/mid (virtual) -> "."/entry/elink/x
            f["entry/elink"] = h5py.ExternalLink(str(secret_path), "/")
            _vds(f, "entry/mid", ".", "/entry/elink/x")
            _vds(f, where, ".", "/entry/mid")
        elif how == "self-by-name":  # the referrer's own name is another file to libhdf5
            f["entry/elink"] = h5py.ExternalLink(str(secret_path), "/")
            _vds(f, where, "ref.h5", "/entry/elink/x")
        else:  # "external-below-top", "internal-basin"
            f["entry/elink"] = h5py.ExternalLink(str(secret_path), "/")
            _vds(f, where, ".", "/entry/elink/x")
    return path


@pytest.mark.parametrize(
    "how",
    ["external-below-top", "soft-then-external", "chain", "self-by-name", "internal-basin"],
)
def test_a_self_mapped_virtual_dataset_cannot_reach_outside(tmp_path, secret, how):
    path = _self_vds_ref(tmp_path, secret.path, how)
    with pytest.raises(ReferrerError, match="virtual dataset") as err:
        bf.open_referrer(str(path))
    assert "leak" in str(err.value) and "not read" in str(err.value)
    with pytest.raises(ReferrerError):  # export copies nothing either
        export(str(path), str(tmp_path / "copy.h5"))
    assert not (tmp_path / "copy.h5").exists()
    assert secret.opens() == 0
    # the control: libhdf5 alone reads the outside file's data through it
    with h5py.File(path, "r") as f:
        leak = f["basin_data/dark/leak" if how == "internal-basin" else "leak"][()]
    assert list(leak) == [42.0] * 3 and secret.opens() >= 1


def test_a_self_mapped_virtual_dataset_inside_the_file_still_opens(tmp_path):
    """The audit refuses only what leaves the file: a "." source through hard links is read."""
    path = _plain_ref(tmp_path / "ref.h5")
    with h5py.File(path, "a") as f:
        f["entry/store/x"] = np.arange(3.0)
        _vds(f, "view", ".", "/entry/store/x")
    np.testing.assert_array_equal(bf.open_referrer(str(path)).view.values, np.arange(3.0))


# --- 2. libhdf5's name substitution in virtual sources -----------------------------------------
def test_substitution_follows_libhdf5(tmp_path):
    """:func:`substituted` agrees with what libhdf5 opens (checked by reading through it)."""
    (tmp_path / "a%b").mkdir()
    _h5(tmp_path / "s%.h5", x=np.full(3, 1.0))
    _h5(tmp_path / "s%%.h5", x=np.full(3, 2.0))
    with h5py.File(tmp_path / "v.h5", "w") as f:
        _vds(f, "v", str(tmp_path / "s%%.h5"), "x")
    with h5py.File(tmp_path / "v.h5") as f:
        assert f["v"][0] == 1.0  # "%%" named "s%.h5", not the file called "s%%.h5"
    assert substituted(str(tmp_path / "s%%.h5")) == (str(tmp_path / "s%.h5"), None)
    name, pattern = substituted("/d/s%b_%%.h5")
    assert name == "/d/s%b_%.h5" and pattern.fullmatch("/d/s12_%.h5")


@pytest.mark.parametrize("how", ["percent", "printf", "chain-through-trusted"])
def test_virtual_source_names_are_checked_as_libhdf5_reads_them(tmp_path, how):
    outside = tmp_path / "outside"
    watched = Watched(outside / "s0.h5") if how == "printf" else Watched(outside / "s%.h5")
    raw = tmp_path / "downloads" / "raw.h5"
    raw.parent.mkdir(parents=True)
    with h5py.File(raw, "w") as f:
        f["a"] = np.arange(3.0)
        if how == "percent":  # stored "s%%.h5" (no such file): libhdf5 opens "s%.h5"
            _vds(f, "v", str(outside / "s%%.h5"), "x")
        elif how == "printf":  # "s%b.h5": s0.h5, s1.h5, ...
            _printf_vds(f, "v", str(outside / "s%b.h5"))
        else:  # raw.h5 -> downloads/mid.h5 (trusted) -> outside/s%.h5
            with h5py.File(raw.parent / "mid.h5", "w") as g:
                _vds(g, "m", str(outside / "s%%.h5"), "x")
            _vds(f, "v", "mid.h5", "m")
    try:
        basin = Basin(name="evil", type="file", paths=["raw.h5"], datasets={"x": {"path": "/v"}})
        ds = xr.Dataset({"u": ("x_dim0", np.zeros(3))})
        path = _plain_ref(tmp_path / "downloads" / "ref.h5", [basin], ds=ds)
        with pytest.raises(UntrustedBasinError, match="libhdf5 would") as err:
            bf.open_referrer(str(path)).x.load()
        assert str(watched.path) in str(err.value)
        assert watched.opens() == 0
        with h5py.File(raw) as f:  # the control: libhdf5 alone opens it
            assert f["v"][0] == 42.0
        assert watched.opens() >= 1
    finally:
        watched.close()


def test_virtual_sources_in_trusted_places_still_open(tmp_path):
    """Substitution cuts both ways: a "%%" source inside the roots is followed and read."""
    dl = tmp_path / "downloads"
    _h5(dl / "s%.h5", x=np.full(3, 7.0))
    for i in range(2):
        _h5(dl / f"p{i}.h5", x=np.full(3, float(i)))
    with h5py.File(_h5(dl / "raw.h5", a=np.arange(3.0)), "a") as f:
        _vds(f, "v", "s%%.h5", "x")
        _printf_vds(f, "w", "p%b.h5")
    basin = Basin(
        name="ok",
        type="file",
        paths=["raw.h5"],
        datasets={"v": {"path": "/v", "dims": ["i"]}, "w": {"path": "/w", "dims": ["j"]}},
    )
    path = _plain_ref(dl / "ref.h5", [basin], ds=xr.Dataset({"u": ("i", np.zeros(3))}))
    ds = bf.open_referrer(str(path))
    np.testing.assert_array_equal(ds.v.values, np.full(3, 7.0))
    np.testing.assert_array_equal(ds.w.values, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0])


def test_the_second_wall_holds_without_the_audit(tmp_path, secret, monkeypatch):
    """Were the audit to miss a virtual source, the referrer is read through a file object:
    libhdf5 resolves the source against the same bytes, never the outside file."""
    from basinflow.storage.referrer import audit

    monkeypatch.setattr(audit, "_own_data", lambda *a, **k: None)
    path = _self_vds_ref(tmp_path, secret.path, "external-below-top")
    try:
        ds = bf.open_referrer(str(path))
        values = ds.leak.values
    except Exception as exc:  # noqa: BLE001 - refused or unreadable are both fine
        values = exc
    assert not (isinstance(values, np.ndarray) and values[0] == 42.0)
    assert secret.opens() == 0
