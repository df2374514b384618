"""Property tests: basin definitions parse safely, round-trip exactly; trust decisions match
what is opened. Bounded by the hypothesis profile of ``tests/conftest.py``."""

from __future__ import annotations

import json
import os
import re
from urllib.parse import unquote, urlsplit

import pytest
import yarl
from hypothesis import example, given
from hypothesis import strategies as st

from basinflow.errors import Error, ReferrerError, UntrustedBasinError
from basinflow.storage import fs
from basinflow.storage.referrer.basins import FORMATS, TYPES, Basin
from basinflow.storage.referrer.trust import Trust, normalize

# --- Basin.from_json -----------------------------------------------------------------------------
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = list(Basin.__dataclass_fields__)
# objects with the real keys, each holding a value of any type or a plausible one
plausible = {
    "name": st.text(max_size=8),
    "type": st.sampled_from(TYPES),
    "format": st.sampled_from(FORMATS),
    "mapping": st.sampled_from(["same", "basinmap0", "basinmap", "basinmap-1", "basinmap٣"]),
}
definitions = st.fixed_dictionaries(
    {},
    optional={k: (plausible[k] | json_values) if k in plausible else json_values for k in FIELDS},
)


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _well_typed(b: Basin) -> None:
    """What the readers rely on, so a parsed definition cannot crash them later."""
    assert isinstance(b.name, str) and b.name and "/" not in b.name
    assert b.type in TYPES and b.format in FORMATS
    assert b.mapping == "same" or re.fullmatch(r"basinmap[0-9]+", b.mapping, re.ASCII)
    assert _strings(b.paths) and _strings(b.urls)
    assert b.variables is None or _strings(b.variables)
    assert all(isinstance(getattr(b, k), str) for k in ("layout", "dim", "identifier"))
    assert all(getattr(b, k) is None or isinstance(getattr(b, k), str) for k in ("fragment",))
    assert type(b.order) is int
    assert b.pin is None or (isinstance(b.pin, dict) and all(isinstance(k, str) for k in b.pin))
    assert isinstance(b.links, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in b.links.items()
    )
    assert isinstance(b.datasets, dict)
    for spec in b.datasets.values():
        assert isinstance(spec, dict) and isinstance(spec["path"], str)
        assert spec.get("dims") is None or _strings(list(spec["dims"]))
    if b.pin_file is not None:
        assert isinstance(b.pin_file, str) and not b.pin_file.startswith("/")
        assert ".." not in b.pin_file.replace("\\", "/").split("/")
    sorted([b.priority, Basin(name="other", type="file").priority])  # comparable


def _parse(text):
    """``Basin.from_json``; anything it raises must be one of ours, and anything it
    returns must be well typed and survive its own round trip."""
    try:
        basin = Basin.from_json(text, "fuzz.h5#/basins/k")
    except Error as exc:
        assert isinstance(exc, ReferrerError), type(exc)
        assert "fuzz.h5#/basins/k" in str(exc) or "basin" in str(exc)
        return None
    _well_typed(basin)
    again = Basin.from_json(basin.to_json())
    assert again.to_json() == basin.to_json() and again.key == basin.key
    return basin


@given(st.text() | st.binary())
@example("[" * 100_000)  # nesting deeper than the parser's recursion limit
@example("1" * 5000)  # an int longer than int() accepts
@example(b"\xff\xfe{")  # not UTF-8
@example('{"name": "x", "type": "file", "mapping": 0}')
@example('{"name": "x", "type": "file", "order": "1"}')
@example('{"name": "x", "type": "file", "datasets": {"v": 5}}')
@example('{"name": "x", "type": "file", "paths": "abc"}')
@example('{"name": "a/b", "type": "internal"}')
@example('{"name": "x", "type": "file", "pin_file": "../../etc/passwd"}')
@example('{"name": "x", "type": "file", "pin": {"size": NaN}}')
@example('{"name": "x", "type": "file", "mapping": "basinmap\u0663"}')  # a non-ASCII digit
def test_any_text_parses_or_raises_our_error(text):
    _parse(text)


@given(definitions)
def test_any_json_object_parses_or_raises_our_error(data):
    _parse(json.dumps(data))


@given(json_values)
def test_any_json_value_parses_or_raises_our_error(value):
    _parse(json.dumps(value))


names = st.text(min_size=1, max_size=12).filter(lambda s: "/" not in s)
words = st.text(max_size=12)
finite = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | words,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3),
    max_leaves=8,
)
valid_basins = st.builds(
    Basin,
    name=names,
    type=st.sampled_from(TYPES),
    format=st.sampled_from(FORMATS),
    paths=st.lists(words, max_size=3),
    urls=st.lists(words, max_size=3),
    layout=words,
    fragment=st.none() | words,
    variables=st.none() | st.lists(words, max_size=3),
    mapping=st.just("same") | st.integers(0, 999_999_999).map(lambda i: f"basinmap{i}"),
    dim=words,
    identifier=words,
    pin=st.none() | st.dictionaries(words, finite, max_size=4),
    datasets=st.dictionaries(
        words,
        st.fixed_dictionaries({"path": words}, optional={"dims": st.lists(words, max_size=3)}),
        max_size=3,
    ),
    links=st.dictionaries(words, words, max_size=3),
    order=st.integers(),
    pin_file=st.none()
    | st.lists(st.sampled_from(["a", "manifest.dat", "x y", "é"]), min_size=1).map("/".join),
)


