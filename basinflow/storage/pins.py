"""Pins: what a file was when a referrer (or a cooked output's provenance) was made, and
whether it still is.

A pin records the file's size and its *identity*, the cheapest thing that changes when
its content does, and optionally a full *digest* of its content:

============  ==========================================================  ================
storage       identity (recorded, compared first)                         cost per check
============  ==========================================================  ================
local file    inode, mtime and ctime (nanoseconds): any write changes      one ``stat``
              ctime, which no user can set back (``touch -r`` restores
              mtime only)
S3            ``VersionId`` (versioned buckets), else ``ETag`` (the MD5    one ``HEAD``
              of a single-part upload: changes with any byte)
HTTP(S)       ``ETag``, else ``Last-Modified``: as strong as the server    one ``HEAD``
              makes them (file servers derive them from size and mtime)
============  ==========================================================  ================

An unchanged identity is a match. A changed identity (a rewrite, but also a copy, a move
to another inode, a re-upload) is a match only if the recorded ``digest`` (a BLAKE2b of
every byte, ``pin(..., full=True)``; taken for referrers read as basins) still
agrees, which costs one full read of the file; without a digest it is stale. The sampled
``content_id`` (16 KiB from each end) is still recorded to tell files apart at a glance
(for a scan: locally, or remotely where the server gives no identity, ``content="auto"``),
but never vouches for a file whose identity changed: it misses any change in between.

HDF5 files also have a ``layout`` digest (:func:`layout_id`): a hash of their metadata
(links, attributes, types, shapes, filters), of the values of small datasets (counters,
motors, the monitor: at most :data:`LAYOUT_SMALL` stored bytes each) and of where every
chunk is stored and how large it is. It costs what opening the file costs (libhdf5 reads
that metadata to open a scan anyway: one local open, a few range requests remotely) and
sees any change of metadata or small datasets, and a rewritten compressed chunk whose
stored size changed; it does not see a same-size rewrite inside frames (an unfiltered
chunk, contiguous data, a chunk that recompresses to its old size). So it never replaces
an identity; it is recorded where it can decide something:

* **no identity** (an HTTP server that sends neither ``ETag`` nor ``Last-Modified``): the
  layout and the sampled ends must both agree, instead of the ends alone;
* **with a full digest**: when the identity changed, a changed layout is stale at once;
  only an unchanged one (a copy, a move) costs the full read.

It is not checked while the identity is unchanged: that would cost a file open on every
check, for every scan a flow plans (see docs/reliability.md for what remains unseen).

**Digests recorded at write time.** A referrer basinflow writes is hashed before its
commit, while the file is still in the page cache (B10: ``write_output`` of a 141 MiB
referrer took 1.08x as long with it, within the noise of a shared machine), and the
digest is recorded beside it in ``<output>.pin.json`` with the identity the file has
after the commit (:func:`record_written`). A later full pin of that file (:func:`pin`
with ``full``; a referrer read as a basin) takes the digest from the record when the
file's identity is still the recorded one (:func:`recorded_digest`), instead of reading
every byte again, possibly from S3. The identity is what makes the record safe to
believe: a file changed, copied or moved since has another one, and is read instead. A
record is used only when a pin is *taken*; a pin is always *checked* against the file
itself. Not in the current pointer: a referrer read as a basin is found by its URL, and
the record beside it is the one place a URL alone leads to.

Pins written before identities were recorded (``size``, ``mtime``, ``content_id`` only)
match when the size, mtime *and* sampled content all agree: the best they allow.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import numpy as np

from basinflow.storage import fs

#: Bytes hashed from each end of a file for its content id: enough to tell HDF5 files
#: apart (superblock, root metadata, tail of the last chunk) while staying one request.
#: 16 KiB, not 64: a pin is taken for every scan opened, and 2 x 64 KiB dominated the
#: bytes fetched to read one frame remotely (benchmarks/results/B2.md).
CONTENT_SAMPLE = 16 * 1024
#: bytes read per request while computing a full digest
DIGEST_BLOCK = 8 * 1024 * 1024
#: the suffix of the record beside a file basinflow wrote (:func:`record_url`)
RECORD_SUFFIX = ".pin.json"
#: a record is a few hundred bytes; anything longer is not one
MAX_RECORD_BYTES = 64 * 1024
#: the keys that make up the identity, by storage
IDENTITY_KEYS = ("ino", "ctime_ns", "mtime_ns", "version_id", "etag", "last_modified")
#: Datasets stored in at most this many bytes enter the layout digest with their values:
#: scan counters, motor positions and the monitor live in such datasets, and a forged or
#: corrected column is the in-place change the chunk index alone cannot see. Frames are
#: far larger and enter with their chunk index only.
LAYOUT_SMALL = 64 * 1024


def identity(url: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{size, ...identity}`` of the file now (one ``stat`` or ``HEAD``), plus the float
    ``mtime`` kept for people reading a pin."""
    path = fs.local_path(url)
    if path is not None:
        try:
            return _stat_identity(os.stat(path))
        except OSError as exc:
            raise fs.translate_errors(url, exc) from exc
    meta = fs.info(url, storage_options)
    out: dict[str, Any] = {"size": int(meta.get("size") or 0)}
    version = meta.get("VersionId") or meta.get("version_id")
    if version and version != "null":
        out["version_id"] = str(version)
    etag = meta.get("ETag") or meta.get("etag")
    if etag:
        out["etag"] = str(etag).strip('"')
    if meta.get("Last-Modified"):
        out["last_modified"] = str(meta["Last-Modified"])
    mtime = meta.get("mtime") or meta.get("LastModified") or meta.get("created")
    if mtime is not None:
        out["mtime"] = mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime)
    return out


