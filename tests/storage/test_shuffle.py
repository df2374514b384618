"""The compiled shuffle and unshuffle agree with HDF5's shuffle filter as h5py writes it,
and ISA-L's deflate streams are what HDF5's deflate filter reads."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from basinflow.storage import deflate
from basinflow.storage.shuffle import shuffle, unshuffle


def _shuffle(raw: bytes, itemsize: int) -> bytes:
    n = len(raw) // itemsize
    body = np.frombuffer(raw[: n * itemsize], np.uint8).reshape(n, itemsize).T.tobytes()
    return body + raw[n * itemsize :]  # HDF5 leaves a tail of partial values as it is


@given(st.sampled_from([1, 2, 3, 4, 8, 16]), st.binary(max_size=2000))
def test_unshuffle_inverts_shuffle(itemsize, raw):
    assert unshuffle(_shuffle(raw, itemsize), itemsize).tobytes() == raw


def test_unshuffle_reads_chunks_h5py_shuffled(tmp_path):
    path = tmp_path / "s.h5"
    rng = np.random.default_rng(0)
    values = {
        "u2": rng.integers(0, 2**16, (3, 5, 7), dtype=np.uint16),
        "f4": rng.normal(size=(3, 5, 7)).astype(np.float32),
        "f8": rng.normal(size=(3, 5, 7)),
    }
    with h5py.File(path, "w") as f:
        for name, v in values.items():
            f.create_dataset(name, data=v, chunks=(1, 5, 7), shuffle=True)  # no deflate
    with h5py.File(path, "r") as f:
        for name, v in values.items():
            _mask, raw = f[name].id.read_direct_chunk((1, 0, 0))
            got = unshuffle(raw, v.dtype.itemsize).view(v.dtype).reshape(5, 7)
            assert np.array_equal(got, v[1]), name


@given(st.sampled_from(["u1", "u2", "i2", "f4", "u4", "f8", "i8", "c16"]), st.binary(max_size=4000))
def test_shuffle_is_hdf5s_shuffle(dtype, raw):
    dtype = np.dtype(dtype)
    values = np.frombuffer(raw[: len(raw) // dtype.itemsize * dtype.itemsize], dtype)
    assert shuffle(values) == _shuffle(values.tobytes(), dtype.itemsize)
    assert unshuffle(shuffle(values), dtype.itemsize).tobytes() == values.tobytes()


@given(st.binary(max_size=5000), st.integers(0, 9))
def test_deflate_streams_are_zlib_streams(raw, level):
    import zlib

    packed = deflate.compress(raw, level)
    assert zlib.decompress(packed) == raw == deflate.decompress(zlib.compress(raw, 6))


def test_chunks_we_compress_are_read_by_hdf5(tmp_path):
    """Through h5py's own filter pipeline: shuffle + deflate chunks from the writer."""
    from basinflow.storage.writer import encode_chunk

    rng = np.random.default_rng(1)
    values = rng.normal(size=(4, 5, 7)).astype(np.float32)
    with h5py.File(tmp_path / "w.h5", "w") as f:
        d = f.create_dataset(
            "x", shape=values.shape, dtype="f4", chunks=(1, 5, 7), compression="gzip",
            compression_opts=1, shuffle=True,
        )  # fmt: skip
        for i in range(4):
            d.id.write_direct_chunk((i, 0, 0), encode_chunk(values[i : i + 1], level=1), 0)
    with h5py.File(tmp_path / "w.h5", "r") as f:
        assert np.array_equal(f["x"][()], values)


def test_levels_map_onto_isal_and_bad_ones_are_refused():
    assert [deflate.isal_level(n) for n in range(10)] == [None, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    with pytest.raises(ValueError):
        deflate.isal_level(10)
    with pytest.raises(deflate.DeflateError):
        deflate.decompress(b"not a zlib stream")
