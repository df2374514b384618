"""``export(ref, out)``: a self-contained copy of a referrer, every basin resolved.

Chains are flattened and mappings applied: the copy holds every variable the referrer
shows as innate data and has no basins, so it opens anywhere without trust settings.
Its provenance is the source's plus ``exported_from``; its ``NXdata`` plots the signal the
source plots (not whichever variable the writer's rule would pick among the added ones).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from basinflow.storage.commit import atomic_output
from basinflow.storage.referrer.meta import open_h5
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
    signal = nxdata_signal(ds.encoding.get("source", ref_url), storage_options)
    prov = json.loads(ds.attrs.pop("provenance", "{}") or "{}")
    prov["exported_from"] = ref_url
    for k in ("basinflow_dims", "basinflow_referrer", "NX_class", "default"):
        ds.attrs.pop(k, None)
    for name in ds.variables:
        ds.variables[name].encoding.pop("chunks", None)
    with atomic_output(out_url, out_storage_options) as tmp:
        stats = write_referrer(
            tmp,
            ds,
            referrer_url=out_url,
            provenance=prov,
            signal=signal if signal in ds.data_vars else None,
        )
    return stats.bytes


def nxdata_signal(url: str, storage_options: Mapping[str, Any] | None = None) -> str | None:
    """The ``signal`` of the referrer's default ``NXdata`` (``/@default`` -> entry ->
    ``@default`` or ``data``), or ``None``."""
    f, fobj = open_h5(url, storage_options, "referrer")
    try:
        entry = f.get(_text(f.attrs.get("default", "entry")))
        nxdata = entry.get(_text(entry.attrs.get("default", "data"))) if entry else None
        signal = nxdata.attrs.get("signal") if nxdata is not None else None
        return _text(signal) if signal is not None else None
    finally:
        f.close()
        if fobj is not None:
            fobj.close()


def _text(value: Any) -> str:
    if hasattr(value, "tolist"):  # a 1-element array attribute
        value = value.tolist()
        value = value[0] if isinstance(value, list) and value else value
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["export", "nxdata_signal"]