def _stat_identity(st: os.stat_result) -> dict[str, Any]:
    return {
        "size": st.st_size,
        "mtime": st.st_mtime,
        "ino": st.st_ino,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
    }


def pin(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    content: bool | str = True,
    full: bool | str = False,
    layout: bool | None = None,
) -> dict[str, Any]:
    """What a file is now: size, identity, ``content_id`` (sampled; unless ``content`` is
    false) and, with ``full``, the ``digest`` of every byte: the one basinflow recorded
    when it wrote the file (:func:`recorded_digest`) if the file's identity still is the
    one recorded, else one full read; ``full="recorded"`` takes only a recorded digest
    (never a full read). For HDF5 files, the ``layout`` digest (:func:`layout_id`) is
    taken where it can decide something: ``layout=None`` records it when the storage
    gives no identity or with a digest (the layout is compared before reading every
    byte); ``True``/``False`` force it.

    ``content="auto"`` samples only where the sample is cheap (a local file: two
    ``pread``) or where :func:`verdict` needs it (a remote file whose server gave no
    identity: no ETag, Last-Modified or VersionId). A remote file with an identity is
    judged by it alone, so its two 16 KiB range requests would be bytes for display
    only: a third of what reading one frame remotely fetched (benchmarks B2)."""
    out = identity(url, storage_options)
    if content == "auto":
        content = fs.local_path(url) is not None or not any(k in out for k in IDENTITY_KEYS)
    if content:
        out["content_id"] = content_id(url, storage_options, out["size"])
    if full:
        found = recorded_digest(url, storage_options, out)
        if found is None and full != "recorded":
            found = digest(url, storage_options, out["size"])
        if found is not None:
            out["digest"] = found
    if layout is None:
        layout = "digest" in out or not any(k in out for k in IDENTITY_KEYS)
    if layout:
        found = layout_id(url, storage_options)
        if found is not None:
            out["layout"] = found
    return out


