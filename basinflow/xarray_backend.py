"""Referrers through xarray's own door: ``xr.open_dataset(url, engine="basinflow")``.

A :class:`xarray.backends.BackendEntrypoint` registered in the ``xarray.backends``
entry-point group, so a user who knows xarray opens a referrer the way they open any
file and gets what :func:`basinflow.open_referrer` gives: the innate variables plus
every basin's variables, lazily, with the same trust rules (``trusted=[...]``,
``trusted_hosts=[...]``) and the same errors. The work stays in
:mod:`basinflow.storage.referrer`; this module only adapts the call.

xarray never picks this engine on its own (``guess_can_open`` is ``False``): opening a
referrer's basins reads other files, which a caller should ask for by name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from xarray.backends import BackendEntrypoint


class BasinflowBackendEntrypoint(BackendEntrypoint):
    """Open a basinflow referrer (innate + basin variables) with ``engine="basinflow"``."""

    description = "basinflow referrers: cooked variables plus their basins' variables, lazily"
    url = "https://github.com/basinflow/basinflow#open-a-referrer"
    open_dataset_parameters = (
        "filename_or_obj",
        "drop_variables",
        "trusted",
        "trusted_hosts",
        "storage_options",
        "host_options",
        "check_pins",
        "missing",
    )

    def open_dataset(  # type: ignore[override] - the parameters are open_referrer's
        self,
        filename_or_obj: str | os.PathLike[Any],
        *,
        drop_variables: str | Iterable[str] | None = None,
        **open_kwargs: Any,
    ):
        """``open_referrer(filename_or_obj, **open_kwargs)``: ``trusted``,
        ``trusted_hosts``, ``storage_options``, ``host_options``, ``check_pins``,
        ``missing``."""
        from basinflow.storage.referrer.open import open_referrer

        if not isinstance(filename_or_obj, str | os.PathLike):
            raise TypeError(
                "engine='basinflow' opens a referrer by path or URL (its basins resolve "
                f"relative to it), not a {type(filename_or_obj).__name__}"
            )
        ds = open_referrer(os.fspath(filename_or_obj), **open_kwargs)
        if drop_variables is not None:
            names = [drop_variables] if isinstance(drop_variables, str) else drop_variables
            ds = ds.drop_vars(list(names), errors="ignore")
        return ds

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        return False


__all__ = ["BasinflowBackendEntrypoint"]
