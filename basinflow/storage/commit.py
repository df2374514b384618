"""Atomic commit of an output file: never a partial file at the final URL.

Local (``file://`` or a plain path): the file is written under a hidden temporary name in
the destination directory (same file system, so ``os.replace`` is an atomic rename),
``fsync``-ed, renamed when complete, and the directory ``fsync``-ed after the rename: a
crash or a power cut leaves either the old file or the complete new one. ``s3://`` and
other remote stores: written to a local temporary file and uploaded with one ``put`` after
local completion (S3 makes an object visible only when its upload completes). On any
exception the temporary file is removed and the final URL is untouched.

A process killed mid-write (SIGKILL, OOM, a lost node) cannot remove its temporary file.
The name records who wrote it (``.<name>.<pid>@<host>.<random>.partial``), so the next
write of the same output removes the leftovers of writers on this host that are no
longer alive; a writer that is still running, or one on another host of a shared file
system, is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from basinflow.errors import OutputError
from basinflow.storage import fs


def _prepare_local_dir(url: str, directory: str) -> None:
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{url!r}: cannot create output directory {directory!r}: {exc}; check the output "
            "template and the permissions of its parent directory"
        ) from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(
            f"{url!r}: output directory {directory!r} is not writable; check its permissions "
            "or choose another output template"
        )


def _claim(url: str, tmp: str) -> None:
    """Create the empty temporary file the body will write.

    ``os.access`` answers yes to root everywhere, even in ``/proc``; only creating a file
    proves the directory takes one. Creating it here lets a refusal be named as the
    output's fault while any failure inside the body keeps its own class."""
    try:
        with open(tmp, "xb"):
            pass
    except OSError as exc:
        raise OutputError(
            f"{url!r}: cannot write output: {exc.strerror or exc}; check the permissions "
            "of its directory or choose another output template"
        ) from exc


PARTIAL_SUFFIX = ".partial"
#: Local staging of remote outputs: ``$TMPDIR/.basinflow-upload.h5.<pid>@<host>.<random>.partial``
_UPLOAD_STAGE = "basinflow-upload"


def _partial_name(name: str, random: str | None = None) -> str:
    """``.<name>.<pid>@<host>.<random>.partial``, or its prefix up to ``<random>``."""
    head = f".{name}.{os.getpid()}@{socket.gethostname()}."
    return head if random == "" else f"{head}{random or uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_partials(path: str) -> list[str]:
    """Remove temporary files of ``path`` left by dead writers on this host; returns them."""
    directory, name = os.path.split(path)
    prefix = f".{name}."
    host = socket.gethostname()
    removed = []
    try:
        entries = os.listdir(directory)
    except OSError:
        return removed
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(PARTIAL_SUFFIX)):
            continue
        pid, _, where = entry[len(prefix) : -len(PARTIAL_SUFFIX)].partition("@")
        if where.rsplit(".", 1)[0] != host or not pid.isdigit() or _alive(int(pid)):
            continue
        _remove(os.path.join(directory, entry))
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_output(
    url: str, storage_options: Mapping[str, Any] | None = None, *, suffix: str = ".h5"
) -> Iterator[str]:
    """Yield a local path to write; on success it becomes ``url`` atomically.

    Raises
    ------
    OutputError
        The destination cannot be written (named in the message).
    """
    fs.check_scheme(url)
    path = fs.local_path(url)
    if path is not None:
        path = os.path.abspath(path)
        directory = os.path.dirname(path)
        _prepare_local_dir(url, directory)
        sweep_partials(path)
        tmp = os.path.join(directory, _partial_name(os.path.basename(path)))
        _claim(url, tmp)  # the destination refuses here, as an OutputError, not in the body
        try:
            yield tmp
        except BaseException:
            # the body's own failure (a transient read of the raw data among them) keeps its
            # class, so the flows can still tell a retryable error from a bad destination
            _remove(tmp)
            raise
        try:
            _fsync(tmp)  # the data reaches the disk before the name points at it
            os.replace(tmp, path)
            _fsync(directory)  # and the rename itself survives a power cut
        except OSError as exc:
            _remove(tmp)
            raise OutputError(
                f"{url!r}: cannot write output: {exc}; check the permissions and free space "
                "of its directory"
            ) from exc
        except BaseException:
            _remove(tmp)
            raise
        return
    stage = os.path.join(tempfile.gettempdir(), _UPLOAD_STAGE + suffix)
    sweep_partials(stage)
    handle, tmp = tempfile.mkstemp(
        prefix=_partial_name(os.path.basename(stage), random=""),
        suffix=PARTIAL_SUFFIX,
        dir=os.path.dirname(stage),
    )
    os.close(handle)
    try:
        yield tmp
        put(tmp, url, storage_options)
    finally:
        _remove(tmp)


def put(local: str, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """One upload of a complete local file to ``url``."""
    filesystem, path = fs.url_to_fs(url, storage_options)
    try:
        parent = path.rsplit("/", 1)[0]
        if fs.scheme_of(url) == "s3" and parent and not filesystem.exists(parent.split("/")[0]):
            raise OutputError(f"{url!r}: bucket {parent.split('/')[0]!r} does not exist")
        filesystem.put_file(local, path)
        filesystem.invalidate_cache(path)
    except OutputError:
        raise
    except Exception as exc:
        raise OutputError(f"{url!r}: upload failed: {fs.translate_errors(url, exc)}") from exc


def write_bytes_atomic(
    url: str, data: bytes, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Replace ``url``'s content atomically (used for small pointers such as ``current.json``)."""
    with atomic_output(url, storage_options, suffix=".tmp") as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_json_atomic(url: str, obj: Any, storage_options: Mapping[str, Any] | None = None) -> None:
    write_bytes_atomic(
        url, json.dumps(obj, indent=2, sort_keys=True).encode() + b"\n", storage_options
    )


def _fsync(path: str) -> None:
    """Flush a file's (or a directory's: its entries) data and metadata to the disk.

    Without it a rename can reach the disk before the data it names: after a power cut
    the final name holds a truncated file, which an atomic commit exists to prevent.
    Cost measured in ``benchmarks/bench_commit.py`` (results in benchmarks/RESULTS.md)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


__all__ = ["atomic_output", "put", "sweep_partials", "write_bytes_atomic", "write_json_atomic"]