def content_id(
    url: str, storage_options: Mapping[str, Any] | None = None, size: int | None = None
) -> str:
    """BLAKE2b of the size and 16 KiB from each end (one or two range requests)."""
    filesystem, path = fs.url_to_fs(url, storage_options)
    try:
        if size is None:
            size = int(filesystem.info(path)["size"])
        h = hashlib.blake2b(str(size).encode(), digest_size=16)
        if size <= 2 * CONTENT_SAMPLE:
            h.update(filesystem.cat_file(path))
        else:
            h.update(filesystem.cat_file(path, start=0, end=CONTENT_SAMPLE))
            h.update(filesystem.cat_file(path, start=size - CONTENT_SAMPLE, end=size))
    except Exception as exc:
        raise fs.translate_errors(url, exc) from exc
    return "b2:" + h.hexdigest()


def digest(
    url: str, storage_options: Mapping[str, Any] | None = None, size: int | None = None
) -> str:
    """BLAKE2b of every byte (read in :data:`DIGEST_BLOCK` pieces)."""
    path = fs.local_path(url)
    try:
        if path is not None:
            with open(path, "rb") as f:
                return digest_of(f)
        h = hashlib.blake2b(digest_size=32)
        filesystem, p = fs.url_to_fs(url, storage_options)
        if size is None:
            size = int(filesystem.info(p)["size"])
        for start in range(0, size, DIGEST_BLOCK):
            h.update(filesystem.cat_file(p, start=start, end=min(size, start + DIGEST_BLOCK)))
    except Exception as exc:
        raise fs.translate_errors(url, exc) from exc
    return "b2full:" + h.hexdigest()


def digest_of(f: BinaryIO) -> str:
    """:func:`digest` of an open local file, read from where it stands to its end."""
    h = hashlib.blake2b(digest_size=32)
    while block := f.read(DIGEST_BLOCK):
        h.update(block)
    return "b2full:" + h.hexdigest()


# --- digests recorded at write time ---------------------------------------------------------
def record_url(url: str) -> str:
    """Where the digest of a file basinflow wrote is recorded: beside it, ``<url>.pin.json``."""
    return url + RECORD_SUFFIX


