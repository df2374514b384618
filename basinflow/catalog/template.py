"""URL templates: ``scheme://path/{proposal}/{scan}.h5#fragment/{scan}``.

A template is split at the first ``#`` into a *path part* (a URL that fsspec opens) and a
*fragment* (a path inside an HDF5 file). Fields may appear in either part, several times.
Filling a template validates every key first, so no key can climb out of the root;
listing turns the fields into glob wildcards (path part) or group-name patterns (fragment)
and parses keys back with a regular expression.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from basinflow.errors import TemplateError, UnknownSchemeError
from basinflow.keys import validate_key

SCHEMES = ("file", "memory", "http", "https", "s3")
_FIELD = re.compile(r"\{([^{}]*)\}")
# what validate_key accepts (it also refuses '..' and a leading '.'; listing filters those)
_KEYCHARS = r"[A-Za-z0-9_-][A-Za-z0-9._-]*?"


@dataclass(frozen=True)
class Template:
    """A parsed URL template.

    Parameters
    ----------
    text
        The template. A bare local path is taken as ``file://``.
    fields
        The field names allowed in it (others are refused, so typos fail early).
    required
        Fields that must appear at least once.
    """

    text: str
    fields: tuple[str, ...] = ("proposal", "scan")
    required: tuple[str, ...] = ("proposal", "scan")

    def __post_init__(self) -> None:
        text = self.text
        if not isinstance(text, str) or not text:
            raise TemplateError(f"template must be a non-empty string, got {text!r}")
        if "://" not in text:
            if text.startswith("/"):
                object.__setattr__(self, "text", "file://" + text)
            else:
                raise TemplateError(
                    f"template {text!r} has no scheme; use file:///abs/path/..., s3://bucket/... "
                    "or http(s)://host/..."
                )
        scheme = self.scheme
        if scheme not in SCHEMES:
            raise UnknownSchemeError(
                f"template {self.text!r} uses scheme {scheme!r}; use one of {', '.join(SCHEMES)}"
            )
        _check_text(self.text)
        used = set(_FIELD.findall(self.text))
        unknown = used - set(self.fields)
        if unknown:
            raise TemplateError(
                f"template {self.text!r} has unknown field(s) {sorted(unknown)}; "
                f"use only {', '.join('{' + f + '}' for f in self.fields)}"
            )
        for f in self.required:
            if f not in used:
                raise TemplateError(
                    f"template {self.text!r} has no {{{f}}} field; every {f} needs its own "
                    f"address: put {{{f}}} in the path (.../{{{f}}}.h5) or after '#' "
                    f"(...h5#{{{f}}})"
                )
        if self.text.count("#") > 1:
            raise TemplateError(
                f"template {self.text!r} has more than one '#'; use one '#' before the path "
                "inside the HDF5 file"
            )
        path = self.path
        rest = path.split("://", 1)[1]
        if rest.startswith("{"):
            raise TemplateError(
                f"template {self.text!r} starts with a field; put a fixed root (bucket, host or "
                "directory) before the first field"
            )
        if scheme in ("s3", "http", "https") and rest.startswith("/") and _FIELD.search(rest):
            # 's3:///{proposal}/...' would make the first field the bucket (or host)
            raise TemplateError(
                f"template {self.text!r} has no {'bucket' if scheme == 's3' else 'host'}; "
                f"put a fixed one after '{scheme}://' before the first field"
            )

    # -- parts -------------------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return self.text.split("://", 1)[0].lower()

    @property
    def path(self) -> str:
        """The part before ``#``: a URL fsspec can open."""
        return self.text.split("#", 1)[0]

    @property
    def fragment(self) -> str | None:
        """The part after ``#`` (path inside an HDF5 file), or ``None``."""
        parts = self.text.split("#", 1)
        return parts[1].strip("/") if len(parts) == 2 else None

    def fields_in(self, part: str | None) -> set[str]:
        return set(_FIELD.findall(part or ""))

    @property
    def root(self) -> str:
        """The fixed prefix of the path part up to the last ``/`` before any field."""
        path = self.path
        m = _FIELD.search(path)
        prefix = path if m is None else path[: m.start()]
        return prefix[: prefix.rfind("/") + 1] if m is not None else prefix

    # -- filling -----------------------------------------------------------------------------
    def fill(self, **keys: str) -> str:
        """Substitute ``keys`` (validated). Fields not given stay as ``{field}``."""
        for name, key in keys.items():
            if name not in self.fields:
                raise TemplateError(f"template {self.text!r} has no field {name!r}")
            validate_key(key, name)
        return _FIELD.sub(lambda m: keys.get(m.group(1), m.group(0)), self.text)

    def partial(self, **keys: str) -> Template:
        return Template(self.fill(**keys), self.fields, ())

    @property
    def is_concrete(self) -> bool:
        return not _FIELD.search(self.text)

    # -- listing -----------------------------------------------------------------------------
    def glob_for(self, field: str) -> tuple[str, re.Pattern] | None:
        """Glob pattern and parser for listing ``field`` from the path part.

        The path is cut after the last component that holds ``field``, so listing
        proposals globs only proposal-level entries, never every scan file.
        ``None`` if ``field`` does not appear in the path part.
        """
        path = self.path
        if field not in self.fields_in(path):
            return None
        scheme, rest = path.split("://", 1)
        comps = rest.split("/")
        last = max(i for i, c in enumerate(comps) if "{" + field + "}" in c)
        cut = comps[: last + 1]
        glob = scheme + "://" + "/".join(_FIELD.sub("*", c) for c in cut)
        return glob, _parser("/".join(cut))

    def fragment_parts_for(self, field: str) -> tuple[list[str], int] | None:
        """Fragment components and the index of the last one holding ``field``."""
        frag = self.fragment
        if frag is None or field not in self.fields_in(frag):
            return None
        comps = frag.split("/")
        return comps, max(i for i, c in enumerate(comps) if "{" + field + "}" in c)


