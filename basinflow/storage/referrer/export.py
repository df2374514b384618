"""``export(ref, out)``: a self-contained copy of a referrer, every basin resolved.

Chains are flattened and mappings applied: the copy holds every variable the referrer
shows as innate data and has no basins, so it opens anywhere without trust settings.
Its provenance is the source's plus ``exported_from``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from basinflow.storage.commit import atomic_output
from basinflow.storage.referrer.open import open_referrer
from basinflow.storage.referrer.write import write_referrer


def export(
    ref_url: str,
    out_url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    out_storage_options: Mapping[str, Any] | None = None,
    **open_kwargs: Any,
) -> int:
    """Write a self-contained copy of ``ref_url`` to ``out_url``; returns bytes stored."""
    ds = open_referrer(ref_url, storage_options=storage_options, **open_kwargs)
    prov = json.loads(ds.attrs.pop("provenance", "{}") or "{}")
    prov["exported_from"] = ref_url
    for k in ("basinflow_dims", "basinflow_referrer", "NX_class", "default"):
        ds.attrs.pop(k, None)
    for name in ds.variables:
        ds.variables[name].encoding.pop("chunks", None)
    with atomic_output(out_url, out_storage_options) as tmp:
        stats = write_referrer(tmp, ds, referrer_url=out_url, provenance=prov)
    return stats.bytes


__all__ = ["export"]
