"""Referrers: HDF5 outputs that hold cooked results and link to their basins.

``write`` lays a referrer out, ``read`` opens it (innate + basin variables, lazily),
``basins`` defines basins, ``trust`` decides which locations may be opened, ``export``
writes a self-contained copy.
"""

from __future__ import annotations

from basinflow.storage.referrer.basins import Basin
from basinflow.storage.referrer.meta import read_meta
from basinflow.storage.referrer.open import open_referrer

__all__ = ["Basin", "open_referrer", "read_meta"]
