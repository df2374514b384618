"""fsspec access: URLs to file systems, per-host storage options.

Pins (what a file is now, and whether it still is) are :mod:`basinflow.storage.pins`,
which builds on this module; this module never imports it.

Why a module of our own around ``fsspec.core.url_to_fs``: credentials in
``storage_options`` belong to one host. :class:`HostOptions` hands them out only for
URLs on that host (an S3 endpoint, an HTTP netloc), so a URL that came from data, such as
a basin in a foreign referrer, can never carry a repository's keys elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import fsspec

from basinflow.errors import (
    Error,
    NotFound,
    RetriesExhaustedError,
    StorageError,
    UnknownSchemeError,
    UnreachableError,
)
from basinflow.storage import retry

SCHEMES = ("file", "memory", "http", "https", "s3")


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def host_of(url: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """Identity of the server a URL talks to, used to scope credentials.

    ``s3://`` URLs talk to the endpoint in ``client_kwargs.endpoint_url`` (AWS when
    absent); ``http(s)://`` to their netloc; local schemes to ``""``.
    """
    scheme = scheme_of(url)
    if scheme in ("http", "https"):
        return f"{scheme}://{urlsplit(url).netloc}"
    if scheme == "s3":
        return f"s3+{s3_endpoint(storage_options) or 'aws'}"
    return ""


#: storage_options that say which credentials s3fs uses (anything else: botocore's chain,
#: the environment's ``AWS_*`` variables first)
S3_CREDENTIAL_OPTIONS = frozenset(
    {"key", "secret", "token", "anon", "profile", "session", "username", "password"}
)


def s3_endpoint(storage_options: Mapping[str, Any] | None) -> str | None:
    """The S3 endpoint the options send requests to; ``None`` for AWS itself."""
    opts = storage_options or {}
    return (opts.get("client_kwargs") or {}).get("endpoint_url") or opts.get("endpoint_url")


def _is_aws(endpoint: str | None) -> bool:
    host = (urlsplit(endpoint).hostname or "") if endpoint else "amazonaws.com"
    return host == "amazonaws.com" or host.endswith(".amazonaws.com")


def scoped_s3_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Options for an S3 endpoint the user *trusts* but has paired no credentials with.

    Without credentials in its options, s3fs signs every request with botocore's
    credential chain: the environment's AWS keys would go to whatever endpoint a
    referrer's basin is resolved to. Those keys are meant for AWS (or for the endpoint a
    repository's configuration names beside them), so a non-AWS endpoint whose options
    name no credentials is asked anonymously (``anon=True``)."""
    opts = dict(storage_options or {})
    if _is_aws(s3_endpoint(opts)) or S3_CREDENTIAL_OPTIONS & set(opts):
        return opts
    return {**opts, "anon": True}


def check_scheme(url: str) -> str:
    scheme = scheme_of(url)
    if scheme not in SCHEMES:
        raise UnknownSchemeError(
            f"{url!r}: unsupported scheme {scheme!r}; use one of {', '.join(SCHEMES)}"
        )
    return scheme


#: fsspec implementations basinflow extends (timeouts, retries, redirects), by the dotted
#: name of fsspec's class for a protocol; every other protocol gets fsspec's own class
EXTENSIONS = {
    "fsspec.implementations.http.HTTPFileSystem": "basinflow.storage.http.RetryingHTTPFileSystem",
    "s3fs.core.S3FileSystem": "basinflow.storage.s3.RetryingS3FileSystem",
}


def filesystem_class(url: str) -> type:
    """The file system class for ``url``'s protocol: fsspec's registry
    (:func:`fsspec.get_filesystem_class`), then basinflow's subclass of it if there is one
    (:data:`EXTENSIONS`; the subclass's ``prepare_options`` turns storage_options into its
    constructor's arguments). Nothing is registered with fsspec: other users of fsspec in
    the process keep its classes."""
    import importlib

    scheme = check_scheme(url)
    try:
        base = fsspec.get_filesystem_class(scheme)
    except ImportError as exc:  # e.g. s3fs missing in a trimmed environment
        raise StorageError(f"{url!r}: cannot open: {exc}; install the package named") from exc
    ours = EXTENSIONS.get(f"{base.__module__}.{base.__qualname__}")
    if ours is None:
        return base
    module, _, name = ours.rpartition(".")
    return getattr(importlib.import_module(module), name)


def url_to_fs(url: str, storage_options: Mapping[str, Any] | None = None):
    """``(filesystem, path)`` for a URL; fsspec caches the filesystem instances.

    Remote reads get timeouts and retries (:mod:`basinflow.storage.retry` says who retries
    what). The same storage_options tune both schemes: ``read_timeout`` and
    ``connect_timeout`` (seconds), ``retries`` (attempts per call); HTTP also takes
    ``retry_backoff``/``retry_backoff_max`` (:mod:`basinflow.storage.http`); S3 also takes
    botocore's own ``config_kwargs`` (``retries``, ``read_timeout``, ...), which win.
    """
    cls = filesystem_class(url)
    opts = dict(storage_options or {})
    prepare = getattr(cls, "prepare_options", None)
    if prepare is not None:
        opts = prepare(opts)
    kwargs = {**cls._get_kwargs_from_urls(url), **opts}  # e.g. s3's ?versionId=
    return cls(**kwargs), cls._strip_protocol(url)


def local_path(url: str) -> str | None:
    """Plain path for ``file://`` URLs (h5py opens those fastest natively)."""
    if scheme_of(url) == "file":
        return url[len("file://") :] if url.startswith("file://") else url
    return None


