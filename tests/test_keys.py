"""Keys, handles and natural order: properties over random input (hypothesis)."""

from __future__ import annotations

import keyword
import string

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from basinflow.errors import HandleCollisionError, InvalidKeyError
from basinflow.keys import (
    handle_map,
    handle_of,
    is_valid_key,
    natural_key,
    natural_sorted,
    validate_key,
)

KEY_ALPHABET = string.ascii_letters + string.digits + "._-"
keys = st.text(KEY_ALPHABET, min_size=1, max_size=12).filter(is_valid_key)
digit_keys = st.text(string.digits, min_size=1, max_size=8)


# --- validation -------------------------------------------------------------------------------
@given(st.text(max_size=20))
@example("")
@example("..")
@example(".")
@example("a/b")
@example("a\x00b")
@example("a\\b")
@example("ünïcode")
@example("1\n")
@example("a..b")
@example(".hidden")
def test_validation_accepts_exactly_the_safe_alphabet(text):
    safe = (
        bool(text)
        and all(c in KEY_ALPHABET for c in text)
        and not text.startswith(".")
        and ".." not in text
    )
    if safe:
        assert validate_key(text) == text
    else:
        with pytest.raises(InvalidKeyError) as e:
            validate_key(text, "scan")
        assert repr(text) in str(e.value) and "scan" in str(e.value)


@given(st.text(min_size=1, max_size=10), st.text(max_size=10), st.text(max_size=10))
def test_separators_and_parents_never_accepted(mid, left, right):
    for bad in ("/", "\\", "\x00", "..", "\n"):
        with pytest.raises(InvalidKeyError):
            validate_key(left + bad + right)
    assume(any(ord(c) > 127 for c in mid))
    with pytest.raises(InvalidKeyError):
        validate_key(mid)


@pytest.mark.parametrize("value", [None, 42, b"0040", ["a"]])
def test_non_strings_refused(value):
    with pytest.raises(InvalidKeyError, match="must be a string"):
        validate_key(value)


# --- handles ------------------------------------------------------------------------------------
@given(keys, st.sampled_from(["p", "r"]))
@example("class", "p")
@example("None", "r")
@example("20210205", "p")
@example("_x", "r")
@example("2021-05", "p")
def test_handles_are_usable_identifiers(key, prefix):
    h = handle_of(key, prefix)
    assert h.isidentifier() and h.isascii()
    assert not keyword.iskeyword(h)
    assert not h.startswith("_")  # attribute access skips private names
    assert handle_of(key, prefix) == h  # deterministic
    if key.isidentifier() and not keyword.iskeyword(key) and key[0].isalpha():
        assert h == key  # plain names stay as they are


def test_handle_examples():
    assert handle_of("20210205", "p") == "p20210205"
    assert handle_of("2021-05", "p") == "p2021_05"
    assert handle_of("0040") == "r0040"
    assert handle_of("class") == "class_"


@given(st.lists(keys, max_size=12))
def test_collisions_are_detected_never_overwritten(key_list):
    distinct = set(key_list)
    by_handle: dict[str, set[str]] = {}
    for k in distinct:
        by_handle.setdefault(handle_of(k, "p"), set()).add(k)
    collide = any(len(v) > 1 for v in by_handle.values())
    if collide:
        with pytest.raises(HandleCollisionError) as e:
            handle_map(key_list, "p")
        assert "both map to handle" in str(e.value)
    else:
        m = handle_map(key_list, "p")
        assert sorted(m.values()) == sorted(distinct)  # every key reachable, none lost
        assert all(handle_of(k, "p") == h for h, k in m.items())


def test_collision_example():
    with pytest.raises(HandleCollisionError, match="'a-1' and 'a_1'"):
        handle_map(["a-1", "a_1"])
    with pytest.raises(HandleCollisionError):
        handle_map(["if", "if_"])


# --- natural order ----------------------------------------------------------------------------
def test_natural_order_examples():
    assert natural_sorted(["r10", "r9", "r1"]) == ["r1", "r9", "r10"]
    assert natural_sorted(["10", "9", "0040", "41"]) == ["9", "10", "0040", "41"]
    assert natural_sorted(["7", "007", "07"]) == ["7", "07", "007"]  # distinct keys stay apart


@given(digit_keys, digit_keys)
def test_digit_keys_follow_integer_order(a, b):
    if int(a) < int(b):
        assert natural_key(a) < natural_key(b)
    elif int(a) > int(b):
        assert natural_key(a) > natural_key(b)
    if a != b:
        assert natural_key(a) != natural_key(b)


@given(st.text(string.ascii_lowercase + "_-", max_size=4), digit_keys, digit_keys)
def test_prefixed_numbers_follow_integer_order(prefix, a, b):
    assume(int(a) != int(b))
    assert (natural_key(prefix + a) < natural_key(prefix + b)) == (int(a) < int(b))


@given(keys, keys, keys)
def test_natural_order_is_a_total_order(a, b, c):
    ka, kb, kc = natural_key(a), natural_key(b), natural_key(c)
    assert (ka == kb) == (a == b)  # antisymmetric: only equal keys tie
    assert (ka < kb) or (kb < ka) or a == b  # total
    if ka <= kb and kb <= kc:
        assert ka <= kc  # transitive


@given(st.lists(keys, max_size=15))
def test_sorting_is_stable_under_permutation(key_list):
    assert natural_sorted(key_list) == natural_sorted(reversed(key_list))
