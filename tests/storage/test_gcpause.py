"""The GC pause that keeps libhdf5's remote reads from deadlocking (storage/gcpause.py).

The deadlock test runs a child process against the real loopback HTTP server: fsspec's I/O
thread makes reference cycles holding h5py objects while the main thread opens and walks
remote HDF5 files. Without the pause (``--no-pause``) that child hung 3 times in 3 (and
so did the full ``gc.collect()`` before each open that the pause replaced); with it, it
finishes. A hang is killed after a timeout and reported as the deadlock.
"""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from basinflow.errors import NotFound
from basinflow.storage import gcpause, hdf5

LITTER = Path(__file__).with_name("gc_litter.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("how", ["h5py", "xarray"])
def test_remote_reads_survive_cycles_collected_on_the_io_thread(how, http_server, sample_root):
    """``xarray``: as a remote referrer's variables are read (``open_xr``, lazily, outside
    any section basinflow opens: each read of the file object is one)."""
    scan = next((sample_root / "nexus").glob("*/*.h5"))
    url = f"{http_server.url}/{scan.relative_to(sample_root).as_posix()}"
    try:
        out = subprocess.run(
            [
                sys.executable,
                str(LITTER),
                url,
                str(scan),
                "40",
                *(["--xr"] if how == "xarray" else []),
            ],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("remote HDF5 reads deadlocked with cyclic garbage on fsspec's I/O thread")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["ok", "40"]


def test_sections_nest_and_restore_the_collector():
    assert gc.isenabled() and gcpause.depth() == 0
    with gcpause.paused():
        assert not gc.isenabled()
        with gcpause.paused():
            assert gcpause.depth() == 2
        assert not gc.isenabled()
    assert gc.isenabled() and gcpause.depth() == 0
    gc.disable()  # a caller that had it off keeps it off
    try:
        with gcpause.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_collection_is_seen_while_it_runs():
    seen = []

    class Probe:
        def __del__(self):
            # runs inside the collection, on this thread: not "elsewhere"
            seen.append(gcpause.collecting_elsewhere())

    p = Probe()
    p.me = p
    del p
    assert not gcpause.collecting_elsewhere()
    gc.collect()
    assert seen == [False]
    assert not gcpause.collecting_elsewhere()


def test_remote_handles_end_their_section(http_server, sample_root):
    scan = next((sample_root / "nexus").glob("*/*.h5"))
    url = f"{http_server.url}/{scan.relative_to(sample_root).as_posix()}"
    handle = hdf5.open_h5(url)
    assert gcpause.depth() == 1 and not gc.isenabled()
    handle.close()
    assert gcpause.depth() == 0 and gc.isenabled()
    with pytest.raises(NotFound):
        hdf5.open_h5(f"{http_server.url}/nexus/no-such-file.h5")
    assert gcpause.depth() == 0 and gc.isenabled()
    # a read through the cached (h5py) path opens and leaves its own section
    with h5py.File(scan, "r") as f:
        want = f["entry/data/theta"][()]
    arr = hdf5.H5Array(url, "/entry/data/theta", want.shape, want.dtype, None)
    np.testing.assert_array_equal(arr[1:3], want[1:3])
    assert gcpause.depth() == 0 and gc.isenabled()
