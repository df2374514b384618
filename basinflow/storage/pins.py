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
every byte, ``pin(..., full=True)``; taken for referrers basinflow reads as basins) still
agrees, which costs one full read of the file; without a digest it is stale. The sampled
``content_id`` (16 KiB from each end) is still recorded to tell files apart at a glance
(for a scan: locally, or remotely where the server gives no identity, ``content="auto"``),
but never vouches for a file whose identity changed: it misses any change in between.

Pins written before identities were recorded (``size``, ``mtime``, ``content_id`` only)
match when the size, mtime *and* sampled content all agree: the best they allow.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

from basinflow.storage import fs

#: Bytes hashed from each end of a file for its content id: enough to tell HDF5 files
#: apart (superblock, root metadata, tail of the last chunk) while staying one request.
#: 16 KiB, not 64: a pin is taken for every scan opened, and 2 x 64 KiB dominated the
#: bytes fetched to read one frame remotely (benchmarks/results/B2.md).
CONTENT_SAMPLE = 16 * 1024
#: bytes read per request while computing a full digest
DIGEST_BLOCK = 8 * 1024 * 1024
#: the keys that make up the identity, by storage
IDENTITY_KEYS = ("ino", "ctime_ns", "mtime_ns", "version_id", "etag", "last_modified")


def identity(url: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{size, ...identity}`` of the file now (one ``stat`` or ``HEAD``), plus the float
    ``mtime`` kept for people reading a pin."""
    path = fs.local_path(url)
    if path is not None:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise fs.translate_errors(url, exc) from exc
        return {
            "size": st.st_size,
            "mtime": st.st_mtime,
            "ino": st.st_ino,
            "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns,
        }
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


def pin(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    content: bool | str = True,
    full: bool = False,
) -> dict[str, Any]:
    """What a file is now: size, identity, ``content_id`` (sampled; unless ``content`` is
    false) and, with ``full``, the ``digest`` of every byte (one full read).

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
        out["digest"] = digest(url, storage_options, out["size"])
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
    h = hashlib.blake2b(digest_size=32)
    path = fs.local_path(url)
    try:
        if path is not None:
            with open(path, "rb") as f:
                while block := f.read(DIGEST_BLOCK):
                    h.update(block)
            return "b2full:" + h.hexdigest()
        filesystem, p = fs.url_to_fs(url, storage_options)
        if size is None:
            size = int(filesystem.info(p)["size"])
        for start in range(0, size, DIGEST_BLOCK):
            h.update(filesystem.cat_file(p, start=start, end=min(size, start + DIGEST_BLOCK)))
    except Exception as exc:
        raise fs.translate_errors(url, exc) from exc
    return "b2full:" + h.hexdigest()


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
    if "digest" in recorded:
        ok = digest(url, storage_options, now["size"]) == recorded["digest"]
        return ok, "same content (full digest)" if ok else "its content changed (full digest)"
    if keys:
        changed = ", ".join(k for k in keys if recorded[k] != now[k])
        return False, (
            f"it was rewritten, copied or moved since ({changed} changed) and the pin has no "
            "full digest to tell those apart"
        )
    # an old pin: mtime and the sampled content must both agree
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
    "content_id",
    "digest",
    "identity",
    "pin",
    "pin_matches",
    "verdict",
]