@given(valid_basins)
def test_valid_definitions_round_trip(basin):
    text = basin.to_json()
    again = Basin.from_json(text)
    assert again == basin
    assert again.key == basin.key and again.to_json() == text
    assert json.loads(text)["name"] == basin.name  # plain JSON, readable by anything


# --- trust: a location that passes lies in a trusted root as it will be opened ---------------
@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """base/trusted (the referrer's directory) and base/outside, with symlinks both ways
    and a literal directory named ``%2e%2e``."""
    base = tmp_path_factory.mktemp("trust")
    trusted, outside = base / "trusted", base / "outside"
    for d in (trusted / "sub", trusted / "%2e%2e", outside / "sub"):
        d.mkdir(parents=True)
    (trusted / "out").symlink_to(outside, target_is_directory=True)
    (trusted / "in").symlink_to(trusted / "sub", target_is_directory=True)
    (trusted / "sub" / "up").symlink_to(base, target_is_directory=True)
    (trusted / "%2e%2e" / "outside").symlink_to(outside, target_is_directory=True)
    (outside / "back").symlink_to(trusted, target_is_directory=True)
    for d in (trusted, trusted / "sub", outside):
        (d / "x.h5").write_bytes(b"")
    return base


SEGMENTS = [
    "..",
    ".",
    "",
    "sub",
    "out",
    "in",
    "up",
    "back",
    "trusted",
    "outside",
    "x.h5",
    "%2e%2e",
    "%2E%2e",
    "%2f",
    "a%2f..%2f..",
    "%252e%252e",
    "~",
    "%00",
    "x%2fy",
    "\x00",
]
paths = st.lists(st.sampled_from(SEGMENTS), max_size=8).map("/".join)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@given(prefix=st.sampled_from(["", "abs", "file", "file-rel", "~", "file-~"]), rest=paths)
@example(prefix="file", rest="%2e%2e/outside/x.h5")  # decoded, it leaves the root
@example(prefix="file", rest="x%2fy/../../outside/x.h5")  # literally, it leaves the root
@example(prefix="file", rest="%00/x.h5")
@example(prefix="file-~", rest="x.h5")  # ~ is the trusted root, h5py opens ./~/x.h5
@example(prefix="", rest="out/x.h5")
@example(prefix="", rest="sub/up/outside/x.h5")
def test_a_local_location_that_passes_is_opened_inside_a_root(tree, prefix, rest):
    trusted = str(tree / "trusted")
    ref_url = f"file://{trusted}/ref.h5"
    path = {
        "": rest,
        "abs": f"{trusted}/{rest}",
        "file": f"file://{trusted}/{rest}",
        "file-rel": f"file://{rest}",
        "~": f"~/{rest}",
        "file-~": f"file://~/{rest}",
    }[prefix]
    (location,) = Basin(name="b", type="file", paths=[path]).locations(ref_url)
    trust = Trust.build(referrer_url=ref_url)
    home = os.environ.get("HOME")
    os.environ["HOME"] = trusted  # "~" expands into the trusted root
    try:
        trust.check(location)
    except UntrustedBasinError as exc:
        assert repr(location) in str(exc) or "not a valid location" in str(exc)
        return
    finally:
        if home is None:
            del os.environ["HOME"]
        else:
            os.environ["HOME"] = home
    opened = fs.local_path(location)  # what fsspec and h5py open: taken literally
    assert os.path.isabs(opened)
    assert _inside(os.path.realpath(opened), trusted), (location, os.path.realpath(opened))
    assert _inside(normalize(location), trusted)
    if "://" in location:  # and percent-decoded, as RFC 8089 reads it
        assert _inside(os.path.realpath(unquote(opened)), trusted)


HOSTS = [
    "h:1",
    "H:1",
    "t:2",
    "h:1@evil",
    "evil@h:1",
    "h:1.evil",
    "h",
    "h:01",
    "h:1\\@evil",
    "evil#@h:1",
    "evil?@h:1",
]


@given(
    scheme=st.sampled_from(["http", "HTTP", "https", "s3"]),
    host=st.sampled_from(HOSTS),
    rest=st.lists(st.sampled_from([*SEGMENTS, "pub", "public", "?q", "#f", "@h:1"]), max_size=6),
)
@example(scheme="http", host="h:1", rest=["pub", "%2e%2e", "secret"])
@example(scheme="http", host="h:1", rest=["public", "x"])
def test_a_remote_location_that_passes_goes_to_a_trusted_place(scheme, host, rest):
    url = f"{scheme}://{host}/" + "/".join(rest)
    trust = Trust.build(["http://h:1/pub"], ["http://t:2", "s3://t:2"])
    try:
        trust.check(url)
    except UntrustedBasinError as exc:
        assert repr(url) in str(exc)
        return
    parts = urlsplit(url)
    segments = unquote(parts.path).split("/")
    assert ".." not in segments and "." not in segments
    netloc = parts.netloc.lower()
    if netloc == "t:2":
        return  # a trusted host: any path on it
    assert netloc == "h:1" and _inside(normalize(url), "http://h:1/pub"), url
    # and the request really goes there: yarl, under aiohttp, parses the same host
    if scheme.lower().startswith("http"):
        target = yarl.URL(url)
        assert (target.host, target.port) == ("h", 1)
