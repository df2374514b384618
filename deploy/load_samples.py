"""The load-samples service: sample scans into ``s3://raw`` and their rsm spice into
``s3://spice``, so a fresh stack has something to cook (idempotent: proposals already in
``s3://raw`` are left alone).

The scans are ``basinflow.samples`` (a Bragg peak at a known Q, strain per delay), small
(``ntheta=3``) so the stack's test cooks them in seconds. It reads the same config as the
flows (``$BASINFLOW_CONFIG``), so the URLs it writes are the ones they read.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

#: proposal -> scans loaded into the stack
PROPOSALS = {"2021-05": ("1", "2", "3"), "2021-06": ("1", "2")}
REPOSITORY = "beamline"


def load(config: str, proposals: dict[str, tuple[str, ...]] = PROPOSALS) -> list[str]:
    """Upload what is missing; returns the proposals it loaded."""
    import fsspec

    from basinflow import samples
    from basinflow.config import load_config, open_repository

    settings = load_config(config).repository(REPOSITORY)
    fs, _ = fsspec.core.url_to_fs("s3://raw", **settings.storage_options)
    loaded = [p for p in proposals if not fs.exists(f"raw/{p}")]
    with tempfile.TemporaryDirectory(prefix="basinflow-samples-") as tmp:
        for proposal in loaded:
            spec = samples.SampleSpec(
                proposals={proposal: proposals[proposal]}, ntheta=3, layouts=("nexus",)
            )
            samples.generate(tmp, spec)
            for scan in proposals[proposal]:
                local = Path(tmp, "nexus", proposal, f"{scan}.h5")
                fs.put(str(local), f"raw/{proposal}/{scan}.h5")
    fs.invalidate_cache()  # the catalog below lists through this same (cached) filesystem
    repo = open_repository(config, REPOSITORY)
    for proposal in loaded:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            repo[proposal].spice.seed("rsm", **samples.rsm_spice())
    return loaded


if __name__ == "__main__":
    done = load(os.environ.get("BASINFLOW_CONFIG", "/etc/basinflow/basinflow.yaml"))
    print(f"loaded {', '.join(done) or 'nothing (already there)'}", file=sys.stderr)
