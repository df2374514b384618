"""fsspec's HTTP file system with the timeouts and retries it lacks.

fsspec's ``HTTPFileSystem`` makes one attempt per call and uses aiohttp's default timeout
(5 minutes in all, so a server that stalls mid-answer holds a read for that long). Worse,
its ``info`` reports *any* failure, a 503 included, as ``FileNotFoundError``. This
subclass, which :func:`basinflow.storage.fs.url_to_fs` returns for ``http(s)://`` URLs:

* sets ``aiohttp.ClientTimeout(sock_connect=connect_timeout, sock_read=read_timeout)``
  (no total limit, so a large steady download is never cut), unless ``client_kwargs``
  already has a ``timeout`` (an ``aiohttp.ClientTimeout``, or a mapping of its fields as
  YAML can give it);
* retries every read (``info``, ``cat_file`` and so ``cat_ranges``, listings, ``exists``,
  ``get_file`` and the block fetches of open files, which libhdf5 reads metadata through)
  when it fails transiently — 408/429/5xx, a dropped connection, a read timeout — up to
  ``retries`` attempts in all, waiting :func:`~basinflow.storage.retry.backoff` between;
* then raises :class:`~basinflow.errors.RetriesExhaustedError` naming the URL.

Answers that are definitive (404, 403, ...) and connections that never came up are not
retried (see :mod:`basinflow.storage.retry`).

Redirects and origins: the aiohttp session of this file system follows no redirect by
itself. A client middleware (aiohttp's public hook, installed through fsspec's
``get_client``) sees every 3xx answer and either follows it itself — a hop to another
*origin* (scheme, host, port) carries no header but ``Range``: credentials and headers
(``Authorization``, ``X-Api-Key``, cookies, ...) belong to the origin they were configured
for — or, with ``allow_redirects=False`` (the options
:meth:`Trust.check <basinflow.storage.referrer.trust.Trust.check>` gives a referrer's
HTTP basins), refuses it: :class:`~basinflow.errors.RedirectRefusedError` names the URL
and the target, which was not contacted. Options (``storage_options``):

``retries``
    Attempts per read, first included (default :data:`RETRIES`).
``retry_backoff``, ``retry_backoff_max``
    First wait and longest wait in seconds (defaults :data:`BACKOFF`, :data:`BACKOFF_MAX`).
``read_timeout``, ``connect_timeout``
    Seconds (defaults :data:`READ_TIMEOUT`, :data:`CONNECT_TIMEOUT`).
``allow_redirects``
    ``False``: follow no redirect, raise :class:`~basinflow.errors.RedirectRefusedError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
import yarl
from fsspec.asyn import sync, sync_wrapper
from fsspec.implementations.http import HTTPFile, HTTPFileSystem, HTTPStreamFile

from basinflow.errors import RangeNotSupportedError, RedirectRefusedError, RetriesExhaustedError
from basinflow.storage import retry
from basinflow.storage.retry import CONNECT_TIMEOUT, READ_TIMEOUT

logger = logging.getLogger(__name__)

#: Attempts per read (the first included).
RETRIES = 5
#: Seconds before the first retry; doubled each time, up to :data:`BACKOFF_MAX`.
BACKOFF = 0.5
BACKOFF_MAX = 10.0


def client_timeout(value, read_timeout: float, connect_timeout: float) -> aiohttp.ClientTimeout:
    if isinstance(value, aiohttp.ClientTimeout):
        return value
    if isinstance(value, Mapping):
        return aiohttp.ClientTimeout(**value)
    if value is not None:
        return aiohttp.ClientTimeout(total=float(value))
    return aiohttp.ClientTimeout(
        total=None, sock_connect=float(connect_timeout), sock_read=float(read_timeout)
    )


def redirect_target(response: aiohttp.ClientResponse) -> str | None:
    """Where a 3xx answer points, resolved against the request URL as aiohttp would."""
    location = response.headers.get("Location")
    if not location:
        return None
    try:
        return str(response.url.join(yarl.URL(location)))
    except ValueError:
        return None


def refused(response: aiohttp.ClientResponse) -> RedirectRefusedError:
    """The error for a 3xx answer of a session that follows no redirects."""
    url, target = str(response.url), redirect_target(response)
    where = f"to {target!r}" if target else "without a Location"
    return RedirectRefusedError(
        f"{url!r} answered HTTP {response.status}, a redirect {where}; it was not followed"
        + (f" and {target!r} was not contacted" if target else "")
        + " (a referrer's basin locations are checked against the trusted roots and hosts "
        "before any request, so their redirects are not followed blindly). Open the "
        "referrer again: resolving its basins follows a redirect to a trusted location. "
        "Otherwise fix the referrer to name the final URL",
        url=url,
        target=target,
        status=response.status,
    )


#: most redirects one request follows
MAX_REDIRECTS = 10
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
#: the only header a request keeps on a hop to another origin (a byte range is no secret)
_CROSS_ORIGIN_HEADERS = frozenset({"range"})
#: headers aiohttp computes for each request itself
_PER_REQUEST_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "cookie"})


class OriginGuard:
    """An aiohttp client middleware that handles redirects for a session that follows none.

    ``follow=False``: a 3xx answer raises :class:`RedirectRefusedError`. ``follow=True``:
    the redirect is followed here, with the same headers to the same origin and none but
    ``Range`` to another (aiohttp alone drops only ``Authorization`` and cookies).
    """

    def __init__(self, follow: bool):
        self.follow = follow
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, request: aiohttp.ClientRequest, handler) -> aiohttp.ClientResponse:
        return await self._hop(request.method, request.url, request.headers, handler(request), 0)

    async def _hop(self, method, url, headers, pending, hops: int) -> aiohttp.ClientResponse:
        response = await pending
        if response.status not in _REDIRECT_STATUS or "Location" not in response.headers:
            return response
        if not self.follow:
            response.release()
            raise refused(response)
        target = redirect_target(response)
        response.release()
        if target is None or hops >= MAX_REDIRECTS:
            raise aiohttp.TooManyRedirects(response.request_info, (), message=f"to {target}")
        to = yarl.URL(target)
        same = to.origin() == url.origin()
        kept = {
            k: v
            for k, v in headers.items()
            if k.lower() not in _PER_REQUEST_HEADERS
            and (same or k.lower() in _CROSS_ORIGIN_HEADERS)
        }
        if response.status == 303:
            method = "GET"
        # the hop goes out without middlewares (this one follows the chain) and without
        # the session's default auth (the session has none: see RetryingHTTPFileSystem)
        nxt = self.session.request(method, to, headers=kept, allow_redirects=False, middlewares=())
        return await self._hop(method, to, kept, nxt, hops + 1)


def _client_factory(follow: bool):
    """fsspec's ``get_client`` hook: a session whose redirects :class:`OriginGuard` handles."""

    async def get_client(**kwargs) -> aiohttp.ClientSession:
        guard = OriginGuard(follow)
        session = aiohttp.ClientSession(middlewares=(guard,), **kwargs)
        guard.session = session
        return session

    return get_client