#: The fields an output (referrer) URL template may use.
OUTPUT_FIELDS = ("proposal", "scan", "recipe", "recipe_version", "spice")


def output_template(text: str) -> Template:
    """A referrer URL template: the output fields, ``{scan}`` required, and no ``#``
    (a referrer is a whole file, never a group inside one)."""
    template = Template(text, fields=OUTPUT_FIELDS, required=("scan",))
    if template.fragment is not None:
        raise TemplateError(
            f"output template {template.text!r} has a '#' part; a referrer is a whole file: "
            "remove the '#...' (e.g. file:///out/{proposal}/{scan}/{recipe}.h5)"
        )
    return template


def _check_text(text: str) -> None:
    """Refuse what would make the expansion ambiguous or escape the template's root: a
    brace that is not part of a ``{field}``, control characters, and ``.``/``..`` segments
    from the first field on (``/d/{proposal}/../x`` would leave the proposal's directory;
    the fixed root before the first field is the user's to choose)."""
    stray = re.search(r"[{}]", _FIELD.sub("", text))
    if stray is not None:
        raise TemplateError(
            f"template {text!r} has an unbalanced {stray.group()!r}; write fields as "
            "{proposal} and {scan}, with no other braces"
        )
    bad = next((c for c in text if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise TemplateError(f"template {text!r} contains the control character {bad!r}; remove it")
    first = _FIELD.search(text)
    if first is None:
        return
    tail = text[text.rfind("/", 0, first.start()) + 1 :]
    for part in tail.replace("#", "/").split("/"):
        if part in (".", ".."):
            raise TemplateError(
                f"template {text!r} has a {part!r} segment; use a normalized absolute path "
                "(keys and templates must not climb out of their root)"
            )


def _parser(pattern: str) -> re.Pattern:
    """Regex matching ``pattern`` with each field captured (repeats must agree)."""
    out, seen, pos = [], set(), 0
    for m in _FIELD.finditer(pattern):
        out.append(re.escape(pattern[pos : m.start()]))
        name = m.group(1)
        out.append(f"(?P={name})" if name in seen else f"(?P<{name}>{_KEYCHARS})")
        seen.add(name)
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("".join(out) + r"/?$")  # callers .search() glob hits, .match() names


def parse_component(component: str, names: Iterable[str]) -> Iterable[dict[str, str]]:
    """Match ``names`` (e.g. group names) against one pattern component, yielding fields."""
    rx = _parser(component)
    for name in names:
        m = rx.match(name)
        if m:
            yield m.groupdict()
