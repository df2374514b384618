"""One frozen request per (scan, recipe): everything a cook needs to know, decided once.

:func:`prepare` reads the scan's spice once (only the handles of the types the recipe
needs, so a conflict in an unrelated handle cannot block it), computes the output URL
once, and resolves the recipe's :class:`~basinflow.recipes.base.InputRef` to scans of
the same proposal. The :class:`CookRequest` it returns then travels unchanged from the
flows down to the worker: the freshness check, the cook, the provenance and the
``current`` pointer all read it instead of asking the catalog and the spice store again.
It is plain data (picklable, no open files), small enough to be a task parameter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from basinflow.tasks.outputs import (
    fill_output,
    output_options,
    pointer_url,
    spice_hash,
    template_for,
)

if TYPE_CHECKING:
    from basinflow.catalog import Scan


@dataclass(frozen=True)
class InputScan:
    """A scan of the same proposal that a recipe reads besides the cooked one.

    ``name`` is the recipe's :class:`~basinflow.recipes.base.InputRef` name (``"dark"``);
    ``url`` keys its pin in the provenance, ``pin_url`` is the file that pin is read from.
    """

    name: str
    scan: str
    url: str
    pin_url: str


@dataclass(frozen=True)
class CookRequest:
    """What to cook: one scan with one recipe version and resolved spice, and where to.

    ``spice`` holds the spice documents used, whole (their uuids and revisions are the
    resolved spice); ``storage_options`` are the output's (its host only). ``reading`` is
    how the raw files are read: the repository's layout and its options (frames path,
    detector, mask values...). It is part of what a cook is made from, so changing an
    option in the config makes the outputs cooked under the old one out of date.
    """

    repository: str
    proposal: str
    scan: str
    scan_url: str
    pin_url: str
    recipe: str
    recipe_version: str
    spice: tuple[dict[str, Any], ...]
    template: str
    output: str
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    overrides: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[InputScan, ...] = ()
    reading: dict[str, Any] = field(default_factory=lambda: reading_of())

    @property
    def spice_hash(self) -> str:
        return spice_hash(self.spice, self.overrides)

    @property
    def pointer(self) -> str:
        """URL of the (scan, recipe) ``current`` pointer."""
        return pointer_url(self.template, self.proposal, self.scan, self.recipe)

    @property
    def spice_documents(self) -> dict[str, dict[str, Any]]:
        """The spice as a recipe reads it: by handle, each a whole document."""
        return {doc["handle"]: doc for doc in self.spice}

    @property
    def pointer_info(self) -> dict[str, str]:
        return {"recipe_version": self.recipe_version, "spice": self.spice_hash}


def prepare(
    scan: Scan,
    recipe: str,
    output: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> CookRequest:
    """The request to cook ``scan`` with ``recipe`` (reads spice, never frames).

    Raises the basinflow error that makes the cook impossible (unknown recipe, missing
    or invalid spice, no output template, an input scan that does not exist).
    """
    from basinflow.recipes.registry import get_recipe

    rec = get_recipe(recipe)
    overrides = dict(overrides or {})
    template = template_for(scan, output)
    view = scan.proposal.spice.view(scan.key, types=rec.spice_types) if rec.spice_types else None
    typed = rec.validate_spice(view, overrides)  # missing, invalid or ambiguous spice fails here
    refs = rec.inputs(typed) if rec.inputs is not None else ()
    inputs = tuple(_input_scan(scan, ref.name, ref.scan) for ref in refs)
    docs = [] if view is None else [d.to_dict() for d in view.documents]
    request_spice = tuple(docs)
    url = fill_output(
        template,
        scan.proposal.key,
        scan.key,
        rec.name,
        rec.version,
        spice_hash(request_spice, overrides),
    )
    return CookRequest(
        repository=scan.repository.name,
        proposal=scan.proposal.key,
        scan=scan.key,
        scan_url=scan.url,
        pin_url=scan.pin_url,
        recipe=rec.name,
        recipe_version=rec.version,
        spice=request_spice,
        template=template,
        output=url,
        storage_options=output_options(scan, url),
        overrides=overrides,
        inputs=inputs,
        reading=reading_of(scan.repository.layout, scan.repository.layout_options),
    )


def reading_of(layout: str = "auto", options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """How a repository reads its raw files, as recorded in provenance: the configured
    layout (``auto`` when detected) and its options. The default is what outputs written
    before this was recorded were read with unless the config said otherwise. Made plain
    JSON here (tuples as lists), so that it compares equal to its provenance read back."""
    return json.loads(json.dumps({"layout": layout, "options": dict(options or {})}, default=str))


def _input_scan(scan: Scan, name: str, key: str) -> InputScan:
    other = scan.proposal[key]  # ScanNotFound names the proposal and the key
    return InputScan(name=name, scan=other.key, url=other.url, pin_url=other.pin_url)


__all__ = ["CookRequest", "InputScan", "prepare", "reading_of"]
