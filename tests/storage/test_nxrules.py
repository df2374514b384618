"""NeXus attribute rules: every spelling of a name list, and of a single name."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from basinflow.storage.layouts import nxrules

NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,12}", fullmatch=True).filter(lambda s: s != ".")
NAMES = st.lists(st.one_of(NAME, st.just(".")), min_size=1, max_size=5)


@given(NAMES)
def test_axes_in_every_spelling(axes):
    assert nxrules.names(np.array(axes, dtype=object)) == axes  # h5py string array
    assert nxrules.names(np.array([a.encode() for a in axes])) == axes  # bytes array (GDA)
    assert nxrules.names(":".join(axes)) == axes  # old style "a:b"
    assert nxrules.names("[" + ", ".join(f"'{a}'" for a in axes) + "]") == axes


@given(NAME)
def test_one_name_in_every_spelling(name):
    for value in (name, name.encode(), np.array([name.encode()]), np.bytes_(name), np.array(name)):
        assert nxrules.text(value) == name
    assert nxrules.names(np.array([name], dtype=object)) == [name]
