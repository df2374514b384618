"""What happened to one (scan, recipe), and how a failure travels.

A :class:`CookResult` is the answer of every cook, whoever asked (``bf.cook``, a worker,
a flow): named fields, picklable, small. Errors are sorted in two: *transient* ones (a
host did not answer, a connection dropped) are raised so the orchestration layer retries
them (:func:`is_transient`); every other error becomes a ``"failed"`` result carrying the
reason, raised as :class:`ScanFailed` where a scan's task must fail on its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from basinflow.errors import Error


@dataclass
class CookResult:
    """What happened to one (scan, recipe)."""

    proposal: str
    scan: str
    recipe: str
    status: str  # "cooked" | "skipped" | "failed"
    output: str | None
    seconds: float
    bytes_read: int
    bytes_written: int
    reason: str = ""
    error: str = ""  # class name of the basinflow error of a failed result

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def failed(
        cls,
        proposal: str,
        scan: str,
        recipe: str,
        reason: str,
        *,
        output: str | None = None,
        seconds: float = 0.0,
        error: str = "",
    ) -> CookResult:
        return cls(
            proposal=proposal,
            scan=scan,
            recipe=recipe,
            status="failed",
            output=output,
            seconds=seconds,
            bytes_read=0,
            bytes_written=0,
            reason=reason,
            error=error,
        )

    @classmethod
    def skipped(
        cls, proposal: str, scan: str, recipe: str, output: str, reason: str = "up to date"
    ) -> CookResult:
        return cls(
            proposal=proposal,
            scan=scan,
            recipe=recipe,
            status="skipped",
            output=output,
            seconds=0.0,
            bytes_read=0,
            bytes_written=0,
            reason=reason,
        )


class ScanFailed(Error, RuntimeError):
    """A scan could not be cooked; ``result`` is its ``"failed"`` CookResult."""

    def __init__(self, result: CookResult):
        super().__init__(f"{result.proposal}/{result.scan}: {result.reason}")
        self.result = result

    def __reduce__(self):
        return (type(self), (self.result,))


class BatchFailed(Error, RuntimeError):
    """Some scans of a small batch failed; ``results`` holds every scan's CookResult."""

    def __init__(self, results: list):
        failed = [r for r in results if r.status == "failed"]
        super().__init__("; ".join(f"{r.proposal}/{r.scan}: {r.reason}" for r in failed))
        self.results = results

    def __reduce__(self):
        return (type(self), (self.results,))


def is_transient(exc: BaseException | None) -> bool:
    """Whether retrying may help: unreachable hosts, dropped connections, timeouts, and
    transient answers (HTTP 408/429/5xx, S3 ``SlowDown``/``InternalError``/...).

    A 404, a file that is not HDF5 or any other input error is permanent (the whole
    cause chain is read: :func:`basinflow.storage.retry.transient_cause`).
    """
    from basinflow.storage.retry import transient_cause

    return transient_cause(exc) is not None


def reason_of(exc: BaseException) -> str:
    """One line saying what went wrong (basinflow errors already read that way)."""
    if isinstance(exc, ScanFailed):
        return exc.result.reason
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, Error):
        text = f"{type(exc).__name__}: {text}"
    return text.splitlines()[0][:500]


__all__ = ["BatchFailed", "CookResult", "ScanFailed", "is_transient", "reason_of"]
