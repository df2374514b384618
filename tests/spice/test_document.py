"""Spice documents: JSON round trip, nx5d compatibility, immutability, bad input."""

from __future__ import annotations

import contextlib
import copy
import json
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from basinflow.errors import InvalidKeyError, SpiceError, SpiceValidationError
from basinflow.spice import NX5D_VERSION, VERSION, SpiceDocument
from basinflow.spice.document import FIELDS, content_uuid
from basinflow.spice.json_values import freeze

NX5D = {
    "version": "kmc3/1a",
    "type": "settings",
    "handle": "settings",
    "uuid": "f33647c0-f399-4bb9-8d73-875d6479f940",
    "revision": 1,
    "anchor": "",
    "data": {"img_center": [50, 120], "img_distance": 690.0, "grid_size": [80, 150]},
}


def make(**kw) -> SpiceDocument:
    base = {"type": "geom", "handle": "geom", "uuid": "u1", "data": {"beamEnergy": 8048.0}}
    return SpiceDocument(**(base | kw))


def test_json_round_trip_keeps_every_field():
    doc = make(
        revision=3,
        anchor="r0040",
        parent="u0",
        created="2026-11-21T10:00:00+00:00",
        author="alice",
        comment="detector moved",
        typed=True,
        data={"a": [1, 2, {"b": None}], "c": "text", "d": True, "e": 1.5},
    )
    again = SpiceDocument.from_json(doc.to_json())
    assert again == doc
    assert again.to_dict() == doc.to_dict()
    assert json.loads(doc.to_json())["version"] == VERSION


def test_reads_nx5d_documents_as_they_are():
    doc = SpiceDocument.from_dict(NX5D)
    assert doc.version == NX5D_VERSION
    assert (doc.type, doc.handle, doc.revision, doc.anchor) == ("settings", "settings", 1, "")
    assert doc.data["img_center"] == (50, 120)
    assert doc.parent is None and doc.created is None and doc.typed is False
    # the round trip keeps the nx5d version and values
    assert SpiceDocument.from_json(doc.to_json()).to_dict()["data"] == NX5D["data"]


def test_missing_fields_default_like_nx5d():
    doc = SpiceDocument.from_dict({"type": "settings", "uuid": "abc", "anchor": None})
    assert (doc.handle, doc.revision, doc.anchor, dict(doc.data)) == ("settings", 1, "", {})


def test_documents_are_immutable():
    doc = make(data={"a": [1, 2], "m": {"x": 1}})
    with pytest.raises(AttributeError):
        doc.revision = 2  # type: ignore[misc]
    with pytest.raises(TypeError, match="immutable"):
        doc.data["a"] = 3  # type: ignore[index]
    with pytest.raises(TypeError, match="immutable"):
        doc.data["m"]["x"] = 2
    with pytest.raises(TypeError, match="immutable"):
        doc.data.update(a=1)  # type: ignore[attr-defined]
    assert isinstance(doc.data["a"], tuple)
    # copies and pickles (multiprocessing, Dask) keep working
    assert pickle.loads(pickle.dumps(doc)) == doc
    assert copy.deepcopy(doc) == doc
    assert hash(doc) == hash(make(data={"a": [1, 2], "m": {"x": 1}}))


def test_content_uuid_is_deterministic_and_content_sensitive():
    a = content_uuid("geom", "geom", "", 1, None, freeze({"x": 1}))
    assert a == content_uuid("geom", "geom", "", 1, None, {"x": 1})
    assert a != content_uuid("geom", "geom", "", 1, None, {"x": 2})
    assert a != content_uuid("geom", "geom", "r1", 1, None, {"x": 1})


@pytest.mark.parametrize(
    ("field", "value", "error", "message"),
    [
        ("handle", "../x", InvalidKeyError, "invalid spice handle '../x'"),
        ("handle", "a/b", InvalidKeyError, "invalid spice handle 'a/b'"),
        ("handle", "class", InvalidKeyError, "not a keyword"),
        ("handle", "_private", InvalidKeyError, "invalid spice handle"),
        ("type", "rs-m", InvalidKeyError, "invalid spice type name 'rs-m'"),
        ("uuid", "../../etc/passwd", InvalidKeyError, "invalid spice uuid"),
        ("uuid", "a/b", InvalidKeyError, "invalid spice uuid"),
        ("parent", "..", InvalidKeyError, "invalid spice parent uuid"),
        ("anchor", "r1/../r2", InvalidKeyError, "invalid spice anchor"),
        ("revision", 0, SpiceError, "revision must be >= 1"),
        ("revision", True, SpiceError, "positive integer"),
        ("version", "kmc3/9z", SpiceError, "unsupported spice version 'kmc3/9z'"),
        ("created", "yesterday", SpiceError, "not an ISO 8601 time"),
        ("data", [1, 2], SpiceValidationError, "must be a mapping"),
        ("data", {"x": float("nan")}, SpiceValidationError, "data.x"),
        ("data", {"x": {"y": [1, object()]}}, SpiceValidationError, r"data.x.y\[1\]"),
        ("data", {1: 2}, SpiceValidationError, "key 1 is not a string"),
        ("data", {"recipe": "os.path:join"}, SpiceValidationError, "registered name"),
        ("data", {"module": "file:///evil.py"}, SpiceValidationError, "never by a module"),
    ],
)
def test_bad_fields_are_refused_with_the_field_named(field, value, error, message):
    with pytest.raises(error, match=message):
        make(**{field: value})


def test_recipe_by_registered_name_is_fine():
    assert make(data={"recipe": "rsm"}).data["recipe"] == "rsm"


def test_numpy_values_become_json():
    np = pytest.importorskip("numpy")
    doc = make(data={"e": np.float64(1.5), "n": np.int64(3)})
    assert json.loads(doc.to_json())["data"] == {"e": 1.5, "n": 3}
    with pytest.raises(SpiceValidationError, match=r"tolist\(\)"):
        make(data={"a": np.arange(3)})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"{not json", "malformed spice document where.json"),
        (b'{"type": "x", "uuid": "u", "data": {"v": NaN}}', "NaN is not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"type": "x"}', "missing field 'uuid'"),
        (b'{"uuid": "x"}', "missing field 'type'"),
        (b'{"type": "x", "uuid": "u", "anchr": "r1"}', "unknown field"),
        (b'{"type": "x", "uuid": "../u"}', "spice document where.json: invalid spice uuid"),
    ],
)
def test_malformed_documents_name_the_source(text, message):
    with pytest.raises(SpiceError, match=message):
        SpiceDocument.from_json(text, source="where.json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=10,
)
field_values = (
    json_values
    | st.sampled_from(["kmc3/1a", "basinflow/1", "", "r1", "../x", "a/b", "geom", "2026-01-01"])
    | st.integers(min_value=-2, max_value=3)
)
documents = st.dictionaries(
    st.sampled_from([*FIELDS, "extra"]),
    field_values,
)


@given(documents)
def test_parsing_random_dicts_only_raises_spice_errors(mapping):
    try:
        doc = SpiceDocument.from_dict(mapping, source="random.json")
    except SpiceError as exc:
        assert str(exc)
        return
    assert SpiceDocument.from_json(doc.to_json()) == doc


@given(st.binary(max_size=60) | st.text(max_size=60))
def test_parsing_random_text_only_raises_spice_errors(text):
    with contextlib.suppress(SpiceError):
        SpiceDocument.from_json(text, source="random.json")
