"""How a cook result reads for a person: sizes in kB/MB, one line per scan, local paths
relative to the working directory.

One module for the terminal (:mod:`basinflow.cli_flows`) and the Prefect UI
(:mod:`basinflow.flows.artifacts`, the run logs), so a scan reads the same in both.
Nothing here imports Prefect.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def size(n: float) -> str:
    """Bytes in decimal units, as a person reads them (``1.2 MB``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def relative(url: str | None) -> str:
    """A local URL or absolute path as a path relative to the working directory when it
    is below it or close by (short, copyable); anything else unchanged."""
    if not url:
        return ""
    if url.startswith("file://"):
        path = url[len("file://") :]
    elif url.startswith("/"):
        path = url
    else:
        return url
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("../..") else rel


def whole(url: str | None) -> str:
    """A URL as it is (for the UI and logs, read far from the working directory)."""
    return url or ""


def output_of(result: Any, where: Callable[[str | None], str] = relative) -> str:
    """What a result row shows as its output: none for a failed scan (nothing was
    written there), else the output (``where`` shortens it)."""
    return "" if result.status == "failed" else where(result.output)


def scan_line(result: Any, where: Callable[[str | None], str] = relative) -> str:
    """One plain line per scan: status, seconds, bytes, then output or reason."""
    what = result.reason if result.status == "failed" else output_of(result, where) or result.reason
    if result.status == "skipped":
        return f"{result.proposal}/{result.scan} skipped ({result.reason}): {what}"
    return (
        f"{result.proposal}/{result.scan} {result.status} in {result.seconds:.1f} s, read "
        f"{size(result.bytes_read)}, wrote {size(result.bytes_written)}: {what}"
    )


__all__ = ["output_of", "relative", "scan_line", "size", "whole"]
