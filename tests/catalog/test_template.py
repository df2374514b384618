"""URL templates: random templates with fields in the path and the fragment, several
times each; fill then parse back gives the keys; no filled value escapes the root."""

from __future__ import annotations

import fnmatch
import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from basinflow.catalog.template import Template, parse_component
from basinflow.errors import InvalidKeyError, TemplateError, UnknownSchemeError
from basinflow.keys import is_valid_key

KEY_ALPHABET = string.ascii_letters + string.digits + "._-"
keys = st.text(KEY_ALPHABET, min_size=1, max_size=10).filter(is_valid_key)
# literal text around fields; '+' and '~' cannot occur in keys, so they separate two
# different fields in one component unambiguously
literal = st.text(string.ascii_lowercase + string.digits + "._-", max_size=4).filter(
    lambda s: s not in (".", "..")  # templates refuse "."/".." segments after a field
)
ROOTS = ["file:///data/raw/", "s3://bucket/raw/", "http://127.0.0.1:8000/beam/", "memory://r/"]


@st.composite
def components(draw, fields: tuple[str, ...]):
    """One path component: literal, a field (maybe repeated) with literal around it, or
    two different fields separated by a non-key character."""
    kind = draw(st.sampled_from(["literal", "one", "repeat", "two"]))
    pre, post = draw(literal), draw(literal)
    if kind == "literal" or not fields:
        return (draw(literal) or "d"), set()
    f = draw(st.sampled_from(fields))
    if kind == "one":
        return f"{pre}{{{f}}}{post}", {f}
    if kind == "repeat":
        return f"{pre}{{{f}}}~{{{f}}}{post}", {f}
    g = draw(st.sampled_from(fields))
    return f"{pre}{{{f}}}+{{{g}}}{post}", {f, g}


@st.composite
def templates(draw):
    """A template using {proposal} and {scan}, in the path, the fragment, or both."""
    root = draw(st.sampled_from(ROOTS))
    fields = ("proposal", "scan")
    path = [draw(components(fields)) for _ in range(draw(st.integers(1, 3)))]
    frag = [draw(components(fields)) for _ in range(draw(st.integers(0, 2)))]
    used = set().union(*(u for _, u in path + frag))
    for f in fields:  # make sure both appear at least once
        if f not in used:
            (frag if frag and draw(st.booleans()) else path).append((f"{{{f}}}", {f}))
    text = root + "/".join(c for c, _ in path)
    if draw(st.booleans()) and frag:
        text += "#" + "/".join(c for c, _ in frag)
    elif frag:
        text += ".h5#" + "/".join(c for c, _ in frag)
    return Template(text)


@given(templates(), keys, keys)
@example(Template("file:///d/{proposal}/{scan}.h5#entry"), "2021-05", "0040")
@example(Template("file:///d/{proposal}.h5#{scan}"), "p1", "7")
@example(Template("file:///d/drepo.h5#{proposal}/{scan}"), "a.b", "c-d")
@example(Template("s3://b/{proposal}/{scan}/{scan}_{proposal}.h5#{scan}"), "x", "x")
def test_fill_then_parse_back(t, proposal, scan):
    want = {"proposal": proposal, "scan": scan}
    url = t.fill(**want)
    assert "{" not in url and url.startswith(t.root)
    filled = Template(url, (), ())
    assert filled.is_concrete
    for field in ("proposal", "scan"):
        spec = t.glob_for(field)
        if spec is not None:
            glob, rx = spec
            depth = glob.split("://", 1)[1].count("/")
            cut = "/".join(filled.path.split("://", 1)[1].split("/")[: depth + 1])
            scheme = filled.scheme + "://"
            assert fnmatch.fnmatchcase(scheme + cut, glob)
            m = rx.search(cut)
            assert m is not None, (t.text, url, rx.pattern)
            assert {k: v for k, v in m.groupdict().items()} == {k: want[k] for k in m.groupdict()}
        frag = t.fragment_parts_for(field)
        if frag is not None:
            comps, last = frag
            got: dict[str, str] = {}
            for comp, name in zip(comps[: last + 1], filled.fragment.split("/"), strict=False):
                if "{" in comp:
                    found = list(parse_component(comp, [name]))
                    assert len(found) == 1, (comp, name)
                    got.update(found[0])
            assert got[field] == want[field]


@given(templates(), st.text(max_size=16), keys)
@example(Template("file:///d/{proposal}/{scan}.h5"), "..", "1")
@example(Template("file:///d/{proposal}/{scan}.h5"), "../../etc", "1")
@example(Template("s3://b/{proposal}/{scan}.h5"), "/", "1")
@example(Template("http://h/{proposal}/{scan}.h5"), "x#y", "1")
@example(Template("http://h/{proposal}/{scan}.h5"), "%2e%2e", "1")
def test_fields_never_escape_the_root(t, value, other):
    """Filling with any string either refuses it or stays under the template's root."""
    try:
        url = t.fill(proposal=value, scan=other)
    except InvalidKeyError:
        return
    assert url.startswith(t.root)
    rest = url[len(t.root) :]
    assert ".." not in rest.split("#", 1)[0].split("/")
    assert url.count("#") == t.text.count("#")
    assert not any(c in value for c in "/\\#?%\x00")


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        ("file:///d/{proposal}.h5", TemplateError, ["{scan}"]),
        ("file:///d/{scan}.h5", TemplateError, ["{proposal}"]),
        ("file:///d/{proposal}/{sacn}.h5", TemplateError, ["sacn"]),
        ("ftp://h/{proposal}/{scan}", UnknownSchemeError, ["ftp"]),
        ("data/{proposal}/{scan}", TemplateError, ["no scheme"]),
        ("file://{proposal}/{scan}.h5", TemplateError, ["fixed root"]),
        ("file:///d/{proposal}.h5#{scan}#x", TemplateError, ["'#'"]),
        ("", TemplateError, ["non-empty"]),
    ],
)
def test_bad_templates(text, error, words):
    with pytest.raises(error) as e:
        Template(text)
    for w in words:
        assert w in str(e.value)


def test_bare_absolute_path_is_file_url():
    t = Template("/data/{proposal}/{scan}.h5#entry")
    assert t.text == "file:///data/{proposal}/{scan}.h5#entry"
    assert t.root == "file:///data/"
    assert t.fragment == "entry"


def test_glob_is_cut_at_the_field_level():
    t = Template("s3://b/raw/{proposal}/sub/{scan}.h5#entry")
    glob, _ = t.glob_for("proposal")
    assert glob == "s3://b/raw/*"  # listing proposals never globs every scan file
    glob, rx = t.glob_for("scan")
    assert glob == "s3://b/raw/*/sub/*.h5"
    assert rx.search("b/raw/p1/sub/0040.h5").groupdict() == {"proposal": "p1", "scan": "0040"}


def test_repeated_fields_must_agree():
    t = Template("file:///d/{proposal}/{scan}_{scan}.h5")
    _, rx = t.glob_for("scan")
    assert rx.search("/d/p/7_7.h5").group("scan") == "7"
    assert rx.search("/d/p/7_8.h5") is None


def test_fill_refuses_unknown_fields():
    with pytest.raises(TemplateError, match="no field 'run'"):
        Template("file:///d/{proposal}/{scan}.h5").fill(run="1")
