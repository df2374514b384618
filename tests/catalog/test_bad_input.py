"""Bad input: one test per case, each asserting the error class, that the message names
the URL or key and says what to do, and that nothing was written.

Broken data sets are built once per module in a directory of their own, then served as
``file://``, over a second Range-honouring HTTP server and from ``s3://bad`` on the moto
server, so every reading path (native h5py, h5py over fsspec, tifffile over fsspec) meets
the same broken files.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import basinflow as bf
from basinflow import errors, samples
from basinflow.cli import main as cli_main
from tests.support import servers

# words a message uses when it tells the user what to do
HINT = re.compile(r"\b(check|use|set|fix|copy|call|put|rename|wait|leave|list|regenerate)\b")

SPEC = samples.SampleSpec(proposals={"p1": ("1", "2")}, ntheta=2, layouts=("nexus", "tiff"))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with size and mtime: 'nothing was written' is equality."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def check(exc: BaseException, cls: type[Exception], *names: str) -> str:
    """The error is ``cls``, a basinflow error, names every one of ``names``, gives a hint."""
    assert type(exc) is cls, f"expected {cls.__name__}, got {type(exc).__name__}: {exc}"
    assert isinstance(exc, errors.Error)
    msg = str(exc)
    for name in names:
        assert name in msg, f"{name!r} not named in {msg!r}"
    assert HINT.search(msg), f"no advice in {msg!r}"
    assert "Traceback" not in msg and "\n" not in msg
    return msg


def _groups_file(path: Path, nframes: int, ncolumn: int, *, frames: bool = True) -> None:
    with h5py.File(path, "w") as f:
        g = f.create_group("s1")
        g.attrs["title"] = "ascan theta 0 1"
        m = g.create_group("measurement")
        if frames:
            m.create_dataset(
                "pilatus",
                data=np.zeros((nframes, 4, 5), "u4"),
                chunks=(1, 4, 5) if nframes else None,
                compression="gzip" if nframes else None,
            )
        m["theta"] = np.linspace(0.0, 1.0, ncolumn)


MANIFESTS = {
    "noheader": lambda good: good[3:],
    "rowfirst": lambda good: [good[3], *good],
    "nofilecolumn": lambda good: [good[0], "% theta\ttth\tdelay\tmonitor\tname", *good[3:]],
    "repeated": lambda good: [good[0], "% theta\ttheta\tdelay\tmonitor\tfile", *good[3:]],
    "fieldcount": lambda good: [*good[:3], good[3] + "\textra", *good[4:]],
    "nonnumeric": lambda good: [*good[:3], "abc" + good[3][good[3].index("\t") :], *good[4:]],
    "escape": lambda good: [*good[:3], good[3].rsplit("\t", 1)[0] + "\t../../x.tif", *good[4:]],
    "empty": lambda good: [],
    "binary": None,
}


@pytest.fixture(scope="module")
def bad_local(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    samples.generate(root / "src", SPEC)
    good_h5 = root / "src/nexus/p1/1.h5"
    blob = good_h5.read_bytes()
    # one NeXus file per scan: {proposal}/{scan}.h5#entry
    nx = root / "nx"
    for p in ("ok", "a-1", "a_1"):
        (nx / p).mkdir(parents=True)
        shutil.copy(good_h5, nx / p / "1.h5")
    (nx / "bad").mkdir()
    (nx / "bad/truncated.h5").write_bytes(blob[: len(blob) // 2])
    (nx / "bad/header.h5").write_bytes(blob[:1000])
    (nx / "bad/text.h5").write_text("scan 1 theta counts\n" * 200)
    shutil.copy(good_h5, nx / "bad/noframes.h5")
    # frame 1's compressed chunk overwritten in the middle: the file itself opens
    shutil.copy(good_h5, nx / "bad/chunk.h5")
    with h5py.File(nx / "bad/chunk.h5", "r") as f:
        info = f["entry/data/data"].id.get_chunk_info(1)
    with open(nx / "bad/chunk.h5", "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(b"\xff" * 64)
    with h5py.File(nx / "bad/noframes.h5", "a") as f:
        del f["entry/data/data"]
    # scans as groups, one file per proposal: {proposal}.h5#{scan}
    (root / "g").mkdir()
    _groups_file(root / "g/missing.h5", 3, 3, frames=False)
    _groups_file(root / "g/mismatch.h5", 3, 5)
    _groups_file(root / "g/zero.h5", 0, 0)
    # TIFF + manifest: {proposal}/{scan}/
    good_dir = root / "src/tiff/p1/1"
    good = (good_dir / "manifest.dat").read_text().splitlines()
    for name, edit in MANIFESTS.items():
        d = root / "tiff/m" / name
        shutil.copytree(good_dir, d)
        if edit is None:
            (d / "manifest.dat").write_bytes(bytes(range(256)) * 4)
        else:
            (d / "manifest.dat").write_text("\n".join(edit(good)) + "\n")
    # frames that are not TIFF: the first one (read for the summary) and a later one
    frames = sorted(p.name for p in good_dir.glob("*.tif*"))
    for name, frame in (("first", frames[0]), ("later", frames[2])):
        d = root / "tiff/corrupt" / name
        shutil.copytree(good_dir, d)
        (d / frame).write_bytes((d / frame).read_bytes()[:40])
    d = root / "tiff/m/zero"
    d.mkdir()
    (d / "manifest.dat").write_text("\n".join(good[:3]) + "\n")
    shutil.rmtree(root / "src")
    samples.write_index(root)
    return root


@pytest.fixture(scope="module")
def bad_http(bad_local, tmp_path_factory):
    log = tmp_path_factory.mktemp("badlog") / "requests.jsonl"
    with servers.http_server(bad_local, log=log) as server:
        yield server.url


@pytest.fixture(scope="module")
def bad_s3(bad_local, s3_options) -> str:
    servers.upload(bad_local, "s3://bad/data", s3_options)
    return "s3://bad/data"


@pytest.fixture(params=["file", "http", "s3"])
def bad(request, bad_local):
    """``(root URL, storage_options)`` of the broken data on each scheme; after the test
    the local tree (which the HTTP server serves) and the S3 prefix are unchanged."""
    before = snapshot(bad_local)
    if request.param == "file":
        root, options = bad_local.as_uri(), {}
    elif request.param == "http":
        root, options = request.getfixturevalue("bad_http"), {}
    else:
        root, options = request.getfixturevalue("bad_s3"), request.getfixturevalue("s3_options")
    s3_before = _s3_listing(root, options)
    yield root, options
    assert snapshot(bad_local) == before, "a bad-input error wrote or changed files"
    assert _s3_listing(root, options) == s3_before, "a bad-input error wrote to S3"


def _s3_listing(root: str, options: dict) -> dict | None:
    if not root.startswith("s3://"):
        return None
    import fsspec

    fs, path = fsspec.core.url_to_fs(root, **options)
    fs.invalidate_cache()
    return {p: i["size"] for p, i in fs.find(path, detail=True).items()}


@pytest.fixture
def untouched(tmp_path, monkeypatch):
    """For errors raised before any storage is touched: run in an empty working directory
    and assert it stays empty."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert list(tmp_path.iterdir()) == []