@dataclass(frozen=True)
class HostOptions:
    """storage_options keyed by host; what a URL may be opened with.

    ``default`` applies to the host of ``home`` (the repository's own host) only.
    """

    home: str = ""
    default: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def for_url(self, url: str) -> dict[str, Any]:
        if scheme_of(url) in ("file", "memory"):
            return {}
        if scheme_of(url) != scheme_of(self.home):
            return dict(self.extra.get(host_of(url), {}))
        if scheme_of(url) == "s3":
            # an s3:// URL names no server: it goes to the endpoint in these very options,
            # so the repository's options are the only ones that can apply to it
            return dict(self.default)
        host = host_of(url)
        if host == host_of(self.home, self.default):
            return dict(self.default)
        return dict(self.extra.get(host, {}))


_UNREACHABLE_TEXT = (
    "Cannot connect",
    "ClientConnectorError",
    "Connection refused",
    "Connect call failed",
    "EndpointConnectionError",
    "Could not connect to the endpoint",
    "Name or service not known",
    "ConnectTimeout",
)


def _unreachable_cause(exc: BaseException) -> BaseException | None:
    """The connection failure somewhere in ``exc``'s cause/context chain, if any.

    fsspec's HTTP ``info`` turns a refused connection into ``FileNotFoundError`` (the
    aiohttp error is its ``__cause__``), so the chain must be read before the type.
    """
    for cur in retry.causes(exc):
        if isinstance(cur, UnreachableError):
            return cur
        if isinstance(cur, ConnectionError | TimeoutError) or any(
            s in f"{type(cur).__name__}: {cur}" for s in _UNREACHABLE_TEXT
        ):
            return cur
    return None


def translate_errors(url: str, exc: BaseException) -> Exception:
    """Map storage exceptions to our errors with the URL named (ours pass through).

    A transient failure that outlived the retries (5xx, a dropped connection, a read
    timeout) becomes :class:`RetriesExhaustedError`; a connection that never came up,
    :class:`UnreachableError`; both are retried by the flows, nothing else is.
    """
    if isinstance(exc, Error):
        return exc
    transient = retry.transient_cause(exc)
    if transient is not None and not retry.is_connect_failure(transient):
        return RetriesExhaustedError(retry.exhausted_message(url, transient))
    cause = _unreachable_cause(exc)
    if cause is not None:
        return UnreachableError(
            f"{url!r}: host unreachable ({type(cause).__name__}: {cause}); check the host, "
            "port and endpoint in the URL or storage_options, and the network"
        )
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"{url!r} does not exist; check the path, the bucket and the key")
    if isinstance(exc, PermissionError):
        return StorageError(f"{url!r}: permission denied; check credentials for this host")
    return StorageError(f"{url!r}: {type(exc).__name__}: {exc}")


def info(url: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    fs, path = url_to_fs(url, storage_options)
    try:
        return fs.info(path)
    except Exception as exc:
        raise translate_errors(url, exc) from exc


def open_input(
    url: str, storage_options: Mapping[str, Any] | None = None, *, block_size: int = 8 * 1024
):
    """Open a file for random-access reads by libhdf5 or tifffile.

    Remote files use fsspec's block cache with 8 KiB blocks: HDF5 reads metadata in small
    scattered pieces. fsspec's default 5 MB read-ahead transfers most of a frame file to
    read a few KiB of metadata; 64 KiB blocks cost ~256 KiB per scan summary, 8 KiB blocks
    ~28 KiB in ~5 requests (benchmarks/results/B2.md). Frames do not come through here:
    :class:`~basinflow.storage.hdf5.H5Array` fetches whole chunks by byte range.
    """
    path = local_path(url)
    if path is not None:
        try:
            return open(path, "rb")
        except OSError as exc:
            raise translate_errors(url, exc) from exc
    fs, p = url_to_fs(url, storage_options)
    try:
        return fs.open(p, "rb", cache_type="blockcache", block_size=block_size)
    except Exception as exc:
        raise translate_errors(url, exc) from exc


def cat_ranges(
    url: str, ranges: list[tuple[int, int]], storage_options: Mapping[str, Any] | None = None
) -> list[bytes]:
    """Read byte ranges ``[(start, stop), ...]``; concurrent on async file systems."""
    path = local_path(url)
    try:
        if path is not None:
            fd = os.open(path, os.O_RDONLY)
            try:
                return [os.pread(fd, stop - start, start) for start, stop in ranges]
            finally:
                os.close(fd)
        fs, p = url_to_fs(url, storage_options)
        starts, stops = zip(*ranges, strict=True) if ranges else ((), ())
        out = fs.cat_ranges([p] * len(ranges), list(starts), list(stops))
    except Exception as exc:
        raise translate_errors(url, exc) from exc
    for r in out:
        if isinstance(r, Exception):
            raise translate_errors(url, r) from r
    return out


def exists(url: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    fs, path = url_to_fs(url, storage_options)
    try:
        return bool(fs.exists(path))
    except Exception as exc:
        raise translate_errors(url, exc) from exc


def join(base: str, *parts: str) -> str:
    out = base.rstrip("/")
    for p in parts:
        out += "/" + p.strip("/")
    return out


__all__ = [
    "HostOptions",
    "cat_ranges",
    "check_scheme",
    "exists",
    "filesystem_class",
    "fsspec",
    "host_of",
    "info",
    "join",
    "local_path",
    "open_input",
    "s3_endpoint",
    "scheme_of",
    "scoped_s3_options",
    "url_to_fs",
]
