"""basinflow: list, cook and open beamline scans (spice, recipes, referrers).

Bad input is one line on stderr (``error: ...``) and exit code 1, never a traceback;
unexpected failures keep their traceback because they are bugs to report. Names are
checked (:mod:`basinflow.cli_checks`) before anything slow starts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from basinflow.errors import Error

app = typer.Typer(
    help=__doc__.split("\n\n")[0],
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's help: paragraphs rewrapped, flags without <bool>
    add_completion=False,
)
out = Console()

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="basinflow YAML config")]


def _repository(name_or_template: str, config: Path | None):
    """A repository from the config by name, or from a template given directly; its
    name and the directory its template starts in are checked."""
    from basinflow import cli_checks
    from basinflow.catalog.repository import Repository
    from basinflow.config import load_config
    from basinflow.errors import ConfigError

    if "{" not in name_or_template:
        if config is None:
            raise ConfigError(
                f"{name_or_template!r} is not a template (no {{proposal}}); to use a "
                "repository by name give its config: --config FILE (make demo writes "
                "demo-data/basinflow.yaml)"
            )
        return cli_checks.repository(load_config(config), name_or_template)
    repo = Repository(_as_url(name_or_template))
    cli_checks.check_template_root(repo)
    return repo


def _as_url(text: str) -> str:
    if "://" in text:
        return text
    path, hash_, frag = text.partition("#")
    return (
        "file://"
        + str(Path(path).absolute())
        + (text[-1:] if text.endswith("/") else "")
        + hash_
        + frag
    )


@app.command()
def samples(
    directory: Annotated[Path, typer.Argument(help="where to write the sample repository")],
    seed: int = 0,
    ntheta: Annotated[int, typer.Option(help="theta steps per scan")] = 11,
    scans: Annotated[int, typer.Option(help="scans per proposal (0 = default set)")] = 0,
    proposals: Annotated[int, typer.Option(help="proposals (with --scans)")] = 1,
    layouts: Annotated[
        str, typer.Option(help="comma-separated: nexus,groups,drepo,tiff")
    ] = "nexus,groups,drepo,tiff",
) -> None:
    """Write realistic sample scans with known ground truth (truth.json)."""
    from basinflow import samples as smp

    kw = {"seed": seed, "ntheta": ntheta, "layouts": tuple(layouts.split(","))}
    if scans:
        kw["proposals"] = {
            f"p{p + 1:02d}": tuple(f"{s + 1:04d}" for s in range(scans)) for p in range(proposals)
        }
    spec = smp.SampleSpec(**kw)
    info = smp.generate(directory, spec)
    out.print(
        f"wrote {sum(len(s) for s in info['proposals'].values())} scans x "
        f"{info['nframes']} frames to {directory}"
    )
    for name, t in info["templates"].items():
        out.print(f"  {name:7s} {_as_url(str(directory))}/{t}")


@app.command()
def ls(
    repository: Annotated[str, typer.Argument(help="repository name (with --config) or template")],
    proposal: Annotated[str | None, typer.Argument(help="list this proposal's scans")] = None,
    config: ConfigOpt = None,
    # after ``config``: callers passing (repository, proposal, config) positionally keep working
    scan: Annotated[
        str | None, typer.Argument(help="only this scan (exit 1 if unreadable)")
    ] = None,
) -> None:
    """List proposals, or a proposal's scans with summary columns and a status column.

    Every scan is a row: an unreadable one says so (its reason is printed below the table)
    and the listing goes on; asking for one scan that is unreadable is an error."""
    from basinflow import cli_checks
    from basinflow.report import relative

    repo = _repository(repository, config)
    if proposal is None:
        out.print(
            f"[bold]{escape(repo.name)}[/bold] {escape(relative(repo.url))}",
            highlight=False,
            soft_wrap=True,
        )
        t = Table("proposal", "handle")
        for h, k in sorted(repo._handles.items(), key=lambda kv: repo.keys().index(kv[1])):
            t.add_row(k, h)
        out.print(t)
        return
    prop = cli_checks.proposal(repo, proposal)
    title = escape(f"{repo.name} / {prop.key}")
    t = Table("scan", "status", "type", "frames", "axes", "detector", title=title)
    reasons: list[str] = []
    for key in [scan] if scan is not None else prop.scans():
        try:
            s = prop[key].summary
        except Error as exc:
            if scan is not None:
                raise
            # a listing is total: an unreadable scan is a row, not the end of the table
            t.add_row(escape(key), "[red]unreadable[/red]")
            reasons.append(f"{key}: {' '.join(str(exc).split())}")
            continue
        axes = ", ".join(f"{a} {lo:.4g}..{hi:.4g}" for a, (lo, hi) in s["axes"].items())
        detector = s["detector"]
        t.add_row(
            key,
            "ok",
            escape(s["type"]),
            str(s["frames"]),
            axes,
            f"{'x'.join(str(d) for d in detector)} {s['dtype']}" if detector else "counters",
        )
    out.print(t)
    for line in reasons:
        out.print(f"unreadable {escape(line)}", highlight=False, soft_wrap=True)


@app.command()
def demo(directory: Annotated[Path, typer.Argument()] = Path("demo-data")) -> None:
    """The whole job on an embedded default: sample data, spice, cook, referrers."""
    from basinflow.demo import run_demo

    run_demo(directory, out, ls)


def _register_subapps() -> None:
    """Commands that live beside their packages (spice, referrers, flows)."""
    import importlib

    for module in ("basinflow.cli_spice", "basinflow.cli_referrer", "basinflow.cli_flows"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a part not built in this checkout
            if exc.name != module:
                raise
            continue
        if hasattr(mod, "register"):
            mod.register(app)
        else:
            app.add_typer(mod.app, name="spice", help="Seed, update, view and import spice.")


_register_subapps()


def _error_line(text: str) -> None:
    # the message is data (URLs, keys, templates): never rich markup, always one line
    line = " ".join(str(text).split())
    Console(stderr=True).print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    try:
        code = app(args=argv, prog_name="basinflow", standalone_mode=False)
    except Error as exc:
        _error_line(str(exc))
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt, EOFError):  # as click's standalone mode does
        _error_line("aborted")
        sys.exit(1)
    except Exception as exc:
        if isinstance(exc, BrokenPipeError):  # `basinflow ls ... | head`
            sys.exit(1)
        # usage errors (a missing argument, an unknown option, ...) of click or of the click
        # typer vendors: one line too; anything else is a bug and keeps its traceback
        exit_code = getattr(exc, "exit_code", None)
        if not (hasattr(exc, "format_message") and isinstance(exit_code, int)):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # `basinflow spice`: show its help
            exc.show()
            sys.exit(exit_code)
        ctx = getattr(exc, "ctx", None)
        where = getattr(ctx, "command_path", None) or "basinflow"
        _error_line(f"{exc.format_message()} (see '{where} --help')")
        sys.exit(exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
