"""``basinflow cook`` and ``basinflow serve``: the flows from the command line.

Prefect is imported only when a command runs (the CLI stays quick), after the offline
defaults of :func:`basinflow.flows.runtime.configure_environment` are in place.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from basinflow.report import output_of, relative, scan_line, size

_ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="basinflow YAML config")]
_Verbose = Annotated[
    bool, typer.Option("--verbose/--no-verbose", "-v", help="show logs and tracebacks")
]

#: The terminal gets Prefect's console output (tracebacks included) only with --verbose;
#: the run's log in the Prefect API (the UI) gets every scan's line either way.
QUIET_ENV = {
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
    "DASK_LOGGING__DISTRIBUTED": "error",
}


def prefect_home(config: Path) -> Path:
    """Where runs are recorded without ``PREFECT_API_URL``: ``.prefect`` beside the config.

    One rule for the demo (``demo-data/.prefect``), the CLI and the UI command, so the runs a
    user makes are the runs the UI shows; ``PREFECT_HOME`` in the environment wins.
    """
    return Path(config).absolute().parent / ".prefect"


def quiet(config: Path | None = None, *, verbose: bool = False) -> None:
    """Prefect offline, its runs beside ``config``, logs to the API; terminal quiet unless
    ``verbose``. Call before Prefect is imported."""
    import os

    from basinflow.flows.runtime import configure_environment

    configure_environment(home=prefect_home(config) if config is not None else None)
    for key, value in ({} if verbose else QUIET_ENV).items():
        os.environ.setdefault(key, value)
    level = logging.INFO if verbose else logging.ERROR
    for name in ("distributed", "prefect_dask"):
        logging.getLogger(name).setLevel(level)


def results_table(results: list, title: str | None = None) -> Table:
    """One row per scan; a failed scan names no output (its reason is printed below)."""
    t = Table(title=title, expand=False)
    t.add_column("scan", no_wrap=True)
    t.add_column("status", no_wrap=True)
    t.add_column("s", justify="right", no_wrap=True)
    t.add_column("read", justify="right", no_wrap=True)
    t.add_column("written", justify="right", no_wrap=True)
    t.add_column("output", overflow="fold")
    colour = {"cooked": "green", "skipped": "cyan", "failed": "red"}
    for r in results:
        t.add_row(
            escape(r.scan),
            f"[{colour.get(r.status, 'white')}]{r.status}[/]",
            f"{r.seconds:.1f}",
            size(r.bytes_read),
            size(r.bytes_written),
            escape(output_of(r) or ("-" if r.status == "failed" else r.reason)),
        )
    return t


def failure_lines(console: Console, results: list) -> None:
    """One line per failed scan with its reason."""
    for r in results:
        if r.status == "failed":
            console.print(
                f"[red]failed[/red] {escape(f'{r.proposal}/{r.scan}: {r.reason}')}",
                soft_wrap=True,
                highlight=False,
            )


def cook(
    repository: Annotated[str, typer.Argument(help="repository name in the config")],
    proposal: Annotated[str, typer.Argument(help="proposal key")],
    scans: Annotated[list[str] | None, typer.Argument(help="scan keys (default: all)")] = None,
    config: _ConfigOpt = Path("basinflow.yaml"),
    recipe: Annotated[str, typer.Option("--recipe", "-r", help="recipe name")] = "rsm",
    force: Annotated[
        bool, typer.Option("--force/--no-force", help="recook up-to-date outputs")
    ] = False,
    cluster: Annotated[
        str | None, typer.Option("--cluster", help="Dask scheduler address (default: config)")
    ] = None,
    verbose: _Verbose = False,
) -> None:
    """Cook a proposal's scans on Dask under Prefect; exit 1 if any scan failed.

    Names are checked first (in well under a second, before Dask or Prefect start). Runs are
    recorded in the Prefect server at PREFECT_API_URL when it is set, else in .prefect beside
    the config, where `basinflow ui --config FILE` shows them.
    """
    import basinflow.cli_checks as cli_checks
    from basinflow.config import load_config

    cfg = load_config(config)
    repo = cli_checks.cook_arguments(cfg, repository, proposal, scans or [], recipe)
    total = len(scans) if scans else len(repo[proposal].keys())
    quiet(config, verbose=verbose)
    from basinflow.flows.run import cook_proposal

    console = Console()
    title = f"{repository} / {proposal} / {recipe}"
    with progress(console, title, total) as on_result:
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
    counts = {s: sum(r.status == s for r in results) for s in ("cooked", "skipped", "failed")}
    if console.is_terminal:
        console.print(results_table(results, title))
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()), highlight=False)
    failure_lines(console, results)
    if counts["failed"]:
        raise typer.Exit(1)


@contextlib.contextmanager
def progress(console: Console, title: str, total: int):
    """A rich bar that advances per scan on a terminal; one plain line per scan otherwise."""
    if not console.is_terminal:
        console.print(f"cook {title}: {total} scans", highlight=False)

        def line(result) -> None:
            console.print(escape(scan_line(result)), highlight=False)  # wrapped at the width

        yield line
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(bar_width=None),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(escape(f"cook {title}"), total=total)

        def advance(result) -> None:
            bar.update(task, advance=1, description=escape(f"{result.scan}: {result.status}"))

        yield advance


def serve(
    config: _ConfigOpt = Path("basinflow.yaml"),
    name: Annotated[
        list[str] | None, typer.Option("--name", help="serve only these schedules")
    ] = None,
) -> None:
    """Serve the scheduled `watch` deployments named in the config (Ctrl-C stops)."""
    quiet(config)
    from basinflow.flows.serve import serve as serve_

    Console().print(f"serving the schedules of {config} (Ctrl-C stops)", highlight=False)
    serve_(config, names=name or None)


def ui(
    config: _ConfigOpt = Path("basinflow.yaml"),
    port: Annotated[
        int | None, typer.Option(help="port (default: PREFECT_SERVER_API_PORT, else 4200)")
    ] = None,
) -> None:
    """Start the Prefect UI on the runs recorded beside the config (Ctrl-C stops).

    Runs `prefect server start` on 127.0.0.1 with analytics off and PREFECT_HOME set to the
    .prefect directory that `basinflow cook` and `basinflow demo` record into.
    """
    import os
    import subprocess
    import sys

    from basinflow.config import load_config

    load_config(config)  # one line if it is not there
    quiet(config)
    # the UI asks its API at PREFECT_UI_API_URL, which `--port` alone does not change
    port = port or int(os.environ.get("PREFECT_SERVER_API_PORT") or 4200)
    os.environ["PREFECT_SERVER_API_PORT"] = str(port)
    os.environ.setdefault("PREFECT_UI_API_URL", f"http://127.0.0.1:{port}/api")
    exe = Path(sys.executable).with_name("prefect")
    cmd = [str(exe), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    cmd.append("--analytics-off")
    home = os.environ["PREFECT_HOME"]
    Console().print(f"runs in {relative('file://' + home)}; Ctrl-C stops", highlight=False)
    try:
        code = subprocess.call(cmd, env=os.environ)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``cook``, ``serve`` and ``ui`` to the ``basinflow`` app."""
    app.command("cook")(cook)
    app.command("serve")(serve)
    app.command("ui")(ui)


__all__ = ["cook", "prefect_home", "quiet", "register", "results_table", "serve", "ui"]
