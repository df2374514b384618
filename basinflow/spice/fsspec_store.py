"""The spice store of JSON files at an fsspec URL, each created exclusively.

Kept apart from the store contract (:mod:`basinflow.spice.store`) because this is the part
that knows file systems: how each one refuses to overwrite a document another writer
created under the same name.

- local disk and shared file systems: the document is written to a private temporary file
  and hard-linked to its final name (``os.link`` fails if the name exists, atomically, and
  readers never see a half-written file; NFS honours this too);
- S3: ``PutObject`` with ``If-None-Match: *`` (s3fs ``pipe_file(mode="create")``), which
  the server refuses with 412 when the object exists;
- ``memory://``: fsspec's own exclusive create.

:func:`open_spice_store` lives here too: a URL is how users name a store, and this is the
store a URL opens (``None`` or ``''`` gives the in-memory one, nx5d's ``spice_url=''``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Mapping
from typing import Any

from basinflow.errors import StorageError
from basinflow.spice.store import MemorySpiceStore, SpiceStore


class FsspecSpiceStore(SpiceStore):
    """A directory of JSON documents at any fsspec URL (``file://``, ``s3://``,
    ``memory://``, or a bare local path).

    Parameters
    ----------
    url
        The directory. It is created on the first write; an absent directory is an empty
        store.
    storage_options
        Passed to fsspec (e.g. ``{"client_kwargs": {"endpoint_url": ...}}`` for S3).
        Credentials come from the environment or fsspec/botocore configuration and are
        never written into documents.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        if not isinstance(url, str) or not url.strip():
            raise StorageError(f"spice store URL must be a non-empty string, got {url!r}")
        if "{" in url or "}" in url:
            raise StorageError(
                f"spice store URL {url!r} still contains a template field; fill in "
                "{proposal} first (Repository does this for each proposal)"
            )
        self.storage_options = dict(storage_options or {})
        try:
            if url.split("://", 1)[0].lower() in ("s3", "http", "https"):
                # basinflow's file systems: the repository's timeouts and retries apply
                # (and its options, e.g. ``retries``, are understood rather than refused)
                from basinflow.storage.fs import url_to_fs

                fs, root = url_to_fs(url, self.storage_options)
            else:
                fs, root = fsspec.core.url_to_fs(url, **self.storage_options)
        except (ImportError, ValueError, TypeError) as exc:
            raise StorageError(f"cannot open spice store {url!r}: {exc}") from None
        self.fs = fs
        self.root = root.rstrip("/") or root
        self.url = url.rstrip("/")
        self._local = isinstance(fs, LocalFileSystem)
        protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
        self.supports_exclusive_create = self._local or bool(
            {"memory", "s3", "s3a"}.intersection(protocols)
        )

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _names(self) -> list[str]:
        self.fs.invalidate_cache(self.root)
        try:
            entries = self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            return []
        return [str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries]

    def _read(self, names: list[str]) -> dict[str, bytes | BaseException]:
        paths = {self._path(n): n for n in names}
        try:
            raw = self.fs.cat(list(paths), on_error="return")
        except FileNotFoundError:
            return {n: FileNotFoundError(n) for n in names}
        except OSError as exc:
            raise StorageError(f"cannot read spice store {self.url}: {exc}") from None
        out: dict[str, bytes | BaseException] = {}
        for path, content in raw.items():
            name = paths.get(path) or paths.get(self.fs._strip_protocol(path))
            if name is not None:
                out[name] = content
        return out

    def _create(self, name: str, data: bytes) -> None:
        if self._local:
            _create_local(self.root, name, data)
        elif self.supports_exclusive_create:
            self.fs.pipe_file(self._path(name), data, mode="create")
        else:
            # no atomic create on this file system: the name is a uuid unique to this
            # document, so the remaining race is between writers of one identical statement
            if self.fs.exists(self._path(name)):
                raise FileExistsError(self.location(name))
            self.fs.pipe_file(self._path(name), data)

    def location(self, name: str) -> str:
        return f"{self.url}/{name}"


def _create_local(root: str, name: str, data: bytes) -> None:
    """Create ``root/name`` exclusively and completely, or raise ``FileExistsError``.

    The bytes go to a private temporary file first, then a hard link publishes them: the
    link is atomic and fails if the name exists, so readers never see a partial document
    and no writer can replace another's. Where hard links are unsupported, fall back to
    ``O_CREAT | O_EXCL`` (still exclusive, but a reader may briefly see a partial file).
    """
    os.makedirs(root, exist_ok=True)
    final = os.path.join(root, name)
    tmp = os.path.join(root, f".{name}.{secrets.token_hex(8)}.tmp")
    with open(tmp, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (
            errno.EPERM,
            errno.ENOTSUP,
            errno.EOPNOTSUPP,
            errno.EXDEV,
            errno.EMLINK,
        ):
            raise
        fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def open_spice_store(
    location: SpiceStore | str | None, storage_options: Mapping[str, Any] | None = None
) -> SpiceStore:
    """A store from a URL, an existing store, or ``None``/``''`` for an in-memory store
    (nx5d's ``spice_url=''``)."""
    if isinstance(location, SpiceStore):
        return location
    if location is None or location == "":
        return MemorySpiceStore()
    return FsspecSpiceStore(location, storage_options)
