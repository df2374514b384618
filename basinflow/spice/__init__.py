"""Spice: versioned, typed, anchored processing parameters.

"From scan 0040 on, the detector was at 690 mm" is one spice document. Documents are
immutable JSON (an update writes ``revision + 1``), typed by pydantic schemas that recipes
register by name, anchored at a scan in natural scan order, and stored one file per
document so concurrent writers never overwrite each other. ``prop.spice`` is a
:class:`ProposalSpice`. Spice is data only: recipes are chosen by registered name, never
by code named in spice.
"""

from basinflow.spice.document import (
    NX5D_VERSION,
    VERSION,
    SpiceDocument,
    validate_name,
)
from basinflow.spice.fsspec_store import FsspecSpiceStore, open_spice_store
from basinflow.spice.importer import ImportReport, import_spice, read_spice_documents
from basinflow.spice.proposal_spice import ProposalSpice
from basinflow.spice.resolve import Conflict
from basinflow.spice.stacks import StackGroup
from basinflow.spice.store import MemorySpiceStore, SpiceStore
from basinflow.spice.types import (
    StackSpice,
    get_spice_type,
    is_registered,
    refresh_spice_types,
    register_spice_type,
    spice_type,
    spice_types,
    unregister_spice_type,
    validate_spice_data,
)
from basinflow.spice.view import SpiceItem, SpiceTable, SpiceView

__all__ = [
    "NX5D_VERSION",
    "VERSION",
    "Conflict",
    "FsspecSpiceStore",
    "ImportReport",
    "MemorySpiceStore",
    "ProposalSpice",
    "SpiceDocument",
    "SpiceItem",
    "SpiceStore",
    "SpiceTable",
    "SpiceView",
    "StackGroup",
    "StackSpice",
    "get_spice_type",
    "import_spice",
    "is_registered",
    "open_spice_store",
    "read_spice_documents",
    "refresh_spice_types",
    "register_spice_type",
    "spice_type",
    "spice_types",
    "unregister_spice_type",
    "validate_name",
    "validate_spice_data",
]
