"""Finding scans: repositories, proposals, scans; templates, keys and handles."""

from basinflow.catalog.keys import handle_of, natural_key, natural_sorted, validate_key
from basinflow.catalog.repository import Proposal, Repository, Scan
from basinflow.catalog.template import Template

__all__ = [
    "Proposal",
    "Repository",
    "Scan",
    "Template",
    "handle_of",
    "natural_key",
    "natural_sorted",
    "validate_key",
]
