"""The bad-input corpus: one table of cases across catalog, spice, recipes, referrers,
config, CLI and cook outputs.

Every case is a named *setup* that breaks something in a fresh copy of a small site (raw
scans, seeded spice, one cooked referrer) and returns the action to try, plus the error
class and a regular expression its message must match (the URL, key or field it is about,
and what to do). One runner checks every case the same way:

* the error is exactly that :class:`basinflow.Error` subclass (for ``bf.cook``, which
  reports bad input as a failed result, the result names the class), its message matches,
  is one line and gives advice;
* the CLI cases exit non-zero with exactly one ``error:`` line on stderr, no traceback;
* nothing was written or changed: the whole tree of the case (which is also the working
  directory and ``tempfile``'s directory) is snapshotted after the setup and after the
  action, every file by path, size, ``mtime_ns`` and sha256, every directory by path.

Catalog cases over HTTP and S3 live in ``tests/catalog/test_bad_input.py``; this corpus
covers every package through the local file system.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import xarray as xr

import basinflow as bf
from basinflow import errors, samples
from basinflow.cli import main as cli_main
from basinflow.config import load_config
from basinflow.spice import FsspecSpiceStore, SpiceDocument
from basinflow.storage.referrer.basins import Basin
from basinflow.storage.referrer.write import write_referrer
from basinflow.tasks.cooking import cook_referrer
from basinflow.tasks.results import CookResult

SPEC = samples.SampleSpec(
    proposals={"p1": ("1", "2")}, ntheta=3, layouts=("nexus",), detector_shape=(20, 30)
)
RSM = {**samples.rsm_spice((20, 30)), "imageCenter": [10.0, 15.0], "qsize": [4, 4, 4]}
# words a message uses when it tells the user what to do (verbs that also occur in plain
# descriptions, like "cannot write" or "entry-point", count only in their advising form)
HINT = re.compile(
    r"\b(check|use|fix|copy|call|put|rename|wait|leave|regenerate|remove|pass|give|seed|"
    r"update|re-cook|add|move|change|register|upgrade|see|keep|install|choose|anchor at|"
    r"point --config|point the|create it|set it|write it|write fields|open with|list the)\b"
)
TEMP_NAMES = re.compile(r"(\.partial|\.tmp|~)$|^\.|basinflow-")


# --- the site every case starts from ------------------------------------------------------------
class World:
    """A fresh copy of the site: ``raw/p1/{1,2}.h5`` (NeXus), spice ``rsm`` seeded for
    ``p1``, and ``out/p1/1/rsm.h5``, a referrer cooked from ``p1/1``."""

    def __init__(self, root: Path):
        self.root = root
        self.url = root.as_uri()
        self.raw = f"{self.url}/raw/{{proposal}}/{{scan}}.h5#entry"
        self.ref = root / "out/p1/1/rsm.h5"
        self.ref_url = self.ref.as_uri()

    def repo(self, **kw: Any) -> bf.Repository:
        options = {
            "spice": f"{self.url}/spice/{{proposal}}",
            "output": f"{self.url}/out/{{proposal}}/{{scan}}/{{recipe}}.h5",
            **kw,
        }
        return bf.Repository(self.raw, **options)

    def scan(self, key: str = "1", **kw: Any):
        return self.repo(**kw)["p1"][key]

    def write(self, rel: str, data: bytes | str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(data)
        else:
            path.write_bytes(data)
        return path

    def raw_variant(self, name: str, edit: Callable[[h5py.File], None]) -> None:
        """``raw/p1/<name>.h5``: a copy of scan 1 changed by ``edit``."""
        path = self.root / f"raw/p1/{name}.h5"
        shutil.copy(self.root / "raw/p1/1.h5", path)
        with h5py.File(path, "a") as f:
            edit(f)

    def config(self, body: str, name: str = "basinflow.yaml") -> Path:
        return self.write(name, body)

    def spice_file(self, name: str, content: Any) -> None:
        text = content if isinstance(content, str | bytes) else json.dumps(content)
        self.write(f"spice/p1/{name}", text)

    def seeded(self) -> SpiceDocument:
        (doc,) = FsspecSpiceStore(f"{self.url}/spice/p1").documents()
        return doc


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    samples.generate(root / "src", SPEC)
    shutil.move(root / "src/nexus", root / "raw")
    shutil.rmtree(root / "src")
    w = World(root)
    w.repo()["p1"].spice.seed("rsm", **RSM)
    result = bf.cook(w.scan("1"), "rsm")
    assert result.status == "cooked", result.reason
    assert w.ref.is_file()
    return root


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: files by size, mtime_ns and sha256; directories by path."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = ("dir",)
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns, digest)
    return out


class Sealed:
    """``with world_seal:`` asserts that nothing under the case's tree changed."""

    def __init__(self, root: Path):
        self.root = root
        self.before: dict[str, tuple] | None = None

    def __enter__(self) -> Sealed:
        self.before = snapshot(self.root)
        return self

    def __exit__(self, *exc: object) -> None:
        after = snapshot(self.root)
        added = sorted(set(after) - set(self.before))
        temps = [p for p in added if TEMP_NAMES.search(p.rstrip("/").rsplit("/", 1)[-1])]
        assert not temps, f"temporary files left behind: {temps}"
        assert not added, f"bad input wrote {added}"
        removed = sorted(set(self.before) - set(after))
        assert not removed, f"bad input removed {removed}"
        changed = sorted(p for p in after if after[p] != self.before[p])
        assert not changed, f"bad input changed {changed}"


@pytest.fixture
def world(pristine, tmp_path, monkeypatch):
    """A fresh copy of the site, also the working directory and the temp directory, so a
    stray relative or temporary write lands in the snapshot."""
    root = tmp_path / "site"
    shutil.copytree(pristine, root, symlinks=True)  # copy2: mtimes kept, so pins match
    (root / "tmp").mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setattr(tempfile, "tempdir", str(root / "tmp"))
    monkeypatch.setenv("TMPDIR", str(root / "tmp"))
    return World(root)


