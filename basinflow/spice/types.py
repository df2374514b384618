"""Registry of spice types: a name -> pydantic model mapping.

Recipes declare the spice they need as pydantic models and register them here by name
(``register_spice_type("rsm", RsmSpice)``); seeding or updating spice of a registered type
is validated against its model, with messages naming the field. Spice of a type nobody
registered is still accepted, but stored *untyped* (``typed=False``) with an
:class:`~basinflow.errors.UntypedSpiceWarning`, so free-form notes remain possible while
typos in the parameters recipes depend on are caught.

The registry is the shared helper of :mod:`basinflow.plugins` on the entry-point group
``basinflow.spice_types``: a private dict, a read-only view, lazy registration by dotted path
(``"pkg.module:Model"``, imported on first use, with an install hint when the import fails),
cached and refreshable discovery in which a broken plugin becomes a warning. Packages that
bring recipes declare their spice types in that group too (basinflow's own ``rsm``, ``roi``,
``normalize`` do), so seeding ``rsm`` is validated before any recipe was imported, and the
spice package never imports, or loads entry points of, the recipes.

The built-in ``stack`` type lives here because the catalog needs it without any recipe.
"""

from __future__ import annotations

import difflib
import json
import warnings
from collections.abc import Mapping
from importlib.metadata import EntryPoint
from types import MappingProxyType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from basinflow.errors import BasinflowWarning, SpiceError, SpiceNotFound, SpiceValidationError
from basinflow.plugins import Registry
from basinflow.spice.document import validate_name
from basinflow.spice.json_values import thaw

ENTRY_POINT_GROUP = "basinflow.spice_types"


class StackSpice(BaseModel):
    """Spice type ``stack``: cook consecutive scans as one unit.

    A ``stack`` document anchored at scan *A* groups the scans from *A* up to (not
    including) the next ``stack`` anchor. With ``size`` set, that run of scans is cut into
    consecutive groups of ``size`` scans (the last one may be shorter); ``size=1`` ends
    stacking from that anchor on.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int | None = Field(
        default=None, ge=1, description="scans per group; None = all scans up to the next anchor"
    )
    label: str | None = Field(default=None, description="free text shown in listings")


def register_spice_type(name: str, model: type[BaseModel] | str, *, replace: bool = False) -> None:
    """Register the schema of a spice type.

    Parameters
    ----------
    name
        Type name used in spice documents; a Python identifier (``rsm``).
    model
        A pydantic model class, or a ``"package.module:Model"`` string imported on first use
        (so registering costs no import).
    replace
        Replace an existing, different registration. Re-registering the same model (or a
        class with the same module and name, as after a notebook reload) is always allowed.

    Raises
    ------
    InvalidKeyError
        When ``name`` is not an identifier.
    SpiceError
        When ``model`` is not a pydantic model (or dotted path) or ``name`` is already taken
        by another model and ``replace`` is false.
    """
    validate_name(name, "spice type name")
    if isinstance(model, str):
        if ":" not in model:
            raise SpiceError(
                f"spice type {name!r}: lazy model {model!r} must look like 'package.module:Model'"
            )
    elif not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise SpiceError(
            f"spice type {name!r}: the schema must be a pydantic BaseModel subclass, got {model!r}"
        )
    TYPES.register(name, model, replace=replace)


def unregister_spice_type(name: str) -> None:
    """Forget a registration (for tests and interactive experiments)."""
    TYPES.unregister(name)


def is_registered(name: str) -> bool:
    """Whether a schema is registered for type ``name`` (entry points included)."""
    return _lookup(name) is not None


def spice_type(name: str) -> type[BaseModel]:
    """The pydantic model registered for type ``name``.

    Raises
    ------
    SpiceNotFound
        Naming the registered types, when nobody registered ``name``.
    """
    model = _lookup(name)
    if model is None:
        known = ", ".join(TYPES.names()) or "none"
        raise SpiceNotFound(
            f"no spice type {name!r} is registered (registered: {known}); register one with "
            "basinflow.spice.register_spice_type(name, Model) or install the package that "
            f"declares it (entry-point group {ENTRY_POINT_GROUP!r})"
        )
    return model


def get_spice_type(name: str) -> type[BaseModel] | None:
    """The model registered for ``name``, or ``None`` (for callers that treat "untyped" as
    a normal answer, e.g. recipes falling back to their own model)."""
    return _lookup(name)


def spice_types() -> Mapping[str, type[BaseModel]]:
    """Read-only view of every registered type (lazy ones imported now)."""
    return MappingProxyType(dict(sorted(TYPES.load_all().items())))


def refresh_spice_types() -> None:
    """Discover the entry points again (after installing a plugin)."""
    TYPES.refresh()


# --- validation -----------------------------------------------------------------------------
def validate_spice_data(
    type_name: str, data: Mapping[str, Any], *, what: str | None = None
) -> BaseModel | None:
    """Validate ``data`` against the model of ``type_name``.

    Validation runs on the JSON form of the data in pydantic's strict JSON mode, which is
    exactly what will be read back from the store: ``"8048"`` is not a number, ``1`` is not
    a boolean, but a JSON list is a fine tuple. Unknown fields are refused unless the model
    itself says ``extra="allow"``.

    Returns
    -------
    The validated model instance, or ``None`` when no schema is registered (untyped spice).

    Raises
    ------
    SpiceValidationError
        Naming the spice (``what``), the field, what was expected and what was given.
    """
    model = _lookup(type_name)
    if model is None:
        return None
    what = what or f"spice of type {type_name!r}"
    plain = thaw(data)
    known: dict[str, str] = {}
    for field_name, info in model.model_fields.items():
        known[field_name] = field_name
        if info.alias:
            known[info.alias] = field_name
    if model.model_config.get("extra") != "allow":
        unknown = sorted(set(plain) - set(known))
        if unknown:
            name = unknown[0]
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpiceValidationError(
                f"{what}: unknown field {name!r}{hint}; fix its name or remove it; type "
                f"{type_name!r} has fields {', '.join(sorted(model.model_fields)) or '(none)'}"
            )
    try:
        validated = model.model_validate_json(json.dumps(plain, allow_nan=False), strict=True)
    except pydantic.ValidationError as exc:
        raise SpiceValidationError(_format_error(what, type_name, model, exc, known)) from None
    _check_int64(validated.model_dump(), (), what, type_name)
    return validated


#: the integers recipes compute with (NumPy's int64): JSON and Python have no such limit
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _check_int64(value: Any, loc: tuple, what: str, type_name: str) -> None:
    """Refuse an integer outside int64 where the schema kept it an integer: NumPy would
    fail on it at cook time with an ``OverflowError`` naming no field."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_int64(v, (*loc, k), what, type_name)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_int64(v, (*loc, i), what, type_name)
    elif isinstance(value, int) and not isinstance(value, bool):
        big = not INT64_MIN <= value <= INT64_MAX
        if big:
            raise SpiceValidationError(
                f"{what}: field {_loc_text(loc)!r}: {value} is outside the 64-bit integer "
                f"range ({INT64_MIN}..{INT64_MAX}) recipes compute with [type {type_name!r}]; "
                "fix this value"
            )


