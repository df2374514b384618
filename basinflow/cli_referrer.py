"""``basinflow inspect REF`` and ``basinflow export REF OUT``; wired in by :func:`register`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from basinflow.errors import BasinError


def inspect(
    ref: Annotated[str, typer.Argument(help="referrer path or URL")],
    trusted: Annotated[list[str], typer.Option("--trusted", help="extra trusted root")] = [],  # noqa: B006
    trusted_host: Annotated[list[str], typer.Option("--trusted-host")] = [],  # noqa: B006
) -> None:
    """Show a referrer's basins, which location resolved, availability, pins, provenance."""
    from rich.console import Console
    from rich.table import Table

    from basinflow.storage.referrer.read import _as_url, read_meta, resolve
    from basinflow.storage.referrer.trust import Trust

    url = _as_url(ref)
    meta = read_meta(url)
    trust = Trust.build(trusted, trusted_host, referrer_url=url)
    table = Table(title=f"basins of {url}")
    for col in ("name", "type", "layout", "mapping", "status", "location / tried", "pin"):
        table.add_column(col)
    for b in sorted(meta.basins, key=lambda b: b.priority):
        try:
            res = resolve(b, meta, trust)
            status, where = (
                res.status,
                res.location or "; ".join(f"{loc} ({w})" for loc, w in res.tried),
            )
        except BasinError as exc:
            status, where = "error", str(exc)
        pin = ", ".join(f"{k}={v}" for k, v in (b.pin or {}).items())
        table.add_row(b.name, b.type, b.layout, b.mapping, status, where, pin)
    console = Console()
    console.print(table)
    prov = {k: v for k, v in meta.provenance.items() if k not in ("spice", "source_provenance")}
    console.print_json(json.dumps(prov, default=str))
    for doc in meta.provenance.get("spice", []):
        console.print(f"spice {doc.get('handle')} r{doc.get('revision')} {doc.get('uuid')}")


def export(
    ref: Annotated[str, typer.Argument(help="referrer path or URL")],
    out: Annotated[str, typer.Argument(help="output path or URL")],
    trusted: Annotated[list[str], typer.Option("--trusted", help="extra trusted root")] = [],  # noqa: B006
    trusted_host: Annotated[list[str], typer.Option("--trusted-host")] = [],  # noqa: B006
) -> None:
    """Write a self-contained copy of REF (every basin resolved) to OUT."""
    from basinflow.storage.referrer.export import export as _export
    from basinflow.storage.referrer.read import _as_url

    n = _export(ref, _as_url(out), trusted=trusted, trusted_hosts=trusted_host)
    typer.echo(f"wrote {out} ({n} compressed bytes of chunked data)")


def register(app: typer.Typer) -> None:
    """Add ``inspect`` and ``export`` to the main CLI app."""
    app.command("inspect")(inspect)
    app.command("export")(export)


__all__ = ["export", "inspect", "register"]
