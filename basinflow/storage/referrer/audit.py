"""The audit: nothing a referrer leads to makes libhdf5 open a file the trust refuses.

Run before anything is read, on what libhdf5 will open (see
:mod:`basinflow.storage.hdf5_links` for the three ways a file names another):

* **the referrer itself** (:func:`hard`): the groups xarray opens (the root, an internal
  basin's ``/basin_data/<name>``) and the metadata objects must be hard links to objects
  stored in the file. A virtual dataset there may only map the referrer onto itself
  (source file ``"."`` after libhdf5's name substitution), and its source dataset path
  is walked as libhdf5 walks it: every link on it must be a hard link, and a source that
  is itself virtual is checked in turn (chains). External storage is refused.
* **a basin file** (:func:`audit`): every reference at every depth (external links,
  virtual dataset sources after substitution, ``%b`` sources by every name they match,
  external raw storage) is looked up where libhdf5 would look (:func:`candidates`), and
  each candidate that exists must pass :meth:`Trust.check`; referenced HDF5 files are
  audited in turn. A file read remotely may hold no such reference at all: libhdf5
  would resolve it on the *local* disk.
* **a TIFF directory** (:func:`check_directory`): every entry resolves inside the roots.

The second wall (:mod:`basinflow.storage.referrer.meta`): referrers are opened through a
Python file object, so libhdf5's external-link and virtual-source opens land on the same
bytes, never on another file, even if this audit missed a case.
"""

from __future__ import annotations

import os
from typing import Any

import h5py

from basinflow.errors import (
    BasinLimitError,
    BasinUnavailableError,
    ReferrerError,
    UntrustedBasinError,
)
from basinflow.storage import fs
from basinflow.storage.hdf5_links import (
    MAX_LINK_HOPS,
    SubstitutionError,
    candidates,
    existing,
    link_of,
    references,
    virtual_sources,
    walk,
)
from basinflow.storage.referrer.basins import DAMAGED

#: most files one audit opens (the basin file and every HDF5 file it references, in turn)
MAX_AUDITED_FILES = 64


# --- the referrer itself ----------------------------------------------------------------
def hard(group: h5py.Group, name: str, url: str, kind: type | None = None) -> Any:
    """``group[name]`` when it is a hard link (to a ``kind``) whose data the referrer holds
    itself: never follows a soft or external link (libhdf5 would open the file an external
    link names, wherever it is)."""
    link = link_of(group, name)
    where = f"{group.name.rstrip('/')}/{name}"
    if link is None:
        raise ReferrerError(f"{url!r}: {where} is missing; {DAMAGED}")
    if link[0] != "hard":
        target = ":".join(link[1]) if isinstance(link[1], tuple) else link[1]
        raise ReferrerError(
            f"{url!r}: {where} is a {link[0]} link (to {target!r}); a referrer stores its "
            f"variables and metadata itself. It was not followed; {DAMAGED}"
        )
    obj = group[name]
    if kind is not None and not isinstance(obj, kind):
        raise ReferrerError(
            f"{url!r}: {where} is a {type(obj).__name__}, not a {kind.__name__}; {DAMAGED}"
        )
    if isinstance(obj, h5py.Dataset):
        _own_data(group.file, obj, where, url, set())
    return obj


def _own_data(f: h5py.File, d: h5py.Dataset, where: str, url: str, seen: set[str]) -> None:
    """Refuse a referrer dataset whose data libhdf5 would read from another file: external
    storage, a virtual source in another file, or a ``"."`` source reached through a link
    (checked recursively along chains of virtual datasets)."""

    def refuse(why: str) -> ReferrerError:
        return ReferrerError(
            f"{url!r}: {where} {why}; a referrer stores its variables itself. It was not "
            f"read; {DAMAGED}"
        )

    dcpl = d.id.get_create_plist()
    if dcpl.get_external_count():
        raise refuse("keeps its data in another file (external storage)")
    if dcpl.get_layout() != h5py.h5d.VIRTUAL:
        return
    if d.name in seen or len(seen) > MAX_LINK_HOPS:
        raise refuse("is a virtual dataset in a cycle or a chain too long to follow")
    seen.add(d.name)
    try:
        sources = list(virtual_sources(dcpl))
    except SubstitutionError as exc:
        raise refuse(f"is a virtual dataset with a malformed source name ({exc})") from None
    for filename, dset, _pattern in sources:
        if filename != ".":
            raise refuse(
                f"is a virtual dataset with a source in another file ({filename!r}, as "
                "libhdf5 reads the name)"
            )
        steps, end = walk(f, dset)
        if steps:
            s = steps[0]
            raise refuse(
                f"is a virtual dataset whose source {dset!r} runs through the {s.kind} link "
                f"{s.at} (to {s.target!r})"
            )
        if end is None:
            raise refuse(f"is a virtual dataset whose source {dset!r} does not exist")
        src = f[end]
        if isinstance(src, h5py.Dataset):
            _own_data(f, src, f"{where} -> {end}", url, seen)


