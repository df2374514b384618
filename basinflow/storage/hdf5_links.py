"""What libhdf5 opens besides the file it was asked to open, read without following it.

A file is data, and three HDF5 features make libhdf5 open *other local files* named
inside it:

* an **external link** (``h5py.ExternalLink``): followed by ``group[name]``, by
  ``name in group`` and by ``group.get(name, getlink=True)``, and by xarray for every
  link in the group it opens;
* a **virtual dataset** source (``h5py.VirtualSource``): its file is opened when the
  dataset is read. libhdf5 rewrites the stored name first (``%%`` becomes ``%``, ``%b``
  the block number of an unlimited "printf" mapping: ``s%b.h5`` names ``s0.h5``,
  ``s1.h5``, ...), and ``"."`` is the file itself, whose source *dataset path* may run
  through links again;
* **external raw storage** of a contiguous dataset (``create_dataset(external=...)``).

libhdf5 looks such a file up in an order of its own (an absolute name as is; then
``HDF5_EXT_PREFIX``/``HDF5_VDS_PREFIX``/``HDF5_EXTFILE_PREFIX`` directories, the
directory of the file holding the reference, the working directory; an absolute name
stripped to its last component for the later tries): :func:`candidates`.

This module only *reads* (link and dataset-creation metadata) and decides nothing: the
referrer audit (:mod:`basinflow.storage.referrer.audit`) applies the trust to what it
reports, and raw-file readers may use it for their own VDS source checks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import h5py

#: most soft/external links libhdf5 traverses for one path (its ``H5L_NUM_LINKS``)
MAX_LINK_HOPS = 16

_PREFIX_ENV = {
    "external link": "HDF5_EXT_PREFIX",
    "virtual dataset source": "HDF5_VDS_PREFIX",
    "external storage": "HDF5_EXTFILE_PREFIX",
}


def _text(v: Any) -> str:
    return v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)


@dataclass(frozen=True)
class Reference:
    """One other file a file makes libhdf5 open.

    ``filename`` is the name libhdf5 looks up (after its substitution rules); for a
    printf-mapped virtual source it is the name with the block number left as ``%b``
    and ``pattern`` matches every name it can stand for. ``target`` is the path inside
    that file (a link's target object, a virtual source's dataset), ``""`` otherwise.
    """

    #: "external link", "virtual dataset source", "external storage" or "user-defined link"
    kind: str
    where: str  # the object holding the reference, in the referencing file
    filename: str
    target: str = ""
    pattern: re.Pattern[str] | None = None


def link_of(group: h5py.Group, name: str) -> tuple[str, Any] | None:
    """``(kind, target)`` of the link ``name`` (one path component) in ``group``, without
    following it; ``None`` if there is none. ``kind`` is ``hard``, ``soft`` (target: the
    path), ``external`` (target: ``(filename, path)``) or ``user``.

    h5py's ``name in group`` and ``group.get(name, getlink=True)`` both *open* the file an
    external link names (``H5Oexists_by_name``): never use them on untrusted files.
    """
    links, key = group.id.links, name.encode("utf-8", "surrogateescape")
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


class SubstitutionError(ValueError):
    """A virtual source name libhdf5 would reject (a ``%`` not followed by ``%`` or ``b``)."""


def substituted(name: str, block: int | str | None = None) -> tuple[str, re.Pattern[str] | None]:
    """A virtual dataset source name as libhdf5 uses it: ``%%`` is ``%``; ``%b`` is the
    block number of a printf mapping (then the pattern of every name it stands for).
    With ``block``, ``%b`` is that number (the name of one block's source); without, it
    is left as ``%b`` in the name.

    The stored name is *not* the name opened: ``/outside/s%%.h5`` opens ``/outside/s%.h5``.
    This is the one parser of these names: the referrer audit and the raw-file source
    checks (:mod:`basinflow.storage.sources`) must see the same files libhdf5 opens.
    """
    out, regex, printf, i = [], [], False, 0
    while i < len(name):
        c = name[i]
        if c != "%":
            out.append(c)
            regex.append(re.escape(c))
            i += 1
            continue
        nxt = name[i + 1 : i + 2]
        if nxt == "%":
            out.append("%")
            regex.append(re.escape("%"))
        elif nxt == "b":
            printf = True
            out.append("%b" if block is None else str(block))
            regex.append("[0-9]+")
        else:
            raise SubstitutionError(f"invalid format specifier '%{nxt}' in {name!r}")
        i += 2
    return "".join(out), (re.compile("".join(regex)) if printf else None)


def block_of(name: str, candidate: str) -> int | None:
    """The block number ``b`` for which the printf source name ``name`` opens the file
    ``candidate`` (``substituted(name, b)[0] == candidate``), else ``None``. libhdf5 writes
    ``b`` in plain decimal, so ``s01.h5`` is no block of ``s%b.h5``; read by position
    (every ``%b`` is the same number), not by a regex that digits beside ``%b`` confuse."""
    zero, pattern = substituted(name, 0)
    if pattern is None:
        return None
    one = substituted(name, 1)[0]
    changed = [i for i, (a, b) in enumerate(zip(zero, one, strict=True)) if a != b]
    digits, rest = divmod(len(candidate) - (len(zero) - len(changed)), len(changed))
    if rest or digits < 1:
        return None
    text = candidate[changed[0] : changed[0] + digits]
    if not (text.isascii() and text.isdigit()):
        return None
    b = int(text)
    return b if substituted(name, b)[0] == candidate else None


def virtual_sources(dcpl: Any) -> Iterator[tuple[str, str, re.Pattern[str] | None]]:
    """``(file name, dataset path, file pattern)`` of each source of a virtual dataset's
    creation property list, after substitution; the file name ``"."`` is the file itself."""
    for i in range(dcpl.get_virtual_count()):
        filename, pattern = substituted(_text(dcpl.get_virtual_filename(i)))
        dset, _ = substituted(_text(dcpl.get_virtual_dsetname(i)))
        yield filename, dset, pattern


def dataset_references(f: h5py.File, name: str, dataset: Any) -> Iterator[Reference]:
    """What reading the dataset (a low-level ``DatasetID``) at ``name`` opens."""
    dcpl = dataset.get_create_plist()
    if dcpl.get_layout() == h5py.h5d.VIRTUAL:
        for filename, dset, pattern in virtual_sources(dcpl):
            yield Reference("virtual dataset source", name, filename, dset, pattern)
    for i in range(dcpl.get_external_count()):
        yield Reference("external storage", name, _text(dcpl.get_external(i)[0]))


def references(f: h5py.File) -> list[Reference]:
    """Every other file ``f`` can make libhdf5 open: external links at every depth, the
    sources of every virtual dataset (``"."`` ones included: the caller follows their
    dataset paths with :func:`walk`), external raw storage, and user-defined links (which
    a plugin could resolve anywhere). Reads metadata only; follows nothing."""
    found: list[Reference] = []

    def on_link(name: bytes, info: Any) -> None:
        where = "/" + _text(name)
        if info.type == h5py.h5l.TYPE_EXTERNAL:
            filename, path = f.id.links.get_val(name)
            found.append(Reference("external link", where, _text(filename), _text(path)))
        elif info.type not in (h5py.h5l.TYPE_HARD, h5py.h5l.TYPE_SOFT):
            found.append(Reference("user-defined link", where, ""))

    def on_object(name: bytes, info: Any) -> None:
        if info.type != h5py.h5o.TYPE_DATASET or name == b".":
            return
        found.extend(dataset_references(f, "/" + _text(name), h5py.h5d.open(f.id, name)))

    f.id.links.visit(on_link, info=True)
    h5py.h5o.visit(f.id, on_object, info=True)
    return found


@dataclass(frozen=True)
class Step:
    """One link met while walking a path: ``kind`` is ``soft``, ``external`` or ``user``;
    ``at`` the path of the link; ``target`` where it leads."""

    kind: str
    at: str
    target: Any


def walk(f: h5py.File, path: str) -> tuple[list[Step], str | None]:
    """The links libhdf5 traverses to reach ``path`` in ``f`` and the hard path it ends at
    (``None`` when it leaves the file through an external or user-defined link, or does
    not exist). Soft links are followed here, inside the file; nothing is opened."""
    steps: list[Step] = []
    todo = [c for c in path.split("/") if c and c != "."]
    here: list[str] = []
    while todo:
        name = todo.pop(0)
        group = f["/" + "/".join(here)] if here else f["/"]
        if not isinstance(group, h5py.Group):
            return steps, None
        link = link_of(group, name)
        at = "/" + "/".join([*here, name])
        if link is None:
            return steps, None
        kind, target = link
        if kind == "hard":
            here.append(name)
            continue
        steps.append(Step(kind, at, target))
        if kind != "soft" or len(steps) > MAX_LINK_HOPS:
            return steps, None
        rest = [c for c in target.split("/") if c and c != "."]
        here = [] if target.startswith("/") else here
        todo = rest + todo
    return steps, "/" + "/".join(here)


def candidates(kind: str, filename: str, parent_dir: str) -> list[str]:
    """Where libhdf5 looks for ``filename`` referenced from a file in ``parent_dir``, in
    its order (a superset: every place it may try)."""
    out = []
    name = filename
    if os.path.isabs(filename):
        out.append(filename)
        name = os.path.basename(filename)
    for env in dict.fromkeys([_PREFIX_ENV.get(kind, "HDF5_EXT_PREFIX"), *_PREFIX_ENV.values()]):
        for prefix in filter(None, os.environ.get(env, "").split(os.pathsep)):
            out.append(os.path.join(prefix.replace("${ORIGIN}", parent_dir), name))
    out.append(os.path.join(parent_dir, name))
    out.append(os.path.join(os.getcwd(), name))  # the working directory
    # not normalised: the kernel resolves "link/.." through the symlink, as libhdf5 will
    return list(dict.fromkeys(p for p in out if name))


def existing(ref: Reference, parent_dir: str) -> Iterator[str]:
    """The candidates of ``ref`` that exist now (``lexists``: a dangling symlink counts),
    in libhdf5's order; for a printf source, every existing name its pattern matches."""
    for cand in candidates(ref.kind, ref.filename, parent_dir):
        if ref.pattern is None:
            if os.path.lexists(cand):
                yield cand
            continue
        directory = os.path.dirname(cand)
        base_pattern = re.compile(ref.pattern.pattern.rsplit("/", 1)[-1])
        try:
            names = sorted(os.listdir(directory or "."))
        except OSError:
            continue
        for entry in names:
            if base_pattern.fullmatch(entry):
                yield os.path.join(directory, entry)


__all__ = [
    "MAX_LINK_HOPS",
    "Reference",
    "Step",
    "SubstitutionError",
    "block_of",
    "candidates",
    "dataset_references",
    "existing",
    "link_of",
    "references",
    "substituted",
    "virtual_sources",
    "walk",
]
