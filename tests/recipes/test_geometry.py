"""Pixel -> Q conventions equal xrayutilities' QConversion/Ang2Q.area (see xu_reference)."""

from __future__ import annotations

import numpy as np
import pytest
import xrayutilities as xu
from hypothesis import given
from hypothesis import strategies as st

from basinflow.errors import RecipeError
from basinflow.recipes import geometry

AXES = ["x+", "x-", "y+", "y-", "z+", "z-"]


@st.composite
def setups(draw):
    beam = draw(st.sampled_from(AXES))
    perp = [a for a in AXES if a[0] != beam[0]]
    d1 = draw(st.sampled_from(perp))
    d2 = draw(st.sampled_from([a for a in perp if a[0] != d1[0]]))
    sample = draw(st.lists(st.sampled_from(AXES), min_size=1, max_size=3))
    detector = draw(st.lists(st.sampled_from(AXES), min_size=1, max_size=2))
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    center = (draw(st.floats(1.5, 8)), draw(st.floats(1.5, 8)))
    pixel = (draw(st.floats(0.01, 0.5)), draw(st.floats(0.01, 0.5)))
    tilt, azimuth, detrot = (
        draw(st.floats(-5, 5)),
        draw(st.floats(-180, 180)),
        draw(st.floats(-5, 5)),
    )
    n = draw(st.integers(1, 3))
    angles = [
        np.array(draw(st.lists(st.floats(-90, 90), min_size=n, max_size=n)))
        for _ in sample + detector
    ]
    return beam, d1, d2, sample, detector, shape, center, pixel, tilt, azimuth, detrot, angles


@given(setups(), st.floats(100, 1000), st.floats(3000, 30000))
def test_pixel_q_equals_ang2q_area(setup, distance, energy):
    beam, d1, d2, sample, detector, shape, center, pixel, tilt, azimuth, detrot, angles = setup
    up = next(a for a in ("z+", "x+", "y+") if a[0] != beam[0])
    qconv = xu.QConversion(sample, detector, list(geometry.axis_vector(beam)))
    # idir/ndir/sampleor only orient HKL: Ang2Q.area works in the goniometer frame
    hx = xu.HXRD(
        list(geometry.axis_vector(beam)),
        list(geometry.axis_vector(up)),
        en=energy,
        qconv=qconv,
        sampleor=up,
    )
    hx.Ang2Q.init_area(
        d1,
        d2,
        *center,
        *shape,
        distance=distance,
        pwidth1=pixel[0],
        pwidth2=pixel[1],
        tilt=tilt,
        tiltazimuth=azimuth,
        detrot=detrot,
    )
    expected = np.stack(hx.Ang2Q.area(*angles), axis=-1).reshape(len(angles[0]), *shape, 3)

    ns = len(sample)
    positions = geometry.detector_directions(
        shape, center, pixel, distance, (d1, d2), beam, tilt=tilt, tilt_azimuth=azimuth
    )
    det = geometry.chain([*detector, beam], [*angles[ns:], np.full(len(angles[0]), detrot)])
    q = geometry.pixel_q(
        det, geometry.chain(sample, angles[:ns]), positions, geometry.wavenumber(energy), beam
    )
    np.testing.assert_allclose(q, expected, rtol=0, atol=1e-10)


def test_channel_span_equals_channels_per_degree():
    qconv = xu.QConversion(["x+"], ["x+"], [0, 1, 0])
    hx = xu.HXRD([0, 1, 0], [0, 0, 1], en=9000, qconv=qconv, sampleor="z+")
    hx.Ang2Q.init_area("x+", "z-", 3, 4, 7, 9, chpdeg1=100, chpdeg2=80)
    expected = np.stack(hx.Ang2Q.area([10.0], [20.0]), axis=-1)
    p1, p2, distance = geometry.channel_size_from_span((0.01, 1 / 80))
    positions = geometry.detector_directions((7, 9), (3, 4), (p1, p2), distance, ("x+", "z-"))
    q = geometry.pixel_q(
        geometry.chain(["x+"], [[20.0]]),
        geometry.chain(["x+"], [[10.0]]),
        positions,
        geometry.wavenumber(9000),
    )[0]
    np.testing.assert_allclose(q, expected, atol=1e-12)


def test_fractional_center_and_vector_beam():
    a = geometry.detector_directions((10, 20), (0.5, 0.25), (1, 1), 100, ("x+", "z+"), [0, 2, 0])
    b = geometry.detector_directions((10, 20), (5, 5), (1, 1), 100, ("x+", "z+"), "y+")
    np.testing.assert_allclose(a, b)


@pytest.mark.parametrize("bad", ["q+", "x", "xx", [0, 0, 0], [1, 2]])
def test_bad_axes(bad):
    with pytest.raises(RecipeError):
        geometry.axis_vector(bad)


def test_image_axes_must_be_perpendicular():
    with pytest.raises(RecipeError, match="perpendicular"):
        geometry.pixel_steps(("x+", "x-"), (1, 1))


# --- the grid as the kernels see it (bin units) ------------------------------------------
@given(
    st.floats(-5, 5),
    st.floats(1e-3, 10),
    st.integers(1, 200),
    st.lists(st.floats(-0.2, 1.2), min_size=1, max_size=50),
)
def test_bin_units_follow_the_xrayutilities_gridder_rule(lo, span, n, fractions):
    """``u = (q - lo) * scale`` in ``[0, umax]`` and bin ``rint(u)`` is xrayutilities'
    rule (``lo <= q <= hi``, bin ``rint((q - lo) / step)``) for every q not within a few
    ulps of a bin boundary; a one-bin dim keeps the range test and always gives bin 0."""
    from basinflow.recipes.grid import Grid

    hi = lo + span
    units = Grid(("qx",), (lo,), (hi,), (n,)).bin_units()
    step = abs(hi - lo) / (n - 1) if n > 1 else np.inf
    for f in fractions:
        q = lo + f * span
        u = (q - lo) * units.scale[0]
        inside = 0.0 <= u <= units.umax[0]
        if abs(q - lo) > 1e-12 * span and abs(q - hi) > 1e-12 * span:
            assert inside == (lo <= q <= hi)
        if not inside or not (lo <= q <= hi):
            continue
        expected = 0 if n == 1 else int(np.rint((q - lo) / step))
        near_boundary = n > 1 and abs((q - lo) / step % 1 - 0.5) < 1e-9
        if not near_boundary:
            assert int(np.rint(u) * units.stride[0]) == expected


def test_bin_units_strides_are_c_order_and_zero_for_single_bins():
    from basinflow.recipes.grid import Grid

    units = Grid(("qx", "qy", "qz"), (0, 0, 0), (1, 1, 1), (4, 1, 5)).bin_units()
    assert list(units.stride) == [5.0, 0.0, 1.0]
    assert list(units.umax) == [3.0, 1.0, 4.0]
    assert units.scale[1] == 1.0  # one bin: u runs 0..1 over [lo, hi]
