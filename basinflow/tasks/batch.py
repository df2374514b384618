"""Plain functions the Prefect tasks of :mod:`basinflow.flows` call (no Prefect here).

Every argument is picklable and small: repository settings as a dict plus its name, the
proposal, scan keys, recipe name and flags. Workers rebuild the :class:`Repository` (cached
per process) and call :func:`basinflow.tasks.cook.cook`. Inside a Dask worker the scan's
own graph runs on the same cluster through :func:`distributed.worker_client` (the calling
task secedes from the worker's thread pool while it waits, so one-thread workers cannot
deadlock).

Errors are sorted in two: *transient* (a host did not answer, a connection dropped) are
raised so the orchestration layer retries them; everything else becomes a ``"failed"``
:class:`~basinflow.tasks.cook.CookResult` carrying the reason, raised as :class:`ScanFailed`
by :func:`cook_scan` so that the scan's task fails on its own and the rest carry on.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import dask
import numpy as np

from basinflow.errors import Error

if TYPE_CHECKING:
    from basinflow.catalog import Repository, Scan
    from basinflow.tasks.cook import CookResult

_SECRET_KEY = re.compile(r"(secret|password|passwd|token|credential|session|^key$|_key$)", re.I)


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


# --- settings -----------------------------------------------------------------------------
def is_secret_key(key: str) -> bool:
    """Whether a storage option's name looks like a credential (``secret``, ``key``, ...)."""
    return bool(_SECRET_KEY.search(str(key)))


