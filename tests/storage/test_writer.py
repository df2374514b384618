from __future__ import annotations

import dask.array as da
import h5py
import numpy as np
import pytest
import xarray as xr

from basinflow.errors import ChunkAlignmentError
from basinflow.storage.writer import check_alignment, encode_chunk, write_dataset


def _ds(chunks):
    rng = np.random.default_rng(0)
    a = da.from_array(rng.random((11, 17, 9)).astype("float32"), chunks=chunks)
    return xr.Dataset(
        {"img": (("index", "y", "x"), a, {"units": "counts"}), "t": ("index", np.arange(11.0))},
        coords={"qx": ("x", np.linspace(0, 1, 9))},
        attrs={"recipe": "test", "nested": {"a": 1}},
    )


def test_parallel_direct_chunks_roundtrip(tmp_path):
    ds = _ds((4, 17, 9))  # last chunk partial: padded to the storage chunk
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        stats = write_dataset(f, ds, window=2)
    assert stats.chunks == 3 and stats.bytes > 0
    with h5py.File(path) as f:
        d = f["img"]
        assert d.chunks == (4, 17, 9) and d.compression == "gzip" and d.shuffle
        np.testing.assert_array_equal(d[()], ds.img.values)
    back = xr.open_dataset(path, engine="h5netcdf")
    np.testing.assert_array_equal(back.img.values, ds.img.values)
    assert back.img.attrs["units"] == "counts" and "qx" in back.coords


def test_encode_matches_hdf5_filters(tmp_path):
    a = np.arange(24, dtype="float64").reshape(4, 6)
    with h5py.File(tmp_path / "e.h5", "w") as f:
        d = f.create_dataset(
            "a", shape=a.shape, dtype=a.dtype, chunks=a.shape, compression="gzip", shuffle=True
        )
        d.id.write_direct_chunk((0, 0), encode_chunk(a), 0)
        np.testing.assert_array_equal(d[()], a)


def test_misaligned_strict_is_refused_with_names(tmp_path):
    ds = _ds(((3, 5, 3), 17, 9))
    ds.img.encoding["chunks"] = (4, 17, 9)
    with h5py.File(tmp_path / "m.h5", "w") as f, pytest.raises(ChunkAlignmentError) as err:
        write_dataset(f, ds, strict=True)
    msg = str(err.value)
    assert "'img'" in msg and "(3, 5, 3)" in msg and "(4, 17, 9)" in msg


def test_misaligned_is_rechunked_not_lost(tmp_path):
    ds = _ds(((3, 5, 3), 17, 9))
    ds.img.encoding["chunks"] = (4, 17, 9)
    assert check_alignment("img", ds.img.data.chunks, (4, 17, 9))
    with h5py.File(tmp_path / "r.h5", "w") as f:
        write_dataset(f, ds)
    with h5py.File(tmp_path / "r.h5") as f:
        assert f["img"].chunks == (4, 17, 9)
        np.testing.assert_array_equal(f["img"][()], ds.img.values)
