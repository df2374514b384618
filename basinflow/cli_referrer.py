"""``basinflow inspect REF`` and ``basinflow export REF OUT``; wired in by :func:`register`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from basinflow.errors import BasinError

_Trusted = Annotated[list[str], typer.Option("--trusted", help="extra trusted root")]
_TrustedHost = Annotated[list[str], typer.Option("--trusted-host")]
_Config = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="trust the raw and output roots of its repositories"),
]


def _trusted(trusted: list[str], config: Path | None) -> list[Any]:
    """Explicit roots plus every configured repository (its roots and storage options)."""
    if config is None:
        return list(trusted)
    from basinflow.config import load_config, open_repository

    cfg = load_config(config)
    return [*trusted, *(open_repository(rc, n) for n, rc in cfg.repositories.items())]


def inspect(
    ref: Annotated[str, typer.Argument(help="referrer path or URL")],
    trusted: _Trusted = [],  # noqa: B006
    trusted_host: _TrustedHost = [],  # noqa: B006
    config: _Config = None,
) -> None:
    """Show a referrer's basins, which location resolved, availability, pins, provenance."""
    from rich.console import Console
    from rich.json import JSON
    from rich.table import Table
    from rich.text import Text

    from basinflow.storage.referrer.load import resolve
    from basinflow.storage.referrer.meta import read_meta
    from basinflow.storage.referrer.open import as_url
    from basinflow.storage.referrer.trust import Trust

    url = as_url(ref)
    meta = read_meta(url)
    trust = Trust.build(_trusted(trusted, config), trusted_host, referrer_url=url)
    from basinflow.report import relative

    # every string below comes from the referrer (or names it): shown as text, never
    # parsed as rich markup ("[/bold]" in a provenance value would crash the table)
    table = Table(title=Text(f"basins of {relative(url)}"))
    for col in ("name", "type", "layout", "mapping", "status", "location / tried", "pin"):
        table.add_column(col, overflow="fold")  # paths and pins whole, folded at the width
    for b in sorted(meta.basins, key=lambda b: b.priority):
        try:
            res = resolve(b, meta, trust)
            status, where = (
                res.status,
                relative(res.location) if res.location else res.tried_text,
            )
        except BasinError as exc:
            status, where = "error", str(exc)
        pin = "\n".join(f"{k}={v}" for k, v in (b.pin or {}).items())
        table.add_row(
            *(Text(str(c)) for c in (b.name, b.type, b.layout, b.mapping, status, where, pin))
        )
    console = Console()
    console.print(table)
    prov = {k: v for k, v in meta.provenance.items() if k not in ("spice", "source_provenance")}
    if isinstance(prov.get("inputs"), dict):
        prov["inputs"] = {relative(k): v for k, v in prov["inputs"].items()}
    console.print(JSON(json.dumps(prov, default=str)))  # wrapped at the width, not cut
    for doc in meta.provenance.get("spice", []):
        if isinstance(doc, dict):
            line = f"spice {doc.get('handle')} r{doc.get('revision')} {doc.get('uuid')}"
            console.print(Text(line))


def export(
    ref: Annotated[str, typer.Argument(help="referrer path or URL")],
    out: Annotated[str, typer.Argument(help="output path or URL")],
    trusted: _Trusted = [],  # noqa: B006
    trusted_host: _TrustedHost = [],  # noqa: B006
    config: _Config = None,
) -> None:
    """Write a self-contained copy of REF (every basin resolved) to OUT."""
    from basinflow.storage.referrer.export import export as _export
    from basinflow.storage.referrer.open import as_url

    n = _export(ref, as_url(out), trusted=_trusted(trusted, config), trusted_hosts=trusted_host)
    typer.echo(f"wrote {out} ({n} compressed bytes of chunked data)")


def register(app: typer.Typer) -> None:
    """Add ``inspect`` and ``export`` to the main CLI app."""
    app.command("inspect")(inspect)
    app.command("export")(export)


__all__ = ["export", "inspect", "register"]
