"""Run by test_gcpause.py in a child process (a deadlock there is killed, not waited on).

``python gc_litter.py URL LOCAL_H5 ROUNDS [--no-pause] [--xr]``: fsspec's I/O thread keeps
making reference cycles that hold h5py objects (of the local file ``LOCAL_H5``) while this
thread opens the remote HDF5 file ``URL`` ``ROUNDS`` times through basinflow and walks its
metadata (``--xr``: opens it as a referrer's variables are opened, through xarray's
h5netcdf backend, and loads them lazily), with the collector's threshold low so that
collections run often on both threads. A collection on the I/O thread that frees one of
those objects while this thread holds h5py's lock and waits for that I/O is the deadlock
:mod:`basinflow.storage.gcpause` prevents; ``--no-pause`` makes the pause a no-op, to show
that the setup does hit it.
Prints ``ok ROUNDS`` when done.
"""

from __future__ import annotations

import asyncio
import gc
import sys

import fsspec.asyn
import h5py

from basinflow.storage import gcpause, hdf5
from basinflow.storage.referrer.meta import open_xr


def main() -> None:
    url, local, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if "--no-pause" in sys.argv:
        gcpause.enter = gcpause.leave = lambda *a, **k: None
    f = h5py.File(local, "r")
    # h5py objects made here, on this thread; the I/O thread only takes references
    pool = [f["/"] for _ in range(20_000)]
    running = True

    async def litter() -> None:
        while running and pool:
            cycle: list = [pool.pop()]
            cycle.append(cycle)  # unreachable once dropped: only a collection frees it
            del cycle
            await asyncio.sleep(0.0005)

    gc.freeze()  # what exists now is never scanned again: collections stay cheap
    gc.set_threshold(20, 1000, 1000)
    done = asyncio.run_coroutine_threadsafe(litter(), fsspec.asyn.get_loop())
    try:
        for _ in range(rounds):
            if "--xr" in sys.argv:
                ds = open_xr(url, {}, group="entry/data")
                try:
                    assert ds.data_vars, ds
                    for var in ds.data_vars.values():
                        var.values  # noqa: B018
                finally:
                    ds.close()
                continue
            handle = hdf5.open_h5(url, {})
            try:
                for group in _groups(handle.file):
                    dict(group.attrs)
            finally:
                handle.close()
    finally:
        running = False
        done.result(timeout=30)
    print("ok", rounds, flush=True)


def _groups(group: h5py.Group, depth: int = 3):
    for name in group:
        obj = group.get(name)
        if isinstance(obj, h5py.Group):
            yield obj
            if depth > 1:
                yield from _groups(obj, depth - 1)


if __name__ == "__main__":
    main()
