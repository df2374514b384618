"""Finding scans: repositories, proposals, scans; URL templates and listing.

Names are imported on first use so that ``import basinflow.catalog`` (in spawned worker
processes, in the CLI) does not pull in xarray. Keys, handles and natural order live in
the leaf :mod:`basinflow.keys`; they are handed on here for convenience.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Repository": "basinflow.catalog.repository",
    "Proposal": "basinflow.catalog.repository",
    "Scan": "basinflow.catalog.repository",
    "Template": "basinflow.catalog.template",
    "handle_of": "basinflow.keys",
    "natural_key": "basinflow.keys",
    "natural_sorted": "basinflow.keys",
    "validate_key": "basinflow.keys",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'basinflow.catalog' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = sorted(_LAZY)
