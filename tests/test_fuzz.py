"""Fuzzing (hypothesis) of what parses user text: URL templates, keys and handles, spice
documents. Only properties not already in ``tests/catalog/test_template.py``,
``tests/catalog/test_keys.py`` and ``tests/spice/test_document.py``: those generate
well-formed input; these feed arbitrary text and JSON and check that the only failure is
the documented ``basinflow.Error`` and that whatever is accepted keeps its invariants.
The number of examples is the loaded hypothesis profile's (see ``tests/conftest.py``).
"""

from __future__ import annotations

import fnmatch
import json
import keyword
import string
import tempfile
import uuid
import warnings
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from basinflow.catalog.template import _FIELD, SCHEMES, Template, parse_component
from basinflow.errors import InvalidKeyError, SpiceError, TemplateError, UnknownSchemeError
from basinflow.keys import handle_of, is_valid_key, natural_key, natural_sorted
from basinflow.spice import MemorySpiceStore, SpiceDocument, import_spice
from basinflow.spice.document import FIELDS, NX5D_VERSION, VERSION
from basinflow.spice.json_values import CODE_FIELDS, thaw
from basinflow.spice.types import is_registered

KEY_ALPHABET = string.ascii_letters + string.digits + "._-"
keys = st.text(KEY_ALPHABET, min_size=1, max_size=10).filter(is_valid_key)

# --- URL templates --------------------------------------------------------------------------
TOKENS = [
    "file://", "file:///", "s3://", "http://", "https://", "memory://", "ftp://", "FILE://",
    "/", "//", "#", "{proposal}", "{scan}", "{", "}", "{}", "{recipe}", "{ scan }", "..", ".",
    "d", "raw", ".h5", "\x00", "\n", " ", "%2e", "\\", "\uff50", ":", "?", "*", "[", "~",
]  # fmt: skip
ROOTS = ["file:///d/", "s3://b/", "http://h:8000/", "memory://m/", "file:///", "s3:///"]


@st.composite
def near_templates(draw):
    """A root, then tokens (hostile ones included), with both fields somewhere: mostly
    accepted, so what an accepted template may contain gets exercised."""
    parts = draw(st.lists(st.sampled_from(TOKENS) | st.text(max_size=2), max_size=8))
    for field in ("{proposal}", "{scan}"):
        if field not in parts:
            parts.insert(draw(st.integers(0, len(parts))), field)
    return draw(st.sampled_from(ROOTS)) + "".join(parts)


template_texts = st.one_of(
    near_templates(),
    st.lists(st.sampled_from(TOKENS) | st.text(max_size=2), max_size=14).map("".join),
    st.text(max_size=40),
)
field_values = keys | st.text(max_size=12)


def _check_accepted(t: Template) -> None:
    """Invariants of every template the parser accepts."""
    assert t.scheme in SCHEMES
    used = set(_FIELD.findall(t.text))
    assert used <= set(t.fields) and set(t.required) <= used
    assert not set("{}") & set(_FIELD.sub("", t.text)), "a stray brace was accepted"
    assert not any(ord(c) < 32 for c in t.text)
    assert t.text.startswith(t.root)
    assert not t.root.split("://", 1)[1].startswith("{")


def _parse_back(t: Template, url: str) -> None:
    """Listing parses keys out of ``url`` (glob + regex for the path, group-name patterns
    for the fragment); filling the template with them gives back the same text, whichever
    split an ambiguous template (``{proposal}{scan}``) allows."""
    filled = Template(url, (), ())
    scheme = filled.scheme + "://"
    for field in t.fields_in(t.text):
        spec = t.glob_for(field)
        if spec is not None:
            glob, rx = spec
            depth = glob.split("://", 1)[1].count("/")
            cut = "/".join(filled.path.split("://", 1)[1].split("/")[: depth + 1])
            assert fnmatch.fnmatchcase(scheme + cut, glob), (glob, cut)
            m = rx.search(cut)
            assert m is not None, (t.text, url, rx.pattern)
            pattern = "/".join(t.path.split("://", 1)[1].split("/")[: depth + 1])
            assert _FIELD.sub(lambda f, m=m: m.group(f.group(1)), pattern) == cut
        frag = t.fragment_parts_for(field)
        if frag is not None:
            comps, last = frag
            names = filled.fragment.split("/")
            for comp, name in zip(comps[: last + 1], names, strict=False):
                if "{" in comp:
                    (found,) = list(parse_component(comp, [name]))
                    assert _FIELD.sub(lambda f, g=found: g[f.group(1)], comp) == name