def _redirect_in(exc: BaseException) -> RedirectRefusedError | None:
    """The refused redirect in ``exc``'s chain: fsspec's ``info`` reports any failure as
    ``FileNotFoundError``, with the real one as its cause."""
    return next((c for c in retry.causes(exc) if isinstance(c, RedirectRefusedError)), None)


class RetryingHTTPFileSystem(HTTPFileSystem):
    """``HTTPFileSystem`` with timeouts and bounded, jittered retries of transient failures."""

    def __init__(
        self,
        *args,
        retries: int = RETRIES,
        retry_backoff: float = BACKOFF,
        retry_backoff_max: float = BACKOFF_MAX,
        read_timeout: float = READ_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        client_kwargs: Mapping | None = None,
        **kwargs,
    ):
        ck = dict(client_kwargs or {})
        ck["timeout"] = client_timeout(ck.get("timeout"), read_timeout, connect_timeout)
        # headers and auth travel with each request, never as session defaults: the
        # session would add those to a redirect's hop to another origin
        headers = {**dict(ck.pop("headers", None) or {}), **dict(kwargs.pop("headers", None) or {})}
        if headers:
            kwargs["headers"] = headers
        if "auth" in ck:
            kwargs["auth"] = ck.pop("auth")
        follow = kwargs.pop("allow_redirects", True) is not False
        kwargs["allow_redirects"] = False  # aiohttp follows nothing: OriginGuard decides
        super().__init__(*args, client_kwargs=ck, get_client=_client_factory(follow), **kwargs)
        self.follow_redirects = follow
        self.retries = max(1, int(retries))
        self.retry_backoff = float(retry_backoff)
        self.retry_backoff_max = float(retry_backoff_max)

    @staticmethod
    def prepare_options(options: Mapping[str, Any]) -> dict[str, Any]:
        """storage_options with basinflow's defaults (timeouts; fsspec's instance cache)."""
        opts = dict(options)
        opts.setdefault("skip_instance_cache", False)
        opts.setdefault("read_timeout", READ_TIMEOUT)
        opts.setdefault("connect_timeout", CONNECT_TIMEOUT)
        return opts

    async def _retrying(self, url: str, call, *args, **kwargs):
        for attempt in range(1, self.retries + 1):
            try:
                return await call(*args, **kwargs)
            except Exception as exc:
                redirect = _redirect_in(exc)
                if redirect is not None and redirect is not exc:
                    raise redirect from None
                if not retry.retry_here(exc):
                    raise
                if attempt >= self.retries:
                    raise RetriesExhaustedError(
                        retry.exhausted_message(str(url), exc, attempt)
                    ) from exc
                delay = retry.backoff(attempt, self.retry_backoff, self.retry_backoff_max)
                logger.debug("%s: %s; retry %d in %.2f s", url, retry.describe(exc), attempt, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    # -- reads ------------------------------------------------------------------------------
    async def _info(self, url, **kwargs):
        return await self._retrying(url, super()._info, url, **kwargs)

    async def _cat_file(self, url, start=None, end=None, **kwargs):
        """fsspec's, plus a check that a byte range came back as one: fsspec's returns
        the whole body of a server that ignores ``Range``, read as if it were the range."""
        ranged = start is not None or end is not None

        async def once() -> bytes:
            kw = {**self.kwargs, **kwargs}
            if ranged:
                if start == end:
                    return b""
                headers = dict(kw.pop("headers", None) or {})
                headers["Range"] = await self._process_limits(url, start, end)
                kw["headers"] = headers
            session = await self.set_session()
            async with session.get(self.encode_url(url), **kw) as r:
                self._raise_not_found_for_status(r, url)
                whole = r.status != 206 and not (start in (None, 0) and end is None)
                if ranged and whole:
                    raise range_not_supported(url)
                return await r.read()

        return await self._retrying(url, once)

    async def _ls_real(self, url, detail=True, **kwargs):
        return await self._retrying(url, super()._ls_real, url, detail=detail, **kwargs)

    async def _get_file(self, rpath, lpath, **kwargs):
        return await self._retrying(rpath, super()._get_file, rpath, lpath, **kwargs)

    async def _exists(self, path, strict=False, **kwargs):
        """Like fsspec's (a GET; below 400 exists), but a transient failure is retried and,
        if it persists, raised: "unreachable" is not "absent"."""
        kw = {**self.kwargs, **kwargs}

        async def once() -> bool:
            session = await self.set_session()
            async with session.get(self.encode_url(path), **kw) as r:
                if r.status in retry.TRANSIENT_STATUS or strict:
                    self._raise_not_found_for_status(r, path)
                return r.status < 400

        try:
            return await self._retrying(path, once)
        except FileNotFoundError:
            return False
        except aiohttp.ClientError as exc:
            if strict or retry.transient_cause(exc) is not None:
                raise
            return False

    def _open(
        self,
        path,
        mode="rb",
        block_size=None,
        autocommit=None,  # fsspec's open() passes it; reads have nothing to commit
        cache_type=None,
        cache_options=None,
        size=None,
        **kwargs,
    ):
        """fsspec's ``HTTPFile`` with retried block fetches (a streaming file where the
        server gives no size or no ranges, as fsspec does)."""
        if mode != "rb":
            raise NotImplementedError(f"{path}: HTTP files are read-only")
        block_size = self.block_size if block_size is None else block_size
        kw = {**self.kwargs, "asynchronous": self.asynchronous, **kwargs}
        info: dict = {}
        size = size or info.update(self.info(path, **kwargs)) or info["size"]
        session = sync(self.loop, self.set_session)
        if not (block_size and size and info.get("partial", True)):
            return HTTPStreamFile(self, path, mode=mode, loop=self.loop, session=session, **kw)
        return RetryingHTTPFile(
            self,
            path,
            session=session,
            block_size=block_size,
            mode=mode,
            size=size,
            cache_type=cache_type or self.cache_type,
            cache_options=cache_options or self.cache_options,
            loop=self.loop,
            **kw,
        )


def range_not_supported(url: str) -> RangeNotSupportedError:
    return RangeNotSupportedError(
        f"{url!r}: the server does not honour HTTP Range requests (it sent the whole file "
        "for a byte range), which reading HDF5 or TIFF remotely needs; serve the file from "
        "a server that does, or copy it to local disk or S3"
    )


class RetryingHTTPFile(HTTPFile):
    """An open HTTP file whose block fetches are retried by its file system."""

    async def async_fetch_range(self, start, end):
        try:
            return await self.fs._retrying(self.url, super().async_fetch_range, start, end)
        except ValueError as exc:
            if "range requests" not in str(exc):
                raise
            raise range_not_supported(self.url) from None

    async def async_fetch_all(self):
        return await self.fs._retrying(self.url, super().async_fetch_all)

    # fsspec binds the sync versions at class creation: bind them to these
    _fetch_range = sync_wrapper(async_fetch_range)
    _fetch_all = sync_wrapper(async_fetch_all)


__all__ = [
    "BACKOFF",
    "BACKOFF_MAX",
    "CONNECT_TIMEOUT",
    "MAX_REDIRECTS",
    "READ_TIMEOUT",
    "RETRIES",
    "OriginGuard",
    "RangeNotSupportedError",
    "RetryingHTTPFile",
    "RetryingHTTPFileSystem",
    "client_timeout",
    "redirect_target",
    "refused",
]
