"""B3: referrer bytes vs raw bytes vs a copy-everything export of the same scan.

For one generated sample scan (NeXus, ``--ntheta`` x 4 delays frames of 195x487 uint32),
``cook`` writes the referrer of ``rsm`` (and of ``normalize``), then ``export`` writes the
self-contained copy of the same referrer (every basin resolved, raw frames copied).

Targets (issue 5, item 8): the ``rsm`` referrer is <= 2 % of raw, and every referrer is
<= its cooked variables' stored bytes + 64 KiB (i.e. basins, links, provenance, NeXus
groups and dimension scales together cost at most 64 KiB).

"Cooked bytes" are the stored bytes (``dset.id.get_storage_size()``) of the referrer's
innate datasets, each HDF5 object counted once, excluding ``/basins`` and
``/provenance`` (which are the overhead being measured). "Raw" is given two ways: the
raw file on disk (gzip-compressed by the sample generator; the synthetic frames are
mostly near-zero background and compress ~15x, far better than real detector frames)
and the raw frames uncompressed (what the detector produced).

    .venv/bin/python benchmarks/bench_referrer.py                # 200 frames, writes results/B3.md
    .venv/bin/python benchmarks/bench_referrer.py --ntheta 10    # quick
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import h5py

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "B3.md"
KIB64 = 64 * 1024
RAW_FRACTION = 0.02

sys.path.insert(0, str(HERE))
from common import machine_info, markdown_table, write_report  # noqa: E402 - after the path insert


def kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB" if n < 2**20 else f"{n / 2**20:,.2f} MiB"


def pct(a: float, b: float) -> str:
    return f"{100 * a / b:.2f} %"


def local(url: str) -> str:
    return url[len("file://") :] if url.startswith("file://") else url


def stored_bytes(path: str) -> dict[str, int]:
    """Stored bytes of every dataset, each HDF5 object once, keyed by its first path."""
    seen: set = set()
    out: dict[str, int] = {}
    with h5py.File(path, "r") as f:

        def visit(name: str, obj) -> None:
            if isinstance(obj, h5py.Dataset):
                addr = h5py.h5o.get_info(obj.id).addr
                if addr not in seen:
                    seen.add(addr)
                    out[name] = obj.id.get_storage_size()

        f.visititems(visit)  # does not follow ExternalLinks: raw frames are not counted
    return out


def cooked_bytes(path: str) -> int:
    return sum(
        n
        for name, n in stored_bytes(path).items()
        if not name.startswith(("basins/", "provenance/"))
    )


def build(root: Path, ntheta: int):
    import basinflow as bf
    from basinflow import samples

    samples.generate(
        root, samples.SampleSpec(proposals={"p1": ("1",)}, ntheta=ntheta, layouts=("nexus",))
    )
    repo = bf.Repository(
        f"file://{root}/nexus/{{proposal}}/{{scan}}.h5#entry",
        spice=f"file://{root}/spice/{{proposal}}",
        output=f"file://{root}/out/{{proposal}}/{{scan}}/{{recipe}}.h5",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo["p1"].spice.seed("rsm", **samples.rsm_spice())
        repo["p1"].spice.seed(
            "normalize",
            dark=0.0,
            flat=1.0,
            monitor="monitor",
            monitor_reference=samples.MONITOR_MEAN,
        )
    return repo


def measure(repo, recipe: str, root: Path) -> dict:
    from basinflow.storage.referrer.export import export
    from basinflow.tasks.cooking import cook

    scan = repo["p1"]["1"]
    t0 = time.perf_counter()
    res = cook(scan, recipe, force=True)
    t_cook = time.perf_counter() - t0
    if res.status != "cooked":
        return {"recipe": recipe, "error": f"cook {res.status}: {res.reason}"}
    ref = local(res.output)
    out = root / "export" / f"{recipe}.h5"
    t0 = time.perf_counter()
    try:
        export(res.output, f"file://{out}", trusted=[repo])
    except Exception as e:  # noqa: BLE001 - report, don't hide
        return {"recipe": recipe, "error": f"export failed: {type(e).__name__}: {e}"}
    t_export = time.perf_counter() - t0
    raw_file = local(scan.raw.attrs["url"].split("#", 1)[0])
    frames = scan.raw.frames
    return {
        "recipe": recipe,
        "raw_file": os.path.getsize(raw_file),
        "raw_frames": frames.nbytes,
        "nframes": frames.shape[0],
        "referrer": os.path.getsize(ref),
        "cooked": cooked_bytes(ref),
        "export": os.path.getsize(out),
        "t_cook": t_cook,
        "t_export": t_export,
    }


def report(rows: list[dict], command: str, ntheta: int, seconds: float) -> str:
    ok = [r for r in rows if "error" not in r]
    nframes = ok[0]["nframes"] if ok else ntheta * 4
    head = [
        "# B3: referrer bytes vs raw vs copy-everything export",
        "",
        f"- machine: {machine_info()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- command: `{command}`",
        f"- scan: 1 generated NeXus scan, {nframes} frames of 195x487 uint32 "
        f"(ntheta={ntheta} x 4 delays); whole benchmark {seconds:.1f} s",
        "",
    ]
    header = [
        "recipe",
        "raw file on disk (gzip)",
        "raw frames uncompressed",
        "referrer",
        "cooked variables stored",
        "referrer overhead (referrer - cooked)",
        "export (copy-everything)",
        "referrer / raw file",
        "referrer / raw uncompressed",
        "referrer / export",
        "cook s",
        "export s",
    ]
    table = []
    targets = []
    for r in rows:
        if "error" in r:
            table.append([r["recipe"], r["error"], *[""] * (len(header) - 2)])
            targets.append([r["recipe"], "not measured", "", "", ""])
            continue
        over = r["referrer"] - r["cooked"]
        table.append(
            [
                f"`{r['recipe']}`",
                kib(r["raw_file"]),
                kib(r["raw_frames"]),
                kib(r["referrer"]),
                kib(r["cooked"]),
                kib(over),
                kib(r["export"]),
                pct(r["referrer"], r["raw_file"]),
                pct(r["referrer"], r["raw_frames"]),
                pct(r["referrer"], r["export"]),
                f"{r['t_cook']:.2f}",
                f"{r['t_export']:.2f}",
            ]
        )
        if r["recipe"] == "rsm":
            a = "yes" if r["referrer"] <= RAW_FRACTION * r["raw_file"] else "**no**"
            b = "yes" if r["referrer"] <= RAW_FRACTION * r["raw_frames"] else "**no**"
        else:
            a = b = "n/a (rsm only)"
        c = "yes" if over <= KIB64 else "**no**"
        targets.append([f"`{r['recipe']}`", a, b, c, f"{kib(over)} of 64 KiB"])
    tgt_header = [
        "recipe",
        "referrer <= 2 % of raw file on disk",
        "referrer <= 2 % of raw uncompressed",
        "referrer <= cooked + 64 KiB",
        "overhead used",
    ]
    return "\n".join(
        [
            *head,
            markdown_table(table, header),
            "",
            "Targets:",
            "",
            markdown_table(targets, tgt_header),
            "",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ntheta", type=int, default=50, help="rocking points (x 4 delays = frames)")
    ap.add_argument("--recipes", default="rsm,normalize")
    ap.add_argument("--out", default=str(RESULTS), help="markdown file to write ('' = none)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    command = "python " + " ".join(
        shlex.quote(a) for a in [os.path.relpath(sys.argv[0]), *sys.argv[1:]]
    )

    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench-referrer-"))
    try:
        repo = build(tmp / "site", args.ntheta)
        rows = [measure(repo, r, tmp) for r in args.recipes.split(",") if r]
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    text = report(rows, command, args.ntheta, time.perf_counter() - t0)
    write_report(text, args.out)


if __name__ == "__main__":
    main()