# --- setups ------------------------------------------------------------------------------------
def _truncated(w: World):
    blob = (w.root / "raw/p1/1.h5").read_bytes()
    w.write("raw/p1/trunc.h5", blob[: len(blob) // 2])
    return lambda: w.scan("trunc").raw


def _text_h5(w: World):
    w.write("raw/p1/text.h5", "scan 1 theta counts\n" * 100)
    return lambda: w.scan("text").summary


def _empty_file(w: World):
    w.write("raw/p1/empty.h5", b"")
    return lambda: w.scan("empty").raw


def _no_frames(w: World):
    w.raw_variant("noframes", lambda f: f.__delitem__("entry/data/data"))
    return lambda: w.scan("noframes").summary


def _frames_2d(w: World):
    def edit(f):
        del f["entry/data/data"]
        f["entry/data/data"] = np.zeros((4, 5), "u4")

    w.raw_variant("flat", edit)
    return lambda: w.scan("flat").raw


def _column_mismatch(w: World):
    def edit(f):
        del f["entry/data/theta"]
        f["entry/data/theta"] = np.linspace(0.0, 1.0, 5)

    w.raw_variant("short", edit)
    return lambda: w.scan("short").raw


def _zero_frames(w: World):
    def edit(f):
        g = f["entry/data"]
        for name in list(g):
            shape, dtype = g[name].shape, g[name].dtype
            del g[name]
            g.create_dataset(name, shape=(0, *shape[1:]), dtype=dtype)

    w.raw_variant("aborted", edit)
    return lambda: w.scan("aborted").summary


def _store_doc(w: World, name: str, **fields: Any) -> Callable[[], Any]:
    doc = {"version": "basinflow/1", "type": "roi", "handle": "roi", "uuid": name[:-5]}
    w.spice_file(name, {**doc, **fields})
    return lambda: w.repo()["p1"].spice.view("1")


def _conflict(w: World):
    base = w.seeded()
    store = FsspecSpiceStore(f"{w.url}/spice/p1")
    for energy in (8000.0, 9000.0):  # two writers updated the same revision at once
        data = {**base.data, "beamEnergy": energy}
        store.put(
            SpiceDocument(
                type="rsm",
                handle="rsm",
                uuid=f"conflict-{int(energy)}",
                revision=2,
                parent=base.uuid,
                data=data,
                typed=True,
            )
        )
    return w


def _invalid_stored_rsm(w: World):
    base = w.seeded().to_dict()
    bad = {**base, "uuid": "hand-edited", "revision": 2, "parent": base["uuid"]}
    bad["data"] = {**bad["data"], "beamEnergy": "hot"}
    w.spice_file("hand-edited.json", bad)
    return lambda: bf.cooked(w.scan("1"), "rsm")


def _cycle(w: World):
    a, b = w.root / "cyc/a.h5", w.root / "cyc/b.h5"
    a.parent.mkdir()
    empty = xr.Dataset({"v": ("index", np.zeros(2))})
    for this, other in ((a, b), (b, a)):
        basin = Basin(name="other", type="file", paths=[other.name], layout="referrer")
        write_referrer(str(this), empty, referrer_url=this.as_uri(), basins=[basin])
    return lambda: bf.open_referrer(str(a))


def _stale(w: World):
    with open(w.root / "raw/p1/1.h5", "ab") as f:
        f.write(b"\0" * 64)  # the raw file changed after cooking
    return lambda: bf.open_referrer(w.ref_url, trusted=[w.repo()])


def _missing_basin(w: World):
    (w.root / "raw/p1/1.h5").unlink()
    return lambda: bf.open_referrer(w.ref_url, trusted=[w.repo()])


def _truncated_ref(w: World):
    blob = w.ref.read_bytes()
    w.ref.write_bytes(blob[: len(blob) // 3])
    return lambda: bf.open_referrer(w.ref_url, trusted=[w.repo()])


def _bad_basin_json(w: World):
    with h5py.File(w.ref, "a") as f:
        (key,) = f["basins"]
        del f["basins"][key]
        f["basins"][key] = "{'name': 'raw'"
    return lambda: bf.open_referrer(w.ref_url, trusted=[w.repo()])


def _cook_referrer_untrusted(w: World):
    out = f"{w.url}/out/p1/1/again.h5"
    spice = {"roi": {"regions": {"a": [0, 2, 0, 2]}}}
    return lambda: cook_referrer(w.ref_url, "roi", out, spice=spice)  # trusts no raw root


def _two_roi_handles(w: World):
    spice = w.repo()["p1"].spice
    for handle in ("roi_a", "roi_b"):
        spice.seed("roi", handle=handle, regions={handle: [0, 2, 0, 2]})
    return lambda: bf.cooked(w.scan("1"), "roi")


def _broken_plugin(w: World):
    from basinflow.recipes.registry import GROUP, EntryPoint, load_entry_point

    ep = EntryPoint(name="xrd", value="basinflow_no_such_plugin.recipes:RECIPE", group=GROUP)
    return lambda: load_entry_point(ep)


def _cook(w: World, to: str | None, **repo_kw: Any):
    scan = w.scan("1", **repo_kw)
    return lambda: bf.cook(scan, "rsm", output=to)


def _cli_seed_with_broken_store(w: World):
    w.spice_file("broken.json", "{not json")
    return ["spice", "seed", "roi", 'regions={"a": [0, 2, 0, 2]}', "--store", f"{w.url}/spice/p1"]


def _cli_import_malformed(w: World):
    w.write("nx5d/bad.yaml", "version: kmc3/1a\ntype: [rsm\n")
    return ["spice", "import", str(w.root / "nx5d"), "--store", f"{w.url}/spice/p1"]


R = "repositories:\n  site:\n    raw: file:///data/{proposal}/{scan}.h5#entry\n"


def _config_case(body: str | bytes, name: str = "basinflow.yaml"):
    def setup(w: World):
        path = w.config(body, name) if isinstance(body, str) else w.write(name, body)
        return lambda: load_config(path)

    return setup


# --- the corpus -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    area: str
    name: str
    setup: Callable[[World], Any]  # -> the action, or argv for the CLI
    error: type[errors.Error] | None  # None: a CLI case (exit code and one stderr line)
    match: str  # regex; <URL> = the site's file:// URL, <ROOT> = its path (both escaped)
    marks: tuple = ()


def C(area, name, setup, error, match, *marks) -> Any:
    """One row of the table."""
    case = Case(area, name, setup, error, match, marks)
    return pytest.param(case, id=f"{area}-{name}", marks=marks)


class NoAdvice(AssertionError):
    """The message names the thing but does not say what to do."""


NOT_PROC = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
CASES = [
    # catalog: raw files ------------------------------------------------------------------------
    C(
        "catalog",
        "truncated-hdf5",
        _truncated,
        errors.NotHDF5Error,
        r"'<URL>/raw/p1/trunc\.h5' is not a readable HDF5 file \(truncated.*copy it again",
    ),
    C(
        "catalog",
        "text-file-named-h5",
        _text_h5,
        errors.NotHDF5Error,
        r"'<URL>/raw/p1/text\.h5' is not a readable HDF5 file.*check that the template",
    ),
    C(
        "catalog",
        "zero-byte-file",
        _empty_file,
        errors.NotHDF5Error,
        r"'<URL>/raw/p1/empty\.h5' is not a readable HDF5 file",
    ),
    C(
        "catalog",
        "missing-frames-dataset",
        _no_frames,
        errors.LayoutError,
        r"<URL>/raw/p1/noframes\.h5#entry: frames dataset '/entry/data/data' is missing",
    ),
    C(
        "catalog",
        "frames-wrong-ndim",
        _frames_2d,
        errors.LayoutError,
        # a 2-D signal is one image (SAXS/SANS); the per-frame columns then disagree with it
        r"<URL>/raw/p1/flat\.h5#entry: column '\w+' has shape \(12,\) but there are 1 frames",
    ),
    C(
        "catalog",
        "column-disagrees-with-frames",
        _column_mismatch,
        errors.LayoutError,
        r"short\.h5#entry: column 'theta' has shape \(5,\) but there are 12 frames",
    ),
    C(
        "catalog",
        "empty-scan",
        _zero_frames,
        errors.LayoutError,
        r"aborted\.h5#entry: the scan has zero frames.*wait until it is written",
    ),
    C(
        "catalog",
        "missing-proposal",
        lambda w: lambda: w.repo()["p9"],
        errors.ProposalNotFound,
        r"no proposal 'p9' in .*<URL>/raw/.*check the key",
    ),
    C(
        "catalog",
        "missing-scan",
        lambda w: lambda: w.repo()["p1"]["0042"],
        errors.ScanNotFound,
        r"no scan '0042' in .*'p1'.*check the key",
    ),
    C(
        "catalog",
        "missing-entry-group",
        lambda w: (
            lambda: bf.Repository(f"{w.url}/raw/{{proposal}}/{{scan}}.h5#nope")["p1"]["1"].summary
        ),
        errors.NotFound,
        r"<URL>/raw/p1/1\.h5#nope",
    ),
    *(
        C(
            "catalog",
            f"hostile-key-{label}",
            (lambda k: lambda w: lambda: w.repo()["p1"][k])(key),
            errors.InvalidKeyError,
            rf"invalid scan {re.escape(repr(key))}: use letters, digits",
        )
        for label, key in [
            ("dotdot", ".."),
            ("slash", "a/b"),
            ("parent-path", "../p1"),
            ("empty", ""),
            ("nul", "1\x00"),
            ("fullwidth", "\uff50\uff11"),
            ("zero-width", "1\u200b"),
            ("two-dot-leader", "\u2025"),
            ("division-slash", "p1\u2215x"),
            ("newline", "1\n"),
        ]
    ),
    C(
        "catalog",
        "hostile-proposal-fill",
        lambda w: lambda: w.repo().template.fill(proposal="../../etc", scan="1"),
        errors.InvalidKeyError,
        r"invalid proposal '\.\./\.\./etc'.*no '\.\.' or '/'",
    ),
    # catalog: templates ------------------------------------------------------------------------
    *(
        C(
            "catalog",
            f"template-{label}",
            (lambda t: lambda w: lambda: bf.Repository(t))(text),
            error,
            match,
        )
        for label, text, error, match in [
            (
                "unbalanced-open",
                "file:///d/{proposal/{scan}.h5",
                errors.TemplateError,
                r"'file:///d/\{proposal/\{scan\}\.h5' has an unbalanced '\{'; write fields as",
            ),
            (
                "stray-close",
                "file:///d/{proposal}/{scan}}.h5",
                errors.TemplateError,
                r"unbalanced '\}'; write fields as \{proposal\} and \{scan\}",
            ),
            (
                "doubled-braces",
                "file:///d/{proposal}/{{scan}}.h5",
                errors.TemplateError,
                r"unbalanced '\{'",
            ),
            (
                "unknown-field",
                "file:///d/{proposal}/{scna}.h5",
                errors.TemplateError,
                r"unknown field\(s\) \['scna'\]; use only \{proposal\}, \{scan\}",
            ),
            (
                "no-scan",
                "file:///d/{proposal}.h5",
                errors.TemplateError,
                r"has no \{scan\} field; .*put \{scan\} in the path",
            ),
            (
                "field-as-root",
                "file://{proposal}/{scan}.h5",
                errors.TemplateError,
                r"starts with a field; put a fixed root",
            ),
            (
                "field-as-bucket",
                "s3:///{proposal}/{scan}.h5",
                errors.TemplateError,
                r"'s3:///\{proposal\}/\{scan\}\.h5' has no bucket; put a fixed one",
            ),
            (
                "field-as-host",
                "http:///{proposal}/{scan}.h5",
                errors.TemplateError,
                r"has no host; put a fixed one",
            ),
            (
                "climbs-out",
                "file:///d/{proposal}/../../{scan}.h5",
                errors.TemplateError,
                r"has a '\.\.' segment; use a normalized absolute path",
            ),
            (
                "control-char",
                "file:///d/{proposal}\x00/{scan}.h5",
                errors.TemplateError,
                r"contains the control character '\\x00'; remove it",
            ),
            (
                "no-scheme",
                "data/{proposal}/{scan}.h5",
                errors.TemplateError,
                r"'data/\{proposal\}/\{scan\}\.h5' has no scheme; use file:///abs/path",
            ),
            (
                "unknown-scheme",
                "ftp://h/{proposal}/{scan}.h5",
                errors.UnknownSchemeError,
                r"uses scheme 'ftp'; use one of file, memory, http, https, s3",
            ),
            (
                "two-fragments",
                "file:///d/{proposal}.h5#{scan}#x",
                errors.TemplateError,
                r"more than one '#'; use one '#'",
            ),
        ]
    ),
    C(
        "catalog",
        "spice-template-with-scan",
        lambda w: lambda: bf.Repository(w.raw, spice="file:///s/{proposal}/{scan}"),
        errors.TemplateError,
        r"'file:///s/\{proposal\}/\{scan\}' has unknown field\(s\) \['scan'\]",
    ),
    # spice: malformed documents in the store ---------------------------------------------------
    C(
        "spice",
        "store-not-json",
        lambda w: (w.spice_file("x.json", "{not json"), lambda: w.repo()["p1"].spice.view("1"))[1],
        errors.SpiceError,
        r"malformed spice document <URL>/spice/p1/x\.json: .*fix or remove the file",
    ),
    C(
        "spice",
        "store-nan",
        lambda w: (
            w.spice_file("n.json", '{"type": "roi", "uuid": "n", "data": {"a": NaN}}'),
            lambda: w.repo()["p1"].spice.view("1"),
        )[1],
        errors.SpiceError,
        r"spice/p1/n\.json: NaN is not valid JSON; fix or remove the file",
    ),
    C(
        "spice",
        "store-array",
        lambda w: (w.spice_file("arr.json", "[1, 2]"), lambda: w.repo()["p1"].spice.view("1"))[1],
        errors.SpiceError,
        r"spice document <URL>/spice/p1/arr\.json: expected a JSON object, got list",
    ),
    C(
        "spice",
        "store-wrong-type",
        lambda w: _store_doc(w, "r.json", revision="two"),
        errors.SpiceError,
        r"spice/p1/r\.json: spice revision must be a positive integer, got str",
    ),
    C(
        "spice",
        "store-missing-uuid",
        lambda w: (w.spice_file("m.json", {"type": "roi"}), lambda: w.repo()["p1"].spice.view("1"))[
            1
        ],
        errors.SpiceError,
        r"spice/p1/m\.json: missing field 'uuid'",
    ),
    C(
        "spice",
        "store-unknown-field",
        lambda w: _store_doc(w, "u.json", anchr="2"),
        errors.SpiceError,
        r"spice/p1/u\.json: unknown field\(s\) 'anchr'; a spice document has",
    ),
    C(
        "spice",
        "store-future-version",
        lambda w: _store_doc(w, "f.json", version="basinflow/9"),
        errors.SpiceError,
        r"f\.json: unsupported spice version 'basinflow/9'.*upgrade basinflow",
    ),
    C(
        "spice",
        "store-uuid-mismatch",
        lambda w: _store_doc(w, "a.json", uuid="b"),
        errors.SpiceError,
        r"spice/p1/a\.json: its uuid 'b' does not match the file name.*rename",
    ),
    C(
        "spice",
        "store-hostile-uuid",
        lambda w: _store_doc(w, "h.json", uuid="../../etc/passwd"),
        errors.SpiceError,
        r"spice/p1/h\.json: invalid spice uuid '\.\./\.\./etc/passwd'",
    ),
    C(
        "spice",
        "store-code-in-data",
        lambda w: _store_doc(w, "c.json", data={"recipe": "os.path:join"}),
        errors.SpiceValidationError,
        r"spice field data\.recipe: 'os\.path:join' is not a registered name; use the name a "
        r"recipe is registered under",
    ),
    C(
        "spice",
        "seed-over-malformed-store",
        lambda w: (
            w.spice_file("x.json", "{not json"),
            lambda: w.repo()["p1"].spice.seed("roi", regions={"a": [0, 2, 0, 2]}),
        )[1],
        errors.SpiceError,
        r"malformed spice document <URL>/spice/p1/x\.json",
    ),
    C(
        "spice",
        "stored-rsm-fails-its-schema",
        _invalid_stored_rsm,
        errors.SpiceValidationError,
        r"beamEnergy.*'hot'",
    ),
    C(
        "spice",
        "conflict",
        lambda w: (_conflict(w), lambda: w.repo()["p1"].spice.view("1"))[1],
        errors.SpiceConflict,
        r"conflict-8000.*conflict-9000.*update",
    ),
    C(
        "spice",
        "update-viewpoint-in-conflict",
        lambda w: (
            _conflict(w),
            lambda: w.repo()["p1"].spice.update("1", "rsm", beamEnergy=8500.0),
        )[1],
        errors.SpiceConflict,
        r"conflict-8000.*conflict-9000",
    ),
    # spice: seeding and updating with wrong fields ---------------------------------------------
    C(
        "spice",
        "seed-wrong-field-type",
        lambda w: (
            lambda: w.repo()["p1"].spice.seed("rsm", handle="rsm2", **{**RSM, "beamEnergy": [1, 2]})
        ),
        errors.SpiceValidationError,
        r"spice 'rsm2': field 'beamEnergy.*got \[1, 2\]",
    ),
    C(
        "spice",
        "seed-unknown-field",
        lambda w: lambda: w.repo()["p1"].spice.seed("rsm", handle="rsm2", **RSM, beamEnergi=1.0),
        errors.SpiceValidationError,
        r"unknown field 'beamEnergi' \(did you mean 'beamEnergy'\?\)",
    ),
    C(
        "spice",
        "seed-missing-field",
        lambda w: (
            lambda: w.repo()["p1"].spice.seed(
                "rsm", handle="rsm2", **{k: v for k, v in RSM.items() if k != "imageSize"}
            )
        ),
        errors.SpiceValidationError,
        r"field 'imageSize' is required but missing",
    ),
    C(
        "spice",
        "seed-not-json-data",
        lambda w: lambda: w.repo()["p1"].spice.seed("geom", center=np.arange(2)),
        errors.SpiceValidationError,
        r"spice field data\.center: a ndarray is not JSON data.*tolist",
    ),
    C(
        "spice",
        "seed-anchor-not-a-scan",
        lambda w: lambda: w.repo()["p1"].spice.seed("roi", anchor="0", regions={"a": [0, 2, 0, 2]}),
        errors.ScanNotFound,
        r"anchor '0' is not a scan of this proposal.*anchor at an existing scan",
    ),
    C(
        "spice",
        "seed-hostile-anchor",
        lambda w: (
            lambda: w.repo()["p1"].spice.seed("roi", anchor="../1", regions={"a": [0, 2, 0, 2]})
        ),
        errors.InvalidKeyError,
        r"invalid spice anchor \(a scan key\) '\.\./1'",
    ),
    C(
        "spice",
        "seed-hostile-handle",
        lambda w: (
            lambda: w.repo()["p1"].spice.seed("roi", handle="../roi", regions={"a": [0, 2, 0, 2]})
        ),
        errors.InvalidKeyError,
        r"invalid spice handle '\.\./roi': use a Python identifier",
    ),
    C(
        "spice",
        "seed-names-code",
        lambda w: lambda: w.repo()["p1"].spice.seed("custom", recipe="file:///evil.py"),
        errors.SpiceValidationError,
        r"data\.recipe: 'file:///evil\.py' is not a registered name",
    ),
    C(
        "spice",
        "seed-different-data-same-anchor",
        lambda w: lambda: w.repo()["p1"].spice.seed("rsm", **{**RSM, "beamEnergy": 9000.0}),
        errors.SpiceError,
        r"spice 'rsm' already exists at anchor .*spice\.update\(",
    ),
    C(
        "spice",
        "handle-changes-type",
        lambda w: (
            lambda: w.repo()["p1"].spice.seed(
                "roi", handle="rsm", anchor="2", regions={"a": [0, 2, 0, 2]}
            )
        ),
        errors.SpiceError,
        r"spice handle 'rsm' has type 'rsm', not 'roi'; use another handle",
    ),
    C(
        "spice",
        "update-unknown-uuid",
        lambda w: (
            lambda: w.repo()["p1"].spice.update(
                "6d0c8f0e-4c1f-5b8e-9a57-3b3f1c2a9e41", beamEnergy=1.0
            )
        ),
        errors.SpiceNotFound,
        r"no spice document with uuid '6d0c8f0e-.*' in <URL>/spice/p1",
    ),
    C(
        "spice",
        "update-wrong-type",
        lambda w: lambda: w.repo()["p1"].spice.update("1", "rsm", beamEnergy={"a": 1}),
        errors.SpiceValidationError,
        r"beamEnergy",
    ),
    C(
        "spice",
        "update-unknown-handle",
        lambda w: lambda: w.repo()["p1"].spice.update("1", "roi", regions={}),
        errors.SpiceNotFound,
        r"no spice handle 'roi' in this proposal \(handles: rsm\); create it with spice\.seed",
    ),
    C(
        "spice",
        "view-hostile-scan",
        lambda w: lambda: w.repo()["p1"].spice.view("../2"),
        errors.InvalidKeyError,
        r"invalid scan '\.\./2'",
    ),
    # recipes -----------------------------------------------------------------------------------
    C(
        "recipes",
        "unknown-recipe",
        lambda w: lambda: bf.cooked(w.scan("1"), "rsn"),
        errors.UnknownRecipeError,
        r"no recipe named 'rsn'; known recipes: .*rsm; check the name",
    ),
    C(
        "recipes",
        "recipe-spice-missing",
        lambda w: lambda: bf.cooked(w.scan("1", spice=f"{w.url}/nospice/{{proposal}}"), "rsm"),
        errors.SpiceValidationError,
        r"recipe 'rsm' needs spice of type 'rsm', but the spice has none.*seed it",
    ),
    C(
        "recipes",
        "override-unknown-field",
        lambda w: lambda: bf.cooked(w.scan("1"), "rsm", qsiz=3),
        errors.SpiceValidationError,
        r"qsiz",
    ),
    C(
        "recipes",
        "override-wrong-type",
        lambda w: lambda: bf.cooked(w.scan("1"), "rsm", qsize="big"),
        errors.SpiceValidationError,
        r"qsize",
    ),
    C(
        "recipes",
        "ambiguous-spice-handles",
        _two_roi_handles,
        errors.SpiceValidationError,
        r"several spice handles of type 'roi' are visible \(roi_a, roi_b\); name one of them",
    ),
    C(
        "recipes",
        "broken-plugin",
        _broken_plugin,
        errors.RecipeError,
        r"recipe 'xrd' \(basinflow_no_such_plugin\.recipes:RECIPE\) cannot be imported.*install "
        r"'basinflow_no_such_plugin'",
    ),
    C(
        "recipes",
        "cook-unknown-recipe",
        lambda w: lambda: bf.cook(w.scan("1"), "rsn"),
        errors.UnknownRecipeError,
        r"no recipe named 'rsn'",
    ),
    C(
        "recipes",
        "cook-without-spice",
        lambda w: _cook(w, None, spice=f"{w.url}/nospice/{{proposal}}"),
        errors.SpiceValidationError,
        r"needs spice of type 'rsm'.*seed it",
    ),
    # referrers ---------------------------------------------------------------------------------
    C(
        "referrers",
        "cycle",
        _cycle,
        errors.BasinCycleError,
        r"basins refer to each other in a cycle: .*cyc/a\.h5 -> .*cyc/b\.h5 -> .*cyc/a\.h5.*fix "
        r"the basin paths",
    ),
    C(
        "referrers",
        "stale-basin",
        _stale,
        errors.StaleBasinError,
        r"basin 'raw' at '.*raw/p1/1\.h5' no longer matches the pin.*re-cook the output",
    ),
    C(
        "referrers",
        "missing-basin",
        _missing_basin,
        errors.BasinUnavailableError,
        r"basin 'raw' \(p1/1\) of '<URL>/out/p1/1/rsm\.h5' is unavailable; tried: .*raw/p1/1\.h5",
    ),
    C(
        "referrers",
        "untrusted-basin",
        lambda w: lambda: bf.open_referrer(w.ref_url),
        errors.UntrustedBasinError,
        r"every location is untrusted and none was opened: .*raw/p1/1\.h5.*pass trusted=",
    ),
    C(
        "referrers",
        "truncated-referrer",
        _truncated_ref,
        errors.ReferrerError,
        r"'<URL>/out/p1/1/rsm\.h5' is not a readable HDF5 file.*truncated",
    ),
    C(
        "referrers",
        "zero-byte-referrer",
        lambda w: (w.ref.write_bytes(b""), lambda: bf.open_referrer(str(w.ref)))[1],
        errors.ReferrerError,
        r"referrer '<URL>/out/p1/1/rsm\.h5' is not an HDF5 file",
    ),
    C(
        "referrers",
        "raw-file-is-no-referrer",
        lambda w: lambda: bf.open_referrer(str(w.root / "raw/p1/1.h5")),
        errors.ReferrerError,
        r"'<URL>/raw/p1/1\.h5' is an HDF5 file but not a basinflow referrer",
    ),
    C(
        "referrers",
        "missing-referrer",
        lambda w: lambda: bf.open_referrer(str(w.root / "out/p1/2/rsm.h5")),
        errors.NotFound,
        r"referrer '<URL>/out/p1/2/rsm\.h5' does not exist",
    ),
    C(
        "referrers",
        "malformed-basin-json",
        _bad_basin_json,
        errors.ReferrerError,
        r"<URL>/out/p1/1/rsm\.h5#/basins/\w+: malformed basin definition.*re-cook it",
    ),
    C(
        "referrers",
        "cook-referrer-untrusted",
        _cook_referrer_untrusted,
        errors.UntrustedBasinError,
        r"none was opened: .*raw/p1/1\.h5",
    ),
    # config ------------------------------------------------------------------------------------
    C(
        "config",
        "yaml-syntax",
        _config_case("repositories:\n  site: [raw: x\n"),
        errors.ConfigError,
        r"config '<ROOT>/basinflow\.yaml' is not valid YAML: line 3, column 1: expected ',' or "
        r"'\]'.*\(while parsing a flow sequence at line 2, column 9\); fix the syntax",
    ),
    C(
        "config",
        "yaml-tab",
        _config_case("repositories:\n\tsite: 1\n"),
        errors.ConfigError,
        r"line 2, column 1: found character '\\t' that cannot start any token; fix the syntax",
    ),
    C(
        "config",
        "yaml-duplicate-key",
        _config_case(R + "  site:\n    raw: file:///e/{proposal}/{scan}\n"),
        errors.ConfigError,
        r"line 4, column 3: key 'site' is given twice",
    ),
    C(
        "config",
        "yaml-python-tag",
        _config_case("!!python/object/apply:os.system ['true']\n"),
        errors.ConfigError,
        r"could not determine a constructor for the tag .*python/object",
    ),
    C(
        "config",
        "not-utf8",
        _config_case(bytes(range(256))),
        errors.ConfigError,
        r"config '<ROOT>/basinflow\.yaml' is not UTF-8 text; point --config at the YAML file",
    ),
    C(
        "config",
        "empty-file",
        _config_case(""),
        errors.ConfigError,
        r"config '<ROOT>/basinflow\.yaml' must be a mapping with 'repositories'",
    ),
    C(
        "config",
        "missing-file",
        lambda w: lambda: load_config(w.root / "nope.yaml"),
        errors.ConfigError,
        r"cannot read config '<ROOT>/nope\.yaml': No such file",
    ),
    C(
        "config",
        "missing-repositories",
        _config_case("cluster: {workers: 2}\n"),
        errors.ConfigError,
        r"basinflow\.yaml': repositories: Field required",
    ),
    C(
        "config",
        "unknown-top-level-key",
        _config_case(R + "repository: {}\n"),
        errors.ConfigError,
        r"repository: unknown key 'repository'; remove it or fix its spelling; known keys here: "
        r"batch_size, cluster, proposals_in_parallel, repositories, schedules",
    ),
    C(
        "config",
        "unknown-repository-key",
        _config_case(R + "    rwa: x\n"),
        errors.ConfigError,
        r"repositories\.site\.rwa: unknown key 'rwa'; .*known keys here: chunk_mb, layout",
    ),
    C(
        "config",
        "wrong-type",
        _config_case(R + "    chunk_mb: big\n"),
        errors.ConfigError,
        r"repositories\.site\.chunk_mb: Input should be a valid number",
    ),
    C(
        "config",
        "raw-without-scan",
        _config_case("repositories:\n  site:\n    raw: file:///d/{proposal}.h5\n"),
        errors.ConfigError,
        r"repositories\.site\.raw: template 'file:///d/\{proposal\}\.h5' has no \{scan\} field",
    ),
    C(
        "config",
        "output-with-fragment",
        _config_case(R + "    output: file:///o/{proposal}.h5#{scan}\n"),
        errors.ConfigError,
        r"repositories\.site\.output: output template .* has a '#' part; .*remove the '#",
    ),
    C(
        "config",
        "cluster-workers-zero",
        _config_case(R + "cluster: {workers: 0}\n"),
        errors.ConfigError,
        r"cluster\.workers: Input should be greater than or equal to 1",
    ),
    C(
        "config",
        "cluster-jobqueue-kind",
        _config_case(R + "cluster: {jobqueue: {kind: k8s}}\n"),
        errors.ConfigError,
        r"cluster\.jobqueue\.kind: Input should be 'slurm', 'pbs'",
    ),
    C(
        "config",
        "cluster-unknown-key",
        _config_case(R + "cluster: {nodes: 3}\n"),
        errors.ConfigError,
        r"cluster\.nodes: unknown key 'nodes'; .*known keys here: address",
    ),
    C(
        "config",
        "cluster-not-a-mapping",
        _config_case(R + "cluster: 4\n"),
        errors.ConfigError,
        r"cluster: Input should be a valid dictionary",
    ),
    C(
        "config",
        "schedule-unknown-repository",
        _config_case(R + "schedules:\n  - {name: n, repository: other, cron: '0 2 * * *'}\n"),
        errors.ConfigError,
        r"schedule 'n' names repository 'other', not one of \['site'\]",
    ),
    C(
        "config",
        "schedule-bad-cron",
        _config_case(R + "schedules:\n  - {name: n, repository: site, cron: every night}\n"),
        errors.ConfigError,
        r"schedules\.0\.cron: 'every night' is not a cron expression; use five fields",
    ),
    C(
        "config",
        "schedule-two-timers",
        _config_case(
            R + "schedules:\n  - {name: n, repository: site, cron: '0 2 * * *', interval: 5}\n"
        ),
        errors.ConfigError,
        r"schedules\.0: give exactly one of 'cron' or 'interval'",
    ),
    C(
        "config",
        "unset-environment-variable",
        _config_case(R + "    storage_options: {key: '${BASINFLOW_CORPUS_UNSET}'}\n"),
        errors.ConfigError,
        r"config '<ROOT>/basinflow\.yaml': config refers to \$\{BASINFLOW_CORPUS_UNSET\} but "
        r"it is not set; set it in the environment",
    ),
    C(
        "config",
        "unknown-repository-name",
        lambda w: (
            w.config(R),
            lambda: bf.open_repository(w.root / "basinflow.yaml", "other"),
        )[1],
        errors.ConfigError,
        r"no repository 'other' in the config; known: site",
    ),
    # cook outputs ------------------------------------------------------------------------------
    C(
        "outputs",
        "uncreatable-directory",
        lambda w: _cook(w, "file:///proc/basinflow-corpus/{proposal}/{scan}.h5"),
        errors.OutputError,
        r"'file:///proc/basinflow-corpus/p1/1\.h5': cannot create output directory "
        r"'/proc/basinflow-corpus/p1'.*; check the output template",
        NOT_PROC,
    ),
    C(
        "outputs",
        "unwritable-directory",
        lambda w: _cook(w, "file:///proc/{scan}.h5"),
        errors.OutputError,
        r"'file:///proc/1\.h5': (output directory '/proc' is not writable; "
        r"check its permissions|cannot write output: .*; check the permissions)",
        NOT_PROC,
    ),
    C(
        "outputs",
        "file-used-as-directory",
        lambda w: (w.write("afile", "x"), _cook(w, f"{w.url}/afile/{{proposal}}/{{scan}}.h5"))[1],
        errors.OutputError,
        r"output '<URL>/afile/p1/1\.h5' lies below '<ROOT>/afile', which is a file, not a "
        r"directory; use another output location",
    ),
    C(
        "outputs",
        "output-is-a-directory",
        lambda w: (
            (w.root / "adir/1.h5").mkdir(parents=True),
            _cook(w, f"{w.url}/adir/{{scan}}.h5"),
        )[1],
        errors.OutputError,
        r"output '<URL>/adir/1\.h5' is an existing directory; use an output template that names",
    ),
    C(
        "outputs",
        "unknown-field",
        lambda w: _cook(w, f"{w.url}/o/{{scan}}/{{recipie}}.h5"),
        errors.TemplateError,
        r"unknown field\(s\) \['recipie'\]; use only \{proposal\}, \{scan\}",
    ),
    C(
        "outputs",
        "without-scan",
        lambda w: _cook(w, f"{w.url}/o/{{proposal}}.h5"),
        errors.TemplateError,
        r"has no \{scan\} field",
    ),
    C(
        "outputs",
        "with-fragment",
        lambda w: _cook(w, f"{w.url}/o.h5#{{scan}}"),
        errors.TemplateError,
        r"output template '<URL>/o\.h5#\{scan\}' has a '#' part",
    ),
    C(
        "outputs",
        "climbs-out",
        lambda w: _cook(w, f"{w.url}/o/{{scan}}/../../../x.h5"),
        errors.TemplateError,
        r"has a '\.\.' segment",
    ),
    C(
        "outputs",
        "unbalanced-brace",
        lambda w: _cook(w, f"{w.url}/o/{{scan}}/{{recipe.h5"),
        errors.TemplateError,
        r"unbalanced '\{'",
    ),
    C(
        "outputs",
        "unknown-scheme",
        lambda w: _cook(w, "ftp://h/{proposal}/{scan}.h5"),
        errors.UnknownSchemeError,
        r"uses scheme 'ftp'",
    ),
    C(
        "outputs",
        "relative-path",
        lambda w: _cook(w, "out/{proposal}/{scan}.h5"),
        errors.TemplateError,
        r"has no scheme; use file:///abs/path",
    ),
    C(
        "outputs",
        "field-as-bucket",
        lambda w: _cook(w, "s3:///{proposal}/{scan}.h5"),
        errors.TemplateError,
        r"has no bucket",
    ),
    C(
        "outputs",
        "no-output-configured",
        lambda w: _cook(w, None, output=None),
        errors.OutputError,
        r"no output for <Scan p1/1 .*>: pass output=",
    ),
    # CLI: one line on stderr, non-zero exit ----------------------------------------------------
    C(
        "cli",
        "ls-unknown-scheme",
        lambda w: ["ls", "ftp://x/{proposal}/{scan}.h5"],
        None,
        r"uses scheme 'ftp'; use one of",
    ),
    C(
        "cli",
        "ls-markup-in-template",
        lambda w: ["ls", "ftp://x/[/x]/[bold]{proposal}/{scan}"],
        None,
        r"'ftp://x/\[/x\]/\[bold\]\{proposal\}/\{scan\}' uses scheme 'ftp'",
    ),
    C(
        "cli",
        "ls-missing-proposal",
        lambda w: ["ls", w.raw, "p9"],
        None,
        r"no proposal 'p9' in .*check the key",
    ),
    C(
        "cli",
        "ls-hostile-key",
        lambda w: ["ls", w.raw, "../p1"],
        None,
        r"invalid proposal '\.\./p1'",
    ),
    C(
        "cli",
        "ls-broken-scan",
        # asked for the unreadable scan itself (a proposal listing shows it as a row, exit 0)
        lambda w: (_text_h5(w), ["ls", w.raw, "p1", "text"])[1],
        None,
        r"raw/p1/text\.h5' is not a readable HDF5 file",
    ),
    C(
        "cli",
        "ls-malformed-config",
        lambda w: (w.config("repositories: [\n"), ["ls", "site", "--config", "basinflow.yaml"])[1],
        None,
        r"config 'basinflow\.yaml' is not valid YAML: line 2, column 1: .*fix the syntax",
    ),
    C(
        "cli",
        "missing-argument",
        lambda w: ["ls"],
        None,
        r"Missing argument 'repository'\. \(see 'basinflow ls --help'\)",
    ),
    C(
        "cli",
        "unknown-option",
        lambda w: ["ls", "--bogus", w.raw],
        None,
        r"No such option: --bogus \(see 'basinflow ls --help'\)",
    ),
    C("cli", "unknown-command", lambda w: ["cok"], None, r"No such command 'cok'"),
    C(
        "cli",
        "spice-missing-store",
        lambda w: ["spice", "view", "1"],
        None,
        r"Missing option '--store'",
    ),
    C(
        "cli",
        "spice-values-not-yaml",
        lambda w: (
            w.write("v.yaml", "a: [1\n"),
            ["spice", "seed", "roi", "--file", "v.yaml", "--store", f"{w.url}/spice/p1"],
        )[1],
        None,
        r"values file 'v\.yaml' is not YAML/JSON: line 2, column 1: .*fix the syntax",
    ),
    C(
        "cli",
        "spice-values-binary",
        lambda w: (
            w.write("v.yaml", bytes(range(256))),
            ["spice", "seed", "roi", "--file", "v.yaml", "--store", f"{w.url}/spice/p1"],
        )[1],
        None,
        r"values file 'v\.yaml' is not UTF-8 text",
    ),
    C(
        "cli",
        "spice-values-not-mapping",
        lambda w: (
            w.write("v.yaml", "- 1\n"),
            ["spice", "seed", "roi", "--file", "v.yaml", "--store", f"{w.url}/spice/p1"],
        )[1],
        None,
        r"values file 'v\.yaml' must hold a mapping of field names to values, got list",
    ),
    C(
        "cli",
        "spice-argument-not-assignment",
        lambda w: ["spice", "seed", "roi", "regions", "--store", f"{w.url}/spice/p1"],
        None,
        r"argument 'regions' is not KEY=VALUE",
    ),
    C(
        "cli",
        "spice-seed-wrong-value",
        lambda w: ["spice", "seed", "roi", "regions=[1]", "--store", f"{w.url}/spice/p1"],
        None,
        r"spice 'roi': field 'regions'",
    ),
    C(
        "cli",
        "spice-seed-over-broken-store",
        _cli_seed_with_broken_store,
        None,
        r"malformed spice document <URL>/spice/p1/broken\.json",
    ),
    C(
        "cli",
        "spice-view-hostile-scan",
        lambda w: ["spice", "view", "../1", "--store", f"{w.url}/spice/p1"],
        None,
        r"invalid scan '\.\./1'",
    ),
    C(
        "cli",
        "spice-import-missing",
        lambda w: ["spice", "import", "nope", "--store", f"{w.url}/spice/p1"],
        None,
        r"spice source 'nope' does not exist",
    ),
    C(
        "cli",
        "spice-import-malformed",
        _cli_import_malformed,
        None,
        r"malformed spice document .*nx5d/bad\.yaml: line 3, column 1: .*\(while parsing a flow "
        r"sequence at line 2, column 7\); fix or remove the file",
    ),
    C(
        "cli",
        "inspect-not-a-referrer",
        lambda w: ["inspect", "raw/p1/1.h5"],
        None,
        r"'<URL>/raw/p1/1\.h5' is an HDF5 file but not a basinflow referrer",
    ),
    C(
        "cli",
        "inspect-missing",
        lambda w: ["inspect", "out/p1/9/rsm.h5"],
        None,
        r"referrer '<URL>/out/p1/9/rsm\.h5' does not exist",
    ),
    C(
        "cli",
        "inspect-bad-config",
        lambda w: ["inspect", "--config", "nope.yaml", "out/p1/1/rsm.h5"],
        None,
        r"cannot read config 'nope\.yaml'",
    ),
    C(
        "cli",
        "export-untrusted",
        lambda w: ["export", "out/p1/1/rsm.h5", "copy.h5"],
        None,
        r"every location is untrusted and none was opened",
    ),
    C(
        "cli",
        "export-stale",
        lambda w: (_stale(w), ["export", "out/p1/1/rsm.h5", "copy.h5", "--trusted", str(w.root)])[
            1
        ],
        None,
        r"no longer matches the pin",
    ),
    C(
        "cli",
        "cook-malformed-config",
        lambda w: (
            w.config(R + "    chunk_mb: big\n"),
            ["cook", "site", "p1", "--config", "basinflow.yaml"],
        )[1],
        None,
        r"repositories\.site\.chunk_mb: Input should be a valid number",
    ),
    C(
        "cli",
        "cook-unknown-repository",
        lambda w: (w.config(R), ["cook", "other", "p1", "--config", "basinflow.yaml"])[1],
        None,
        r"no repository 'other' in the config",
    ),
]


def _pattern(case: Case, w: World) -> str:
    return case.match.replace("<URL>", re.escape(w.url)).replace("<ROOT>", re.escape(str(w.root)))


def _outcome(action: Callable[[], Any]) -> tuple[str, str]:
    """(error class name, message) of what ``action`` raised or reported."""
    try:
        value = action()
    except errors.Error as exc:
        return type(exc).__name__, str(exc)
    if isinstance(value, CookResult) and value.status == "failed":
        assert value.error, f"failed without naming its error: {value}"
        return value.error, value.reason
    pytest.fail(f"no error: {value!r}")


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case: Case, world: World, capsys):
    setup = case.setup(world)
    pattern = _pattern(case, world)
    capsys.readouterr()
    with Sealed(world.root):
        if case.error is None:
            with pytest.raises(SystemExit) as exit_:
                cli_main(setup)
            out, err = capsys.readouterr()
            assert exit_.value.code not in (0, None)
            assert "Traceback" not in out + err
            lines = err.strip().splitlines()
            assert len(lines) == 1, err
            assert lines[0].startswith("error: "), lines[0]
            message = lines[0]
        else:
            name, message = _outcome(setup)
            assert name == case.error.__name__, f"{name}: {message}"
    assert re.search(pattern, message), f"{message!r} does not match {pattern!r}"
    assert "\n" not in message and "Traceback" not in message
    if not HINT.search(message):
        raise NoAdvice(f"no advice in {message!r}")


def test_corpus_covers_every_area():
    areas = {}
    for param in CASES:
        (case,) = param.values
        areas[case.area] = areas.get(case.area, 0) + 1
    assert set(areas) == {"catalog", "spice", "recipes", "referrers", "config", "cli", "outputs"}
    assert sum(areas.values()) >= 45 and min(areas.values()) >= 5, areas
    ids = [param.id for param in CASES]
    assert len(ids) == len(set(ids))


# --- the checks themselves can fail ------------------------------------------------------------
def _rewrite_keeping_size_and_mtime(root: Path) -> None:
    path = root / "a.txt"
    st = path.stat()
    path.write_text("B")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # only the sha256 tells


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "new.h5").write_bytes(b""),
        lambda root: (root / ".out.h5.123@host.abcd.partial").write_bytes(b"x"),
        lambda root: (root / "empty-dir").mkdir(),
        lambda root: (root / "a.txt").unlink(),
        lambda root: os.utime(root / "a.txt", ns=(1, 1)),
        _rewrite_keeping_size_and_mtime,
    ],
    ids=["new-file", "temp-file", "new-directory", "removed", "touched", "rewritten"],
)
def test_the_seal_sees_every_change(tmp_path, change):
    (tmp_path / "a.txt").write_text("A")
    with pytest.raises(AssertionError), Sealed(tmp_path):
        change(tmp_path)
    with Sealed(tmp_path):  # reading and listing are not changes
        sorted(tmp_path.rglob("*"))


def test_the_runner_refuses_no_error_and_foreign_errors():
    with pytest.raises(pytest.fail.Exception, match="no error"):
        _outcome(lambda: 42)
    with pytest.raises(ValueError):  # not a basinflow.Error: the case errors out
        _outcome(lambda: int("x"))
    failed = CookResult("p", "s", "r", "failed", None, 0.0, 0, 0, "why", "")
    with pytest.raises(AssertionError, match="without naming its error"):
        _outcome(lambda: failed)
