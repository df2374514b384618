"""basinflow: reprocess beamline scans lazily, cook them with versioned spice, and write
referrer HDF5 files that link back to their basins instead of copying them.

The public surface reads like xarray and fsspec::

    import basinflow as bf
    repo = bf.Repository("s3://raw/{proposal}/{scan}.h5#entry", spice="file:///spice/{proposal}")
    scan = repo["2021-05"]["0042"]
    scan.raw                      # lazy xarray.Dataset
    bf.cooked(scan, "rsm")        # lazy cooked xarray.Dataset
    bf.cook(scan, "rsm", output="file:///out/{proposal}/{scan}/{recipe}.h5")
    bf.open_referrer(url)

Heavy modules are imported on first use, so ``import basinflow`` stays cheap for the CLI
and for Dask workers.
"""

from __future__ import annotations

import importlib
from typing import Any

from basinflow.errors import Error

__version__ = "0.1.0"

_LAZY = {
    "Repository": "basinflow.catalog.repository:Repository",
    "Proposal": "basinflow.catalog.repository:Proposal",
    "Scan": "basinflow.catalog.repository:Scan",
    "load_config": "basinflow.config:load_config",
    "open_repository": "basinflow.config:open_repository",
    "cook": "basinflow.tasks.cooking:cook",
    "cooked": "basinflow.tasks.cooking:cooked",
    "open_referrer": "basinflow.storage.referrer.open:open_referrer",
    "quicklook": "basinflow.recipes.quicklook:quicklook",
    "recipes": "basinflow.recipes.registry:list_recipes",
    "samples": "basinflow.samples",
    "errors": "basinflow.errors",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'basinflow' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = importlib.import_module(module)
    if attr:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["Error", "__version__", *_LAZY]
