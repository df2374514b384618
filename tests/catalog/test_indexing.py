"""Indexing lazy frames is numpy indexing, whatever the layout: hypothesis draws the keys
users write (integers, negative ones, slices with steps, lists of frames, pixels) and each
layout's frames must give exactly what numpy gives on the whole array."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import basinflow as bf
from basinflow import samples


@pytest.fixture(scope="module")
def frames_by_layout(sample_root):
    """``({layout: lazy frames}, whole array)`` of one sample scan."""
    lazy = {
        layout: bf.Repository(f"{sample_root.as_uri()}/{form}")["2021-05"]["0041"].raw.frames
        for layout, form in samples.TEMPLATES.items()
    }
    return lazy, lazy["nexus"].values


def _axis(n: int) -> st.SearchStrategy:
    ints = st.integers(-n, n - 1)
    bound = st.none() | st.integers(-n - 2, n + 2)
    step = st.none() | st.integers(-3, 3).filter(lambda s: s != 0)
    # dask normalises a reversed slice whose start lies below -n to start at the end (numpy:
    # empty); that is dask's own indexing, not a layout's: test_dask_reversed_slice_below_start
    slices = st.builds(slice, bound, bound, step).filter(
        lambda s: not (s.step is not None and s.step < 0 and s.start is not None and s.start < -n)
    )
    return ints | slices


@st.composite
def keys(draw, shape):
    n, ny, nx = shape
    first = draw(_axis(n) | st.lists(st.integers(-n, n - 1), min_size=1, max_size=4))
    depth = draw(st.integers(0, 2))  # how many of the pixel axes the key names
    rest = [draw(_axis(ny)), draw(_axis(nx))][:depth]
    return (first, *rest)


@given(data=st.data())
def test_frames_index_like_numpy(frames_by_layout, data):
    lazy, whole = frames_by_layout
    key = data.draw(keys(whole.shape))
    want = whole[key]
    for layout, frames in lazy.items():
        got = frames.data[key].compute()
        assert got.shape == want.shape, (layout, key)
        np.testing.assert_array_equal(got, want, err_msg=f"{layout} {key}")


@pytest.mark.xfail(strict=True, reason="dask bug: x[-n-1::-1] selects all of x, numpy none")
def test_dask_reversed_slice_below_start():
    """Kept so that the filter in ``_axis`` is dropped once dask indexes like numpy."""
    import dask.array as da

    x = np.arange(7)
    assert da.from_array(x, chunks=3)[-8::-1].compute().shape == x[-8::-1].shape
