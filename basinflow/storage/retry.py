"""Transient storage failures: which errors a retry may fix, and our backoff.

Who retries what (a read of raw data, its metadata, its pin or a listing):

* **S3** — the libraries. botocore's ``standard`` retry mode retries 5xx answers,
  throttling (``SlowDown``), connection resets and read timeouts (``max_attempts`` in
  ``config_kwargs.retries``); s3fs retries each call again on resets, timeouts and
  ``SlowDown`` (its ``retries`` option). :func:`basinflow.storage.fs.url_to_fs` sets the
  attempts and timeouts. (s3fs's only hook for more, ``set_custom_error_handler``, is
  process-wide, so it is left alone: botocore's attempts are raised instead.)
* **HTTP** — fsspec's ``HTTPFileSystem`` has no retries: :mod:`basinflow.storage.http` adds
  them, with :func:`backoff` (bounded exponential, jittered).

A refused connection, an unknown host or a connect timeout is *transient* (the flows retry
the scan later) but not retried here: it is far more often a wrong endpoint than a blip,
and it should fail in a second with a message saying so. Everything the server answers
definitively (404, 403, a file that is not HDF5) is permanent and never retried.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Iterator

#: Seconds without a byte from the server before a remote read is abandoned and retried
#: (S3 and HTTP; ``read_timeout`` in storage_options overrides it).
READ_TIMEOUT = 30.0
#: Seconds to set up a connection (``connect_timeout`` in storage_options).
CONNECT_TIMEOUT = 10.0
#: HTTP statuses that mean "try again": timeout, throttled, server errors, gateways.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: S3 error codes that mean the same (botocore's standard mode retries these too).
TRANSIENT_S3_CODES = frozenset(
    {
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "PriorRequestNotComplete",
        "TooManyRequestsException",
        "BadGateway",
        "GatewayTimeout",
    }
)
CONNECTION_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EPIPE,
    }
)
_CONNECT_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})


def _status_of(exc: BaseException) -> tuple[int | None, str | None]:
    """``(HTTP status, S3 error code)`` of an aiohttp or botocore error answer."""
    status = getattr(exc, "status", None)
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = (response.get("Error") or {}).get("Code")
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode", status)
        return (int(status) if status else None), (str(code) if code else None)
    return (status if isinstance(status, int) else None), None


def classify(exc: BaseException) -> bool | None:
    """``True``: transient; ``False``: permanent; ``None``: look at its cause.

    Looks at one exception only (see :func:`transient_cause` for the chain).
    """
    from basinflow.errors import Error, StorageError, UnreachableError

    if isinstance(exc, UnreachableError):
        return True
    if isinstance(exc, Error):
        return None if isinstance(exc, StorageError) else False
    module = type(exc).__module__
    if module.startswith("aiohttp"):
        import aiohttp

        if isinstance(exc, aiohttp.ClientResponseError):
            return exc.status in TRANSIENT_STATUS
        if isinstance(exc, aiohttp.ClientSSLError | aiohttp.InvalidURL):
            return False
        if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
            return True
    if module.startswith("botocore"):
        from botocore import exceptions as bx

        if isinstance(exc, bx.ClientError):
            status, code = _status_of(exc)
            return code in TRANSIENT_S3_CODES or status in TRANSIENT_STATUS
        # resets, read timeouts, endpoints that do not answer; not credentials, parameters
        return isinstance(exc, bx.HTTPClientError | bx.ConnectionError)
    if module.startswith("urllib3") and any(
        w in type(exc).__name__ for w in ("Connect", "Timeout", "Protocol")
    ):
        return True
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError) and exc.errno in CONNECTION_ERRNOS:
        return True
    return None


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, then its ``__cause__`` (or ``__context__``), and so on; each once, so a
    cyclic chain ends. Storage libraries wrap the real failure: the chain tells more than
    the type of the outermost exception."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def transient_cause(exc: BaseException | None) -> BaseException | None:
    """The transient failure in ``exc``'s cause/context chain, or ``None``.

    The chain is read, not just the type: fsspec's HTTP ``info`` reports a 503 as
    ``FileNotFoundError`` and s3fs a ``SlowDown`` as ``OSError(EBUSY)``, each with the real
    answer as ``__cause__``. The first permanent error met ends the search.
    """
    for cur in causes(exc):
        verdict = classify(cur)
        if verdict is not None:
            return cur if verdict else None
    return None


def is_connect_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a connection that never came up (refused, DNS, connect timeout)."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return True
    if type(exc).__module__.startswith("botocore"):
        from botocore import exceptions as bx

        return isinstance(exc, bx.ConnectionError)
    if isinstance(exc, ConnectionRefusedError):
        return True
    return isinstance(exc, OSError) and exc.errno in _CONNECT_ERRNOS


def retry_here(exc: BaseException) -> bool:
    """Whether the storage layer retries ``exc`` itself: transient, but not a connection
    that never came up (that fails fast; the flows retry the scan later)."""
    cause = transient_cause(exc)
    return cause is not None and not is_connect_failure(cause)


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1, 2, ...): ``base * 2**(attempt-1)``
    capped at ``cap``, then jittered into its upper half so clients spread out."""
    delay = min(cap, base * 2 ** (attempt - 1))
    return delay * (0.5 + 0.5 * (rng or random).random())


def describe(exc: BaseException) -> str:
    """A short name for a failure: ``HTTP 503 ...``, ``S3 SlowDown (503)``, ``read timed
    out (...)``, ``connection dropped (...)``."""
    status, code = _status_of(exc)
    if code:
        return f"S3 {code}" + (f" ({status})" if status and str(status) != code else "")
    if status:
        return f"HTTP {status}" + (f" {exc.message}" if getattr(exc, "message", "") else "")
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    name = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
        return f"read timed out ({name})"
    if transient_cause(exc) is exc:  # resets, disconnects, truncated bodies
        return f"connection dropped ({name})"
    return name


def exhausted_message(url: str, exc: BaseException, attempts: int | None = None) -> str:
    """What :class:`~basinflow.errors.RetriesExhaustedError` says: the URL, what failed,
    and what to do."""
    cause = transient_cause(exc) or exc
    tries = f"{attempts} attempts" if attempts else "retries"
    return (
        f"{url!r}: storage unreachable after {tries} ({describe(cause)}); the server kept "
        "failing or timing out. Retry later; for a slow server raise 'read_timeout' or "
        "'retries' in the repository's storage_options"
    )


__all__ = [
    "CONNECTION_ERRNOS",
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "TRANSIENT_S3_CODES",
    "TRANSIENT_STATUS",
    "backoff",
    "causes",
    "classify",
    "describe",
    "exhausted_message",
    "is_connect_failure",
    "retry_here",
    "transient_cause",
]
