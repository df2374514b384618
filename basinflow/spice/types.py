"""Registry of spice types: a name -> pydantic model mapping.

Recipes declare the spice they need as pydantic models and register them here by name
(``register_spice_type("rsm", RsmSpice)``); seeding or updating spice of a registered type
is validated against its model, with messages naming the field. Spice of a type nobody
registered is still accepted, but stored *untyped* (``typed=False``) with an
:class:`~basinflow.errors.UntypedSpiceWarning`, so free-form notes remain possible while
typos in the parameters recipes depend on are caught.

Like fsspec's ``registry.py``, this is one leaf module: a private dict, a read-only view,
lazy registration by dotted path (``"pkg.module:Model"``, imported on first use, with an
install hint when the import fails), and discovery of the ``basinflow.spice_types`` entry
point group (cached, refreshable; a broken plugin becomes a warning, not a crash). A type
nobody registered yet is also looked up among the ``basinflow.recipes`` entry points of the
same name (``rsm`` -> the ``rsm`` recipe's ``spice_models``), so seeding ``rsm`` before the
recipe was imported is still validated. That is metadata only: spice never imports recipe
code by a name written in spice data.

The built-in ``stack`` type lives here because the catalog needs it without any recipe.
"""

from __future__ import annotations

import difflib
import importlib
import json
import warnings
from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from types import MappingProxyType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from basinflow.errors import BasinflowWarning, SpiceError, SpiceNotFound, SpiceValidationError
from basinflow.spice.document import thaw, validate_name

ENTRY_POINT_GROUP = "basinflow.spice_types"
RECIPE_ENTRY_POINT_GROUP = "basinflow.recipes"

_TYPES: dict[str, type[BaseModel] | str] = {}
_discovered = False
_recipes_tried: set[str] = set()


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
    old = _TYPES.get(name)
    if old is not None and not replace and not _same_model(old, model):
        raise SpiceError(
            f"spice type {name!r} is already registered as {_describe(old)}; "
            "pass replace=True to replace it"
        )
    _TYPES[name] = model


def unregister_spice_type(name: str) -> None:
    """Forget a registration (for tests and interactive experiments)."""
    _TYPES.pop(name, None)


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
        known = ", ".join(sorted(_TYPES)) or "none"
        raise SpiceNotFound(
            f"no spice type {name!r} is registered (registered: {known}); register one with "
            "basinflow.spice.register_spice_type(name, Model) or import the recipe declaring it"
        )
    return model


def get_spice_type(name: str) -> type[BaseModel] | None:
    """The model registered for ``name``, or ``None`` (for callers that treat "untyped" as
    a normal answer, e.g. recipes falling back to their own model)."""
    return _lookup(name)


def spice_types() -> Mapping[str, type[BaseModel]]:
    """Read-only view of every registered type (lazy ones imported now)."""
    _discover()
    return MappingProxyType({name: _resolve(name) for name in sorted(_TYPES)})


def refresh_spice_types() -> None:
    """Discover the entry points again (after installing a plugin)."""
    global _discovered
    _discovered = False
    _recipes_tried.clear()
    _discover()


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
        return model.model_validate_json(json.dumps(plain, allow_nan=False), strict=True)
    except pydantic.ValidationError as exc:
        raise SpiceValidationError(_format_error(what, type_name, model, exc, known)) from None


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
def _same_model(old: type[BaseModel] | str, new: type[BaseModel] | str) -> bool:
    if old is new or old == new:
        return True
    if isinstance(old, type) and isinstance(new, type):
        return (old.__module__, old.__qualname__) == (new.__module__, new.__qualname__)
    return False


def _describe(model: type[BaseModel] | str) -> str:
    if isinstance(model, str):
        return model
    return f"{model.__module__}.{model.__qualname__}"


def _lookup(name: str) -> type[BaseModel] | None:
    if name not in _TYPES:
        _discover()
    if name not in _TYPES:
        _discover_recipe(name)
    if name not in _TYPES:
        return None
    return _resolve(name)


def _resolve(name: str) -> type[BaseModel]:
    model = _TYPES[name]
    if isinstance(model, str):
        module_name, _, attr = model.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            package = module_name.split(".")[0]
            raise SpiceError(
                f"spice type {name!r} is declared by {model!r}, which cannot be imported "
                f"({type(exc).__name__}: {exc}); install the package that provides it "
                f"(pip install {package})"
            ) from None
        if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
            raise SpiceError(f"spice type {name!r}: {model!r} is not a pydantic model")
        _TYPES[name] = obj
        return obj
    return model


def _discover() -> None:
    """Register the ``basinflow.spice_types`` entry points once (cached)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        register_entry_point(ep)


def _discover_recipe(name: str, eps: Iterable[EntryPoint] | None = None) -> None:
    """Load the recipe entry point *named like the type*, once, for its spice models.

    Recipes declare the spice types they need (``Recipe.spice_models``) and register them
    when their module is imported, but recipe modules are imported lazily. Without this,
    ``spice.seed("rsm", ...)`` before anything imported the ``rsm`` recipe would store
    untyped spice. Only the recipe whose entry point name equals ``name`` is imported, so
    free-form types (``settings``) cost one metadata scan and no import.
    """
    if name in _recipes_tried:
        return
    _recipes_tried.add(name)
    for ep in entry_points(group=RECIPE_ENTRY_POINT_GROUP) if eps is None else eps:
        if ep.name != name:
            continue
        try:
            recipe = ep.load()
            models = dict(getattr(recipe, "spice_models", None) or {})
            for type_name, model in models.items():
                if type_name not in _TYPES:
                    register_spice_type(type_name, model)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break spice
            warnings.warn(
                f"recipe entry point {ep.name!r} = {ep.value!r} could not be loaded to find "
                f"the schema of spice type {name!r}: {type(exc).__name__}: {exc}",
                BasinflowWarning,
                stacklevel=3,
            )
        return


def register_entry_point(ep: EntryPoint) -> None:
    """Register one entry point lazily; a malformed one becomes a warning.

    Exposed so tests (and plugin authors) can check discovery with hand-built
    ``EntryPoint(name, value, group)`` objects.
    """
    if ep.name in _TYPES:
        return
    try:
        register_spice_type(ep.name, ep.value)
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not break spice for everyone
        warnings.warn(
            f"ignoring spice type entry point {ep.name!r} = {ep.value!r}: {exc}",
            BasinflowWarning,
            stacklevel=2,
        )


register_spice_type("stack", StackSpice)
