"""The worker's entry: what a Prefect task of :mod:`basinflow.flows` calls (no Prefect here).

Every argument is picklable and small: repository settings as a dict plus its name, and
:class:`~basinflow.tasks.request.CookRequest` objects. Workers rebuild the
:class:`~basinflow.catalog.Repository` (cached per process) and call
:func:`~basinflow.tasks.cooking.cook_scan`. Inside a Dask worker the scan's own graph runs
on the same cluster through :func:`distributed.worker_client` (the calling task secedes
from the worker's thread pool while it waits, so one-thread workers cannot deadlock).

Transient errors are raised so the orchestration layer retries them; everything else
becomes a ``"failed"`` :class:`~basinflow.tasks.results.CookResult`, raised as
:class:`~basinflow.tasks.results.ScanFailed` by :func:`run_request` so that the scan's
task fails on its own and the rest carry on.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import dask
import numpy as np

from basinflow.tasks.freshness import Plan, plan
from basinflow.tasks.request import CookRequest
from basinflow.tasks.results import (
    BatchFailed,
    CookResult,
    ScanFailed,
    is_transient,
    reason_of,
)

if TYPE_CHECKING:
    from basinflow.catalog import Repository, Scan

# --- the repository, once per process -------------------------------------------------------
_REPOS: dict[str, Repository] = {}
_REPOS_LOCK = threading.Lock()


def repository(settings: Mapping[str, Any], name: str) -> Repository:
    """The repository for these settings, built once per process."""
    from basinflow.config import RepositoryConfig, open_repository

    key = name + "\0" + json.dumps(settings, sort_keys=True, default=str)
    with _REPOS_LOCK:
        repo = _REPOS.get(key)
        if repo is None:
            repo = _REPOS[key] = open_repository(
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


# --- planning -------------------------------------------------------------------------------
def plan_scans(
    settings: Mapping[str, Any],
    name: str,
    proposal: str,
    scans: Sequence[str] | None,
    recipe: str,
    *,
    force: bool = False,
    threads: int | None = None,
) -> Plan:
    """One request per scan that needs cooking, and the up-to-date ones as skipped results.

    Reads only spice, the outputs' metadata and the raw files' pins, never frames.
    ``scans=None`` means every scan of the proposal (listing refreshed); ``force`` plans
    every scan without checking freshness. ``threads`` defaults to 1 for local files (h5py
    holds a global lock) and 8 for remote ones.
    """
    keys = list_scans(settings, name, proposal) if scans is None else list(scans)
    repo = repository(settings, name)
    found, failed = [], []
    for key in keys:
        try:
            found.append(get_scan(settings, name, proposal, key))
        except Exception as exc:
            if is_transient(exc):
                raise
            failed.append(CookResult.failed(proposal, key, recipe, reason_of(exc)))
    if threads is None:
        threads = 1 if repo.url.startswith("file:") else 8
    out = plan(found, recipe, force=force, threads=threads)
    out.failed.extend(failed)
    return out


# --- running --------------------------------------------------------------------------------
#: Scans whose frames are at most this large are cooked inside their task with Dask's
#: synchronous scheduler: for them the round trips of a worker client cost more than the
#: cooking. Larger scans spread their chunks over the cluster.
SMALL_SCAN_BYTES = 256 * 2**20


def scan_bytes(scan: Scan) -> int:
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
    try:
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        yield
        return
    with worker_client():
        yield


def run_request(
    settings: Mapping[str, Any],
    request: CookRequest,
    *,
    force: bool = False,
    flow_run_id: str | None = None,
    use_cluster: bool | None = None,
    inline_bytes: int | None = None,
) -> CookResult:
    """Cook one request; transient errors propagate, others raise :class:`ScanFailed`.

    ``use_cluster`` (inside a Dask worker): run the scan's graph through the worker's
    client, seceded (large scans), or synchronously inside this task (small scans);
    ``None`` chooses by size: frames of more than ``inline_bytes`` (default
    :data:`SMALL_SCAN_BYTES`) go to the cluster.
    """
    from basinflow.tasks.cooking import cook_scan

    t0 = time.perf_counter()
    try:
        scan = get_scan(settings, request.repository, request.proposal, request.scan)
        if use_cluster is None:
            limit = SMALL_SCAN_BYTES if inline_bytes is None else inline_bytes
            use_cluster = scan_bytes(scan) > limit
        with cluster_scheduler(use_cluster):
            result = cook_scan(scan, request, force=force, flow_run_id=flow_run_id)
    except Exception as exc:
        if is_transient(exc):
            raise
        seconds = time.perf_counter() - t0
        failed = CookResult.failed(
            request.proposal, request.scan, request.recipe, reason_of(exc), seconds=seconds
        )
        raise ScanFailed(failed) from None
    if result.status == "failed":
        raise ScanFailed(result)
    return result


def run_batch(
    settings: Mapping[str, Any],
    requests: Sequence[CookRequest],
    *,
    strict: bool = False,
    **kwargs: Any,
) -> list[CookResult]:
    """Cook several requests in one call (a "small batch"); failures become results.

    Transient errors propagate (the caller retries the batch; scans cooked before are then
    skipped as up to date unless ``force``). With ``strict``, raises :class:`BatchFailed`
    (carrying every result) after the whole batch ran if any scan failed.
    """
    out = []
    for request in requests:
        try:
            out.append(run_request(settings, request, **kwargs))
        except ScanFailed as exc:
            out.append(exc.result)
    if strict and any(r.status == "failed" for r in out):
        raise BatchFailed(out)
    return out


def quicklook_png(
    settings: Mapping[str, Any], name: str, output: str, *, max_bytes: int = 300_000
) -> str | None:
    """A cooked output's quicklook as a ``data:image/png;base64`` URI, or ``None``.

    ``None`` when the quicklook cannot be drawn or the PNG is larger than ``max_bytes``
    (artifacts stay small; the output itself is the data).
    """
    import io

    import dask

    try:
        from basinflow.recipes.quicklook import quicklook
        from basinflow.storage.referrer.read import open_referrer

        repo = repository(settings, name)
        cooked = open_referrer(output, storage_options=repo.storage_options, trusted=[repo])
        try:
            # in this process, never queued on the cluster: a small read that a busy or
            # degraded cluster (a worker killed, not yet replaced) must not hold up
            with dask.config.set(scheduler="sync"):
                img = quicklook(cooked, dpi=100)  # 1260 px wide for 3 delays: the peak shows
        finally:
            cooked.close()
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


__all__ = [
    "SMALL_SCAN_BYTES",
    "cluster_scheduler",
    "get_scan",
    "list_proposals",
    "list_scans",
    "plan_scans",
    "quicklook_png",
    "repository",
    "run_batch",
    "run_request",
]