def _format_error(
    what: str,
    type_name: str,
    model: type[BaseModel],
    exc: pydantic.ValidationError,
    known: Mapping[str, str],
) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = err.get("loc", ())
        path = _loc_text(loc)
        expected = ""
        if loc and isinstance(loc[0], str) and loc[0] in known:
            annotation = model.model_fields[known[loc[0]]].annotation
            expected = f" (field type {_type_text(annotation)})"
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        if not loc:  # a model-level validator: its message says what is wrong
            parts.append(msg)
        elif err.get("type") == "missing":
            parts.append(f"field {path!r} is required but missing{expected}")
        else:
            given = err.get("input")
            parts.append(f"field {path!r}: {msg}{expected}, got {given!r}")
    more = f" (and {len(parts) - 3} more)" if len(parts) > 3 else ""
    fix = "fix these values" if len(parts) > 1 else "fix this value"
    return f"{what}: " + "; ".join(parts[:3]) + more + f" [type {type_name!r}]; {fix}"


def _loc_text(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def _type_text(annotation: object) -> str:
    """Readable type: ``tuple[str, str]``, not ``tuple[Annotated[str, AfterValidator(...)]...``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_text(args[0])
    if origin in (Union, UnionType):
        return " | ".join(_type_text(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if annotation is type(None):
        return "None"
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        inner = ", ".join("..." if a is Ellipsis else _type_text(a) for a in args)
        return f"{name}[{inner}]" if args else name
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


# --- registry internals ---------------------------------------------------------------------
def _check(name: str, obj: object) -> type[BaseModel]:
    if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
        raise SpiceError(f"spice type {name!r}: {obj!r} is not a pydantic model")
    return obj


TYPES: Registry[type[BaseModel]] = Registry(
    ENTRY_POINT_GROUP,
    "spice type",
    check=_check,
    builtins={"stack": StackSpice},
    unknown=SpiceNotFound,
    broken=SpiceError,
)


def _lookup(name: str) -> type[BaseModel] | None:
    return TYPES.find(name)


def register_entry_point(ep: EntryPoint) -> None:
    """Register one entry point lazily; a malformed one becomes a warning.

    Exposed so tests (and plugin authors) can check discovery with hand-built
    ``EntryPoint(name, value, group)`` objects.
    """
    if ep.name in TYPES.view:
        return
    try:
        register_spice_type(ep.name, ep.value)
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not break spice for everyone
        warnings.warn(
            f"ignoring spice type entry point {ep.name!r} = {ep.value!r}: {exc}",
            BasinflowWarning,
            stacklevel=2,
        )
