"""xrayutilities as the reference implementation of the ``rsm`` recipe (test-only).

Convention mapping (checked here and in test_geometry): our ``rsm`` spice maps onto
xrayutilities exactly as nx5d's ``QMapper.init_experiment`` does it:

* ``QConversion(sampleAxis=goniometerAxes.values(), detectorAxis=detectorAxes.values(),
  r_i=beamDirection)``;
* ``HXRD(idir=beamDirection, ndir=sampleNormal, sampleor=sampleFaceUp, qconv=..., en=E)``
  (``Ang2Q.area`` uses UB = identity, so idir/ndir/sampleor do not change Q at all);
* ``Ang2Q.init_area(imageAxes[0], imageAxes[1], cch1, cch2, Nch1, Nch2,
  distance=imageDistance, pwidth1, pwidth2 = imageChannelSize`` (or ``chpdeg = 1/span``),
  ``tilt, tiltazimuth, detrot = detectorTARAlign, roi=roi)``, with ``imageCenter`` in
  pixels (fractions times ``imageSize``);
* ``Gridder2D/3D(*qsize)`` with ``dataRange(lo, hi, ..., fixed=True)`` on the recipe's
  grid and the default normalisation (``data = sum / count``).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
import xrayutilities as xu

from basinflow.recipes import geometry

_Q = {"qx": 0, "qy": 1, "qz": 2}


def hxrd(spice: dict) -> xu.HXRD:
    beam = list(geometry.axis_vector(spice.get("beamDirection", (0, 1, 0))))
    qconv = xu.QConversion(
        list(spice["goniometerAxes"].values()), list(spice["detectorAxes"].values()), beam
    )
    sample_up = spice.get("sampleFaceUp", "z+")
    normal = list(spice.get("sampleNormal", (0, 0, 1)))
    hx = xu.HXRD(beam, normal, en=spice["beamEnergy"], qconv=qconv, sampleor=sample_up)
    size = tuple(spice["imageSize"])
    c1, c2 = geometry.center_pixels(size, spice["imageCenter"])
    tilt, azimuth, detrot = spice.get("detectorTARAlign", (0.0, 0.0, 0.0))
    kwargs = {"tilt": tilt, "tiltazimuth": azimuth, "detrot": detrot}
    if spice.get("roi"):
        kwargs["roi"] = list(spice["roi"])
    if spice.get("imageChannelSpan") is not None:
        span = spice["imageChannelSpan"]
        span = (span, span) if np.isscalar(span) else span
        kwargs.update(chpdeg1=1.0 / span[0], chpdeg2=1.0 / span[1])
    else:
        size_mm = spice["imageChannelSize"]
        size_mm = (size_mm, size_mm) if np.isscalar(size_mm) else size_mm
        kwargs.update(distance=spice["imageDistance"], pwidth1=size_mm[0], pwidth2=size_mm[1])
    hx.Ang2Q.init_area(spice["imageAxes"][0], spice["imageAxes"][1], c1, c2, *size, **kwargs)
    return hx


def grid(
    spice: dict,
    columns: dict[str, np.ndarray],
    frames: np.ndarray,
    cooked: xr.Dataset,
    select: np.ndarray | None = None,
    monitor: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(data, counts) of xrayutilities on the grid of ``cooked`` for the ``select``ed frames."""
    hx = hxrd(spice)
    select = np.ones(len(frames), bool) if select is None else select
    names = list(spice["goniometerAxes"]) + list(spice["detectorAxes"])
    angles = [np.asarray(columns[n], float)[select] for n in names]
    q = hx.Ang2Q.area(*angles)
    if select.sum() == 1:
        q = [c[None] for c in q]
    data = frames[select].astype(float)
    if spice.get("roi"):
        r0, r1, c0, c1 = spice["roi"]
        data = data[:, r0:r1, c0:c1]
    if monitor is not None:
        data = data / np.asarray(monitor, float)[select][:, None, None]
    dims = [d for d in cooked.dims if d in _Q]
    sizes = [cooked.sizes[d] for d in dims]
    gridder = xu.Gridder3D(*sizes) if len(dims) == 3 else xu.Gridder2D(*sizes)
    limits = [v for d in dims for v in (cooked[d].attrs["qmin"], cooked[d].attrs["qmax"])]
    gridder.dataRange(*limits, fixed=True)
    gridder(*[q[_Q[d]] for d in dims], data)
    return gridder.data, gridder._gnorm.copy()
