"""Cyclic garbage collection paused while libhdf5 reads a remote file.

**The deadlock.** libhdf5 reads a remote file through an fsspec file object (h5py's
``fileobj`` driver). Every h5py call holds h5py's global lock (``phil``) for its whole
duration, reads included, and an fsspec read hands its request to fsspec's event-loop
thread and waits for it. The I/O thread runs Python code and so may start a cyclic
collection; if that collection frees an h5py object (one caught in a reference cycle:
a traceback's frames, an object that keeps itself alive, a ``CachingFileManager``), the
object's deallocator takes ``phil``, which the waiting thread holds: neither moves again.
h5py documents the hazard and its remedy: keep the collector from running while a
file-like object is being read from a service thread (h5py issue 2019, its file docs).

**What the earlier guard did and why it was replaced.** A full ``gc.collect()`` before
every remote open emptied the garbage that existed *then*, at a cost that grows with the
heap (0.2-0.5 s per file in a process with xarray, dask and numba loaded: 90 % of a
remote listing's time). It did not cover garbage made *during* the read (by another
thread, or by the I/O thread's own callbacks), nor reads after the open.

**This scheme** (:func:`paused`): while any thread is inside a *section* (a span in which
it may hold ``phil`` and wait for the I/O thread: from a remote ``h5py.File`` open to its
close, or one read through a cached handle), automatic collection is disabled for the
whole process (``gc.disable`` is global; a counter makes sections nest and overlap across
threads; the first entrant records whether collection was enabled and the last one to
leave restores it). The argument, case by case:

* *No collection can start during a section:* automatic collections check the enabled
  flag before they start; nothing in basinflow, h5py or fsspec calls ``gc.collect()``.
  Garbage made meanwhile simply waits: the first allocation after the last section ends
  collects it, on whatever thread, and by then no thread waits for the I/O thread while
  holding ``phil`` (only sections do that), so a deallocator that takes ``phil`` only waits
  for a short local h5py call, if any.
* *A collection that started before the section was entered* is still running (the GIL
  passes to other threads while a collection runs finalizers or its deallocators block).
  The entering thread therefore waits, before it can take ``phil``, until no collection
  is in progress. Whether one is, is recorded by a ``gc.callbacks`` entry that is a
  C method (``OrderedDict.move_to_end``: the last key is the last phase seen), placed
  first in the list: a Python callback could lose the GIL at its first instruction,
  *after* the collection was triggered and *before* it recorded anything, and the
  entering thread would then miss the collection. A second, Python, callback records
  which thread collects, so that a thread entering a section from inside its own
  collection (a finalizer) does not wait for itself.
* Cost: a lock, two counter updates and two ``gc`` flag changes per section, microseconds,
  independent of the heap.

Limits: code that calls ``gc.enable()`` while a section is open, or ``gc.collect()`` on
fsspec's I/O thread, defeats the pause; h5py reads of remote files outside basinflow's
sections (a user's own ``h5py.File(fsspec_file)``) are not covered.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
_depth = 0
_was_enabled = False

#: last key = the phase of the last gc callback ("start" while a collection runs)
_phase: OrderedDict[str, None] = OrderedDict.fromkeys(("start", "stop"))
#: the thread running the current collection (set by a Python callback, after ``_phase``)
_collector: int | None = None


def _who(phase: str, info: dict, _ident=threading.get_ident) -> None:
    # get_ident bound at definition: collections at interpreter exit still find it
    global _collector
    _collector = _ident() if phase == "start" else None


def _install() -> None:
    if _phase.move_to_end not in gc.callbacks:
        gc.callbacks.insert(0, _phase.move_to_end)  # C: no bytecode, cannot lose the GIL
        gc.callbacks.append(_who)


_install()


def collecting_elsewhere() -> bool:
    """Whether a cyclic collection is running on another thread now."""
    return next(reversed(_phase)) == "start" and _collector != threading.get_ident()


def enter() -> None:
    """Open a section (see the module documentation); pair with :func:`leave`."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    # no new automatic collection can start now; let a running one finish first
    while collecting_elsewhere():
        time.sleep(0.0005)


def leave() -> None:
    global _depth
    with _lock:
        _depth -= 1
        if _depth == 0 and _was_enabled:
            gc.enable()


@contextmanager
def paused() -> Iterator[None]:
    """A section: automatic cyclic GC off in the whole process until it closes."""
    enter()
    try:
        yield
    finally:
        leave()


class SectionLock:
    """A lock that is also a section, for libraries that take a lock around each read and
    accept one: xarray's HDF5 backends (their public ``lock=`` argument) hold it around
    every lazy read of a variable, which for a remote referrer holds h5py's lock and waits
    for fsspec's I/O thread, long after ``open_xr`` returned.

    The section is entered before ``lock`` (the backend's own, e.g. xarray's
    ``HDF5_LOCK``) is taken and before h5py's, so the wait for a running collection holds
    no lock. Pickled as a new section around a lock made from ``lock``'s own pickle
    (xarray's locks are serialisable), for dask's distributed scheduler."""

    def __init__(self, lock: Any):
        self._lock = lock

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        enter()
        try:
            ok = self._lock.acquire(blocking, timeout)
        except BaseException:
            leave()
            raise
        if not ok:
            leave()
        return ok

    def release(self) -> None:
        try:
            self._lock.release()
        finally:
            leave()

    def __enter__(self) -> SectionLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __reduce__(self) -> tuple[type[SectionLock], tuple[Any]]:
        return (SectionLock, (self._lock,))


def depth() -> int:
    """Open sections now (for tests)."""
    return _depth


__all__ = ["SectionLock", "collecting_elsewhere", "depth", "enter", "leave", "paused"]