@given(template_texts, field_values, field_values)
@example("file:///d/{proposal}/{scan}.h5#entry", "2021-05", "0040")
@example("file:///d/{proposal}{scan}.h5", "ab", "c")  # ambiguous split: text still agrees
@example("s3://b/{proposal}.h5#{scan}/{proposal}", "p", "..")
@example("file:///d/{proposal}/../{scan}", "p", "s")
@example("http://h{proposal}/{scan}", "x", "y")
@example("file:///d/{proposal}/{scan}}", "p", "s")
def test_any_text_parses_or_raises_a_template_error(text, proposal, scan):
    """Whatever the text, the parser accepts it (with its invariants) or raises
    TemplateError/UnknownSchemeError; filling an accepted one either refuses the values
    (InvalidKeyError) or stays under the template's root with no '.'/'..' segment, and
    listing parses the values back."""
    try:
        t = Template(text)
    except (TemplateError, UnknownSchemeError) as exc:
        assert str(exc) and "\n" not in str(exc).replace(repr(text), "")
        return
    _check_accepted(t)
    try:
        url = t.fill(proposal=proposal, scan=scan)
    except InvalidKeyError:
        assert not (is_valid_key(proposal) and is_valid_key(scan))
        return
    assert is_valid_key(proposal) and is_valid_key(scan)
    assert "{" not in url and url.startswith(t.root)
    rest = url[len(t.root) :]
    assert not {".", ".."} & set(rest.replace("#", "/").split("/")), url
    assert url.count("#") == t.text.count("#")
    _parse_back(t, url)


@given(template_texts)
def test_output_and_spice_templates_fail_only_with_template_errors(text):
    """The same parser with the output and spice field sets (config, ``bf.cook``)."""
    from basinflow.config import output_template

    for make in (output_template, lambda s: Template(s, ("proposal",), ())):
        try:
            t = make(text)
        except (TemplateError, UnknownSchemeError):
            continue
        _check_accepted(t)


# --- keys and handles ----------------------------------------------------------------------
@given(st.text(max_size=20), st.sampled_from(["p", "r"]))
@example("", "p")
@example("_x", "r")
@example("None", "p")
@example("٣٤", "r")  # Arabic-Indic digits
@example("ǅ", "p")  # titlecase letter
def test_handle_of_any_text_is_a_public_identifier(text, prefix):
    h = handle_of(text, prefix)
    assert h.isidentifier() and h.isascii()
    assert not keyword.iskeyword(h) and not h.startswith("_")
    assert handle_of(text, prefix) == h


texts = st.text(max_size=8) | st.text("0123456789٣٤²aA_-. ", max_size=8)


@given(texts, texts, texts)
@example("a", "A", "a")
@example("7", "007", "07")
@example("r٣", "r10", "r3")
@example("²", "2", "")
def test_natural_order_of_any_text_is_total_and_consistent_with_equality(a, b, c):
    ka, kb, kc = natural_key(a), natural_key(b), natural_key(c)
    assert (ka == kb) == (a == b)
    assert (ka < kb) + (kb < ka) + (a == b) == 1  # exactly one holds
    if ka < kb and kb < kc:
        assert ka < kc
    assert natural_sorted([a, b, c]) == natural_sorted([c, b, a])


# --- spice documents ------------------------------------------------------------------------
finite = st.floats(allow_nan=False, allow_infinity=False)


def _containers(kids):
    return st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | st.text(max_size=6),
    _containers,
    max_leaves=12,
)
ODD = st.sampled_from([float("nan"), float("inf"), -float("inf"), -0.0, 2**70, -(2**64), ""])
any_json = st.recursive(  # NaN and infinities too: not JSON, must be refused
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6) | ODD,
    _containers,
    max_leaves=12,
)
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda s: not keyword.iskeyword(s)
)
data_mappings = st.dictionaries(
    st.text(max_size=8).filter(lambda k: k not in CODE_FIELDS), json_values, max_size=5
)
valid_documents = st.fixed_dictionaries(
    {
        "type": names,
        "handle": names,
        "uuid": keys,
        "revision": st.integers(1, 2**40),
        "anchor": st.just("") | keys,
        "data": data_mappings,
        "parent": st.none() | keys,
        "created": st.none() | st.datetimes().map(lambda d: d.isoformat()),
        "author": st.none() | st.text(max_size=20),
        "comment": st.none() | st.text(max_size=40),
        "typed": st.booleans(),
        "version": st.sampled_from([VERSION, NX5D_VERSION]),
    }
)


def _json(value) -> str:
    """Type-exact JSON text: ``1`` and ``1.0`` and ``true`` stay apart."""
    return json.dumps(value, sort_keys=True)