# --- templates and schemes --------------------------------------------------------------------
def test_template_without_scan(untouched):
    url = f"{untouched.as_uri()}/{{proposal}}.h5"
    with pytest.raises(errors.TemplateError) as e:
        bf.Repository(url)
    check(e.value, errors.TemplateError, url, "{scan}")


def test_template_unknown_field(untouched):
    url = f"{untouched.as_uri()}/{{proposal}}/{{scna}}.h5"
    with pytest.raises(errors.TemplateError) as e:
        bf.Repository(url)
    check(e.value, errors.TemplateError, url, "scna")


def test_unknown_scheme(untouched):
    url = "ftp://example.org/{proposal}/{scan}.h5#entry"
    with pytest.raises(errors.UnknownSchemeError) as e:
        bf.Repository(url)
    msg = check(e.value, errors.UnknownSchemeError, url, "'ftp'")
    assert "s3" in msg and "file" in msg  # names what is supported


def _sent(caplog, logger: str, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records if r.name == logger)


# "fails fast" is stated as attempts, not seconds: a connection that never comes up is not
# retried by our HTTP layer, and S3 makes botocore's standard attempts and no more
def test_unreachable_http_host_fails_fast(untouched, caplog):
    url = "http://127.0.0.1:9/{proposal}/{scan}.h5#entry"  # port 9 (discard) is closed
    caplog.set_level(logging.DEBUG, logger="basinflow.storage.http")
    with pytest.raises(errors.UnreachableError) as e:
        bf.Repository(url).proposals()
    assert _sent(caplog, "basinflow.storage.http", "; retry ") == 0
    check(e.value, errors.UnreachableError, "127.0.0.1:9")
    assert isinstance(e.value, ConnectionError)


