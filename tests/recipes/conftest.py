"""Fixtures for the recipe tests: raw datasets exactly as ``scan.raw`` delivers them.

The recipes need no catalog: :func:`make_raw` builds the lazy dataset (``frames`` on
``("index", "y", "x")`` as a Dask array chunked along ``index`` only, 1-D positioner and
monitor variables on ``index``, identity in ``attrs``) from simulated sample scans.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from basinflow import samples

PROPOSAL, SCAN = "2021-05", "0042"
# one proposal, one scan: 11 theta steps x 4 delays = 44 Pilatus frames
SMALL = samples.SampleSpec(proposals={PROPOSAL: (SCAN,)}, layouts=("nexus",))


def make_raw(
    frames: np.ndarray,
    columns: dict[str, np.ndarray],
    *,
    chunk: int = 1,
    proposal: str = PROPOSAL,
    scan: str = SCAN,
) -> xr.Dataset:
    """A raw dataset in the catalog's format (frames lazy, one storage chunk = ``chunk``)."""
    data = da.from_array(frames, chunks=(chunk, -1, -1))
    variables = {"frames": (("index", "y", "x"), data)}
    variables.update({name: ("index", np.asarray(v)) for name, v in columns.items()})
    return xr.Dataset(
        variables,
        coords={"index": np.arange(frames.shape[0])},
        attrs={"proposal": proposal, "scan": scan},
    )


@pytest.fixture(scope="session")
def sample_scan():
    """(frames, columns, truth) of the small sample scan, simulated once."""
    sim = samples.simulate(SMALL, PROPOSAL, SCAN)
    frames = np.stack(list(sim.frames))
    return frames, sim.columns, samples.truth(SMALL)


@pytest.fixture
def sample_raw(sample_scan) -> xr.Dataset:
    frames, columns, _ = sample_scan
    return make_raw(frames, columns)


@pytest.fixture
def rsm_spice() -> dict:
    return samples.rsm_spice(SMALL.detector_shape)
