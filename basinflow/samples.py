"""Realistic sample beamline data with known ground truth.

A thin film (pseudo-cubic c = 3.95 Å) on a substrate (c = 3.905 Å), measured with a
Pilatus-100K-like area detector (195 x 487 pixels of 172 µm, uint32 Poisson counts) in a
theta rocking scan at fixed two-theta, pump-probe style: every theta step is recorded at
each delay, and the film's (002) peak moves to lower Q with the known strain of that
delay. Peaks are placed in Q and projected onto the detector with the same geometry the
``rsm`` recipe inverts (:mod:`basinflow.recipes.geometry`), so a reciprocal-space map must
recover them.

The same scans are written in several raw layouts so that each layout class and template
form is exercised on identical physics:

``nexus/{proposal}/{scan}.h5#entry``   one NeXus file per scan, one frame per chunk, gzip
``groups/{proposal}.h5#{scan}``        one HDF5 file per proposal, scans as groups
``drepo.h5#{proposal}/{scan}``         one HDF5 file for the whole repository
``tiff/{proposal}/{scan}/``            ``manifest.dat`` + one TIFF per frame

``truth.json`` beside them records geometry (as ``rsm`` spice), peaks and strains.
Output is deterministic for a given :class:`SampleSpec` (seeded per scan).
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np

from basinflow.recipes import geometry

INDEX_NAME = "basinflow-index.json"
LAYOUTS = ("nexus", "groups", "drepo", "tiff")
TEMPLATES = {
    "nexus": "nexus/{proposal}/{scan}.h5#entry",
    "groups": "groups/{proposal}.h5#{scan}",
    "drepo": "drepo.h5#{proposal}/{scan}",
    "tiff": "tiff/{proposal}/{scan}/",
}


@dataclass(frozen=True)
class SampleSpec:
    """What to generate. The defaults are the small set the tests use (~10 MB)."""

    proposals: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {"2021-05": ("0040", "0041", "0042"), "2022-11": ("9", "10")}
    )
    ntheta: int = 11
    delays: tuple[float, ...] = (-10.0, 5.0, 20.0, 100.0)  # ps; negative = before pump
    strains: tuple[float, ...] = (0.0, 4.0e-3, 2.5e-3, 1.0e-3)  # out-of-plane, per delay
    theta_span: float = 0.8  # degrees, full rocking range
    seed: int = 0
    layouts: tuple[str, ...] = LAYOUTS
    detector_shape: tuple[int, int] = (195, 487)

    def __post_init__(self) -> None:
        if len(self.delays) != len(self.strains):
            raise ValueError("delays and strains must have one entry each")
        unknown = set(self.layouts) - set(LAYOUTS)
        if unknown:
            raise ValueError(f"unknown sample layouts {sorted(unknown)}; choose from {LAYOUTS}")

    @property
    def nframes(self) -> int:
        return self.ntheta * len(self.delays)


ENERGY_EV = 8048.0  # Cu K-alpha 1
FILM_C = 3.95
SUBSTRATE_C = 3.905
FILM_SIGMA = (0.004, 0.004, 0.010)  # 1/Å, (qx, qy, qz): thin film, broad along qz
SUBSTRATE_SIGMA = (0.0015, 0.0015, 0.0015)
FILM_AMPLITUDE = 800.0
SUBSTRATE_AMPLITUDE = 20000.0
BACKGROUND = 0.3
MONITOR_MEAN = 1.0e5


def rsm_spice(shape: tuple[int, int] = (195, 487)) -> dict:
    """The diffractometer geometry of the samples, as ``rsm`` spice (nx5d field names)."""
    return {
        "beamEnergy": ENERGY_EV,
        "beamDirection": [0, 1, 0],
        "sampleFaceUp": "z+",
        "sampleNormal": [0, 0, 1],
        "goniometerAxes": {"theta": "x+"},
        "detectorAxes": {"tth": "x+"},
        "detectorTARAlign": [0.0, 0.0, 0.0],
        "imageAxes": ["x+", "z-"],
        "imageCenter": [97.3, 241.6],
        "imageChannelSize": [0.172, 0.172],
        "imageDistance": 500.0,
        "imageSize": list(shape),
    }


def film_q(strain: float = 0.0) -> np.ndarray:
    """Sample-frame Q (1/Å) of the film (002) peak at a given out-of-plane strain."""
    return np.array([0.0, 0.0, 4 * np.pi / (FILM_C * (1.0 + strain))])


def substrate_q() -> np.ndarray:
    return np.array([0.0, 0.0, 4 * np.pi / SUBSTRATE_C])


def bragg_two_theta(q: float, energy_ev: float = ENERGY_EV) -> float:
    return float(np.rad2deg(2 * np.arcsin(q / (2 * geometry.wavenumber(energy_ev)))))


def truth(spec: SampleSpec) -> dict:
    """Ground truth for ``spec``: geometry, peaks per delay, scan keys, templates."""
    return {
        "seed": spec.seed,
        "energy_ev": ENERGY_EV,
        "rsm": rsm_spice(spec.detector_shape),
        "film": {"c": FILM_C, "sigma": FILM_SIGMA, "amplitude": FILM_AMPLITUDE},
        "substrate": {"c": SUBSTRATE_C, "q": substrate_q().tolist()},
        "delays": list(spec.delays),
        "strain": dict(zip(map(str, spec.delays), spec.strains, strict=True)),
        "peaks": {
            str(d): film_q(s).tolist() for d, s in zip(spec.delays, spec.strains, strict=True)
        },
        "proposals": {p: list(s) for p, s in spec.proposals.items()},
        "nframes": spec.nframes,
        "detector_shape": list(spec.detector_shape),
        "templates": {k: TEMPLATES[k] for k in spec.layouts},
        "units": {"q": "1/Angstrom", "delay": "ps", "angles": "deg", "energy": "eV"},
    }


@dataclass
class Scan:
    """One generated scan: positioner columns and a lazy frame iterator."""

    title: str
    columns: dict[str, np.ndarray]
    frames: Iterator[np.ndarray]


def _scan_seed(spec: SampleSpec, proposal: str, scan: str) -> int:
    return (spec.seed * 1_000_003 + zlib.crc32(f"{proposal}/{scan}".encode())) % 2**32


def simulate(spec: SampleSpec, proposal: str, scan: str) -> Scan:
    """Positioners and (lazily) frames of one scan."""
    rng = np.random.default_rng(_scan_seed(spec, proposal, scan))
    tth = bragg_two_theta(film_q()[2])
    thetas = tth / 2 + np.linspace(-spec.theta_span / 2, spec.theta_span / 2, spec.ntheta)
    theta = np.repeat(thetas, len(spec.delays))
    delay = np.tile(np.asarray(spec.delays, dtype=float), spec.ntheta)
    strain = np.tile(np.asarray(spec.strains, dtype=float), spec.ntheta)
    monitor = np.round(MONITOR_MEAN * (1 + 0.02 * rng.standard_normal(theta.size))).astype(np.int64)
    columns = {
        "theta": theta,
        "tth": np.full(theta.size, tth),
        "delay": delay,
        "monitor": monitor,
    }
    title = (
        f"ascan theta {thetas[0]:.4f} {thetas[-1]:.4f} {spec.ntheta - 1} delays {len(spec.delays)}"
    )

    g = rsm_spice(spec.detector_shape)
    k = geometry.wavenumber(g["beamEnergy"])
    positions = geometry.detector_directions(
        tuple(g["imageSize"]),
        tuple(g["imageCenter"]),
        tuple(g["imageChannelSize"]),
        g["imageDistance"],
        tuple(g["imageAxes"]),
    )

    def frames() -> Iterator[np.ndarray]:
        for f in range(theta.size):
            q = geometry.pixel_q(
                geometry.chain(["x+"], [columns["tth"][f : f + 1]]),
                geometry.chain(["x+"], [theta[f : f + 1]]),
                positions,
                k,
            )[0]
            lam = BACKGROUND + _gauss(q, film_q(strain[f]), FILM_SIGMA, FILM_AMPLITUDE)
            lam += _gauss(q, substrate_q(), SUBSTRATE_SIGMA, SUBSTRATE_AMPLITUDE)
            lam *= monitor[f] / MONITOR_MEAN
            yield rng.poisson(lam).astype(np.uint32)

    return Scan(title=title, columns=columns, frames=frames())


def _gauss(q: np.ndarray, q0: np.ndarray, sigma, amplitude: float) -> np.ndarray:
    z = sum(((q[..., i] - q0[i]) / sigma[i]) ** 2 for i in range(3))
    return amplitude * np.exp(-0.5 * z)


# --- writers ------------------------------------------------------------------------------
_H5_FRAMES = {"compression": "gzip", "compression_opts": 1, "shuffle": True}


def _write_nexus(path: Path, s: Scan, shape: tuple[int, int], nframes: int) -> None:
    with h5py.File(path, "w", libver=("v110", "latest")) as f:
        f.attrs["NX_class"] = "NXroot"
        f.attrs["default"] = "entry"
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e.attrs["default"] = "data"
        e["title"] = s.title
        e["start_time"] = "2021-05-04T12:00:00+02:00"
        inst = e.create_group("instrument")
        inst.attrs["NX_class"] = "NXinstrument"
        src = inst.create_group("source")
        src.attrs["NX_class"] = "NXsource"
        src["energy"] = ENERGY_EV
        src["energy"].attrs["units"] = "eV"
        det = inst.create_group("pilatus")
        det.attrs["NX_class"] = "NXdetector"
        frames = det.create_dataset(
            "data", shape=(nframes, *shape), dtype="uint32", chunks=(1, *shape), **_H5_FRAMES
        )
        for i, frame in enumerate(s.frames):
            frames[i] = frame
        det["x_pixel_size"] = 0.172
        det["x_pixel_size"].attrs["units"] = "mm"
        for name in ("theta", "tth", "delay"):
            p = inst.create_group(name)
            p.attrs["NX_class"] = "NXpositioner"
            p["value"] = s.columns[name]
            p["value"].attrs["units"] = "ps" if name == "delay" else "deg"
        mon = e.create_group("monitor")
        mon.attrs["NX_class"] = "NXmonitor"
        mon["data"] = s.columns["monitor"]
        data = e.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "data"
        data.attrs["axes"] = ["theta", ".", "."]
        data["data"] = frames
        for name in ("theta", "tth", "delay"):
            data[name] = inst[name]["value"]
        data["monitor"] = mon["data"]


def _write_group(g: h5py.Group, s: Scan, shape: tuple[int, int], nframes: int) -> None:
    g.attrs["title"] = s.title
    m = g.create_group("measurement")
    frames = m.create_dataset(
        "pilatus", shape=(nframes, *shape), dtype="uint32", chunks=(1, *shape), **_H5_FRAMES
    )
    for i, frame in enumerate(s.frames):
        frames[i] = frame
    for name, values in s.columns.items():
        m[name] = values


def _write_tiff(directory: Path, s: Scan) -> None:
    import tifffile

    directory.mkdir(parents=True, exist_ok=True)
    names = list(s.columns)
    rows = []
    for i, frame in enumerate(s.frames):
        fname = f"frame_{i:05d}.tif"
        tifffile.imwrite(directory / fname, frame, compression="zlib")
        rows.append("\t".join([*(repr(float(s.columns[n][i])) for n in names), fname]))
    header = [f"% {s.title}", f"% energy {ENERGY_EV}", "% " + "\t".join([*names, "file"])]
    (directory / "manifest.dat").write_text("\n".join(header + rows) + "\n")


def generate(root: str | os.PathLike, spec: SampleSpec | None = None) -> dict:
    """Write the sample repository under ``root`` (a local directory) and return the truth.

    Each scan is simulated once and written to every requested layout. Files are written
    to a temporary name and renamed, so an interrupted run leaves no file that looks
    complete.
    """
    spec = spec or SampleSpec()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    shape, n = spec.detector_shape, spec.nframes
    groups: dict[str, h5py.File] = {}
    tmp: dict[str, Path] = {}

    def group_file(name: str, path: Path) -> h5py.File:
        if name not in groups:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp[name] = path.with_name(f".{path.name}.partial")
            groups[name] = h5py.File(tmp[name], "w")
        return groups[name]

    try:
        for proposal, scans in spec.proposals.items():
            for scan in scans:
                s = simulate(spec, proposal, scan)
                frames = np.stack(list(s.frames))

                def again(s=s, frames=frames) -> Scan:
                    return Scan(s.title, s.columns, iter(frames))

                if "nexus" in spec.layouts:
                    path = root / "nexus" / proposal / f"{scan}.h5"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    _atomic(path, lambda p, sc=again(): _write_nexus(p, sc, shape, n))
                if "tiff" in spec.layouts:
                    _write_tiff(root / "tiff" / proposal / scan, again())
                if "groups" in spec.layouts:
                    f = group_file(f"groups/{proposal}", root / "groups" / f"{proposal}.h5")
                    _write_group(f.create_group(scan), again(), shape, n)
                if "drepo" in spec.layouts:
                    f = group_file("drepo", root / "drepo.h5")
                    _write_group(f.create_group(f"{proposal}/{scan}"), again(), shape, n)
        for name, f in groups.items():
            f.close()
            final = tmp[name].with_name(tmp[name].name[1 : -len(".partial")])
            os.replace(tmp[name], final)
    finally:
        for name, f in groups.items():
            f.close()
            tmp[name].unlink(missing_ok=True)
    info = truth(spec)
    (root / "truth.json").write_text(json.dumps(info, indent=2))
    write_index(root)
    return info


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_index(root: str | os.PathLike) -> Path:
    """Write ``basinflow-index.json``: every file under ``root`` with its size.

    Plain HTTP servers cannot list directories in a machine-readable way; the catalog
    lists an ``http(s)://`` repository from this index (and falls back to the server's
    HTML directory listing where there is one).
    """
    root = Path(root)
    files = {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != INDEX_NAME and not p.name.startswith(".")
    }
    out = root / INDEX_NAME
    out.write_text(json.dumps({"version": 1, "files": files}, indent=1))
    return out


def spec_as_dict(spec: SampleSpec) -> dict:
    return asdict(spec)
