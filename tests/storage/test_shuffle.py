"""The compiled unshuffle agrees with HDF5's shuffle filter as h5py writes it."""

from __future__ import annotations

import h5py
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from basinflow.storage.shuffle import unshuffle


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
