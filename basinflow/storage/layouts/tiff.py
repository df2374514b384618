"""A directory per scan: ``manifest.dat`` (tab-separated, ``%`` header) + one TIFF a frame.

The last ``%`` header line names the columns; a column named ``file`` (option
``file_column``) names each frame's TIFF relative to the directory.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from basinflow.errors import Error, LayoutError, ManifestError, NotFound
from basinflow.storage import fs, retry
from basinflow.storage.layouts.base import Layout, ScanContent

MANIFEST = "manifest.dat"


MANIFEST_HINT = (
    "fix the manifest: '%' comment lines, then a '%' header of tab-separated column names "
    "including 'file', then one tab-separated row per frame"
)


def _bad(message: str) -> ManifestError:
    return ManifestError(f"{message}; {MANIFEST_HINT}")


def parse_manifest(
    text: str, where: str = MANIFEST, file_column: str = "file"
) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """Columns, frame file names and header comment lines of a manifest."""
    header: list[str] = []
    rows: list[list[str]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("%"):
            header.append(line[1:].strip())
            continue
        rows.append(line.rstrip("\n").split("\t"))
        if not header:
            raise _bad(f"{where}: line {lineno} comes before the '%' column header")
    if not header:
        raise _bad(f"{where}: no '%' header line naming the columns")
    names = [n.strip() for n in header[-1].split("\t")]
    if file_column not in names:
        raise _bad(
            f"{where}: the column header {names} has no {file_column!r} column naming the TIFFs"
        )
    if len(set(names)) != len(names) or any(not n for n in names):
        raise _bad(f"{where}: column names {names} are empty or repeated")
    for i, row in enumerate(rows):
        if len(row) != len(names):
            raise _bad(
                f"{where}: data row {i + 1} has {len(row)} fields, the header has {len(names)}"
            )
    files = [r[names.index(file_column)] for r in rows]
    for f in files:
        if "/" in f or f.startswith(".") or not f:
            raise _bad(f"{where}: frame file {f!r} must be a plain name in the scan directory")
    columns: dict[str, np.ndarray] = {}
    for j, name in enumerate(names):
        if name == file_column:
            continue
        try:
            columns[name] = np.array([float(r[j]) for r in rows])
        except ValueError as exc:
            raise _bad(f"{where}: column {name!r} is not numeric ({exc})") from None
    return columns, files, header[:-1]


def _unreadable(url: str, exc: BaseException) -> LayoutError:
    return LayoutError(
        f"{url}: not a readable TIFF ({exc}); replace the frame or leave the scan out"
    )


@dataclass
class TiffFrames:
    """Lazy frame stack over one TIFF per frame (picklable)."""

    urls: list[str]
    shape: tuple[int, ...]
    dtype: np.dtype
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    ndim: int = 3

    @property
    def storage_chunks(self) -> tuple[int, ...]:
        return (1, *self.shape[1:])

    def __getitem__(self, key):
        import tifffile
        from dask.array.slicing import normalize_index

        # dask passes an integer for one frame (``frames[3]``) and may pass Ellipsis or
        # index arrays: make every key a tuple of one entry per axis, then read whole frames
        key = normalize_index(key if isinstance(key, tuple) else (key,), self.shape)
        picked = np.arange(self.shape[0])[key[0]]
        sel = [int(i) for i in np.atleast_1d(picked)]
        out = np.empty((len(sel), *self.shape[1:]), dtype=self.dtype)
        fsys, _ = fs.url_to_fs(self.urls[0], self.storage_options)
        paths = [fsys._strip_protocol(self.urls[i]) for i in sel]
        blobs = fsys.cat(paths, on_error="return") if paths else {}
        for j, (i, path) in enumerate(zip(sel, paths, strict=True)):
            blob = blobs.get(path, FileNotFoundError(path))
            if isinstance(blob, Exception):
                raise fs.translate_errors(self.urls[i], blob)
            try:
                img = tifffile.imread(io.BytesIO(blob))
            except Exception as exc:  # the bytes are here: what fails is their content
                raise _unreadable(self.urls[i], exc) from exc
            if img.shape != self.shape[1:]:
                raise LayoutError(
                    f"{self.urls[i]}: frame shape {img.shape}, expected {self.shape[1:]}"
                )
            out[j] = img
        out = out[(slice(None), *key[1:])]
        return out[0] if picked.ndim == 0 else out


class TiffLayout(Layout):
    name = "tiff"
    supports_directories = True

    def read(
        self, url: str, fragment: str | None, storage_options: Mapping[str, Any] | None = None
    ) -> ScanContent:
        import tifffile

        base = url.rstrip("/")
        manifest = self.options.get("manifest", MANIFEST)
        if not isinstance(manifest, str) or not manifest or "/" in manifest or manifest[0] == ".":
            # a referrer's basin carries these options too: never a path out of the scan
            raise LayoutError(
                f"{base}: layout option manifest {manifest!r} must be a plain file name in "
                "the scan directory (e.g. manifest.dat)"
            )
        manifest_url = f"{base}/{manifest}"
        fsys, path = fs.url_to_fs(manifest_url, storage_options)
        try:
            text = fsys.cat_file(path).decode("utf-8", "replace")
        except FileNotFoundError:
            raise NotFound(
                f"{manifest_url!r} does not exist; is {base!r} a scan directory?"
            ) from None
        except Exception as exc:
            raise fs.translate_errors(manifest_url, exc) from exc
        columns, files, comments = parse_manifest(
            text, manifest_url, self.options.get("file_column", "file")
        )
        if not files:
            raise LayoutError(
                f"{manifest_url}: the scan has zero frames; nothing to read (an aborted scan? "
                "wait until it is written, or leave it out)"
            )
        urls = [f"{base}/{f}" for f in files]
        fsys0, p0 = fs.url_to_fs(urls[0], storage_options)
        try:
            with fsys0.open(p0, "rb") as f, tifffile.TiffFile(f) as tif:
                page = tif.pages[0]
                shape, dtype = tuple(page.shape), page.dtype
        except FileNotFoundError:
            raise NotFound(f"{urls[0]!r} listed in {manifest_url} does not exist") from None
        except Exception as exc:
            if isinstance(exc, (Error, OSError)) or retry.transient_cause(exc) is not None:
                # storage, not content: a refused redirect, a dropped connection or
                # exhausted retries keep their own class (the flows retry transient ones)
                raise fs.translate_errors(urls[0], exc) from exc
            raise _unreadable(urls[0], exc) from exc
        frames = TiffFrames(urls, (len(urls), *shape), np.dtype(dtype), dict(storage_options or {}))
        monitors = self.monitors()
        roles = {n: "monitor" if n in monitors else "positioner" for n in columns}
        attrs = {"title": comments[0] if comments else "", "layout": self.name}
        return ScanContent(base + "/", frames, columns, roles, attrs, pin_url=manifest_url)
