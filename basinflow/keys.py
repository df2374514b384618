"""Keys, handles and natural scan order.

A *key* is the text that fills ``{proposal}`` or ``{scan}`` in a template. It is checked
before it touches any path, so no key can climb out of its repository root. A *handle* is
a Python identifier made from a key, for attribute access and tab completion.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable, Mapping

from basinflow.errors import HandleCollisionError, InvalidKeyError

_KEY = re.compile(r"[A-Za-z0-9._-]+")
_NUM = re.compile(r"(\d+)")
_NOT_IDENT = re.compile(r"[^0-9A-Za-z_]")


def validate_key(key: object, what: str = "key") -> str:
    """Return ``key`` if it is safe to substitute into a path, else raise.

    Allowed: letters, digits, ``.``, ``_`` and ``-``; never empty, never ``.``/``..`` and
    never starting with ``.`` (hidden files and relative parents are not scans).
    """
    if not isinstance(key, str):
        raise InvalidKeyError(f"{what} must be a string, got {type(key).__name__} {key!r}")
    if not key or not _KEY.fullmatch(key) or key.startswith(".") or ".." in key:
        raise InvalidKeyError(
            f"invalid {what} {key!r}: use letters, digits, '.', '_' or '-' "
            "(not empty, not starting with '.', no '..' or '/')"
        )
    return key


def is_valid_key(key: object) -> bool:
    try:
        validate_key(key)
    except InvalidKeyError:
        return False
    return True


def handle_of(key: str, prefix: str = "r") -> str:
    """Python identifier for ``key``: invalid characters become ``_``; a letter prefix
    is added when the key does not start with a letter (``20210205`` -> ``p20210205``);
    Python keywords get a trailing ``_`` (``class`` -> ``class_``)."""
    handle = _NOT_IDENT.sub("_", key)
    if not handle[:1].isalpha():
        handle = prefix + handle
    if keyword.iskeyword(handle):
        handle += "_"
    return handle


def handle_map(keys: Iterable[str], prefix: str = "r") -> dict[str, str]:
    """Map handle -> key, refusing two keys that would share one handle."""
    out: dict[str, str] = {}
    for key in keys:
        h = handle_of(key, prefix)
        if h in out and out[h] != key:
            raise HandleCollisionError(
                f"keys {out[h]!r} and {key!r} both map to handle {h!r}; "
                "use item access (obj[key]) or rename one of them"
            )
        out[h] = key
    return out


def natural_key(key: str) -> tuple:
    """Sort key for natural order: ``r9`` < ``r10``, ``0040`` < ``41``.

    Digit runs compare as numbers (ties broken by length so ``007`` and ``7`` stay
    distinct); text compares case-insensitively. Anchors use this order, never
    lexicographic order.
    """
    parts = _NUM.split(key)
    out: list[tuple] = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append((1, int(part), len(part), ""))
        elif part:
            out.append((0, 0, 0, part.lower()))
    return (tuple(out), key)


def natural_sorted(keys: Iterable[str]) -> list[str]:
    return sorted(keys, key=natural_key)


def resolve_key(name: str, keys: Iterable[str], handles: Mapping[str, str]) -> str | None:
    """Key for ``name`` given either as key or as handle; ``None`` if neither."""
    keys = set(keys)
    if name in keys:
        return name
    return handles.get(name)
