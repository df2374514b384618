"""Spice data as strict, immutable JSON: freezing, canonical text, parsing, no code.

Kept apart from :mod:`basinflow.spice.document` because these rules hold for any value in
a document, not for the document's fields: a document's ``data`` is frozen here (mappings
become :class:`FrozenDict`, lists tuples, numpy scalars plain numbers), compared and
hashed into uuids through :func:`canonical_json`, parsed from files by :func:`parse_json`
(no NaN or Infinity, a :class:`SpiceError` naming the file), and checked by
:func:`check_not_code` so that spice never names code.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

from basinflow.errors import SpiceError, SpiceValidationError

CODE_FIELDS = frozenset(
    {"recipe", "module", "function", "callable", "entrypoint", "entry_point", "code", "script"}
)
"""Data fields that could be mistaken for a way to name code; their values must be plain
registered names (identifiers), never module paths or URLs."""

_REGISTERED_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,99}")
_MAX_DEPTH = 32
_READONLY_MSG = "spice documents are immutable; write a new revision with spice.update(...)"


class FrozenDict(dict):
    """A ``dict`` that refuses changes.

    It stays a real ``dict`` so ``json.dumps``, ``==`` and pydantic treat it as one;
    every mutating method raises ``TypeError``. Lists inside documents become tuples for
    the same reason.
    """

    __slots__ = ()

    def _readonly(self, *args: object, **kwargs: object) -> None:
        raise TypeError(_READONLY_MSG)

    __setitem__ = _readonly  # type: ignore[assignment]
    __delitem__ = _readonly  # type: ignore[assignment]
    __ior__ = _readonly  # type: ignore[assignment]
    clear = _readonly  # type: ignore[assignment]
    pop = _readonly  # type: ignore[assignment]
    popitem = _readonly  # type: ignore[assignment]
    setdefault = _readonly  # type: ignore[assignment]
    update = _readonly  # type: ignore[assignment]

    def __reduce__(self) -> tuple:
        # pickle would otherwise rebuild the dict item by item through __setitem__
        return (type(self), (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict) -> FrozenDict:
        return self

    def __repr__(self) -> str:
        return dict.__repr__(self)


def freeze(value: object, where: str = "data", _depth: int = 0) -> Any:
    """Check that ``value`` is JSON data and return an immutable copy of it.

    Mappings become :class:`FrozenDict`, lists and tuples become tuples, integral and real
    numbers (numpy scalars included) become ``int``/``float``. Anything else (arrays,
    objects, NaN, infinities, non-string keys) is refused, so spice can always be written
    as strict JSON and read back identically.

    Raises
    ------
    SpiceValidationError
        Naming the offending field path, e.g. ``data.center[1]``.
    """
    if _depth > _MAX_DEPTH:
        raise SpiceValidationError(f"spice field {where}: nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise SpiceValidationError(
                f"spice field {where}: {number!r} is not valid JSON; use a finite number or null"
            )
        return number
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SpiceValidationError(
                    f"spice field {where}: key {key!r} is not a string; JSON keys are strings"
                )
            out[key] = freeze(item, f"{where}.{key}", _depth + 1)
        return FrozenDict(out)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item, f"{where}[{i}]", _depth + 1) for i, item in enumerate(value))
    hint = " (convert arrays with .tolist())" if hasattr(value, "tolist") else ""
    raise SpiceValidationError(
        f"spice field {where}: a {type(value).__name__} is not JSON data; use numbers, "
        f"strings, booleans, null, lists and mappings{hint}"
    )


def thaw(value: Any) -> Any:
    """Plain, mutable JSON (``dict``/``list``) from a frozen value."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(item) for item in value]
    return value


def _normalized(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _normalized(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalized(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # 8048.0 and 8048 say the same thing
    return value


def canonical_json(value: Any) -> str:
    """Deterministic JSON text of ``value``, used to compare and to derive uuids.

    Whole floats are written as integers, so ``8048.0`` (Python) and ``8048`` (a CLI
    argument) are the same statement. The stored document keeps the value as given.
    """
    return json.dumps(_normalized(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def check_not_code(data: Mapping[str, Any], where: str = "data") -> None:
    """Refuse values that name code (``module.path:function``, file URLs) in fields such as
    ``recipe`` or ``function``: recipes are chosen by registered name only."""
    for key in CODE_FIELDS.intersection(data):
        value = data[key]
        if value is None:
            continue
        if not isinstance(value, str) or not _REGISTERED_NAME.fullmatch(value):
            raise SpiceValidationError(
                f"spice field {where}.{key}: {value!r} is not a registered name; use the name "
                "a recipe is registered under (e.g. 'rsm'): spice is data only and recipes are "
                "chosen by name, never by a module path or file URL"
            )


def parse_json(text: str | bytes, source: str | None = None) -> Any:
    """``json.loads`` that refuses NaN/Infinity and raises :class:`SpiceError` naming
    ``source`` (the file) on malformed input."""

    def _no_constants(name: str) -> None:
        raise ValueError(f"{name} is not valid JSON")

    where = f" {source}" if source else ""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise SpiceError(
            f"malformed spice document{where}: {exc}; fix or remove the file"
        ) from None
