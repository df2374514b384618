"""Code run in spawned processes by the concurrency tests (importable by reference)."""

from __future__ import annotations

import re
import traceback
import warnings

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def seed_and_update(url, storage_options, index, barrier, queue, rounds=2):
    """Seed and update one proposal's spice at the same moment as the other workers.

    Reports every document it wrote (or found identical), every conflict it saw, and any
    other error, through ``queue``.
    """
    warnings.simplefilter("ignore")
    written, conflicts, refused, errors = [], [], [], []
    try:
        from basinflow.errors import SpiceConflict, SpiceError
        from basinflow.spice import ProposalSpice

        from ._schemas import register

        register()

        spice = ProposalSpice(url, storage_options=storage_options, author=f"w{index}", max_age=0)
        spice.refresh()
        barrier.wait(timeout=120)
        # the same seed everywhere: one document, no conflict
        written.append(spice.seed("note", "shared", v=0).uuid)
        # a handle of our own
        own = spice.seed("geom", f"own{index}", beamEnergy=8000.0 + index)
        written.append(own.uuid)
        # everybody seeds a different value at one anchor: a conflict (or "exists")
        try:
            written.append(spice.seed("note", "clash", anchor="0005", by=index).uuid)
        except SpiceError as exc:
            refused.append(str(exc))
        for k in range(rounds):
            try:
                written.append(spice.update("0007", "shared", v=f"{index}-{k}").uuid)
            except SpiceConflict as exc:
                conflicts.append(str(exc))
                keep = UUID.findall(str(exc))[0]
                written.append(spice.update(keep, v=f"{index}-{k}-fix").uuid)
        written.append(spice.update(own.uuid, imageDistance=700.0 + index).uuid)
    except Exception:  # noqa: BLE001 - reported to the test, which fails on it
        errors.append(traceback.format_exc())
    queue.put(
        {
            "index": index,
            "written": written,
            "conflicts": conflicts,
            "refused": refused,
            "errors": errors,
        }
    )
