"""``make demo``: the main job end to end on an embedded default."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console


def run_demo(directory: Path, out: Console) -> None:
    from basinflow import samples
    from basinflow.cli import ls

    directory = Path(directory).absolute()
    if not (directory / "truth.json").exists():
        out.print(f"[bold]1. generating sample data in {directory}[/bold]")
        samples.generate(directory)
    template = f"{directory.as_uri()}/nexus/{{proposal}}/{{scan}}.h5#entry"
    out.print(f"[bold]2. listing {template}[/bold]")
    ls(template, None, None)
    ls(template, "2021-05", None)