def redact(value: Any) -> Any:
    """``value`` with every credential-looking mapping entry replaced by ``"***"``."""
    if isinstance(value, Mapping):
        return {k: "***" if is_secret_key(k) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


_REPOS: dict[str, Repository] = {}
_REPOS_LOCK = threading.Lock()


def repository(settings: Mapping[str, Any], name: str) -> Repository:
    """The repository for these settings, built once per process."""
    from basinflow.catalog import Repository
    from basinflow.config import RepositoryConfig

    key = name + "\0" + json.dumps(settings, sort_keys=True, default=str)
    with _REPOS_LOCK:
        repo = _REPOS.get(key)
        if repo is None:
            repo = _REPOS[key] = Repository.from_settings(
                RepositoryConfig.model_validate(dict(settings)), name
            )
    return repo


def get_scan(settings: Mapping[str, Any], name: str, proposal: str, scan: str) -> Scan:
    """``repo[proposal][scan]``, refreshing the cached listing once if the scan is new."""
    from basinflow.errors import NotFound

    repo = repository(settings, name)
    try:
        return repo[proposal][scan]
    except NotFound:
        repo.refresh()
        return repo[proposal][scan]


def list_scans(settings: Mapping[str, Any], name: str, proposal: str) -> list[str]:
    """The proposal's scans now (listing refreshed), in natural order."""
    repo = repository(settings, name)
    repo.refresh()
    return list(repo[proposal].scans())


def list_proposals(settings: Mapping[str, Any], name: str) -> list[str]:
    repo = repository(settings, name)
    repo.refresh()
    return list(repo.proposals())


# --- errors ---------------------------------------------------------------------------------
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


def failed_result(proposal: str, scan: str, recipe: str, reason: str, seconds: float = 0.0):
    from basinflow.tasks.cook import CookResult

    return CookResult(
        proposal=proposal,
        scan=scan,
        recipe=recipe,
        status="failed",
        output=None,
        seconds=seconds,
        bytes_read=0,
        bytes_written=0,
        reason=reason,
    )


# --- running --------------------------------------------------------------------------------
#: Scans whose frames are at most this large are cooked inside their task with Dask's
#: synchronous scheduler: for them the round trips of a worker client cost more than the
#: cooking. Larger scans spread their chunks over the cluster.
SMALL_SCAN_BYTES = 256 * 2**20


def scan_bytes(scan: Any) -> int:
    """Uncompressed frame bytes of a scan, from its summary (metadata only)."""
    s = scan.summary
    n = s["frames"]
    for d in s["detector"]:
        n *= d
    return n * np.dtype(s["dtype"]).itemsize


@contextmanager
def cluster_scheduler(use_cluster: bool = True) -> Iterator[None]:
    """Inside a Dask worker: run Dask graphs on the worker's cluster (seceded), or, for
    ``use_cluster=False``, in this thread with the synchronous scheduler."""
    if not use_cluster:
        with dask.config.set(scheduler="sync"):
            yield
        return
    if use_cluster:
        try:
            from distributed import get_worker, worker_client

            get_worker()
        except (ImportError, ValueError):
            pass
        else:
            with worker_client():
                yield
            return
    yield


def cook_scan(
    settings: Mapping[str, Any],
    name: str,
    proposal: str,
    scan: str,
    recipe: str,
    *,
    force: bool = False,
    flow_run_id: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    use_cluster: bool | None = None,
    inline_bytes: int | None = None,
) -> CookResult:
    """Cook one scan; transient errors propagate, others raise :class:`ScanFailed`.

    ``use_cluster`` (inside a Dask worker): run the scan's graph through the worker's
    client, seceded (large scans), or synchronously inside this task (small scans);
    ``None`` chooses by size: frames of more than ``inline_bytes`` (default
    :data:`SMALL_SCAN_BYTES`) go to the cluster.
    """
    from basinflow.tasks.cook import cook

    t0 = time.perf_counter()
    try:
        s = get_scan(settings, name, proposal, scan)
        if use_cluster is None:
            limit = SMALL_SCAN_BYTES if inline_bytes is None else inline_bytes
            use_cluster = scan_bytes(s) > limit
        with cluster_scheduler(use_cluster):
            result = cook(s, recipe, force=force, flow_run_id=flow_run_id, **dict(overrides or {}))
    except Exception as exc:
        if is_transient(exc):
            raise
        raise ScanFailed(
            failed_result(proposal, scan, recipe, reason_of(exc), time.perf_counter() - t0)
        ) from None
    if result.status == "failed":
        raise ScanFailed(result)
    return result


def cook_scans(
    settings, name, proposal, scans, recipe, *, strict: bool = False, **kwargs
) -> list[CookResult]:
    """Cook several scans in one call (a "small batch"); failures become results.

    Transient errors propagate (the caller retries the batch; scans cooked before are then
    skipped as up to date unless ``force``). With ``strict``, raises :class:`BatchFailed`
    (carrying every result) after the whole batch ran if any scan failed.
    """
    out = []
    for scan in scans:
        try:
            out.append(cook_scan(settings, name, proposal, scan, recipe, **kwargs))
        except ScanFailed as exc:
            out.append(exc.result)
    if strict and any(r.status == "failed" for r in out):
        raise BatchFailed(out)
    return out


def stale_scans(
    settings: Mapping[str, Any],
    name: str,
    proposal: str,
    scans: list[str] | None,
    recipe: str,
    *,
    threads: int | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Split scans into ``(to cook, {scan: output URL of the up-to-date ones})``.

    Reads only the outputs' metadata and the raw files' pins, never frames. ``scans=None``
    means every scan of the proposal (listing refreshed). A scan whose freshness cannot be
    decided is cooked (and fails there with its reason if it is broken). ``threads``
    defaults to 1 for local files (h5py holds a global lock) and 8 for remote ones.
    """
    from basinflow.tasks.cook import pointer_behind, up_to_date

    keys = list_scans(settings, name, proposal) if scans is None else list(scans)

    def check(key: str) -> str | None:
        try:
            s = get_scan(settings, name, proposal, key)
            url = expected_output(s, recipe)
            # a pointer left behind by a process that died after the commit: the cook task
            # repairs it (and reports the scan skipped)
            fresh = up_to_date(s, recipe, url) and not pointer_behind(s, recipe, url)
            return url if fresh else None
        except Exception:  # noqa: BLE001 - undecidable: cook it, fail there with a reason
            return None

    if threads is None:
        threads = 1 if repository(settings, name).url.startswith("file:") else 8
    if threads <= 1 or len(keys) <= 1:
        urls = [check(k) for k in keys]
    else:
        with ThreadPoolExecutor(min(threads, len(keys))) as pool:
            urls = list(pool.map(check, keys))
    fresh = {k: u for k, u in zip(keys, urls, strict=True) if u}
    return [k for k in keys if k not in fresh], fresh


def expected_output(scan: Scan, recipe: str) -> str:
    """The output URL :func:`~basinflow.tasks.cook.cook` would write for ``scan`` now."""
    from basinflow.recipes.registry import get_recipe
    from basinflow.tasks import cook as _cook

    rec = get_recipe(recipe)
    template = _cook._resolve_template(scan, None)
    _, docs = _cook.spice_used(scan, rec)
    return _cook.output_url(scan, rec, template, _cook.spice_hash(docs))


def skipped_result(proposal: str, scan: str, recipe: str, output: str):
    from basinflow.tasks.cook import CookResult

    return CookResult(
        proposal=proposal,
        scan=scan,
        recipe=recipe,
        status="skipped",
        output=output,
        seconds=0.0,
        bytes_read=0,
        bytes_written=0,
        reason="up to date",
    )


def quicklook_png(
    settings: Mapping[str, Any], name: str, output: str, *, max_bytes: int = 300_000
) -> str | None:
    """A cooked output's quicklook as a ``data:image/png;base64`` URI, or ``None``.

    ``None`` when the quicklook cannot be drawn or the PNG is larger than ``max_bytes``
    (artifacts stay small; the output itself is the data).
    """
    import io

    try:
        from basinflow.recipes.quicklook import quicklook
        from basinflow.storage.referrer.read import open_referrer

        repo = repository(settings, name)
        with _open(open_referrer, output, repo) as cooked:
            img = quicklook(cooked, dpi=60)
        if hasattr(img, "savefig"):
            buf = io.BytesIO()
            img.savefig(buf, format="png", dpi=72)
            import matplotlib.pyplot as plt

            plt.close(img)
            img = buf.getvalue()
        if not isinstance(img, bytes | bytearray) or len(img) > max_bytes:
            return None
        return "data:image/png;base64," + base64.b64encode(img).decode()
    except Exception:  # noqa: BLE001 - a quicklook is optional; never fail the run
        return None


@contextmanager
def _open(open_referrer, url: str, repo: Repository):
    import inspect

    params = inspect.signature(open_referrer).parameters
    kwargs: dict[str, Any] = {}
    if "storage_options" in params:
        kwargs["storage_options"] = repo.storage_options
    if "trusted" in params:
        kwargs["trusted"] = [repo]
    obj = open_referrer(url, **kwargs)
    try:
        yield obj
    finally:
        close = getattr(obj, "close", None)
        if close is not None:
            close()


__all__ = [
    "BatchFailed",
    "ScanFailed",
    "cluster_scheduler",
    "cook_scan",
    "cook_scans",
    "expected_output",
    "failed_result",
    "get_scan",
    "is_secret_key",
    "is_transient",
    "list_proposals",
    "list_scans",
    "quicklook_png",
    "reason_of",
    "redact",
    "repository",
    "skipped_result",
    "stale_scans",
]
