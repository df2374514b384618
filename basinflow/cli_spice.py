"""``basinflow spice ...``: manage spice from the shell.

Mounted by the main CLI with ``app.add_typer(cli_spice.app, name="spice")``. Every
command takes ``--store URL`` (or ``$BASINFLOW_SPICE_STORE``); :func:`_proposal_spice` turns
it into a :class:`~basinflow.spice.ProposalSpice` and is the one place to swap for
``--config FILE REPO PROPOSAL`` resolution. Values come from ``KEY=VALUE`` arguments
(parsed as JSON when they parse, else taken as strings) and/or ``--file`` (YAML or JSON
mapping; arguments win). Errors print one line, ``error: <message>``, and exit 1.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from basinflow.errors import Error, SpiceError
from basinflow.spice import ProposalSpice, SpiceDocument, import_spice

app = typer.Typer(
    name="spice",
    help="Seed, update, anchor and view versioned processing parameters (spice).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's help: paragraphs rewrapped, flags without <bool>
)

STORE = typer.Option(
    ...,
    "--store",
    "-s",
    envvar="BASINFLOW_SPICE_STORE",
    help="Spice store location (file://, s3://, memory:// URL or a local directory).",
)
ASSIGNMENTS = typer.Argument(None, help="Values as KEY=VALUE (VALUE parsed as JSON if it parses).")
FILE = typer.Option(None, "--file", "-f", help="YAML or JSON file with a mapping of values.")
DRY_RUN = typer.Option(False, "--dry-run", help="Check and show the document; write nothing.")
AUTHOR = typer.Option(None, "--author", help="Author recorded in the document.")
COMMENT = typer.Option(None, "--comment", "-m", help="Why this change was made.")
JSON_OUT = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _proposal_spice(store_url: str) -> ProposalSpice:
    """The spice a command works on. Swap this for config/repository resolution."""
    return ProposalSpice(store_url)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn user errors into one ``error:`` line and exit code 1; show warnings as one line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except Error as exc:
            _warn_lines(caught)
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    _warn_lines(caught)


def _warn_lines(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)


def _parse_value(text: str) -> Any:
    def _no_constants(name: str) -> None:
        raise ValueError(name)

    try:
        return json.loads(text, parse_constant=_no_constants)
    except ValueError:
        return text


def _values(assignments: list[str] | None, file: Path | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if file is not None:
        try:
            content = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise SpiceError(f"cannot read values file {str(file)!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise SpiceError(
                f"values file {str(file)!r} is not UTF-8 text; give a YAML or JSON file"
            ) from None
        except yaml.YAMLError as exc:
            from basinflow.errors import yaml_problem

            raise SpiceError(
                f"values file {str(file)!r} is not YAML/JSON: {yaml_problem(exc)}; fix the syntax"
            ) from None
        if content is None:
            content = {}
        if not isinstance(content, dict):
            raise SpiceError(
                f"values file {str(file)!r} must hold a mapping of field names to values, "
                f"got {type(content).__name__}; give one field per line (e.g. beamEnergy: 8048)"
            )
        values.update(content)
    for item in assignments or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise SpiceError(
                f"argument {item!r} is not KEY=VALUE; write it as KEY=VALUE (e.g. "
                "beamEnergy=8048.0)"
            )
        values[key.strip()] = _parse_value(text)
    return values


def _show_document(doc: SpiceDocument, dry_run: bool, existing: bool = False) -> None:
    console = Console()
    if dry_run:
        console.print("[yellow]dry run:[/] would write", soft_wrap=True)
        typer.echo(doc.to_json(indent=2))
        return
    what = "unchanged" if existing else "wrote"
    console.print(f"{what} [bold]{doc.label}[/] uuid {doc.uuid}", soft_wrap=True, highlight=False)


def _write(store, action, args, assignments, file, author, comment, dry_run) -> None:
    """The one path of seed, update and anchor: call ``ProposalSpice.<action>`` with the
    values from arguments and file, then show the document (new, existing or dry run)."""
    with _errors():
        spice = _proposal_spice(store)
        before = set(spice.store.documents()) if not dry_run else set()
        doc = getattr(spice, action)(
            *args,
            author=author,
            comment=comment,
            values=_values(assignments, file),
            dry_run=dry_run,
        )
        _show_document(doc, dry_run, existing=doc in before)


@app.command()
def seed(
    type: str = typer.Argument(..., help="Spice type (e.g. rsm)."),
    assignments: list[str] | None = ASSIGNMENTS,
    handle: str | None = typer.Option(None, "--handle", "-H", help="Handle (default: the type)."),
    anchor: str | None = typer.Option(None, "--anchor", "-a", help="First scan it applies to."),
    file: Path | None = FILE,
    author: str | None = AUTHOR,
    comment: str | None = COMMENT,
    dry_run: bool = DRY_RUN,
    store: str = STORE,
) -> None:
    """Create spice (idempotent: seeding what exists writes nothing)."""
    _write(store, "seed", (type, handle, anchor), assignments, file, author, comment, dry_run)


@app.command()
def update(
    target: str = typer.Argument(..., help="A scan key (viewpoint) or a document uuid."),
    assignments: list[str] | None = ASSIGNMENTS,
    handle: str | None = typer.Option(
        None, "--handle", "-H", help="Handle to update (required with a scan key)."
    ),
    file: Path | None = FILE,
    author: str | None = AUTHOR,
    comment: str | None = COMMENT,
    dry_run: bool = DRY_RUN,
    store: str = STORE,
) -> None:
    """Write a new revision (by uuid: also resolves a conflict)."""
    _write(store, "update", (target, handle), assignments, file, author, comment, dry_run)


@app.command("anchor")
def anchor_cmd(
    scan: str = typer.Argument(..., help="Scan from which the copy applies."),
    handle: str = typer.Argument(..., help="Handle to anchor."),
    assignments: list[str] | None = ASSIGNMENTS,
    file: Path | None = FILE,
    author: str | None = AUTHOR,
    comment: str | None = COMMENT,
    dry_run: bool = DRY_RUN,
    store: str = STORE,
) -> None:
    """Copy what HANDLE is at SCAN into a document anchored at SCAN (with changes)."""
    _write(store, "anchor", (scan, handle), assignments, file, author, comment, dry_run)


@app.command()
def view(
    scan: str = typer.Argument(..., help="Scan key."),
    handle: list[str] | None = typer.Option(None, "--handle", "-H", help="Only these handles."),
    as_json: bool = JSON_OUT,
    store: str = STORE,
) -> None:
    """Show the spice visible at SCAN."""
    with _errors():
        result = _proposal_spice(store).view(scan, handle or None)
        if as_json:
            typer.echo(json.dumps(result.rows(), indent=2))
            return
        console = Console()
        for row in result.rows():
            # one field per line: a row of every value fits no terminal
            table = Table(
                "field",
                "value",
                title=f"{row['handle']} at scan {scan}: {row['type']}"
                + ("" if row["typed"] else " (untyped)")
                + f" r{row['revision']}, anchor {row['anchor'] or '(first scan)'}, "
                f"{row['uuid'][:8]}",
            )
            for field, value in row["data"].items():
                table.add_row(field, json.dumps(value))
            console.print(table)


@app.command()
def history(
    handle: str = typer.Argument(..., help="Handle."),
    as_json: bool = JSON_OUT,
    store: str = STORE,
) -> None:
    """List every document of HANDLE (anchor, revision, parent, author...)."""
    with _errors():
        docs = _proposal_spice(store).history(handle)
        if as_json:
            typer.echo(json.dumps([d.to_dict() for d in docs], indent=2))
            return
        table = Table(title=f"history of spice {handle}")
        for col in ("anchor", "rev", "uuid", "created", "author", "changed"):
            table.add_column(col, overflow="fold", no_wrap=col in ("uuid", "created"))
        by_uuid = {d.uuid: d for d in docs}
        for d in docs:
            table.add_row(
                d.anchor or "(first)",
                str(d.revision),
                d.uuid[:8],
                (d.created or "")[:16].replace("T", " "),
                d.author or "",
                _changes(d, by_uuid.get(d.parent or "")) + (f" ({d.comment})" if d.comment else ""),
            )
        Console().print(table)


def _changes(doc: SpiceDocument, parent: SpiceDocument | None) -> str:
    """What a revision changed, as ``field=value``; a document without a parent is counted
    (its values are in ``spice view`` and ``--json``: a table of them fits no terminal)."""
    data = doc.to_dict()["data"]
    if parent is None:
        return f"{len(data)} fields"
    old = parent.to_dict()["data"]
    changed = [k for k in sorted(set(data) | set(old)) if data.get(k) != old.get(k)]
    return ", ".join(f"{k}={json.dumps(data.get(k))}" for k in changed) or "no change"


@app.command()
def ls(as_json: bool = JSON_OUT, store: str = STORE) -> None:
    """Anchor x handle table of the top revisions; conflicts are marked."""
    with _errors():
        spice = _proposal_spice(store)
        result = spice.ls()
        conflicts = spice.conflicts()
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "rows": result.rows(),
                        "conflicts": [
                            {
                                "handle": c.handle,
                                "anchor": c.anchor,
                                "revision": c.revision,
                                "uuids": c.uuids,
                            }
                            for c in conflicts
                        ],
                    },
                    indent=2,
                )
            )
            return
        console = Console()
        if not result.handles:
            console.print("(no spice)")
            return
        table = Table(title=f"spice in {spice.store.url}")
        table.add_column("anchor")
        for h in result.handles:
            table.add_column(h, overflow="fold")
        for row in result.rows():
            cells = [row[h] for h in result.handles]
            table.add_row(
                row["anchor"] or "(first scan)",
                *(f"[bold red]{c}[/]" if c.startswith("CONFLICT") else c for c in cells),
            )
        console.print(table)
        for c in conflicts:
            console.print(f"[bold red]conflict:[/] {c.message()}", soft_wrap=True, highlight=False)


@app.command()
def conflicts(store: str = STORE) -> None:
    """List unresolved conflicts (exit code 1 when there are any)."""
    with _errors():
        found = _proposal_spice(store).conflicts()
        for c in found:
            typer.echo(c.message())
        if found:
            raise typer.Exit(1)
        typer.echo("no conflicts")


@app.command("import")
def import_cmd(
    source: str = typer.Argument(..., help="nx5d spice: a directory or a JSON/YAML file (or URL)."),
    validate: bool = typer.Option(
        True, "--validate/--no-validate", help="Check registered types against their schema."
    ),
    dry_run: bool = DRY_RUN,
    store: str = STORE,
) -> None:
    """Import existing (nx5d kmc3/1a) spice documents into the store."""
    with _errors():
        spice = _proposal_spice(store)
        report = import_spice(source, spice.store, validate=validate, dry_run=dry_run)
        typer.echo(str(report))


def main() -> None:  # pragma: no cover - convenience entry for `python -m basinflow.cli_spice`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
