"""What a recipe is: a named, versioned, pure function ``raw + spice -> cooked``.

A :class:`Recipe` declares the spice types it needs (each with a pydantic model), the
variables it produces (their dims and chunking) and, optionally, other datasets it needs
(``inputs``: e.g. a dark-frame scan). :meth:`Recipe.cook` validates the spice, applies
keyword overrides to the recipe's *main* spice type (the first one), and calls the pure
function. Nothing here reads or writes files: references to other scans are declared
as :class:`InputRef` and resolved by the caller (the task layer), which passes the
resulting datasets in ``inputs=``.

The contract of ``func``::

    func(raw: xr.Dataset, spice: Mapping[str, pydantic.BaseModel], *,
         inputs: Mapping[str, xr.Dataset]) -> xr.Dataset

``raw`` is the lazy scan (``frames`` on ``("index", "y", "x")`` plus 1-D positioner and
monitor variables on ``index``); the result is lazy too (Dask-backed), its variables
chunked as the recipe's :class:`OutputSpec` says.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pydantic

from basinflow.errors import RecipeError, SpiceValidationError

if TYPE_CHECKING:
    import xarray as xr

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class OutputSpec:
    """One output variable: its dims and how it is chunked.

    ``chunks`` maps a dim to a chunk length, ``-1`` (the whole dim), ``"input"`` (the
    chunks of the same dim of the raw frames) or ``"tasks"`` (whole multiples of the
    input chunks, about 64 MiB of frames each; see :mod:`basinflow.recipes.chunking`).
    Dims that depend on spice (a group dim, the Q dims) are written in angle brackets,
    e.g. ``"<group_by>"``. The cooked variables carry exactly these Dask chunks.
    """

    name: str
    dims: tuple[str, ...]
    chunks: Mapping[str, int | str] = field(default_factory=dict)
    dtype: str = "float64"
    description: str = ""


@dataclass(frozen=True)
class InputRef:
    """A dataset the recipe needs besides the raw scan, resolved by the caller.

    ``scan`` is a scan key of the same proposal; the caller passes that scan's raw
    dataset as ``inputs[name]``. The recipe reduces it itself (purely, lazily), so the
    caller never needs to know what the recipe does with it.
    """

    name: str
    scan: str
    variable: str = "frames"


@dataclass(frozen=True)
class Recipe:
    """A registered, versioned, pure cooking function (see the module docstring).

    Parameters
    ----------
    name, version
        Registry name and version string (provenance records both; bump the version
        whenever the output for the same input and spice changes).
    spice_types
        Required spice type names; the first is the *main* type that ``cook(**overrides)``
        updates.
    func
        The pure function.
    spice_models
        Pydantic model per spice type (validation and defaults).
    outputs
        The variables ``func`` returns.
    inputs
        ``inputs(spice) -> tuple[InputRef, ...]``: other scans this cook needs.
    description
        One line for listings.
    """

    name: str
    version: str
    spice_types: tuple[str, ...]
    func: Callable[..., xr.Dataset]
    spice_models: Mapping[str, type[pydantic.BaseModel]] = field(default_factory=dict)
    outputs: tuple[OutputSpec, ...] = ()
    inputs: Callable[[Mapping[str, pydantic.BaseModel]], tuple[InputRef, ...]] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise RecipeError(
                f"recipe name {self.name!r} is not valid: start with a letter, then letters, "
                "digits, '_', '.' or '-'"
            )
        if not isinstance(self.version, str) or not self.version:
            raise RecipeError(f"recipe {self.name!r}: version must be a non-empty string")
        if isinstance(self.spice_types, str) or not all(
            isinstance(t, str) and t for t in self.spice_types
        ):
            raise RecipeError(
                f"recipe {self.name!r}: spice_types must be a tuple of type names, "
                f"got {self.spice_types!r}"
            )
        object.__setattr__(self, "spice_types", tuple(self.spice_types))
        if not callable(self.func):
            raise RecipeError(f"recipe {self.name!r}: func must be callable")
        extra = set(self.spice_models) - set(self.spice_types)
        if extra:
            raise RecipeError(
                f"recipe {self.name!r}: spice_models for undeclared spice types {sorted(extra)}"
            )
        object.__setattr__(self, "spice_models", MappingProxyType(dict(self.spice_models)))
        object.__setattr__(self, "outputs", tuple(self.outputs))

    # -- helpers built on the primitives ---------------------------------------------------
    @property
    def main_spice_type(self) -> str | None:
        return self.spice_types[0] if self.spice_types else None

    def validate_spice(
        self, spice: Any = None, overrides: Mapping[str, Any] | None = None
    ) -> dict[str, pydantic.BaseModel]:
        """Typed spice per required type, with ``overrides`` applied to the main type.

        ``spice`` is a spice view or any mapping ``{type or handle: data}``, where data
        is a pydantic model, a mapping, or a spice document with a ``data`` mapping.
        """
        overrides = dict(overrides or {})
        typed: dict[str, pydantic.BaseModel] = {}
        for i, type_name in enumerate(self.spice_types):
            data = _lookup(spice, type_name)
            extra = overrides if i == 0 else {}
            if data is None and not extra:
                raise SpiceValidationError(
                    f"recipe {self.name!r} needs spice of type {type_name!r}, but the spice "
                    f"has none (it has: {_describe(spice)}); seed it, e.g. "
                    f"proposal.spice.seed({type_name!r}, anchor=..., ...)"
                )
            typed[type_name] = self._validate_one(type_name, {**(data or {}), **extra}, extra)
        if overrides and not self.spice_types:
            raise SpiceValidationError(
                f"recipe {self.name!r} takes no spice, so it accepts no overrides "
                f"(got {sorted(overrides)})"
            )
        return typed

    def _validate_one(
        self, type_name: str, data: dict[str, Any], overrides: Mapping[str, Any]
    ) -> pydantic.BaseModel:
        model = self.spice_models.get(type_name) or _registered_model(type_name)
        if model is None:
            return _Untyped(**data)
        unknown = set(overrides) - set(model.model_fields)
        if unknown:
            raise SpiceValidationError(
                f"recipe {self.name!r}: {sorted(unknown)} are not fields of spice type "
                f"{type_name!r}; fix the override names (known fields: "
                f"{sorted(model.model_fields)})"
            )
        try:
            return model.model_validate(data)
        except pydantic.ValidationError as exc:
            raise SpiceValidationError(
                f"spice type {type_name!r} for recipe {self.name!r} is invalid: "
                + _format_errors(exc)
                + "; fix the spice (spice.update) or the overrides"
            ) from None

    def required_inputs(self, spice: Any = None, **overrides: Any) -> tuple[InputRef, ...]:
        """The other scans this cook needs (for the caller to resolve)."""
        if self.inputs is None:
            return ()
        return tuple(self.inputs(self.validate_spice(spice, overrides)))

    def cook(
        self,
        raw: xr.Dataset,
        spice: Any = None,
        /,
        *,
        inputs: Mapping[str, xr.Dataset] | None = None,
        **overrides: Any,
    ) -> xr.Dataset:
        """Validate spice, apply overrides, and return the lazy cooked dataset."""
        typed = self.validate_spice(spice, overrides)
        inputs = dict(inputs or {})
        if self.inputs is not None:
            missing = [ref for ref in self.inputs(typed) if ref.name not in inputs]
            if missing:
                refs = ", ".join(
                    f"{r.name!r} (scan {r.scan!r}, variable {r.variable!r})" for r in missing
                )
                raise RecipeError(
                    f"recipe {self.name!r} needs other scans: {refs}; pass their raw "
                    "datasets as inputs={name: scan.raw} (the task layer resolves them)"
                )
        out = self.func(raw, typed, inputs=inputs)
        out.attrs.setdefault("recipe", self.name)
        out.attrs.setdefault("recipe_version", self.version)
        return out

    def __repr__(self) -> str:
        return f"Recipe({self.name!r}, version={self.version!r}, spice_types={self.spice_types!r})"


class _Untyped(pydantic.BaseModel):
    """Spice of a type without a registered schema: fields accessible, not validated."""

    model_config = pydantic.ConfigDict(extra="allow", frozen=True)


def _registered_model(type_name: str) -> type[pydantic.BaseModel] | None:
    """The schema the spice package has registered for ``type_name``, if any."""
    from basinflow.spice.types import get_spice_type

    return get_spice_type(type_name)


def _as_dict(value: Any) -> dict[str, Any] | None:
    """Plain field values of one spice entry (model, view item, document or mapping)."""
    if value is None:
        return None
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump()
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and hasattr(value, "document"):  # a SpiceView item
        return dict(to_dict())
    if isinstance(value, Mapping):
        data = value.get("data") if _looks_like_document(value) else value
        return dict(data)
    data = getattr(value, "data", None)
    if isinstance(data, Mapping):
        return dict(data)
    if isinstance(data, pydantic.BaseModel):
        return data.model_dump()
    raise SpiceValidationError(
        f"cannot read spice from a {type(value).__name__}: give a mapping, a pydantic model "
        "or a spice document"
    )


def _looks_like_document(value: Mapping) -> bool:
    return "data" in value and "type" in value and isinstance(value.get("data"), Mapping)


def _type_of(value: Any) -> str | None:
    document = getattr(value, "document", None)
    if document is not None and hasattr(document, "type"):
        return document.type
    if isinstance(value, Mapping):
        return value.get("type") if _looks_like_document(value) else None
    return getattr(value, "type", None)


def _lookup(spice: Any, type_name: str) -> dict[str, Any] | None:
    """Data of the spice of ``type_name``.

    A :class:`~basinflow.spice.view.SpiceView` is asked by type (``of_type``): one
    handle of that type is used; with several, the one whose handle is the type name.
    Plain mappings are looked up by key, then by the entries' ``type``.
    """
    if spice is None:
        return None
    of_type = getattr(spice, "of_type", None)
    if callable(of_type):
        items = dict(of_type(type_name))
        if not items:
            return None
        if len(items) > 1 and type_name not in items:
            raise SpiceValidationError(
                f"several spice handles of type {type_name!r} are visible "
                f"({', '.join(sorted(items))}); name one of them {type_name!r} or remove "
                "the others"
            )
        return _as_dict(items.get(type_name) or next(iter(items.values())))
    if isinstance(spice, Mapping):
        if type_name in spice:
            return _as_dict(spice[type_name])
        for value in spice.values():
            if _type_of(value) == type_name:
                return _as_dict(value)
        return None
    try:
        value = getattr(spice, type_name)
    except AttributeError:
        value = None
    return _as_dict(value) if value is not None else None


def _describe(spice: Any) -> str:
    if spice is None:
        return "nothing"
    if isinstance(spice, Mapping):
        return ", ".join(map(repr, spice)) or "nothing"
    return type(spice).__name__


def _format_errors(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(document)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
