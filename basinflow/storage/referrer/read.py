"""The names ``read`` used to hold, kept for existing imports.

The reader is split by responsibility: :mod:`.meta` (metadata and opening files),
:mod:`.audit` (what libhdf5 may open), :mod:`.load` (resolving and loading one basin)
and :mod:`.open` (:func:`open_referrer`: innate variables, then basins, recursively).
"""

from __future__ import annotations

from basinflow.storage.referrer.load import MAX_REDIRECTS, BasinFormatError, Resolution, resolve
from basinflow.storage.referrer.meta import ReferrerMeta, read_meta
from basinflow.storage.referrer.open import as_url, open_referrer

__all__ = [
    "MAX_REDIRECTS",
    "BasinFormatError",
    "ReferrerMeta",
    "Resolution",
    "as_url",
    "open_referrer",
    "read_meta",
    "resolve",
]
