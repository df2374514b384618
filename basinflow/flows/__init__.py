"""Prefect flows on Dask (the only package that imports Prefect).

``cook`` (one proposal), ``watch`` (scheduled: what is new or stale), ``reprocess`` (many
proposals, batched). Plain entry point: :func:`basinflow.flows.run.cook_proposal`.
Modules are imported on first use so ``import basinflow.flows`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "cook_proposal": "basinflow.flows.run:cook_proposal",
    "serve": "basinflow.flows.serve:serve",
    "prefect_api": "basinflow.flows.runtime:prefect_api",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'basinflow.flows' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


__all__ = sorted(_LAZY)