def test_unreachable_http_host_inside_file_fails_fast(untouched, caplog):
    # a fragment template opens the file itself: fsspec's HTTP info() reports a refused
    # connection as FileNotFoundError, which must not become "does not exist"
    url = "http://127.0.0.1:9/repo.h5#{proposal}/{scan}"
    caplog.set_level(logging.DEBUG, logger="basinflow.storage.http")
    with pytest.raises(errors.UnreachableError) as e:
        bf.Repository(url).proposals()
    assert _sent(caplog, "basinflow.storage.http", "; retry ") == 0
    check(e.value, errors.UnreachableError, "http://127.0.0.1:9/repo.h5")


def test_unreachable_s3_endpoint_fails_fast(untouched, caplog):
    from basinflow.storage.s3 import S3_MAX_ATTEMPTS

    port = servers.free_port()
    options = {"client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}}
    caplog.set_level(logging.DEBUG, logger="botocore.endpoint")
    with pytest.raises(errors.UnreachableError) as e:
        bf.Repository("s3://raw/{proposal}/{scan}.h5#entry", storage_options=options).proposals()
    # botocore's max_attempts counts retries: one request plus S3_MAX_ATTEMPTS, and s3fs
    # does not wrap another loop around them
    assert _sent(caplog, "botocore.endpoint", "Sending http request") == 1 + S3_MAX_ATTEMPTS
    check(e.value, errors.UnreachableError, "s3://raw/", f"127.0.0.1:{port}")


# --- keys and handles ---------------------------------------------------------------------------
def test_missing_proposal(bad):
    root, options = bad
    repo = bf.Repository(f"{root}/nx/{{proposal}}/{{scan}}.h5#entry", storage_options=options)
    with pytest.raises(errors.ProposalNotFound) as e:
        repo["2099-01"]
    check(e.value, errors.ProposalNotFound, "'2099-01'", root)
    assert isinstance(e.value, KeyError)


def test_missing_scan(bad):
    root, options = bad
    repo = bf.Repository(f"{root}/nx/{{proposal}}/{{scan}}.h5#entry", storage_options=options)
    with pytest.raises(errors.ScanNotFound) as e:
        repo["ok"]["0099"]
    check(e.value, errors.ScanNotFound, "'0099'", "'ok'")


def test_missing_scan_by_attribute_is_attribute_error(bad_local):
    repo = bf.Repository(f"{bad_local.as_uri()}/nx/{{proposal}}/{{scan}}.h5#entry")
    with pytest.raises(AttributeError, match="r0099"):
        repo.ok.r0099  # noqa: B018


@pytest.mark.parametrize("key", ["..", ".", "../ok", "a/b", "/etc", "", "ok/../..", "a\x00b"])
def test_invalid_keys_never_touch_storage(bad_local, key):
    before = snapshot(bad_local)
    repo = bf.Repository(f"{bad_local.as_uri()}/nx/{{proposal}}/{{scan}}.h5#entry")
    with pytest.raises(errors.InvalidKeyError) as e:
        repo[key]
    check(e.value, errors.InvalidKeyError, repr(key))
    with pytest.raises(errors.InvalidKeyError):
        repo["ok"][key]
    with pytest.raises(errors.InvalidKeyError):
        repo.template.fill(proposal=key, scan="1")
    assert snapshot(bad_local) == before


def test_handle_collision(bad_local):
    repo = bf.Repository(f"{bad_local.as_uri()}/nx/{{proposal}}/{{scan}}.h5#entry")
    assert {"a-1", "a_1"} <= set(repo.proposals())
    with pytest.raises(errors.HandleCollisionError) as e:
        repo.a_1  # noqa: B018
    check(e.value, errors.HandleCollisionError, "'a-1'", "'a_1'")
    # item access stays unambiguous, other handles keep working, completion does not raise
    assert repo["a-1"].key == "a-1" and repo["a_1"].key == "a_1"
    assert repo.ok.key == "ok"
    names = dir(repo)
    assert "ok" in names and "a_1" not in names


# --- raw data -------------------------------------------------------------------------------------
def _scan(root: str, options: dict, template: str, proposal: str, scan: str, **kw):
    return bf.Repository(f"{root}/{template}", storage_options=options, **kw)[proposal][scan]


@pytest.mark.parametrize("name", ["truncated", "header"])
def test_truncated_hdf5(bad, name):
    root, options = bad
    scan = _scan(root, options, "nx/{proposal}/{scan}.h5#entry", "bad", name)
    with pytest.raises(errors.NotHDF5Error) as e:
        scan.summary  # noqa: B018
    check(e.value, errors.NotHDF5Error, f"{root}/nx/bad/{name}.h5")
    with pytest.raises(errors.NotHDF5Error):
        scan.raw  # noqa: B018


@pytest.mark.parametrize("layout", ["auto", "nexus", "groups"])
def test_not_an_hdf5_file(bad, layout):
    root, options = bad
    scan = _scan(root, options, "nx/{proposal}/{scan}.h5#entry", "bad", "text", layout=layout)
    with pytest.raises(errors.NotHDF5Error) as e:
        scan.summary  # noqa: B018
    check(e.value, errors.NotHDF5Error, f"{root}/nx/bad/text.h5")


def test_missing_frames_dataset_nexus(bad):
    root, options = bad
    scan = _scan(root, options, "nx/{proposal}/{scan}.h5#entry", "bad", "noframes")
    with pytest.raises(errors.LayoutError) as e:
        scan.summary  # noqa: B018
    check(e.value, errors.LayoutError, f"{root}/nx/bad/noframes.h5#entry", "/entry/data/data")


def test_missing_frames_dataset_groups(bad):
    root, options = bad
    scan = _scan(root, options, "g/{proposal}.h5#{scan}", "missing", "s1")
    with pytest.raises(errors.LayoutError) as e:
        scan.raw  # noqa: B018
    check(e.value, errors.LayoutError, f"{root}/g/missing.h5#s1", "'frames'")


def test_missing_entry_in_file(bad):
    root, options = bad
    scan = _scan(root, options, "nx/{proposal}/{scan}.h5#nope", "ok", "1")
    with pytest.raises(errors.NotFound) as e:
        scan.summary  # noqa: B018
    check(e.value, errors.NotFound, f"{root}/nx/ok/1.h5#nope")


def test_frames_disagree_with_positioners(bad):
    root, options = bad
    scan = _scan(root, options, "g/{proposal}.h5#{scan}", "mismatch", "s1")
    with pytest.raises(errors.LayoutError) as e:
        scan.summary  # noqa: B018
    msg = check(e.value, errors.LayoutError, f"{root}/g/mismatch.h5#s1", "'theta'")
    assert "(5,)" in msg and "3 frames" in msg


def test_zero_frames_hdf5(bad):
    root, options = bad
    scan = _scan(root, options, "g/{proposal}.h5#{scan}", "zero", "s1")
    with pytest.raises(errors.LayoutError) as e:
        scan.raw  # noqa: B018
    check(e.value, errors.LayoutError, f"{root}/g/zero.h5#s1", "zero frames")


def test_zero_frames_tiff(bad):
    root, options = bad
    scan = _scan(root, options, "tiff/{proposal}/{scan}/", "m", "zero")
    with pytest.raises(errors.LayoutError) as e:
        scan.summary  # noqa: B018
    check(e.value, errors.LayoutError, f"{root}/tiff/m/zero/manifest.dat", "zero frames")


def test_corrupt_hdf5_chunk(bad):
    """A damaged compressed chunk: the frames around it read, it is a LayoutError."""
    root, options = bad
    scan = _scan(root, options, "nx/{proposal}/{scan}.h5#entry", "bad", "chunk")
    assert scan.raw.frames[0].values.sum() > 0
    with pytest.raises(errors.LayoutError) as e:
        scan.raw.frames[1].values  # noqa: B018
    check(e.value, errors.LayoutError, f"{root}/nx/bad/chunk.h5", "corrupt")


def test_corrupt_tiff_frames(bad):
    """A frame cut short: the summary names the first frame, reading names the later one."""
    root, options = bad
    template = "tiff/{proposal}/{scan}/"
    first = _scan(root, options, template, "corrupt", "first")
    with pytest.raises(errors.LayoutError) as e:
        first.summary  # noqa: B018
    check(e.value, errors.LayoutError, f"{root}/tiff/corrupt/first/", "not a readable TIFF")
    later = _scan(root, options, template, "corrupt", "later")
    assert later.summary["frames"] > 2  # the metadata comes from the first frame
    with pytest.raises(errors.LayoutError) as e:
        later.raw.frames.values  # noqa: B018
    check(e.value, errors.LayoutError, f"{root}/tiff/corrupt/later/", "not a readable TIFF")
    assert later.raw.frames[:2].values.sum() > 0  # the frames before it still read


@pytest.mark.parametrize(
    ("variant", "detail"),
    [
        ("noheader", "before the '%' column header"),
        ("rowfirst", "line 1 comes before"),
        ("nofilecolumn", "no 'file' column"),
        ("repeated", "empty or repeated"),
        ("fieldcount", "has 6 fields, the header has 5"),
        ("nonnumeric", "'theta' is not numeric"),
        ("escape", "'../../x.tif' must be a plain name"),
        ("empty", "no '%' header line"),
        ("binary", "before the '%' column header"),
    ],
)
def test_malformed_manifest(bad, variant, detail):
    root, options = bad
    scan = _scan(root, options, "tiff/{proposal}/{scan}/", "m", variant)
    with pytest.raises(errors.ManifestError) as e:
        scan.summary  # noqa: B018
    check(e.value, errors.ManifestError, f"{root}/tiff/m/{variant}/manifest.dat", detail)


def test_no_raw_library_exception_escapes(bad):
    """Every broken scan fails with a basinflow error, never h5py/aiohttp/botocore ones."""
    root, options = bad
    cases = [
        ("nx/{proposal}/{scan}.h5#entry", "bad", s)
        for s in ("truncated", "header", "text", "noframes")
    ]
    cases += [("g/{proposal}.h5#{scan}", p, "s1") for p in ("missing", "mismatch", "zero")]
    cases += [("tiff/{proposal}/{scan}/", "m", v) for v in (*MANIFESTS, "zero")]
    for template, proposal, scan in cases:
        with pytest.raises(errors.Error):
            _scan(root, options, template, proposal, scan).raw  # noqa: B018


# --- CLI ----------------------------------------------------------------------------------
def _cli_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as e:
        cli_main(argv)
    assert e.value.code == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err and "Traceback" not in out
    return lines[0]


def test_cli_unknown_scheme(capsys, untouched):
    line = _cli_error(capsys, ["ls", "ftp://example.org/{proposal}/{scan}.h5"])
    assert "ftp" in line


def test_cli_template_without_scan(capsys, untouched):
    line = _cli_error(capsys, ["ls", f"{untouched.as_uri()}/{{proposal}}.h5"])
    assert "{scan}" in line


def test_cli_missing_proposal(capsys, bad_local):
    before = snapshot(bad_local)
    line = _cli_error(
        capsys, ["ls", f"{bad_local.as_uri()}/nx/{{proposal}}/{{scan}}.h5#entry", "x9"]
    )
    assert "'x9'" in line and HINT.search(line)
    assert snapshot(bad_local) == before


def test_cli_unreachable(capsys, untouched):
    line = _cli_error(capsys, ["ls", "http://127.0.0.1:9/{proposal}/{scan}.h5#entry"])
    assert "unreachable" in line


def test_cli_broken_scan(capsys, bad_local):
    """Asked for one scan that is unreadable: one error line, exit 1."""
    repo = f"{bad_local.as_uri()}/g/{{proposal}}.h5#{{scan}}"
    line = _cli_error(capsys, ["ls", repo, "zero", "s1"])
    assert "zero frames" in line


def test_cli_listing_is_total(capsys, bad_local):
    """A proposal with an unreadable scan: the table has every scan, a status column says
    which are unreadable, the reason follows, and the exit code is 0."""
    from basinflow.cli import main

    repo = f"{bad_local.as_uri()}/g/{{proposal}}.h5#{{scan}}"
    with pytest.raises(SystemExit) as e:
        main(["ls", repo, "zero"])
    assert e.value.code == 0
    out, err = capsys.readouterr()
    assert "status" in out and "unreadable" in out
    assert "zero frames" in " ".join(out.split())
    assert "Traceback" not in out + err
