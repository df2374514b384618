"""What an HDF5 file makes libhdf5 open besides itself, and the audit that refuses it.

A file a referrer points at is data, and three HDF5 features make libhdf5 open *other
local files* named inside it, whatever :mod:`trust` decided about the file itself:

* an **external link** (``h5py.ExternalLink``): followed by ``group[name]``, by
  ``name in group`` and by ``group.get(name, getlink=True)``, and by xarray for every
  link in the group it opens;
* a **virtual dataset** source file (``h5py.VirtualSource``);
* **external raw storage** of a contiguous dataset (``create_dataset(external=...)``).

libhdf5 looks such a file up in an order of its own (an absolute name as is; then
``HDF5_EXT_PREFIX``/``HDF5_VDS_PREFIX``/``HDF5_EXTFILE_PREFIX`` directories, the
directory of the file holding the reference, the working directory; an absolute name
stripped to its last component for the later tries). :func:`audit` enumerates every
reference of a file without following any, computes those candidates, and requires
each candidate that exists to pass :meth:`Trust.check` (so a hostile name can neither
reach outside the trusted roots nor fall through to the working directory); referenced
HDF5 files are audited in turn. A file read remotely may hold no such reference at all:
libhdf5 would resolve it on the *local* disk.

:func:`link_of` reads one link without following it, for code that walks an untrusted
file itself (h5py's own helpers above follow external links).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import h5py

from basinflow.errors import BasinLimitError, UntrustedBasinError
from basinflow.storage import fs

#: most files one audit opens (the basin file and every HDF5 file it references, in turn)
MAX_AUDITED_FILES = 64
_PREFIX_ENV = {
    "external link": "HDF5_EXT_PREFIX",
    "virtual dataset source": "HDF5_VDS_PREFIX",
    "external storage": "HDF5_EXTFILE_PREFIX",
}


def _text(v: Any) -> str:
    return v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)


def link_of(group: h5py.Group, name: str) -> tuple[str, Any] | None:
    """``(kind, target)`` of the link ``name`` (one path component) in ``group``, without
    following it; ``None`` if there is none. ``kind`` is ``hard``, ``soft`` (target: the
    path), ``external`` (target: ``(filename, path)``) or ``user``.

    h5py's ``name in group`` and ``group.get(name, getlink=True)`` both *open* the file an
    external link names (``H5Oexists_by_name``): never use them on untrusted files.
    """
    links, key = group.id.links, name.encode()
    if not links.exists(key):
        return None
    kind = links.get_info(key).type
    if kind == h5py.h5l.TYPE_HARD:
        return "hard", None
    if kind == h5py.h5l.TYPE_SOFT:
        return "soft", _text(links.get_val(key))
    if kind == h5py.h5l.TYPE_EXTERNAL:
        filename, path = links.get_val(key)
        return "external", (_text(filename), _text(path))
    return "user", None


def references(f: h5py.File) -> Iterator[tuple[str, str, str]]:
    """``(kind, where, filename)`` of every other file ``f`` makes libhdf5 open: external
    links, virtual dataset sources (other than the file itself, ``"."``) and external raw
    storage. Reads link and dataset metadata only; follows nothing."""
    found: list[tuple[str, str, str]] = []
    user: list[str] = []

    def on_link(name: bytes, info: Any) -> None:
        if info.type == h5py.h5l.TYPE_EXTERNAL:
            filename, _path = f.id.links.get_val(name)
            found.append(("external link", "/" + _text(name), _text(filename)))
        elif info.type not in (h5py.h5l.TYPE_HARD, h5py.h5l.TYPE_SOFT):
            user.append("/" + _text(name))

    def on_object(name: bytes, info: Any) -> None:
        if info.type != h5py.h5o.TYPE_DATASET or name == b".":
            return
        dcpl = h5py.h5d.open(f.id, name).get_create_plist()
        where = "/" + _text(name)
        if dcpl.get_layout() == h5py.h5d.VIRTUAL:
            for i in range(dcpl.get_virtual_count()):
                source = _text(dcpl.get_virtual_filename(i))
                if source != ".":
                    found.append(("virtual dataset source", where, source))
        for i in range(dcpl.get_external_count()):
            found.append(("external storage", where, _text(dcpl.get_external(i)[0])))

    f.id.links.visit(on_link, info=True)
    h5py.h5o.visit(f.id, on_object, info=True)
    for where in user:
        found.append(("user-defined link", where, ""))
    yield from found


def candidates(kind: str, filename: str, parent_dir: str) -> list[str]:
    """Where libhdf5 looks for ``filename`` referenced from a file in ``parent_dir``, in
    its order (a superset: every place it may try)."""
    out = []
    name = filename
    if os.path.isabs(filename):
        out.append(filename)
        name = os.path.basename(filename)
    for env in dict.fromkeys([_PREFIX_ENV[kind], *_PREFIX_ENV.values()]):
        for prefix in filter(None, os.environ.get(env, "").split(os.pathsep)):
            out.append(os.path.join(prefix.replace("${ORIGIN}", parent_dir), name))
    out.append(os.path.join(parent_dir, name))
    out.append(os.path.join(os.getcwd(), name))  # the working directory
    # not normalised: the kernel resolves "link/.." through the symlink, as libhdf5 will
    return list(dict.fromkeys(p for p in out if name))


def audit(f: h5py.File, url: str, trust: Any, *, what: str = "basin") -> None:
    """Refuse (:class:`UntrustedBasinError`) a file that would make libhdf5 open a file
    outside the trusted roots; see the module documentation."""
    _audit(f, url, trust, what, {os.path.realpath(fs.local_path(url) or url)})


def _audit(f: h5py.File, url: str, trust: Any, what: str, seen: set[str]) -> None:
    local = fs.local_path(url)
    for kind, where, filename in references(f):
        if kind == "user-defined link":
            raise UntrustedBasinError(
                f"{what}: {url}#{where} is a user-defined HDF5 link; basinflow does not follow "
                "those. It was not opened; copy the data into the file"
            )
        if local is None:
            raise UntrustedBasinError(
                f"{what}: {url}#{where} is an HDF5 {kind} to {filename!r}; in a file read "
                "remotely libhdf5 would look for that file on the local disk, so the basin "
                "was refused. Copy the data into the file, or serve it locally"
            )
        parent = os.path.dirname(local)
        for cand in candidates(kind, filename, parent):
            if not os.path.lexists(cand):
                continue
            try:
                trust.check(cand, what=f"{what}: {url}#{where} ({kind} to {filename!r})")
            except UntrustedBasinError as exc:
                raise UntrustedBasinError(
                    f"{exc}; libhdf5 would open {os.path.realpath(cand)!r} for it, so {url!r} "
                    "was refused. Pass trusted=[...] if that location is yours"
                ) from None
            if kind == "external storage":
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
            break  # libhdf5 stops at the first candidate that opens


__all__ = ["MAX_AUDITED_FILES", "audit", "candidates", "link_of", "references"]
