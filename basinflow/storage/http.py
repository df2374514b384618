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

Redirects: aiohttp follows them by default, as fsspec asks it to. With
``allow_redirects=False`` (fsspec passes it to every request; the options
:meth:`Trust.check <basinflow.storage.referrer.trust.Trust.check>` gives a referrer's
HTTP basins have it) fsspec would take a 3xx answer for the file itself (its body as data,
its length as the size); here every 3xx answer raises
:class:`~basinflow.errors.RedirectRefusedError` naming the URL and the target, which was
not contacted. Options (``storage_options``):

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

import aiohttp
import yarl
from fsspec.asyn import sync_wrapper
from fsspec.implementations.http import HTTPFile, HTTPFileSystem

from basinflow.errors import RedirectRefusedError, RetriesExhaustedError
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


async def refuse_redirects(response: aiohttp.ClientResponse) -> None:
    """aiohttp's ``raise_for_status`` hook of a session that follows no redirects: called
    with each final answer (with ``allow_redirects=False``, the 3xx itself)."""
    if not 300 <= response.status < 400:
        return
    url, target = str(response.url), redirect_target(response)
    where = f"to {target!r}" if target else "without a Location"
    raise RedirectRefusedError(
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
        if kwargs.get("allow_redirects", True) is False:
            # every request of this file system gets allow_redirects=False (fsspec passes
            # its options on); the session then sees the 3xx answers and refuses them
            ck["raise_for_status"] = refuse_redirects
        super().__init__(*args, client_kwargs=ck, **kwargs)
        self.retries = max(1, int(retries))
        self.retry_backoff = float(retry_backoff)
        self.retry_backoff_max = float(retry_backoff_max)

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
        return await self._retrying(url, super()._cat_file, url, start=start, end=end, **kwargs)

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

    def _open(self, path, mode="rb", *args, **kwargs):
        f = super()._open(path, mode, *args, **kwargs)
        if type(f) is HTTPFile:
            # fsspec builds its HTTPFile itself; this subclass only adds retries to the
            # two fetch methods, so the object is re-classed rather than rebuilt (and its
            # cache, which kept the old bound fetcher, pointed at the new one)
            f.__class__ = RetryingHTTPFile
            f.cache.fetcher = f._fetch_range
        return f


class RetryingHTTPFile(HTTPFile):
    """An open HTTP file whose block fetches are retried by its file system."""

    async def async_fetch_range(self, start, end):
        return await self.fs._retrying(self.url, super().async_fetch_range, start, end)

    async def async_fetch_all(self):
        return await self.fs._retrying(self.url, super().async_fetch_all)

    # fsspec binds the sync versions at class creation: rebind them to the retrying ones
    _fetch_range = sync_wrapper(async_fetch_range)
    _fetch_all = sync_wrapper(async_fetch_all)


__all__ = [
    "BACKOFF",
    "BACKOFF_MAX",
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "RETRIES",
    "RetryingHTTPFile",
    "RetryingHTTPFileSystem",
    "client_timeout",
    "redirect_target",
    "refuse_redirects",
]
