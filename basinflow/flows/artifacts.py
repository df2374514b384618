"""What a flow run shows in the Prefect UI: results table, progress, quicklook.

Nothing here writes credentials: URLs lose any ``user:password@`` part and storage options
are never shown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)
COLUMNS = ("scan", "status", "output", "seconds", "bytes_read", "bytes_written", "reason")


def scrub(text: Any) -> Any:
    """``text`` with ``user:password@`` removed from URLs in it."""
    if not isinstance(text, str):
        return text
    return _USERINFO.sub(r"\g<scheme>", text)


def artifact_key(*parts: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes) from ``parts``."""
    key = "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts if p)
    return key[:100] or "basinflow"


def rows(results: Iterable[Any]) -> list[dict[str, Any]]:
    return [
        {
            "scan": r.scan,
            "status": r.status,
            "output": scrub(r.output) or "",
            "seconds": round(float(r.seconds), 3),
            "bytes_read": int(r.bytes_read),
            "bytes_written": int(r.bytes_written),
            "reason": scrub(r.reason) or "",
        }
        for r in results
    ]


def results_table(results: list[Any], *, key: str, title: str) -> UUID:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no scans"
    return create_table_artifact(rows(results), key=key, description=f"{title}: {summary}")


def progress(key: str, title: str) -> UUID:
    return create_progress_artifact(0.0, key=key, description=title)


def set_progress(artifact_id: UUID | str | None, done: int, total: int) -> None:
    if artifact_id is None or total <= 0:
        return
    update_progress_artifact(UUID(str(artifact_id)), 100.0 * done / total)


def quicklook(images: list[tuple[str, str | None, str]], *, key: str, title: str) -> UUID:
    """Markdown with one section per ``(scan, data URI or None, output URL)``."""
    parts = [f"# {title}"]
    for scan, uri, output in images:
        parts.append(f"## scan {scan}")
        if uri:
            parts.append(f"![quicklook of scan {scan}]({uri})")
        else:
            parts.append("(no quicklook image)")
        parts.append(f"output: `{scrub(output)}`")
    return create_markdown_artifact("\n\n".join(parts), key=key, description=title)


__all__ = ["COLUMNS", "artifact_key", "progress", "quicklook", "results_table", "rows", "scrub"]
