"""Diffractometer geometry: detector pixel -> momentum transfer Q.

Conventions follow xrayutilities' ``QConversion`` (and therefore nx5d's ``QMapper``), so
spice written for either reads the same here:

* the lab frame is right-handed; ``beamDirection`` is the primary beam (default ``y+``),
  given as an axis string or a 3-vector (nx5d writes ``(0, 1, 0)``);
* an axis string ``"x+"`` is a right-handed rotation about +x, ``"x-"`` about -x;
* goniometer (sample) and detector axes are listed outer to inner;
* the area detector's two pixel directions at zero angles are ``imageAxes`` (first array
  dimension first); its centre channel ``imageCenter`` lies on the beam at ``imageDistance``;
* a detector tilt (``tilt`` about an axis in the detector plane at ``tilt_azimuth`` from
  the first image axis) and an in-plane rotation ``detrot`` about the beam follow
  ``Ang2Q.init_area(tilt=, tiltazimuth=, detrot=)``;
* Q is returned in the sample frame (the lab frame at all sample angles zero), in 1/Å.
  Like ``Ang2Q.area`` (whose UB matrix is the identity unless one is given), this frame
  does not depend on ``HXRD(idir, ndir, sampleor=...)``: those only orient HKL.

Everything here is plain NumPy on small arrays; the per-pixel hot loop lives in the
recipe's compiled kernel, which uses :func:`detector_directions` and :func:`rotation`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from basinflow.errors import RecipeError

HC_EV_ANGSTROM = 12398.419843320026  # h*c in eV*Å (CODATA 2018), as xrayutilities uses

_AXES = {"x": 0, "y": 1, "z": 2}


def wavenumber(energy_ev: float) -> float:
    """k = 2π/λ in 1/Å for a photon energy in eV."""
    if not energy_ev > 0:
        raise RecipeError(f"beamEnergy must be positive (eV), got {energy_ev!r}")
    return 2.0 * np.pi * energy_ev / HC_EV_ANGSTROM


def axis_vector(axis: str | Sequence[float] | np.ndarray) -> np.ndarray:
    """Unit vector of an axis string such as ``"x+"`` or ``"z-"``, or of a 3-vector."""
    if isinstance(axis, str):
        if len(axis) != 2 or axis[0] not in _AXES or axis[1] not in "+-":
            raise RecipeError(f"axis {axis!r} is not one of x+, x-, y+, y-, z+, z-")
        v = np.zeros(3)
        v[_AXES[axis[0]]] = 1.0 if axis[1] == "+" else -1.0
        return v
    try:
        v = np.asarray(axis, dtype=float).reshape(3)
    except (TypeError, ValueError):
        raise RecipeError(
            f"axis {axis!r} is neither an axis string (x+, y-, ...) nor a 3-vector"
        ) from None
    n = float(np.linalg.norm(v))
    if not np.isfinite(n) or n == 0:
        raise RecipeError(f"axis vector {list(v)} has no direction")
    return v / n


def rotation(axis: str | Sequence[float], angle_deg: np.ndarray | float) -> np.ndarray:
    """Right-handed rotation matrices about ``axis`` (shape ``angle.shape + (3, 3)``)."""
    u = axis_vector(axis)
    a = np.deg2rad(np.asarray(angle_deg, dtype=float))
    c, s = np.cos(a), np.sin(a)
    ux = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    outer = np.outer(u, u)
    return (
        c[..., None, None] * np.eye(3) + s[..., None, None] * ux + (1 - c)[..., None, None] * outer
    )


def chain(axes: Sequence[str], angles: Sequence[np.ndarray]) -> np.ndarray:
    """Combined rotation of a stack of circles, outer to inner: R = R_outer @ ... @ R_inner.

    ``angles`` holds one array (one value per frame) per axis; result ``(n, 3, 3)``.
    """
    n = len(np.atleast_1d(angles[0])) if len(angles) else 1
    out = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    for axis, ang in zip(axes, angles, strict=True):
        out = out @ rotation(axis, np.broadcast_to(np.atleast_1d(ang), (n,)))
    return out


def center_pixels(shape: tuple[int, int], center: tuple[float, float]) -> tuple[float, float]:
    """``imageCenter`` in pixels: values given as fractions (both in 0..1) scale by ``shape``."""
    c1, c2 = float(center[0]), float(center[1])
    if 0 <= c1 <= 1 and 0 <= c2 <= 1:
        c1, c2 = c1 * shape[0], c2 * shape[1]
    return c1, c2


def channel_size_from_span(span: tuple[float, float]) -> tuple[float, float, float]:
    """``(pixel1, pixel2, distance)`` for ``imageChannelSpan`` (degrees per channel).

    Same as ``Ang2Q.init_area(chpdeg1=1/span1, chpdeg2=1/span2)``: a unit distance and
    pixels of ``2 tan(0.5°) * span``.
    """
    t = 2.0 * np.tan(np.radians(0.5))
    return t * abs(float(span[0])), t * abs(float(span[1])), 1.0


def pixel_steps(
    image_axes: tuple[str, str],
    pixel_size: tuple[float, float],
    tilt: float = 0.0,
    tilt_azimuth: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectors (mm) from one pixel to the next along both image axes, detector tilt applied.

    The tilt axis lies in the detector plane at ``tilt_azimuth + 90°`` from the first
    image axis, and the rotation matrix is xrayutilities' ``rotation_arb(tilt, axis)``
    (note its sense: it turns by ``-tilt`` about that axis, right-handed).
    """
    e1, e2 = axis_vector(image_axes[0]), axis_vector(image_axes[1])
    if abs(float(e1 @ e2)) > 1e-12:
        raise RecipeError(f"imageAxes {list(image_axes)} must be perpendicular to each other")
    u1, u2 = e1 * float(pixel_size[0]), e2 * float(pixel_size[1])
    if tilt:
        az = np.radians(tilt_azimuth) + np.pi / 2
        e = np.cos(az) * e1 + np.sin(az) * e2
        e = e / np.linalg.norm(e)
        a = np.radians(tilt)
        ee = np.outer(e, e)
        cross_rows = np.cross(e, np.eye(3))  # row i = e x unit_i, as xrayutilities builds it
        m = np.cos(a) * (np.eye(3) - ee) + ee + np.sin(a) * cross_rows
        u1, u2 = m @ u1, m @ u2
    return u1, u2


