"""What a referrer records about how it was made (``/provenance``), and reading it back.

The record is what the freshness check compares: recipe name and version, the spice
documents used (whole) with their hash, the keyword overrides, and the pin of every input
file (the cooked scan and the scans its recipe read besides, such as a dark scan). It also
says which detector mask the recipe applied (``mask``): the same frames cooked with and
without a pixel mask or saturation value give different numbers, and a reader of the
referrer alone (``h5py``, ``basinflow referrer show``) must be able to tell which it has.
"""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Mapping, Sequence
from typing import Any

from basinflow.tasks.outputs import spice_hash

#: Packages whose versions every referrer records.
PACKAGES = ("basinflow", "numpy", "xarray", "dask", "h5py", "fsspec")


def packages() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(md.PackageNotFoundError):
            out[name] = md.version(name)
    return out


def record(
    *,
    recipe: str,
    recipe_version: str,
    spice: Sequence[Mapping[str, Any]],
    overrides: Mapping[str, Any],
    inputs: Mapping[str, Mapping[str, Any]],
    scan: Mapping[str, Any],
    flow_run_id: str | None,
    mask: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """The provenance document of one cook (``mask``: :func:`mask_of` the cooked data;
    ``extra``: e.g. the source's own provenance)."""
    return {
        "recipe": recipe,
        "recipe_version": recipe_version,
        "spice": [dict(d) for d in spice],
        "spice_hash": spice_hash(spice, overrides),
        "overrides": dict(overrides),
        "inputs": {url: dict(pin) for url, pin in inputs.items()},
        "scan": dict(scan),
        "mask": mask or "none",
        **extra,
        "packages": packages(),
        "flow_run_id": flow_run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def mask_of(cooked: Any) -> str:
    """The detector mask a recipe says it applied: the ``mask`` attribute of the cooked
    Dataset and of any of its variables (recipes record it there, see
    :mod:`basinflow.recipes.masking`), each distinct text once; ``""`` when none did."""
    texts = [cooked.attrs.get("mask")]
    texts += [v.attrs.get("mask") for v in getattr(cooked, "variables", {}).values()]
    return "; ".join(dict.fromkeys(str(t) for t in texts if t))


def read_provenance(url: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    from basinflow.storage.referrer.read import read_meta

    return read_meta(url, storage_options).provenance


__all__ = ["mask_of", "packages", "read_provenance", "record"]
