"""Eight processes seed and update one proposal's spice at the same moment, on the file
store and on a real S3 server: no document is lost and every conflict is reported."""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import time
from collections import defaultdict

import pytest

from basinflow.errors import SpiceConflict
from basinflow.spice import ProposalSpice
from basinflow.spice.json_values import canonical_json

from ._workers import seed_and_update

WORKERS = 8


def _context() -> multiprocessing.context.BaseContext:
    """Fresh interpreters, never a fork of this (multi-threaded) test process.

    ``forkserver`` starts one clean interpreter (like ``spawn``) that imports basinflow
    once; the workers fork from it. With plain ``spawn`` each of the 8 workers imports
    the scientific stack on its own, which takes 10-30 s on a 2-core machine. Set
    ``BASINFLOW_TEST_START_METHOD=spawn`` to use spawn anyway.
    """
    method = os.environ.get("BASINFLOW_TEST_START_METHOD")
    if method is None:
        method = (
            "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        )
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        # the main module (pytest's script) is re-run in each worker: preload what it imports
        ctx.set_forkserver_preload(
            ["pytest", "basinflow.spice", seed_and_update.__module__, "s3fs"]
        )
    return ctx


def run_workers(url: str, storage_options: dict) -> list[dict]:
    ctx = _context()
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=seed_and_update, args=(url, storage_options, i, barrier, results))
        for i in range(WORKERS)
    ]
    for p in procs:
        p.start()
    out: list[dict] = []
    deadline = time.monotonic() + 180
    try:
        while len(out) < WORKERS:
            try:
                out.append(results.get(timeout=0.5))
            except queue_module.Empty:
                dead = [p for p in procs if not p.is_alive() and p.exitcode != 0]
                if dead or time.monotonic() > deadline:
                    pytest.fail(
                        f"only {len(out)} of {WORKERS} workers reported "
                        f"(exit codes {[p.exitcode for p in procs]})"
                    )
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    return out


def expected_conflicts(docs) -> dict[tuple[str, str], set[str]]:
    """Independent statement of the rule: at each (handle, anchor), the documents at the top
    revision that say different things."""
    groups = defaultdict(list)
    for d in docs:
        groups[(d.handle, d.anchor)].append(d)
    out = {}
    for key, group in groups.items():
        top = max(d.revision for d in group)
        contents = {canonical_json(d.data) for d in group if d.revision == top}
        if len(contents) > 1:
            out[key] = {d.uuid for d in group if d.revision == top}
    return out


def check(url: str, storage_options: dict) -> None:
    reports = run_workers(url, storage_options)
    for r in reports:
        assert not r["errors"], r["errors"][0]
    written = {u for r in reports for u in r["written"]}

    spice = ProposalSpice(url, storage_options=storage_options, max_age=0)
    docs = spice.documents()
    stored = {d.uuid for d in docs}
    # no document lost, none appeared from nowhere
    assert written == stored
    by_uuid = {d.uuid: d for d in docs}
    # the identical seed everywhere is one document; everyone has their own handle
    assert len([d for d in docs if d.handle == "shared" and d.revision == 1]) == 1
    assert {f"own{i}" for i in range(WORKERS)} <= set(spice.handles())
    # every update points at an existing parent, above it at the same anchor
    for d in docs:
        if d.parent is not None:
            parent = by_uuid[d.parent]
            assert parent.handle == d.handle
            if parent.anchor == d.anchor:
                assert d.revision > parent.revision
    # every conflict is reported, exactly
    expected = expected_conflicts(docs)
    reported = {(c.handle, c.anchor): set(c.uuids) for c in spice.conflicts()}
    assert reported == expected
    # and a view at a conflicting anchor names the documents; an update by uuid resolves it
    clash = [d for d in docs if d.handle == "clash"]
    assert clash, "at least one clash seed must have been written"
    for (handle, anchor), uuids in expected.items():
        with pytest.raises(SpiceConflict) as info:
            spice.view(anchor or "0001", [handle])
        assert all(u in str(info.value) for u in uuids)
        spice.update(sorted(uuids)[0], comment="resolved")
    assert spice.conflicts() == []
    assert spice.view("0010")["own3"].beamEnergy == 8003.0
    assert spice.view("0010")["own3"].imageDistance == 703.0


@pytest.mark.filterwarnings("ignore::basinflow.errors.UntypedSpiceWarning")
def test_eight_processes_on_the_file_store(tmp_path):
    check((tmp_path / "spice" / "p1").as_uri(), {})
    assert not [p for p in (tmp_path / "spice" / "p1").iterdir() if p.name.startswith(".")]


@pytest.mark.filterwarnings("ignore::basinflow.errors.UntypedSpiceWarning")
def test_eight_processes_on_s3(s3_store_url):
    url, options = s3_store_url
    check(url, options)
