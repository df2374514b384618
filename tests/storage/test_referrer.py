"""Referrers: layout, opening, basins (mapped, internal, chained), pins, trust."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import xarray as xr

import basinflow as bf
from basinflow.errors import (
    BasinCycleError,
    BasinError,
    BasinUnavailableError,
    MissingBasinWarning,
    NotHDF5Error,
    ReferrerError,
    StaleBasinError,
    StaleBasinWarning,
    UntrustedBasinError,
)
from basinflow.storage.referrer.basins import Basin
from basinflow.storage.referrer.export import export
from basinflow.storage.referrer.read import read_meta
from basinflow.storage.referrer.write import internal_basin, write_referrer
from tests.storage.conftest import local
from tests.support import servers


def _raw_path(scan) -> str:
    return local(scan.path_url)


# --- layout -------------------------------------------------------------------------------------
def test_layout_xarray_nexus_externallink_provenance(cooked):
    _repo, scan, result = cooked
    path = local(result.output)
    plain = xr.open_dataset(path, engine="h5netcdf")
    assert set(plain.data_vars) == {"norm"}
    with h5py.File(path) as f:
        assert f["entry"].attrs["NX_class"] == "NXentry"
        assert f["entry/data"].attrs["signal"] == "norm"
        frames = f["entry/raw/frames"]  # relative ExternalLink into the raw file
        assert frames.shape[0] == scan.raw.sizes["index"]
        link = f["entry/raw"].get("frames", getlink=True)
        assert not link.filename.startswith("/")
        (key,) = f["basins"]
        basin = json.loads(f["basins"][key][()])
        assert basin["type"] == "file" and basin["pin"]["size"] > 0
        assert Basin.from_json(f["basins"][key][()]).key == key
        prov = json.loads(f["provenance/document"][()])
    assert prov["recipe"] == "halve" and prov["inputs"][scan.url]["content_id"]
    assert "numpy" in prov["packages"]
    assert "secret" not in json.dumps(basin) + json.dumps(prov)


def test_open_exposes_raw_frames_lazily(cooked):
    repo, _scan, result = cooked
    ds = bf.open_referrer(result.output, trusted=[repo])
    assert ds.frames.chunks is not None and ds.norm.chunks is not None
    np.testing.assert_array_equal(ds.norm.values * 2, ds.frames.values)
    assert json.loads(ds.attrs["provenance"])["recipe"] == "halve"
    assert [r.status for r in ds.encoding["basins"]] == ["ok"]


def test_moving_referrer_with_raw_keeps_it_readable(cooked, tmp_path):
    _repo, _scan, _result = cooked
    site = tmp_path / "site"
    moved = tmp_path / "moved"
    shutil.move(site, moved)
    ref = moved / "out/p1/1/halve.h5"
    ds = bf.open_referrer(str(ref), trusted=[str(moved)])
    assert ds.encoding["basins"][0].location.startswith(str(moved))
    assert int(ds.frames.values.sum()) > 0


def test_relative_paths_ignore_working_directory(cooked, tmp_path, monkeypatch):
    repo, _scan, result = cooked
    monkeypatch.chdir(tmp_path)
    ds = bf.open_referrer(result.output, trusted=[repo])
    assert ds.frames.shape[0] == ds.norm.shape[0]


# --- pins, missing, formats ----------------------------------------------------------------
def test_stale_basin_is_an_error(cooked):
    repo, scan, result = cooked
    with open(_raw_path(scan), "r+b") as f:
        f.seek(0, 2)
        f.write(b"\0" * 16)  # the raw file changed after cooking
    with pytest.raises(StaleBasinError, match="no longer matches"):
        bf.open_referrer(result.output, trusted=[repo])
    with pytest.warns(StaleBasinWarning):
        ds = bf.open_referrer(result.output, trusted=[repo], check_pins=False)
    assert "frames" in ds


def test_missing_basin_lists_every_location(cooked):
    repo, scan, result = cooked
    raw = _raw_path(scan)
    shutil.move(raw, raw + ".gone")
    with pytest.raises(BasinUnavailableError) as err:
        bf.open_referrer(result.output, trusted=[repo])
    msg = str(err.value)
    assert (msg.count("missing") == 1 and raw in msg and "../" in msg) or raw in msg
    with pytest.warns(MissingBasinWarning):
        ds = bf.open_referrer(result.output, trusted=[repo], missing="warn")
    assert "frames" not in ds and "norm" in ds


def test_non_hdf5_basin_is_a_clear_error(cooked):
    repo, scan, result = cooked
    raw = _raw_path(scan)
    with open(raw, "wb") as f:
        f.write(b"this is not HDF5\n" * 100)
    with pytest.raises(NotHDF5Error, match="not"), pytest.warns(StaleBasinWarning):
        bf.open_referrer(result.output, trusted=[repo], check_pins=False)


def test_truncated_referrer(cooked):
    repo, _scan, result = cooked
    path = local(result.output)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 3])
    with pytest.raises(ReferrerError, match="truncated"):
        bf.open_referrer(result.output, trusted=[repo])


def test_plain_hdf5_is_not_a_referrer(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["a"] = 1
    with pytest.raises(ReferrerError, match="not a basinflow referrer"):
        bf.open_referrer(str(tmp_path / "x.h5"))


# --- mapped, internal, chained, cyclic ---------------------------------------------------------
def _frames_ref(tmp_path, scan, name, bmap, n):
    raw = scan.raw
    b = Basin(
        name="raw",
        type="file",
        paths=[_raw_path(scan)],
        layout="nexus",
        fragment="entry",
        mapping="basinmap0",
        pin=dict(scan.pin),
    )
    cooked = xr.Dataset({"weight": ("index", np.arange(n, dtype="f8"))})
    path = tmp_path / name
    write_referrer(
        str(path),
        cooked,
        referrer_url=path.as_uri(),
        basins=[b],
        basinmaps={"basinmap0": bmap},
        dims={"index": n},
    )
    return path, raw


@pytest.mark.parametrize(
    "bmap",
    [np.array([3, 1]), np.array([0, 1, 2, 3, 0, 1, 2, 3, 4, 5]), np.zeros(5, int)],
    ids=["subset", "superset", "many-to-one"],
)
def test_mapped_basins(repo, tmp_path, bmap):
    scan = repo["p1"]["1"]
    path, raw = _frames_ref(tmp_path, scan, "m.h5", bmap, len(bmap))
    ds = bf.open_referrer(str(path), trusted=[repo])
    np.testing.assert_array_equal(ds.frames.values, raw.frames.values[bmap])
    np.testing.assert_array_equal(ds.theta.values, raw.theta.values[bmap])


def test_wrong_length_and_out_of_range_maps(repo, tmp_path):
    scan = repo["p1"]["1"]
    path, _ = _frames_ref(tmp_path, scan, "w.h5", np.array([0, 1, 2]), 3)
    with h5py.File(path, "a") as f:
        f.attrs["basinflow_dims"] = json.dumps({"index": 4})
    with pytest.raises(ReferrerError, match="basinmap0"):
        bf.open_referrer(str(path), trusted=[repo])
    path, _ = _frames_ref(tmp_path, scan, "o.h5", np.array([0, 99]), 2)
    with pytest.raises(ReferrerError, match="outside the basin"):
        bf.open_referrer(str(path), trusted=[repo])


def test_internal_basin_and_several_maps(repo, tmp_path):
    scan = repo["p1"]["1"]
    n = scan.raw.sizes["index"]
    dark = xr.Dataset({"dark": (("index", "y", "x"), np.full((1, 3, 4), 7.0))})
    gain = xr.Dataset({"gain": ("index", np.array([1.0, 2.0]))})
    basins = [
        internal_basin("dark", ["dark"], mapping="basinmap0"),
        internal_basin("gain", ["gain"], mapping="basinmap1", order=1),
    ]
    path = tmp_path / "i.h5"
    write_referrer(
        str(path),
        xr.Dataset({"w": ("index", np.ones(n))}),
        referrer_url=path.as_uri(),
        basins=basins,
        basinmaps={"basinmap0": np.zeros(n, int), "basinmap1": np.arange(n) % 2},
        internal={"dark": dark, "gain": gain},
        dims={"index": n},
    )
    ds = bf.open_referrer(str(path))
    assert ds.dark.shape == (n, 3, 4) and float(ds.dark.sum()) == 7.0 * n * 12
    np.testing.assert_array_equal(ds.gain.values, (np.arange(n) % 2) + 1.0)


def test_basins_of_basins_expose_raw_frames(cooked, tmp_path):
    repo, scan, result = cooked
    from basinflow.tasks.cooking import cook_referrer

    out = f"file://{tmp_path}/site/out/p1/1/profile.h5"
    res = cook_referrer(result.output, "profile", out, trusted=[repo])
    assert res.status == "cooked", res.reason
    ds = bf.open_referrer(out, trusted=[repo])
    assert {"profile", "norm", "frames", "theta"} <= set(ds.variables)
    np.testing.assert_allclose(ds.profile.values, ds.norm.values.sum(axis=2), rtol=1e-6)
    np.testing.assert_array_equal(ds.frames.values, scan.raw.frames.values)


def test_cycles_are_detected(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    empty = xr.Dataset({"v": ("index", np.zeros(2))})
    for this, other in ((a, b), (b, a)):
        basin = Basin(name="other", type="file", paths=[other.name], layout="referrer")
        write_referrer(str(this), empty, referrer_url=this.as_uri(), basins=[basin])
    with pytest.raises(BasinCycleError, match="cycle"):
        bf.open_referrer(str(a))


# --- trust --------------------------------------------------------------------------------------
def _foreign(tmp_path, **basin):
    d = tmp_path / "downloads"
    d.mkdir(exist_ok=True)
    path = d / "foreign.h5"
    b = Basin(
        name="evil", layout="datasets", datasets={"x": {"path": "/a", "dims": ["i"]}}, **basin
    )
    write_referrer(
        str(path), xr.Dataset({"v": ("i", np.zeros(1))}), referrer_url=path.as_uri(), basins=[b]
    )
    return path


@pytest.mark.parametrize(
    "target", ["/etc/passwd", "../../../../../../../../etc/passwd", "../elsewhere/data.h5"]
)
def test_foreign_referrer_cannot_reach_outside(tmp_path, target):
    other = tmp_path / "elsewhere"
    other.mkdir()
    with h5py.File(other / "data.h5", "w") as f:  # would parse fine if it were opened
        f["a"] = [1]
    path = _foreign(tmp_path, type="file", paths=[target])
    with pytest.raises(UntrustedBasinError, match="none was opened"):
        bf.open_referrer(str(path))
    with pytest.raises(UntrustedBasinError):
        bf.open_referrer(str(path), trust_referrer_dir=False, trusted=[str(tmp_path / "x")])


def test_symlink_out_of_the_trusted_root_is_refused(tmp_path):
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "link.h5").symlink_to("/etc/passwd")
    path = _foreign(tmp_path, type="file", paths=["link.h5"])
    with pytest.raises(UntrustedBasinError):
        bf.open_referrer(str(path))


def test_foreign_referrer_sends_no_request(tmp_path):
    log = tmp_path / "requests.jsonl"
    (tmp_path / "www").mkdir()
    with servers.http_server(tmp_path / "www", log=log) as server:
        path = _foreign(
            tmp_path,
            type="remote",
            format="http",
            urls=[f"{server.url}/data.h5", f"{server.url}/../x.h5"],
        )
        with pytest.raises(UntrustedBasinError, match="none was opened"):
            bf.open_referrer(str(path), storage_options={"headers": {"Authorization": "secret"}})
        assert server.requests() == []


def test_trusted_host_is_used(tmp_path, http_server):
    frames = {"frames": {"path": "/entry/instrument/pilatus/data", "dims": ["index", "y", "x"]}}
    url = f"{http_server.url}/nexus/2021-05/0040.h5"
    d = tmp_path / "refs"
    d.mkdir()
    path = d / "remote.h5"
    b = Basin(name="raw", type="remote", format="http", urls=[url], datasets=frames)
    write_referrer(
        str(path), xr.Dataset({"v": ("i", np.zeros(1))}), referrer_url=path.as_uri(), basins=[b]
    )
    with pytest.raises(UntrustedBasinError):
        bf.open_referrer(str(path))
    ds = bf.open_referrer(str(path), trusted_hosts=[http_server.url])
    assert ds.frames.ndim == 3 and ds.frames[:1].values.shape[0] == 1


# --- export -------------------------------------------------------------------------------------
def test_export_is_self_contained(cooked, tmp_path):
    repo, _scan, result = cooked
    out = tmp_path / "export" / "copy.h5"
    export(result.output, out.as_uri(), trusted=[repo])
    shutil.rmtree(tmp_path / "site")
    meta = read_meta(out.as_uri())
    assert meta.basins == [] and meta.provenance["exported_from"] == result.output
    ds = bf.open_referrer(str(out))
    assert {"norm", "frames", "theta"} <= set(ds.variables)
    np.testing.assert_array_equal(ds.norm.values * 2, ds.frames.values)


def test_basin_definition_validation():
    with pytest.raises(ReferrerError):
        Basin(name="x", type="ftp")
    with pytest.raises(ReferrerError):
        Basin(name="x", type="file", mapping="other")
    assert issubclass(BasinError, ReferrerError)


def test_cli_inspect_and_export(cooked, tmp_path):
    import typer
    from typer.testing import CliRunner

    from basinflow.cli_referrer import register

    _repo, _scan, result = cooked
    app = typer.Typer()
    register(app)
    site = str(tmp_path / "site")
    r = CliRunner().invoke(app, ["inspect", local(result.output), "--trusted", site])
    assert r.exit_code == 0, r.output
    assert "raw" in r.output and "ok" in r.output and "halve" in r.output
    out = tmp_path / "e.h5"
    r = CliRunner().invoke(app, ["export", local(result.output), str(out), "--trusted", site])
    assert r.exit_code == 0, r.output and out.exists()