def record_written(
    url: str,
    held: BinaryIO,
    content_digest: str,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Record ``content_digest`` of the file just committed at ``url`` beside it, with the
    identity it has now; returns the record.

    ``held`` is the written file, opened before the commit and still open: locally its
    ``fstat`` is the identity of *that* file even if another writer has replaced the
    name since (then the record names an identity the name no longer has, and is never
    used). Remote stores are asked (one ``HEAD``) right after the upload."""
    if fs.local_path(url) is not None:
        now = _stat_identity(os.fstat(held.fileno()))
    else:
        now = identity(url, storage_options)
    record = {k: now[k] for k in ("size", *IDENTITY_KEYS) if k in now}
    record["digest"] = content_digest
    from basinflow.storage.commit import write_json_atomic

    write_json_atomic(record_url(url), record, storage_options)
    return record


def recorded_digest(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    now: Mapping[str, Any] | None = None,
) -> str | None:
    """The digest recorded when basinflow wrote ``url``, if ``url`` is still that file:
    its size and every identity key the record and ``now`` (its identity, fetched when
    not given) share are equal, and they share at least one. ``None`` otherwise: no
    record, an unreadable one, or a file rewritten, copied or moved since (a copy has
    another inode; a file served over HTTP has an ETag where the record has an inode)."""
    now = identity(url, storage_options) if now is None else now
    filesystem, path = fs.url_to_fs(record_url(url), storage_options)
    try:
        with filesystem.open(path, "rb") as f:
            data = f.read(MAX_RECORD_BYTES + 1)
        record = json.loads(data) if len(data) <= MAX_RECORD_BYTES else None
    except Exception:  # noqa: BLE001 - no record (or none readable): take the digest by reading
        return None
    if not isinstance(record, dict) or not isinstance(record.get("digest"), str):
        return None
    keys = [k for k in IDENTITY_KEYS if k in record and k in now]
    if not keys or record.get("size") != now.get("size"):
        return None
    if any(record[k] != now[k] for k in keys):
        return None
    return record["digest"]


def layout_id(url: str, storage_options: Mapping[str, Any] | None = None) -> str | None:
    """BLAKE2b of an HDF5 file's layout; ``None`` when the file is not HDF5.

    Hashed, in link order: every link (soft and external links by their targets, never
    followed), every group's and dataset's attributes (names, types, values), every
    dataset's type, shape, maximum shape, storage layout, chunk shape, filters and fill
    value, where its data is stored (each chunk's logical offset, filter mask, byte
    address and stored size; a contiguous dataset's address and size; a virtual
    dataset's sources and selections; external raw files by name, offset and size) and,
    for datasets of at most :data:`LAYOUT_SMALL` stored bytes, their values.

    Why: libhdf5 reads all of this anyway to open a scan (the chunk index is what frames
    are read through), so it is cheap, and it changes with any change to metadata, to a
    small dataset, or to a filtered chunk whose stored size changes (HDF5 stores a
    rewritten compressed chunk in place when it fits, else elsewhere). It cannot see a
    same-size rewrite inside a large dataset: an unfiltered chunk, contiguous frames, or a
    compressed chunk that recompresses to exactly its old size. Nothing outside the file
    is opened: virtual sources and external raw files are named, not read.
    """
    import h5py

    from basinflow.errors import NotHDF5Error
    from basinflow.storage import hdf5

    try:
        handle = hdf5.open_h5(url, storage_options)
    except NotHDF5Error:
        return None
    h = hashlib.blake2b(b"h5layout1", digest_size=16)

    def put(*parts: Any) -> None:
        for part in parts:
            data = part if isinstance(part, bytes) else repr(part).encode()
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)

    try:
        f = handle.file
        _attrs(f, put)

        def visit(name: str, link: Any) -> None:
            if isinstance(link, h5py.SoftLink):
                put("soft", name, link.path)
            elif isinstance(link, h5py.ExternalLink):
                put("external", name, link.filename, link.path)
            else:
                _object(name, f[name], put)

        f.visititems_links(visit)
    except Exception as exc:
        # h5py objects held by the traceback, freed later in fsspec's I/O thread, would
        # wait there for h5py's lock: drop them now (see storage/hdf5.py)
        exc.__traceback__ = None
        raise fs.translate_errors(url, exc) from exc
    finally:
        handle.close()
    return "h5l:" + h.hexdigest()


def _value(v: Any) -> bytes:
    """Bytes that stand for an attribute's or a dataset's value (never a memory address:
    object fields, such as the references of dimension scales, go through their repr)."""
    if isinstance(v, np.generic | np.ndarray):
        a = np.asarray(v)
        if a.dtype.hasobject:
            return repr((a.shape, a.dtype.descr, a.tolist())).encode()
        return repr((a.shape, a.dtype.str)).encode() + a.tobytes()
    return repr(v).encode()


def _attrs(obj: Any, put: Callable[..., None]) -> None:
    for name in sorted(obj.attrs):
        try:
            value = _value(obj.attrs[name])
        except Exception as exc:  # noqa: BLE001 - a type h5py cannot read: its kind still counts
            value = repr(type(exc)).encode()
        put("attr", name, obj.attrs.get_id(name).get_type().encode(), value)


def _object(name: str, obj: Any, put: Callable[..., None]) -> None:
    import h5py

    if isinstance(obj, h5py.Group):
        put("group", name)
    elif isinstance(obj, h5py.Datatype):
        put("type", name, obj.id.encode())
    elif isinstance(obj, h5py.Dataset):
        _dataset(name, obj, put)
    else:  # pragma: no cover - h5py knows no other kind of object
        put("object", name, type(obj).__name__)
    _attrs(obj, put)


def _dataset(name: str, ds: Any, put: Callable[..., None]) -> None:
    import h5py

    dsid = ds.id
    dcpl = dsid.get_create_plist()
    layout = dcpl.get_layout()
    filters = [dcpl.get_filter(i) for i in range(dcpl.get_nfilters())]
    try:
        fill = _value(ds.fillvalue)
    except Exception:  # noqa: BLE001 - a fill value of a type h5py cannot read
        fill = b"?"
    put("dataset", name, dsid.get_type().encode(), ds.shape, ds.maxshape, layout)
    put(ds.chunks, filters, fill)
    external = [dcpl.get_external(i) for i in range(dcpl.get_external_count())]
    if external:
        put("external-raw", external)
    if layout == h5py.h5d.VIRTUAL:
        for vs in ds.virtual_sources():
            put("source", vs.vspace.encode(), vs.file_name, vs.dset_name, vs.src_space.encode())
        return
    if layout == h5py.h5d.CHUNKED:
        chunks: list[tuple[Any, ...]] = []
        dsid.chunk_iter(
            lambda c: chunks.append((c.chunk_offset, c.filter_mask, c.byte_offset, c.size))
        )
        put("chunks", chunks)
    elif layout == h5py.h5d.CONTIGUOUS:
        put("contiguous", dsid.get_offset(), dsid.get_storage_size())
    stored = dsid.get_storage_size()
    if external or stored > LAYOUT_SMALL or ds.shape is None:
        return
    try:
        values = _value(ds[()])
    except Exception as exc:  # noqa: BLE001 - e.g. a filter this installation lacks
        values = repr(type(exc)).encode()
    put("values", values)


def verdict(
    recorded: Mapping[str, Any], url: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[bool, str]:
    """``(matches, why)``: whether ``url`` still is what ``recorded`` pinned, as cheaply as
    the recorded pin allows (see the module documentation), and what decided it."""
    now = identity(url, storage_options)
    if now["size"] != recorded.get("size"):
        return False, f"its size is {now['size']}"
    keys = [k for k in IDENTITY_KEYS if k in recorded and k in now]
    if keys and all(recorded[k] == now[k] for k in keys):
        return True, "same identity"
    if "layout" in recorded and (not keys or "digest" in recorded):
        # no identity to go on, or a full read ahead that a changed layout makes needless
        found = layout_id(url, storage_options)
        if found != recorded["layout"]:
            return False, (
                "it is no longer an HDF5 file"
                if found is None
                else "its HDF5 layout changed (metadata, a small dataset's values, or where a "
                "chunk is stored and how large it is)"
            )
    if "digest" in recorded:
        ok = digest(url, storage_options, now["size"]) == recorded["digest"]
        return ok, "same content (full digest)" if ok else "its content changed (full digest)"
    if keys:
        changed = ", ".join(k for k in keys if recorded[k] != now[k])
        return False, (
            f"it was rewritten, copied or moved since ({changed} changed) and the pin has no "
            "full digest to tell those apart"
        )
    if "layout" in recorded:  # no identity: the layout (same, above) and the sampled ends
        if "content_id" not in recorded:
            return True, "same HDF5 layout"
        ok = content_id(url, storage_options, now["size"]) == recorded["content_id"]
        return ok, "same HDF5 layout and sampled content" if ok else "its sampled content changed"
    # an old pin, or one of a file with no identity that is not HDF5: mtime (when the
    # storage gives one) and the sampled content must both agree
    if recorded.get("mtime") != now.get("mtime") or "content_id" not in recorded:
        return False, "its modification time changed"
    ok = content_id(url, storage_options, now["size"]) == recorded["content_id"]
    return ok, "same mtime and sampled content" if ok else "its sampled content changed"


def pin_matches(
    recorded: Mapping[str, Any], url: str, storage_options: Mapping[str, Any] | None = None
) -> bool:
    """Whether ``url`` still is what ``recorded`` pinned (:func:`verdict` without the why)."""
    return verdict(recorded, url, storage_options)[0]


__all__ = [
    "CONTENT_SAMPLE",
    "DIGEST_BLOCK",
    "IDENTITY_KEYS",
    "LAYOUT_SMALL",
    "MAX_RECORD_BYTES",
    "RECORD_SUFFIX",
    "content_id",
    "digest",
    "digest_of",
    "identity",
    "layout_id",
    "pin",
    "pin_matches",
    "record_url",
    "record_written",
    "recorded_digest",
    "verdict",
]