def detector_directions(
    shape: tuple[int, int],
    center: tuple[float, float],
    pixel_size: tuple[float, float],
    distance: float,
    image_axes: tuple[str, str],
    beam: str | Sequence[float] = "y+",
    tilt: float = 0.0,
    tilt_azimuth: float = 0.0,
) -> np.ndarray:
    """Pixel positions (mm) at zero detector angles, shape ``(n1, n2, 3)``.

    ``center`` may be given in pixels or, when both values are <= 1, as fractions of
    ``shape`` (nx5d's convention). The centre pixel lies on the beam at ``distance``.
    """
    n1, n2 = shape
    c1, c2 = center_pixels(shape, center)
    u1, u2 = pixel_steps(image_axes, pixel_size, tilt, tilt_azimuth)
    b = axis_vector(beam)
    i = np.arange(n1) - c1
    j = np.arange(n2) - c2
    return distance * b + i[:, None, None] * u1 + j[None, :, None] * u2


def pixel_q(
    detector_rot: np.ndarray,
    sample_rot: np.ndarray,
    positions: np.ndarray,
    k: float,
    beam: str | Sequence[float] = "y+",
) -> np.ndarray:
    """Q (sample frame) for every pixel of every frame: ``(n, n1, n2, 3)``.

    Reference implementation, used by the sample generator and as the slow path; the
    recipe uses a fused kernel with the same arithmetic.
    """
    ki = axis_vector(beam)
    p = np.einsum("fab,ijb->fija", detector_rot, positions)
    kf = p / np.linalg.norm(p, axis=-1, keepdims=True)
    q_lab = k * (kf - ki)
    # inverse (transpose) of the sample rotation takes lab vectors to the sample frame
    return np.einsum("fba,fijb->fija", sample_rot, q_lab)
