"""``basinflow cook`` and ``basinflow serve``: the flows from the command line.

Prefect is imported only when a command runs (the CLI stays quick), after the offline
defaults of :func:`basinflow.flows.runtime.configure_environment` are in place.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

_ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="basinflow YAML config")]


def _quiet() -> None:
    from basinflow.flows.runtime import configure_environment

    configure_environment()
    for name in ("distributed", "prefect_dask"):
        logging.getLogger(name).setLevel(logging.WARNING)


def results_table(results: list, title: str | None = None) -> Table:
    t = Table("scan", "status", "seconds", "read", "written", "output / reason", title=title)
    colour = {"cooked": "green", "skipped": "cyan", "failed": "red"}
    for r in results:
        t.add_row(
            r.scan,
            f"[{colour.get(r.status, 'white')}]{r.status}[/]",
            f"{r.seconds:.2f}",
            _size(r.bytes_read),
            _size(r.bytes_written),
            escape(r.reason if r.status == "failed" else (r.output or r.reason)),
        )
    return t


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def cook(
    repository: Annotated[str, typer.Argument(help="repository name in the config")],
    proposal: Annotated[str, typer.Argument(help="proposal key")],
    scans: Annotated[list[str] | None, typer.Argument(help="scan keys (default: all)")] = None,
    config: _ConfigOpt = Path("basinflow.yaml"),
    recipe: Annotated[str, typer.Option("--recipe", "-r", help="recipe name")] = "rsm",
    force: Annotated[bool, typer.Option("--force", help="recook up-to-date outputs")] = False,
    cluster: Annotated[
        str | None, typer.Option("--cluster", help="Dask scheduler address (default: config)")
    ] = None,
) -> None:
    """Cook a proposal's scans on Dask under Prefect; exit 1 if any scan failed.

    With PREFECT_API_URL set the runs go to that server; otherwise an embedded server starts for the run (browse the runs later with `prefect server start`).
    """  # noqa: E501 - one paragraph in --help
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    _quiet()
    from basinflow.flows.run import cook_proposal

    console = Console()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(
            f"cook {repository}/{proposal} ({recipe})", total=len(scans or []) or None
        )
        seen = 0

        def on_result(result) -> None:
            nonlocal seen
            seen += 1
            if bar.tasks[0].total is None or seen > bar.tasks[0].total:
                bar.update(task, total=None)
            bar.update(task, advance=1, description=f"{result.scan}: {result.status}")

        results = cook_proposal(
            config,
            repository,
            proposal,
            scans or None,
            recipe,
            force=force,
            cluster_address=cluster,
            progress=on_result,
        )
    failed = [r for r in results if r.status == "failed"]
    counts = {s: sum(r.status == s for r in results) for s in ("cooked", "skipped", "failed")}
    console.print(results_table(results, f"{repository} / {proposal} / {recipe}"))
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()), highlight=False)
    for r in failed:
        console.print(
            f"[red]failed[/red] {escape(f'{r.proposal}/{r.scan}: {r.reason}')}",
            soft_wrap=True,
            highlight=False,
        )
    if failed:
        raise typer.Exit(1)


def serve(
    config: _ConfigOpt = Path("basinflow.yaml"),
    name: Annotated[
        list[str] | None, typer.Option("--name", help="serve only these schedules")
    ] = None,
) -> None:
    """Serve the scheduled `watch` deployments named in the config (Ctrl-C stops)."""
    _quiet()
    from basinflow.flows.serve import serve as serve_

    Console().print(f"serving the schedules of {config} (Ctrl-C stops)", highlight=False)
    serve_(config, names=name or None)


def register(app: typer.Typer) -> None:
    """Add ``cook`` and ``serve`` to the ``basinflow`` app."""
    app.command("cook")(cook)
    app.command("serve")(serve)


__all__ = ["cook", "register", "results_table", "serve"]
