"""What a flow run shows in the Prefect UI: per-scan log lines, results table, progress,
quicklook gallery.

Read as a person does in the UI: sizes in kB/MB and seconds rounded, a failed scan names no
output (nothing was written there), a quicklook per cooked scan labelled by scan (the panels
by delay). Keys: a run that cooked or failed something writes the keyed table, so the
artifact list shows the last cook; a run that only skipped writes its table unkeyed (on its
own run page), never hiding the cook that made the outputs.

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

from basinflow.report import output_of, scan_line, size, whole

_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)
COLUMNS = ("scan", "status", "reason", "seconds", "read", "written", "output")
#: At most this many scans get a quicklook in a run's gallery (each is ~50-150 kB).
GALLERY = 8


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
    """Table rows in :data:`COLUMNS` order; the reason before the long output path, so the
    UI's narrow columns cut the path, not the reason."""
    return [
        {
            "scan": r.scan,
            "status": r.status,
            "reason": scrub(r.reason) or "",
            "seconds": f"{float(r.seconds):.1f} s",
            "read": size(r.bytes_read),
            "written": size(r.bytes_written),
            "output": scrub(output_of(r, whole)),
        }
        for r in results
    ]


def summary(results: list[Any]) -> str:
    """``"2 cooked, 1 failed"``: counts per status."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no scans"


def results_table(results: list[Any], *, key: str, title: str) -> UUID:
    """The per-scan table; keyed only when the run cooked or failed something."""
    made = any(r.status != "skipped" for r in results)
    return create_table_artifact(
        rows(results),
        key=key if made else None,
        description=f"{title}: {summary(results)}",
    )


def log_result(logger: Any, result: Any) -> None:
    """One line per scan in the run's log (the UI's Logs tab); failures at ERROR."""
    line = scrub(scan_line(result, whole))
    if result.status == "failed":
        logger.error(line)
    else:
        logger.info(line)


def progress(key: str, title: str) -> UUID:
    return create_progress_artifact(0.0, key=key, description=title)


def set_progress(artifact_id: UUID | str | None, done: int, total: int) -> None:
    if artifact_id is None or total <= 0:
        return
    update_progress_artifact(UUID(str(artifact_id)), 100.0 * done / total)


def quicklook(
    images: list[tuple[str, str | None, str]], *, key: str, title: str, total: int | None = None
) -> UUID:
    """A gallery: one section per ``(scan, data URI or None, output URL)``, headed by the
    scan (each image's panels are titled by delay)."""
    parts = [f"# {title}"]
    if total is not None and total > len(images):
        parts.append(f"the first {len(images)} of {total} cooked scans")
    for scan, uri, output in images:
        parts.append(f"## scan {scan}")
        if uri:
            parts.append(f"![quicklook of scan {scan}]({uri})")
        else:
            parts.append("(no quicklook image)")
        parts.append(f"output: `{scrub(output)}`")
    return create_markdown_artifact("\n\n".join(parts), key=key, description=title)


__all__ = [
    "COLUMNS",
    "GALLERY",
    "artifact_key",
    "log_result",
    "progress",
    "quicklook",
    "results_table",
    "rows",
    "scrub",
    "summary",
]