@given(valid_documents)
def test_valid_documents_round_trip_json_exactly(fields):
    doc = SpiceDocument(**fields)
    text = doc.to_json()
    again = SpiceDocument.from_json(text)
    assert again == doc and again.to_json() == text
    assert _json(thaw(again.data)) == _json(fields["data"])
    assert json.loads(text) == {**fields, "data": json.loads(_json(fields["data"]))}


@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), any_json) | any_json)
@example({"type": "x", "uuid": "u", "data": json.loads("[" * 40 + "]" * 40)})
@example({"type": "x", "uuid": "u", "data": {"a": float("inf")}})
@example({"type": "x", "uuid": "u", "data": {"recipe": "os:system"}})
@example({"type": "x", "uuid": "u", "revision": 2**70, "anchor": None, "handle": None})
def test_any_json_value_is_a_document_or_a_spice_error(value):
    try:
        doc = SpiceDocument.from_dict(value, source="fuzz.json")
    except SpiceError as exc:
        assert str(exc).startswith("spice document fuzz.json: ")
        return
    assert SpiceDocument.from_json(doc.to_json()) == doc


@given(valid_documents, st.sampled_from([*FIELDS, "anchr"]), any_json)
def test_one_wrong_field_is_refused_or_harmless(fields, name, value):
    """A valid document with one field replaced by any JSON value."""
    try:
        doc = SpiceDocument.from_dict({**fields, name: value}, source="edited.json")
    except SpiceError:
        return
    assert SpiceDocument.from_json(doc.to_json()) == doc


@given(valid_documents, st.dictionaries(st.text(max_size=8), any_json, max_size=5))
@example({"type": "t", "handle": "t", "uuid": "u", "data": {}}, {"a": [float("nan")]})
def test_any_data_is_refused_or_round_trips(fields, data):
    """Data holding any JSON-ish value (NaN, infinities, huge integers, nesting, names of
    code): a SpiceError, or a document that round-trips."""
    try:
        doc = SpiceDocument.from_dict({**fields, "data": data}, source="data.json")
    except SpiceError:
        return
    text = doc.to_json()
    assert SpiceDocument.from_json(text) == doc
    assert _json(thaw(doc.data)) == _json(data)


@given(
    st.one_of(
        any_json.map(json.dumps),
        st.tuples(valid_documents, st.integers(0, 400)).map(
            lambda d: SpiceDocument(**d[0]).to_json()[: d[1]]  # truncated files
        ),
    )
)
@example("[" * 100_000)
@example('{"type": "x", "uuid": "u", "data": ' + '{"a": ' * 50 + "1" + "}" * 51)
@example('{"type": "x", "uuid": "u", "type": "y"}')
def test_any_json_text_is_a_document_or_a_spice_error(text):
    try:
        SpiceDocument.from_json(text, source="fuzz.json")
    except SpiceError as exc:
        assert "fuzz.json" in str(exc)


nx5d_documents = st.fixed_dictionaries(
    {
        "version": st.just(NX5D_VERSION),
        "type": names.filter(lambda n: not is_registered(n)),
        "uuid": st.uuids().map(str),
        "anchor": st.none() | st.just("") | keys,
        "data": data_mappings,
    },
    optional={"handle": names, "revision": st.integers(1, 50)},
)


@given(st.lists(nx5d_documents, min_size=1, max_size=4, unique_by=lambda d: d["uuid"]))
@example(
    [
        {
            "version": "kmc3/1a",
            "type": "settings",
            "handle": "settings",
            "uuid": str(uuid.UUID(int=1)),
            "revision": 1,
            "anchor": "",
            "data": {"img_center": [50, 120], "img_distance": 690.0},
        }
    ]
)
def test_nx5d_documents_import_as_they_are(docs):
    for raw in docs:
        doc = SpiceDocument.from_dict(raw)
        assert doc.version == NX5D_VERSION and doc.uuid == raw["uuid"]
        assert doc.handle == raw.get("handle", raw["type"])
        assert doc.anchor == (raw["anchor"] or "") and doc.revision == raw.get("revision", 1)
        assert _json(thaw(doc.data)) == _json(raw["data"])
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = Path(tmp) / "nx5d.json"
        source.write_text(json.dumps(docs))
        store = MemorySpiceStore()
        report = import_spice(source, store)
        assert sorted(d.uuid for d in report.imported) == sorted(d["uuid"] for d in docs)
        assert {d.uuid: d.to_dict()["data"] for d in store.documents()} == {
            d["uuid"]: json.loads(json.dumps(d["data"])) for d in docs
        }
        again = import_spice(source, store)  # idempotent
        assert again.imported == () and len(again.skipped) == len(docs)