# --- basin files ------------------------------------------------------------------------
def audit(f: h5py.File, url: str, trust: Any, *, what: str = "basin") -> None:
    """Refuse (:class:`UntrustedBasinError`) a file that would make libhdf5 open a file
    outside the trusted roots; see the module documentation."""
    _audit(f, url, trust, what, {os.path.realpath(fs.local_path(url) or url)})


def _audit(f: h5py.File, url: str, trust: Any, what: str, seen: set[str]) -> None:
    local = fs.local_path(url)
    try:
        refs = references(f)
    except SubstitutionError as exc:
        raise UntrustedBasinError(
            f"{what}: {url!r} has a virtual dataset libhdf5 cannot resolve ({exc}); it was "
            "refused. Copy the data into the file"
        ) from None
    for ref in refs:
        if ref.kind == "user-defined link":
            raise UntrustedBasinError(
                f"{what}: {url}#{ref.where} is a user-defined HDF5 link; basinflow does not "
                "follow those. It was not opened; copy the data into the file"
            )
        if ref.kind == "virtual dataset source" and ref.filename == ".":
            continue  # the file itself: every link its path could run through is listed too
        if local is None:
            raise UntrustedBasinError(
                f"{what}: {url}#{ref.where} is an HDF5 {ref.kind} to {ref.filename!r}; in a "
                "file read remotely libhdf5 would look for that file on the local disk, so "
                "the basin was refused. Copy the data into the file, or serve it locally"
            )
        if ref.pattern is not None and "%b" in os.path.dirname(ref.filename):
            raise UntrustedBasinError(
                f"{what}: {url}#{ref.where} is a virtual dataset whose source directory "
                f"varies by block ({ref.filename!r}); basinflow cannot tell which files "
                "libhdf5 would open, so it was refused. Copy the data into the file"
            )
        for cand in existing(ref, os.path.dirname(local)):
            try:
                trust.check(
                    cand, what=f"{what}: {url}#{ref.where} ({ref.kind} to {ref.filename!r})"
                )
            except UntrustedBasinError as exc:
                raise UntrustedBasinError(
                    f"{exc}; libhdf5 would open {os.path.realpath(cand)!r} for it, so {url!r} "
                    "was refused. Pass trusted=[...] if that location is yours"
                ) from None
            if ref.kind == "external storage":
                continue  # raw bytes, not HDF5: nothing further to follow
            real = os.path.realpath(cand)
            if not os.path.isfile(real) or not h5py.is_hdf5(real):
                continue  # libhdf5 tries the next candidate
            if real not in seen:
                seen.add(real)
                if len(seen) > MAX_AUDITED_FILES:
                    raise BasinLimitError(
                        f"{what}: {url!r} references more than {MAX_AUDITED_FILES} HDF5 files "
                        "through external links and virtual datasets (MAX_AUDITED_FILES); it "
                        "was refused. Copy the data into fewer files"
                    )
                with h5py.File(real, "r") as g:
                    _audit(g, "file://" + real, trust, what, seen)
            if ref.pattern is None:
                break  # libhdf5 stops at the first candidate that opens


def check_directory(url: str, trust: Any, what: str) -> None:
    """Every entry of a local scan directory (a TIFF stack) must resolve inside the trusted
    roots: the directory may be trusted while a frame in it is a symlink to elsewhere."""
    path = fs.local_path(url)
    if path is None:
        return
    try:
        entries = [e.path for e in os.scandir(path)]
    except OSError as exc:
        raise BasinUnavailableError(f"{what}: cannot list the directory: {exc}") from exc
    for entry in entries:
        trust.check("file://" + entry, what=f"{what}: file")


__all__ = [
    "MAX_AUDITED_FILES",
    "audit",
    "candidates",
    "check_directory",
    "hard",
]
