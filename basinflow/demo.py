"""``make demo``: the main job end to end on an embedded default.

Sample data with a known Bragg peak -> spice -> the ``cook`` flow on a local Dask cluster
(Prefect's API embedded, nothing to set up) -> referrers -> the recovered strain per delay
next to the truth it was generated with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

REPOSITORY = "demo"
RSM_GRID = {
    "dims": ["qx", "qy", "qz"],
    "qsize": [24, 48, 160],
    "group_by": "delay",
    "normalize_by": "monitor",
}


def write_config(directory: Path) -> Path:
    """A config for the demo repository, beside the data (so any directory works)."""
    path = directory / "basinflow.yaml"
    path.write_text(
        "# written by `basinflow demo`; {here} is this file's directory\n"
        "repositories:\n"
        f"  {REPOSITORY}:\n"
        '    raw: "file://{here}/nexus/{proposal}/{scan}.h5#entry"\n'
        '    spice: "file://{here}/spice/{proposal}"\n'
        '    output: "file://{here}/cooked/{proposal}/{scan}/{recipe}-{recipe_version}.h5"\n'
        "cluster:\n  workers: 2\n  threads_per_worker: 1\n"
    )
    return path


def run_demo(directory: Path, out: Console, ls: Callable[[str, str | None, Path], None]) -> None:
    """``ls`` is the CLI's listing command (the CLI calls the demo, never the reverse)."""
    import basinflow as bf
    from basinflow import samples
    from basinflow.cli_flows import progress, quiet, results_table
    from basinflow.flows.run import cook_proposal
    from basinflow.report import relative

    directory = Path(directory).absolute()
    config = directory / "basinflow.yaml"
    quiet(config)  # runs in demo-data/.prefect: where `basinflow cook` and `basinflow ui` look
    if not (directory / "truth.json").exists():
        out.rule("1. sample data")
        out.print(f"generating sample scans in {directory} ...")
        samples.generate(directory)
    truth = json.loads((directory / "truth.json").read_text())
    write_config(directory)

    out.rule("2. list scans")
    ls(REPOSITORY, None, config)
    ls(REPOSITORY, "2021-05", config)

    out.rule("3. seed spice (geometry + grid, from the first scan on)")
    repo = bf.open_repository(config, REPOSITORY)
    for key in repo.proposals():
        doc = repo[key].spice.seed(
            "rsm", **truth["rsm"], **RSM_GRID, comment="demo: sample geometry"
        )
        out.print(
            f"{key}: rsm revision {doc.revision} ({doc.uuid[:8]}) anchored at "
            f"{doc.anchor or 'the first scan'}"
        )

    out.rule("4. cook: Prefect flow on a local Dask cluster")
    results = []
    for key in repo.proposals():
        title = f"{REPOSITORY} / {key} / rsm"
        with progress(out, title, len(repo[key].keys())) as on_result:
            res = cook_proposal(config, REPOSITORY, key, recipe="rsm", progress=on_result)
        out.print(results_table(res, title=f"cook/{REPOSITORY}/{key}/rsm"))
        results += res
    failed = [r for r in results if r.status == "failed"]

    out.rule("5. open a referrer and check the physics")
    first = next(r for r in results if r.output)
    ds = bf.open_referrer(first.output, trusted=[repo])
    table = Table("delay (ps)", "known strain", "recovered strain", "peak qz (1/Å)")
    q0 = np.asarray(truth["peaks"][str(truth["delays"][0])])[2]
    for delay in truth["delays"]:
        qz = peak_qz(ds, delay)
        table.add_row(
            f"{delay:g}", f"{truth['strain'][str(delay)]:.2e}", f"{q0 / qz - 1:.2e}", f"{qz:.4f}"
        )
    out.print(table)
    out.print(
        f"innate: {sorted(ds.attrs.get('innate', [])) or list(ds.data_vars)[:3]}; "
        f"raw frames through the basin: {ds.frames.shape}"
    )
    ref, cfg = relative(first.output), relative(config.as_uri())
    out.print(
        "\n[bold]Where things are[/bold]\n"
        f"  referrers  {relative((directory / 'cooked').as_uri())}\n"
        f"  spice      {relative((directory / 'spice').as_uri())}\n"
        f"  config     {cfg}\n"
        f"  runs       {relative((directory / '.prefect').as_uri())}\n\n"
        "[bold]Open one[/bold]\n"
        "  import basinflow as bf\n"
        f"  repo = bf.open_repository({cfg!r}, {REPOSITORY!r})\n"
        f"  ds = bf.open_referrer({ref!r}, trusted=\\[repo])\n"
        f"  .venv/bin/basinflow inspect --config {cfg} {ref}\n\n"
        "[bold]See the runs in the Prefect UI[/bold] (http://127.0.0.1:4200)\n"
        f"  .venv/bin/basinflow ui --config {cfg}\n",
        soft_wrap=True,  # commands stay on one line, to copy them
        highlight=False,
    )
    if failed:
        raise SystemExit(1)


def peak_qz(ds, delay: float, half_width: float = 0.02) -> float:
    """Film peak qz for one delay: intensity-weighted qz within ``half_width`` of the
    maximum on the film side (qz < 3.205, clear of the substrate peak at 3.218)."""
    profile = ds.intensity.sel(delay=delay).fillna(0).sum(("qx", "qy")).compute()
    qz, w = profile.qz.values, profile.values
    film = qz < 3.205
    top = qz[film][np.argmax(w[film])]
    window = film & (np.abs(qz - top) <= half_width)
    return float((w[window] * qz[window]).sum() / w[window].sum())
