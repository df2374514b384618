"""The ``rsm`` recipe: agreement with xrayutilities, physics of the sample data, errors."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

from basinflow import samples
from basinflow.errors import Error, LayoutError, RecipeError, SpiceValidationError
from basinflow.recipes import geometry, get_recipe, rsm
from basinflow.recipes.grid import Q_DIMS
from tests.recipes import xu_reference
from tests.recipes.conftest import make_raw

RSM = get_recipe("rsm")


def _check_against_xu(spice, columns, frames, cooked, group_by=None, monitor=None):
    result = cooked.compute(scheduler="sync")
    groups = [None] if group_by is None else list(result[group_by].values)
    for g in groups:
        select = None if g is None else np.asarray(columns[group_by]) == g
        ours = result if g is None else result.sel({group_by: g})
        data, counts = xu_reference.grid(spice, columns, frames, result, select, monitor)
        np.testing.assert_array_equal(ours.counts.values, counts)
        filled = counts > 0
        np.testing.assert_allclose(ours.intensity.values[filled], data[filled], rtol=1e-10)
        assert np.isnan(ours.intensity.values[~filled]).all()
    return result


# --- agreement with xrayutilities --------------------------------------------------------
def test_sample_scan_3d_per_delay_matches_xrayutilities(sample_scan, rsm_spice):
    frames, columns, _ = sample_scan
    raw = make_raw(frames, columns)
    cooked = RSM.cook(raw, {"rsm": rsm_spice}, qsize=(24, 30, 40), group_by="delay")
    assert dict(cooked.sizes) == {"delay": 4, "qx": 24, "qy": 30, "qz": 40}
    result = _check_against_xu(rsm_spice, columns, frames, cooked, group_by="delay")
    # the automatic range holds every pixel of every frame
    assert int(result.counts.sum()) == frames.size
    assert int(result.nonfinite.sum()) == 0


def test_sample_scan_2d_with_monitor_matches_xrayutilities(sample_scan, rsm_spice):
    frames, columns, _ = sample_scan
    raw = make_raw(frames, columns, chunk=5)
    cooked = RSM.cook(
        raw,
        {"rsm": rsm_spice},
        dims=("qy", "qz"),
        qsize={"qy": 50, "qz": 70},
        normalize_by="monitor",
    )
    assert cooked.intensity.dims == ("qy", "qz")
    _check_against_xu(rsm_spice, columns, frames, cooked, monitor=columns["monitor"])


def test_fixed_qrange_roi_and_mask_match_xrayutilities(sample_scan, rsm_spice):
    frames, columns, _ = sample_scan
    raw = make_raw(frames, columns, chunk=7)
    spice = {**rsm_spice, "roi": (20, 180, 100, 400)}
    cooked = RSM.cook(
        raw,
        {"rsm": spice},
        dims=("qx", "qz"),
        qsize=(20, 60),
        qrange={"qz": (3.05, 3.30)},
        mask=[(50, 60, 0, 487)],
    )
    assert cooked.qz.attrs["qmin"] == 3.05 and cooked.qz.attrs["qmax"] == 3.30
    # xrayutilities has no pixel mask: NaN pixels are what it skips
    masked = frames.astype(float)
    masked[:, 50:60, :] = np.nan
    _check_against_xu(spice, columns, masked, cooked)


def test_saturated_and_underloaded_pixels_are_left_out_like_nan(sample_scan, rsm_spice):
    """The detector's trusted range (frames attrs from NXdetector saturation_value and
    underload_value): pixels at or beyond it are skipped and counted in ``nonfinite``."""
    frames, columns, _ = sample_scan
    hi, lo = np.quantile(frames, 0.999), np.min(frames)
    raw = make_raw(frames, columns, chunk=5)
    raw.frames.attrs.update(saturation_value=int(hi), underload_value=int(lo))
    cooked = RSM.cook(raw, {"rsm": rsm_spice}, qsize=(10, 12, 14))
    assert "saturation value" in cooked.attrs["mask"]
    assert "underload value" in cooked.attrs["mask"]
    bad = (frames >= int(hi)) | (frames <= int(lo))
    assert 0 < bad.sum() < frames.size
    result = _check_against_xu(rsm_spice, columns, np.where(bad, np.nan, frames), cooked)
    assert int(result.nonfinite) == bad.sum()
    assert int(result.counts.sum()) == frames.size - bad.sum()


AXES = ["x+", "x-", "y+", "y-", "z+", "z-"]


@st.composite
def geometries(draw):
    beam = draw(st.sampled_from(AXES))
    perp = [a for a in AXES if a[0] != beam[0]]
    image1 = draw(st.sampled_from(perp))
    image2 = draw(st.sampled_from([a for a in perp if a[0] != image1[0]]))
    up = draw(st.sampled_from(perp))
    normal = geometry.axis_vector(up)
    n1, n2 = draw(st.integers(2, 9)), draw(st.integers(2, 11))
    if draw(st.booleans()):
        center = (draw(st.floats(1.5, n1 + 2)), draw(st.floats(1.5, n2 + 2)))
    else:
        center = (draw(st.floats(0.0, 1.0)), draw(st.floats(0.0, 1.0)))
    spice = {
        "beamEnergy": draw(st.floats(5000, 20000)),
        "beamDirection": beam if draw(st.booleans()) else list(geometry.axis_vector(beam)),
        "sampleFaceUp": up,
        "sampleNormal": list(normal),
        "goniometerAxes": {
            f"s{i}": draw(st.sampled_from(AXES)) for i in range(draw(st.integers(1, 3)))
        },
        "detectorAxes": {
            f"d{i}": draw(st.sampled_from(AXES)) for i in range(draw(st.integers(1, 2)))
        },
        "imageAxes": [image1, image2],
        "imageCenter": list(center),
        "imageSize": [n1, n2],
    }
    if draw(st.booleans()):
        spice["detectorTARAlign"] = [
            draw(st.floats(-3, 3)),
            draw(st.floats(-180, 180)),
            draw(st.floats(-3, 3)),
        ]
    if draw(st.booleans()):
        spice["imageChannelSize"] = [draw(st.floats(0.05, 0.3)), draw(st.floats(0.05, 0.3))]
        spice["imageDistance"] = draw(st.floats(100, 1000))
    else:
        spice["imageChannelSpan"] = [draw(st.floats(0.01, 0.2)), draw(st.floats(0.01, 0.2))]
    if draw(st.booleans()):
        r0 = draw(st.integers(0, n1 - 1))
        c0 = draw(st.integers(0, n2 - 1))
        spice["roi"] = [r0, draw(st.integers(r0 + 1, n1)), c0, draw(st.integers(c0 + 1, n2))]
    dims = draw(st.sampled_from([Q_DIMS, ("qx", "qy"), ("qy", "qz"), ("qz", "qx")]))
    spice["dims"] = list(dims)
    spice["qsize"] = [draw(st.integers(1, 9)) for _ in dims]
    nframes = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31))
    return spice, nframes, seed


@given(geometries())
def test_random_geometries_match_xrayutilities(case):
    spice, nframes, seed = case
    rng = np.random.default_rng(seed)
    columns = {
        name: rng.uniform(-60, 60, nframes)
        for name in [*spice["goniometerAxes"], *spice["detectorAxes"]]
    }
    frames = rng.uniform(0, 100, (nframes, *spice["imageSize"]))
    frames[rng.random(frames.shape) < 0.05] = np.nan  # skipped by both
    raw = make_raw(frames, columns, chunk=int(rng.integers(1, nframes + 1)))
    cooked = RSM.cook(raw, {"rsm": spice})
    result = _check_against_xu(spice, columns, frames, cooked)
    r0, r1, c0, c1 = spice.get("roi") or (0, spice["imageSize"][0], 0, spice["imageSize"][1])
    used = frames[:, r0:r1, c0:c1]
    assert int(result.nonfinite) == int(np.isnan(used).sum())
    assert int(result.counts.sum()) == int(np.isfinite(used).sum())  # auto range holds all


@given(geometries())
def test_automatic_qrange_is_the_exact_detector_extent(case):
    """Derived from the geometry only, the range holds every pixel and is tight."""
    spice, nframes, seed = case
    rng = np.random.default_rng(seed)
    names = [*spice["goniometerAxes"], *spice["detectorAxes"]]
    columns = {name: rng.uniform(-60, 60, nframes) for name in names}
    raw = make_raw(np.zeros((nframes, *spice["imageSize"])), columns)
    model = rsm.RsmSpice.model_validate(spice)
    grid = rsm.build_grid(rsm.Setup(raw, model, nframes), model)
    hx = xu_reference.hxrd(spice)
    q = hx.Ang2Q.area(*[columns[n] for n in names])
    r0, r1, c0, c1 = spice.get("roi") or (0, spice["imageSize"][0], 0, spice["imageSize"][1])
    for i, dim in enumerate(grid.dims):
        values = np.asarray(q[Q_DIMS.index(dim)]).reshape(nframes, r1 - r0, c1 - c0)
        assert grid.lo[i] <= values.min() and values.max() <= grid.hi[i]
        # tight: the continuous detector rectangle reaches at most one pixel step further
        steps = [np.abs(np.diff(values, axis=a)).max() for a in (1, 2) if values.shape[a] > 1]
        pad = 3e-9 * max(values.max() - values.min(), 1.0)  # auto_range pads 1e-9 and 2e-9
        pixel_step = max(steps, default=0.0) + pad
        assert values.min() - grid.lo[i] <= pixel_step
        assert grid.hi[i] - values.max() <= pixel_step


# --- physics of the sample data ------------------------------------------------------------
def test_recovers_film_peak_and_strain_per_delay(sample_scan, rsm_spice):
    frames, columns, truth = sample_scan
    raw = make_raw(frames, columns)
    qz_range = (3.10, 3.25)
    nz = 101
    cooked = RSM.cook(
        raw,
        {"rsm": rsm_spice},
        group_by="delay",
        qsize=(15, 15, nz),
        qrange={"qx": (-0.03, 0.03), "qy": (-0.03, 0.03), "qz": qz_range},
    ).compute()
    step = (qz_range[1] - qz_range[0]) / (nz - 1)
    # Tolerance from the grid: every pixel's Q is moved by at most step/2 onto its bin
    # centre, so the intensity-weighted centroid of the binned peak moves by at most
    # step/2 (a convex combination of shifts <= step/2). On top of that we allow 2e-4 1/Å
    # for Poisson noise (film amplitude 800 counts over thousands of pixels: < 1e-4) and
    # the substrate cut below. In strain: tol_q / q_film (about 2.5e-4 here, well below
    # the 1.5e-3 separating the delays' strains).
    tol_q = step / 2 + 2e-4
    q_unstrained = samples.film_q(0.0)[2]
    substrate = truth["substrate"]["q"][2]
    sigma = truth["film"]["sigma"]
    qz = cooked.qz.values
    for delay in cooked.delay.values:
        expected = truth["peaks"][f"{delay}"]
        strain = truth["strain"][f"{delay}"]
        mean = cooked.intensity.sel(delay=delay)
        signal = (mean - samples.BACKGROUND).clip(min=0).fillna(0)
        # in-plane position: centroid over the whole map (the substrate sits at qx=qy=0 too)
        profile = signal.sel(qx=slice(-0.006, 0.006), qy=slice(-0.006, 0.006)).mean(("qx", "qy"))
        film_side = qz < substrate - 8 * samples.SUBSTRATE_SIGMA[2]
        peak = qz[film_side][np.argmax(profile.values[film_side])]
        window = film_side & (np.abs(qz - peak) <= 3 * sigma[2])
        w = profile.values[window]
        qz_peak = float((qz[window] * w).sum() / w.sum())
        assert abs(qz_peak - expected[2]) <= tol_q, (delay, qz_peak, expected)
        assert abs((q_unstrained / qz_peak - 1) - strain) <= tol_q / q_unstrained
        # and the in-plane components sit at qx = qy = 0 within a bin
        near = signal.sel(qz=slice(peak - step, peak + step)).sum("qz")
        for dim in ("qx", "qy"):
            line = near.sum("qy" if dim == "qx" else "qx")
            centre = float((line[dim] * line).sum() / line.sum())
            assert abs(centre - expected[Q_DIMS.index(dim)]) <= 0.03 / 14 / 2 + 2e-4


# --- laziness, chunking, distribution ------------------------------------------------------
def test_cook_is_lazy_and_reads_no_frames(sample_scan, rsm_spice):
    frames, columns, _ = sample_scan

    def boom(block):
        raise AssertionError("frames were read while building the graph")

    raw = make_raw(frames, columns)
    raw["frames"] = raw.frames.copy(data=raw.frames.data.map_blocks(boom, dtype=frames.dtype))
    cooked = RSM.cook(raw, {"rsm": rsm_spice}, qsize=8)
    assert isinstance(cooked.intensity.data, da.Array)
    with pytest.raises(AssertionError, match="while building"):
        cooked.compute(scheduler="sync")


def test_tasks_group_storage_chunks_and_bound_memory(sample_scan, rsm_spice, monkeypatch):
    frames, columns, _ = sample_scan
    raw = make_raw(frames, columns, chunk=1)
    reference = RSM.cook(raw, {"rsm": rsm_spice}, qsize=10).compute(scheduler="sync")
    frame_bytes = frames[0].nbytes
    monkeypatch.setattr(rsm, "TARGET_CHUNK_BYTES", 5 * frame_bytes)
    cooked = RSM.cook(raw, {"rsm": rsm_spice}, qsize=10)
    graph = dict(cooked.counts.data.__dask_graph__())
    partial_keys = [
        k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("rsm-partial")
    ]
    assert len(partial_keys) == -(-len(frames) // 5)  # 5 one-frame chunks per task
    xr.testing.assert_identical(cooked.compute(scheduler="sync"), reference)


@pytest.mark.filterwarnings("ignore:Sending large graph")  # in-memory test frames
def test_distributed_process_cluster_gives_the_same_result(sample_scan, rsm_spice):
    from distributed import Client, LocalCluster

    frames, columns, _ = sample_scan
    raw = make_raw(frames, columns, chunk=4)
    cooked = RSM.cook(raw, {"rsm": rsm_spice}, qsize=(10, 12, 14), group_by="delay")
    reference = cooked.compute(scheduler="sync")
    with (
        LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        distributed = client.compute(cooked).result()
    xr.testing.assert_identical(distributed, reference)
    with dask.config.set(scheduler="threads"):
        xr.testing.assert_identical(cooked.compute(), reference)


def test_cook_with_a_spice_view_from_the_spice_package(sample_scan, rsm_spice):
    from basinflow.spice.proposal_spice import ProposalSpice

    frames, columns, _ = sample_scan
    spice = ProposalSpice(None)
    spice.seed("rsm", handle="geometry", values={**rsm_spice, "qsize": 6})
    view = spice.view("0042")
    cooked = RSM.cook(make_raw(frames, columns), view, qsize=(4, 5, 6))
    assert dict(cooked.sizes) == {"qx": 4, "qy": 5, "qz": 6}


# --- bad input -----------------------------------------------------------------------------
def test_missing_spice_type(sample_raw):
    with pytest.raises(SpiceValidationError, match="needs spice of type 'rsm'"):
        RSM.cook(sample_raw, {"roi": {"regions": {"a": [0, 1, 0, 1]}}})


def test_missing_spice_field(sample_raw, rsm_spice):
    spice = {k: v for k, v in rsm_spice.items() if k != "imageSize"}
    with pytest.raises(SpiceValidationError, match="imageSize"):
        RSM.cook(sample_raw, {"rsm": spice})


def test_unknown_override(sample_raw, rsm_spice):
    with pytest.raises(SpiceValidationError, match=r"\['qsise'\] are not fields.*qsize"):
        RSM.cook(sample_raw, {"rsm": rsm_spice}, qsise=10)


def test_geometry_axis_missing_from_raw_data(sample_raw, rsm_spice):
    spice = {**rsm_spice, "goniometerAxes": {"omega": "x+"}}
    with pytest.raises(RecipeError, match=r"goniometer axis 'omega'.*theta"):
        RSM.cook(sample_raw, {"rsm": spice})


def test_zero_frames(rsm_spice):
    raw = make_raw(np.zeros((0, 195, 487), np.uint32), {"theta": [], "tth": []})
    with pytest.raises(LayoutError, match="zero frames"):
        RSM.cook(raw, {"rsm": rsm_spice})


def test_frames_of_the_wrong_size(sample_scan, rsm_spice):
    frames, columns, _ = sample_scan
    raw = make_raw(frames[:, :100], columns)
    with pytest.raises(LayoutError, match=r"100x487 pixels.*195x487"):
        RSM.cook(raw, {"rsm": rsm_spice})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"qrange": {"qz": (3.2, 3.2)}}, "qrange of qz is empty"),
        ({"qrange": {"qz": (3.3, 3.2)}}, "qrange of qz is empty"),
        ({"qsize": (0, 10, 10)}, "zeros or negatives"),
        ({"qsize": {"qy": 10, "qz": 0}}, "zeros or negatives"),
        ({"dims": ("qx", "qq")}, "dims must be two or three"),
        ({"imageChannelSpan": 0.01}, "not both"),
        ({"goniometerAxes": {"theta": "w+"}}, "not one of x+"),
    ],
)
def test_bad_grid_and_geometry_spice(sample_raw, rsm_spice, override, message):
    with pytest.raises(SpiceValidationError, match=message) as info:
        RSM.cook(sample_raw, {"rsm": rsm_spice}, **override)
    assert isinstance(info.value, Error)


def test_nan_and_inf_are_masked_and_counted(sample_scan, rsm_spice):
    frames, columns, _ = sample_scan
    bad = frames.astype(np.float32)
    bad[0, 10, 10] = np.nan
    bad[3, 20:22, 30] = np.inf
    bad[7, 0, 0] = -np.inf
    raw = make_raw(bad, columns)
    cooked = RSM.cook(raw, {"rsm": rsm_spice}, qsize=12, group_by="delay").compute()
    assert int(cooked.nonfinite.sum()) == 4
    expected = {d: 0 for d in cooked.delay.values}
    for frame, n in ((0, 1), (3, 2), (7, 1)):
        expected[columns["delay"][frame]] += n
    assert {d: int(cooked.nonfinite.sel(delay=d)) for d in expected} == expected
    assert int(cooked.counts.sum()) == bad.size - 4
    filled = cooked.counts > 0
    assert np.isfinite(cooked.intensity.where(filled)).sum() == filled.sum()
    strict = RSM.cook(raw, {"rsm": rsm_spice}, qsize=12, nonfinite="raise")
    with pytest.raises(RecipeError, match="4 pixel values are NaN or inf"):
        strict.compute(scheduler="sync")


def test_monitor_of_zero_is_counted_not_propagated(sample_scan, rsm_spice):
    frames, columns, _ = sample_scan
    columns = {**columns, "monitor": np.asarray(columns["monitor"], float).copy()}
    columns["monitor"][5] = 0.0
    raw = make_raw(frames, columns)
    cooked = RSM.cook(raw, {"rsm": rsm_spice}, qsize=8, normalize_by="monitor").compute()
    zero_pixels = int((frames[5] == 0).sum())  # 0/0: NaN; the rest: inf
    assert int(cooked.nonfinite) == frames[5].size
    assert zero_pixels < frames[5].size
    assert np.isfinite(cooked.intensity.where(cooked.counts > 0)).sum() == (cooked.counts > 0).sum()


def test_energy_and_distance_from_raw_variables(sample_scan, rsm_spice):
    """nx5d's '@variable' references: per-frame energy, a per-scan constant distance."""
    frames, columns, _ = sample_scan
    energy = 8048.0 + 5.0 * np.arange(len(frames))
    columns = {**columns, "energy": energy, "distance": np.full(len(frames), 480.0)}
    spice = {**rsm_spice, "beamEnergy": "@energy", "imageDistance": "@distance"}
    raw = make_raw(frames, columns, chunk=6)
    cooked = RSM.cook(raw, {"rsm": spice}, qsize=(10, 11, 12)).compute()
    reference = {**rsm_spice, "imageDistance": 480.0}
    hx = xu_reference.hxrd(reference)
    q = hx.Ang2Q.area(columns["theta"], columns["tth"], en=energy)
    import xrayutilities as xu

    gridder = xu.Gridder3D(10, 11, 12)
    gridder.dataRange(*[v for d in Q_DIMS for v in (cooked[d].qmin, cooked[d].qmax)])
    gridder(*q, frames.astype(float))
    np.testing.assert_array_equal(cooked.counts.values, gridder._gnorm)
    columns["distance"][3] = 500.0
    with pytest.raises(RecipeError, match="one positive value per scan"):
        RSM.cook(make_raw(frames, columns), {"rsm": spice})
