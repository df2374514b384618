"""The one registry helper: lazy paths, discovery from EntryPoint objects, broken plugins."""

from __future__ import annotations

import importlib.metadata
import warnings
from fractions import Fraction

import pytest

from basinflow.errors import Error, NotFound
from basinflow.plugins import PluginWarning, Registry


def _check(name: str, obj: object) -> type:
    if not isinstance(obj, type):
        raise Error(f"{name!r} is a {type(obj).__name__}, not a class")
    return obj


def _registry(**kw) -> Registry[type]:
    return Registry("basinflow.test_plugins", "number type", check=_check, **kw)


def _ep(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group="basinflow.test_plugins")


def test_a_dotted_path_is_imported_on_first_use_and_kept():
    reg = _registry(builtins={"fraction": "fractions:Fraction"})
    assert reg.view["fraction"] == "fractions:Fraction"  # nothing imported yet
    assert reg.get("fraction") is Fraction
    assert reg.view["fraction"] is Fraction
    with pytest.raises(TypeError):
        reg.view["x"] = int  # type: ignore[index]


def test_unknown_names_list_the_known_ones_and_the_group():
    reg = _registry(builtins={"fraction": "fractions:Fraction"})
    assert reg.find("decimal") is None
    with pytest.raises(NotFound) as info:
        reg.get("decimal")
    message = str(info.value)
    assert "'decimal'" in message and "fraction" in message
    assert "basinflow.test_plugins" in message and "install" in message


def test_entry_points_are_read_once_until_refresh():
    reg = _registry()
    first = reg.entry_points()
    assert reg.entry_points() is first
    reg.refresh()
    assert reg.entry_points() is not first


def test_load_all_from_entry_point_objects_turns_broken_plugins_into_warnings():
    reg = _registry()
    eps = [
        _ep("fraction", "fractions:Fraction"),
        _ep("missing", "no_such_package_here.mod:Thing"),
        _ep("not_a_class", "math:pi"),
        _ep("no_attr", "fractions:Nowhere"),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = reg.load_all(eps)
    assert loaded == {"fraction": Fraction}
    texts = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    assert any("cannot be imported" in t and "pip install no_such_package_here" in t for t in texts)
    assert any("'not_a_class' is a float, not a class" in t for t in texts)
    assert any("no attribute 'Nowhere'" in t for t in texts)
    assert "missing" not in reg.view


def test_a_broken_plugin_asked_for_by_name_is_a_clear_error():
    reg = _registry()
    with pytest.raises(Error, match=r"'pi' is a float, not a class"):
        reg.load_entry_point(_ep("pi", "math:pi"))


def test_registration_refuses_to_shadow_unless_asked():
    reg = _registry()
    reg.register("number", Fraction)
    reg.register("number", Fraction)  # the same one again: fine
    with pytest.raises(Error, match=r"already registered.*replace=True"):
        reg.register("number", int)
    reg.register("number", int, replace=True)
    assert reg.get("number") is int
    reg.unregister("number")
    assert "number" not in reg


def test_duplicate_entry_points_warn_and_the_first_wins():
    reg = _registry()
    eps = [_ep("n", "fractions:Fraction"), _ep("n", "decimal:Decimal")]
    with pytest.warns(PluginWarning, match="provided twice"):
        assert reg.load_all(eps) == {"n": Fraction}


def test_registered_wins_over_an_entry_point():
    reg = _registry()
    reg.register("n", int)
    assert reg.load_all([_ep("n", "fractions:Fraction")]) == {"n": int}
