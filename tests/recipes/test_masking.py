"""``masked``: which pixels the detector's mask leaves out, against plain numpy."""

from __future__ import annotations

import dask.array as da
import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from basinflow.recipes.masking import DetectorMask, detector_mask, masked
from tests.recipes.conftest import make_raw

DTYPES = st.sampled_from(["uint8", "uint16", "uint32", "int16", "int32", "float32"])
LIMIT = st.none() | st.integers(-(2**33), 2**33) | st.floats(-1e10, 1e10)


@example(  # a limit just above a float32 value: rounded to float32, it would equal it
    data=np.full((3, 4, 5), 0.1, np.float32),
    saturation=float(np.float32(0.1)) + 1e-12,
    underload=None,
)
@given(
    data=DTYPES.flatmap(lambda t: hnp.arrays(t, (3, 4, 5), elements={"allow_nan": False})),
    saturation=LIMIT,
    underload=LIMIT,
)
def test_masked_leaves_out_exactly_the_values_beyond_the_limits(data, saturation, underload):
    """Limits outside the dtype's range (a negative underload of unsigned frames, a
    saturation above 2**32) compare by value, never wrapped into the dtype."""
    mask = DetectorMask(None, None, "", saturation, underload)
    out = masked(da.from_array(data, chunks=(1, -1, -1)), mask).compute()
    exact = data.astype(object)  # Python numbers: no casting of either side
    bad = np.zeros(data.shape, bool)
    if saturation is not None:
        bad |= exact >= saturation
    if underload is not None:
        bad |= exact <= underload
    if saturation is None and underload is None:
        np.testing.assert_array_equal(out, data)
        return
    np.testing.assert_array_equal(np.isnan(out), bad)
    np.testing.assert_array_equal(out[~bad], data[~bad].astype(np.float64))


def test_mask_text_names_the_limits_when_the_layout_gave_none():
    frames = np.arange(2 * 3 * 4, dtype="uint16").reshape(2, 3, 4)
    raw = make_raw(frames, {})
    raw.frames.attrs.update(saturation_value=20, underload_value=1)
    mask = detector_mask(raw, raw.frames)
    assert (mask.saturation, mask.underload) == (20, 1)
    assert mask.text == (
        "saturation value 20 (pixels at or above it left out); "
        "underload value 1 (pixels at or below it left out)"
    )
