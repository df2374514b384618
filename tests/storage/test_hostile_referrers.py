"""Hostile referrers: crafted to read outside the trusted roots, reach unknown hosts, leak
credentials, refer to themselves, chain without end or exhaust memory.

"Nothing outside was opened" is proven with a sentinel file the kernel watches (inotify):
any ``open()`` of it, by h5py, by libhdf5 following a link, by fsspec, is counted. The
controls ``test_the_sentinel_counts_opens`` and
``test_xarray_alone_would_follow_a_planted_link`` show that it does count.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import struct
import tracemalloc
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

import basinflow as bf
from basinflow.errors import (
    BasinCycleError,
    BasinDepthError,
    BasinError,
    BasinLimitError,
    MissingBasinWarning,
    RedirectRefusedError,
    ReferrerError,
    UntrustedBasinError,
)
from basinflow.storage import fs, hdf5, pins
from basinflow.storage.hdf5_links import candidates
from basinflow.storage.referrer import basins as basins_mod
from basinflow.storage.referrer import load as load_mod
from basinflow.storage.referrer import meta as meta_mod
from basinflow.storage.referrer import open as open_mod
from basinflow.storage.referrer.basins import MAX_BASIN_DEPTH, MAX_BASINS, Basin
from basinflow.storage.referrer.meta import read_meta
from basinflow.storage.referrer.trust import Trust
from basinflow.storage.referrer.write import internal_basin, write_referrer
from tests.storage.test_referrer import _foreign
from tests.support import servers

# --- a sentinel that counts every open() -------------------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)
_IN_OPEN = 0x20


class Watched:
    """A file whose every ``open()``, by anyone in any library, the kernel reports
    (inotify ``IN_OPEN``, queued before ``open`` returns: no race, no timing). ``stat``,
    ``realpath`` and ``exists`` do not open a file, so checking a location is not counted.
    """

    def __init__(self, path: Path, data: bytes | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is None:  # a real HDF5 file: following a link to it would succeed
            _h5(path, x=np.full(3, 42.0))
        else:
            path.write_bytes(data)
        self.path = path
        self._fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0 or _libc.inotify_add_watch(self._fd, str(path).encode(), _IN_OPEN) < 0:
            pytest.skip(f"inotify unavailable: {os.strerror(ctypes.get_errno())}")
        self._count = 0

    def opens(self) -> int:
        """How often the file was opened since it was made."""
        while True:
            try:
                buf = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return self._count
            off = 0
            while off < len(buf):
                _wd, mask, _cookie, size = struct.unpack_from("iIII", buf, off)
                self._count += bool(mask & _IN_OPEN)
                off += 16 + size

    def close(self) -> None:
        os.close(self._fd)


@pytest.fixture
def secret(tmp_path):
    """``tmp_path/outside/secret.h5``: outside the referrer directory, counting opens."""
    watched = Watched(tmp_path / "outside" / "secret.h5")
    yield watched
    watched.close()


def _plain_ref(path: Path, basins=(), **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = kw.pop("ds") if "ds" in kw else xr.Dataset({"v": ("index", np.zeros(2))})
    write_referrer(str(path), ds, referrer_url=path.as_uri(), basins=list(basins), **kw)
    return path


def _h5(path: Path, **datasets) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value
    return path


# --- 1. outside the trusted roots ---------------------------------------------------------------
def _locations(tmp_path: Path) -> dict[str, str]:
    dl = tmp_path / "downloads"
    dl.mkdir(exist_ok=True)
    (dl / "alias.h5").symlink_to(tmp_path / "outside" / "secret.h5")
    (dl / "outdir").symlink_to(tmp_path / "outside", target_is_directory=True)
    return {
        "absolute": str(tmp_path / "outside" / "secret.h5"),
        "dotdot": "../outside/secret.h5",
        "deep-dotdot": "../" * 40 + str(tmp_path / "outside" / "secret.h5").lstrip("/"),
        "file-url": (tmp_path / "outside" / "secret.h5").as_uri(),
        "symlink": "alias.h5",
        "symlinked-dir": "outdir/secret.h5",
        # percent-encoding: the decoded form leaves the root ...
        "pct-dotdot": f"file://{dl}/%2e%2e/outside/secret.h5",
        "pct-slash": f"file://{dl}/x/%2E%2E%2f%2e%2e/outside/secret.h5",
        # ... or the literal form (the one fsspec and h5py open) leaves it
        "pct-literal": f"file://{dl}/a%2fb/../../outside/secret.h5",
        "relative-file-url": "file://outside/secret.h5",
        "home": "file://~/../../" + str(tmp_path / "outside" / "secret.h5").lstrip("/"),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "absolute",
        "dotdot",
        "deep-dotdot",
        "file-url",
        "symlink",
        "symlinked-dir",
        "pct-dotdot",
        "pct-slash",
        "pct-literal",
        "relative-file-url",
        "home",
    ],
)
def test_file_basins_outside_the_roots_are_never_opened(tmp_path, secret, kind, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "file://outside/..." would be found from here
    target = _locations(tmp_path)[kind]
    (tmp_path / "downloads" / "a%2fb").mkdir()  # make the literal path of pct-literal real
    reason = _REASONS.get(kind, "outside the trusted roots")
    for layout in ("datasets", "referrer", "nexus"):
        basin = Basin(name="evil", type="file", paths=[target], layout=layout, fragment="entry")
        path = _plain_ref(tmp_path / "downloads" / f"{layout}.h5", [basin])
        with pytest.raises(UntrustedBasinError, match="none was opened") as err:
            bf.open_referrer(str(path))
        assert "evil" in str(err.value) and "trusted=" in str(err.value)
        assert f"(untrusted: {reason} (not opened))" in str(err.value)  # says why
    assert secret.opens() == 0


_REASONS = {  # why each location above is refused, when not "outside the trusted roots"
    "pct-dotdot": "outside the trusted roots once percent-decoded",
    "pct-slash": "outside the trusted roots once percent-decoded",
    "relative-file-url": "a relative file URL",
    "home": "a relative file URL",
}


def test_refusals_say_why(tmp_path):
    """Each refused location is listed with the reason it was refused."""
    ref = (tmp_path / "downloads" / "ref.h5").as_uri()
    trust = Trust.build(["http://h:1/pub"], ["http://t:2"], referrer_url=ref)
    reasons = {
        str(tmp_path / "outside" / "x.h5"): "outside the trusted roots",
        f"{tmp_path}/downloads/a\0b.h5": "a NUL character",
        "file://x.h5": "a relative file URL",
        "http://h:1/pub/../private/x.h5": "a '..' or '.' segment",
        "http://h:1/pub/%2e%2e/private/x.h5": "a '..' or '.' segment",
        "http://h:1/private/x.h5": "outside the trusted roots",
        "http://evil:1/pub/x.h5": "unknown host http://evil:1",
        "s3://bucket/x.h5": "unknown host s3://bucket",
    }
    for url, reason in reasons.items():
        with pytest.raises(UntrustedBasinError) as err:
            trust.check(url)
        assert err.value.reason == reason, url
        assert repr(url) in str(err.value) and "not opened" in str(err.value)
    # and resolve() records them, one per location
    basin = Basin(name="b", type="remote", format="http", urls=list(reasons)[3:])
    meta = meta_mod.ReferrerMeta(ref, [basin], {}, {}, {}, "1")
    res = load_mod.resolve(basin, meta, trust)
    assert res.status == "untrusted"
    assert res.tried == [(u, f"untrusted: {r} (not opened)") for u, r in list(reasons.items())[3:]]
    for url, reason in list(reasons.items())[3:]:
        assert f"{url} (untrusted: {reason} (not opened))" in res.message


def test_a_tilde_file_url_is_not_read_relative_to_the_working_directory(tmp_path, monkeypatch):
    """``file://~/x.h5``: h5py opens ``./~/x.h5`` (no ``~`` expansion), so checking the
    expanded path (inside a trusted home) would allow a file the check never saw."""
    home, work = tmp_path / "home", tmp_path / "work"
    _h5(home / "x.h5", x=[1.0])
    planted = Watched(work / "~" / "x.h5")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    path = _foreign(tmp_path, type="file", paths=["file://~/x.h5"])
    with pytest.raises(UntrustedBasinError, match="none was opened"):
        bf.open_referrer(str(path), trusted=[str(home)])
    assert planted.opens() == 0
    planted.close()


def test_the_sentinel_counts_opens(tmp_path, secret):
    """The control for every ``opens() == 0`` below."""
    os.stat(secret.path)
    os.path.realpath(secret.path)
    assert secret.opens() == 0
    with h5py.File(secret.path, "r") as f:
        assert f["x"][0] == 42.0
    assert secret.opens() == 1


# HDF5 links planted in the referrer itself. xarray opens the root group and follows every
# link in it; h5py's `in` and `get(getlink=True)` open an external link's file too.
def _plant(path: Path, where: str, link) -> None:
    with h5py.File(path, "a") as f:
        if where in f:
            del f[where]
        f[where] = link


@pytest.mark.parametrize(
    "where",
    ["evil", "basins", "basinmaps/basinmap0", "provenance", "basin_data/dark/evil"],
)
@pytest.mark.parametrize("kind", ["external", "soft-to-external"])
def test_links_in_the_referrer_are_not_followed(tmp_path, secret, where, kind):
    n = 2
    dark = xr.Dataset({"dark": (("index", "y"), np.ones((1, 3)))})
    path = _plain_ref(
        tmp_path / "downloads" / "ref.h5",
        [internal_basin("dark", ["dark"], mapping="basinmap0")],
        basinmaps={"basinmap0": np.zeros(n, int)},
        internal={"dark": dark},
        dims={"index": n},
    )
    assert bf.open_referrer(str(path)).dark.shape == (n, 3)  # well-formed before planting
    if kind == "external":
        _plant(path, where, h5py.ExternalLink(str(secret.path), "/x"))
    else:
        _plant(path, "entry/hidden", h5py.ExternalLink(str(secret.path), "/x"))
        _plant(path, where, h5py.SoftLink("/entry/hidden"))
    with pytest.raises(ReferrerError, match="link") as err:
        bf.open_referrer(str(path))
    assert "not followed" in str(err.value) and where.split("/")[0] in str(err.value)
    with pytest.raises(ReferrerError):
        read_meta(str(path))
    assert secret.opens() == 0


def test_xarray_alone_would_follow_a_planted_link(tmp_path, secret):
    """Why the check above exists (and proof that the sentinel sees it)."""
    path = _plain_ref(tmp_path / "downloads" / "ref.h5")
    _plant(path, "evil", h5py.ExternalLink(str(secret.path), "/x"))
    ds = xr.open_dataset(path, engine="h5netcdf", phony_dims="access")
    assert ds.evil.values[0] == 42.0  # data from outside, read as an innate variable
    assert secret.opens() >= 1


def test_data_stored_in_another_file_is_refused(tmp_path, secret):
    path = _plain_ref(tmp_path / "downloads" / "ref.h5")
    with h5py.File(path, "a") as f:
        f.create_dataset("leak", shape=(4,), dtype="u1", external=[(str(secret.path), 0, 4)])
    with pytest.raises(ReferrerError, match="another file"):
        bf.open_referrer(str(path))
    assert secret.opens() == 0


def _basin_file(tmp_path: Path, how: str, secret_path: Path) -> Path:
    """``downloads/raw.h5``, inside the referrer's directory, whose ``/a`` leads out."""
    raw = tmp_path / "downloads" / "raw.h5"
    raw.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(raw, "w") as f:
        if how == "external-link":
            f["a"] = h5py.ExternalLink(str(secret_path), "/x")
        elif how == "relative-external-link":
            f["a"] = h5py.ExternalLink("../outside/secret.h5", "/x")
        elif how == "symlink-then-dotdot":  # the kernel resolves "deep/.." in outside/
            (raw.parent / "deep").symlink_to(secret_path.parent / "sub")
            (secret_path.parent / "sub").mkdir()
            f["a"] = h5py.ExternalLink("deep/../secret.h5", "/x")
        elif how == "link-elsewhere-in-file":  # the layout might reach it by an attribute
            f["a"] = np.arange(3.0)
            f["entry/deep/b"] = h5py.ExternalLink(str(secret_path), "/x")
        elif how == "soft-to-external":
            f["hidden"] = h5py.ExternalLink(str(secret_path), "/x")
            f["a"] = h5py.SoftLink("/hidden")
        elif how == "virtual-dataset":
            layout = h5py.VirtualLayout(shape=(3,), dtype="f8")
            layout[:] = h5py.VirtualSource(str(secret_path), "x", shape=(3,))
            f.create_virtual_dataset("a", layout)
        elif how == "external-storage":
            f.create_dataset("a", shape=(3,), dtype="f8", external=[(str(secret_path), 0, 24)])
    return raw


@pytest.mark.parametrize(
    "how",
    [
        "external-link",
        "relative-external-link",
        "symlink-then-dotdot",
        "link-elsewhere-in-file",
        "soft-to-external",
        "virtual-dataset",
        "external-storage",
    ],
)
def test_basin_files_cannot_make_hdf5_read_outside(tmp_path, secret, how):
    _basin_file(tmp_path, how, secret.path)
    path = _foreign(tmp_path, type="file", paths=["raw.h5"])
    with pytest.raises(UntrustedBasinError, match="libhdf5 would") as err:
        bf.open_referrer(str(path))
    assert "raw.h5" in str(err.value) and str(secret.path) in str(err.value)
    assert secret.opens() == 0


def test_trusted_external_links_still_work(tmp_path):
    """The audit refuses only what leaves the roots: a link inside them is allowed, and
    the dataset it leads to is read (lazily, from the file that holds it)."""
    dl = tmp_path / "downloads"
    _h5(dl / "data" / "frames.h5", x=np.arange(4.0) * 5, frames=np.arange(12.0).reshape(4, 3))
    with h5py.File(_h5(dl / "raw.h5", a=np.full(4, 7.0)), "a") as f:
        f["entry/frames"] = h5py.ExternalLink("data/frames.h5", "/frames")  # another path
        f["entry/linked"] = h5py.ExternalLink("data/frames.h5", "/x")
    basin = Basin(
        name="linked",
        type="file",
        paths=["raw.h5"],
        datasets={
            "x": {"path": "/a", "dims": ["i"]},
            "f": {"path": "/entry/frames", "dims": ["i", "y"]},
            "g": {"path": "/entry/linked", "dims": ["i"]},
        },
    )
    path = _plain_ref(dl / "ref.h5", [basin], ds=xr.Dataset({"v": ("i", np.zeros(4))}))
    ds = bf.open_referrer(str(path))
    np.testing.assert_array_equal(ds.x.values, np.full(4, 7.0))
    np.testing.assert_array_equal(ds.g.values, np.arange(4.0) * 5)
    np.testing.assert_array_equal(ds.f.values, np.arange(12.0).reshape(4, 3))
    np.testing.assert_array_equal(ds.f[1:3].values, [[3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    # the same link to a file outside is refused
    _h5(tmp_path / "elsewhere" / "frames.h5", x=np.arange(4.0), frames=np.ones((4, 3)))
    with h5py.File(dl / "raw.h5", "a") as f:
        del f["entry/linked"]
        f["entry/linked"] = h5py.ExternalLink("../elsewhere/frames.h5", "/x")
    with pytest.raises(UntrustedBasinError, match="elsewhere"):
        bf.open_referrer(str(path))
    ds = bf.open_referrer(str(path), trusted=[tmp_path])
    np.testing.assert_array_equal(ds.g.values, np.arange(4.0))  # now read from elsewhere/


def test_remote_basin_with_an_external_link_is_refused(tmp_path, secret):
    www = tmp_path / "www"
    _basin_file(tmp_path, "external-link", secret.path)
    www.mkdir()
    shutil.copy(tmp_path / "downloads" / "raw.h5", www / "raw.h5")
    with servers.http_server(www) as server:
        url = f"{server.url}/raw.h5"
        path = _foreign(tmp_path, type="remote", format="http", urls=[url])
        with pytest.raises(UntrustedBasinError, match="local disk"):
            bf.open_referrer(str(path), trusted_hosts=[server.url])
    assert secret.opens() == 0


def test_pin_file_cannot_point_outside(tmp_path, secret):
    (tmp_path / "downloads" / "scan").mkdir(parents=True)
    with pytest.raises(ReferrerError, match="pin_file"):
        Basin(name="t", type="file", paths=["scan"], pin_file="../../outside/secret.h5")
    # written around the validation: the trust check before the pin read still refuses it
    path = _foreign(tmp_path, type="file", paths=["scan"], pin={"size": 1})
    (tmp_path / "downloads" / "scan" / "manifest.dat").symlink_to(secret.path)
    with h5py.File(path, "a") as f:
        (key,) = f["basins"]
        text = json.loads(f["basins"][key][()])
        text["pin_file"] = "manifest.dat"
        del f["basins"][key]
        f["basins"][key] = json.dumps(text)
    with pytest.raises(UntrustedBasinError, match="pin file"):
        bf.open_referrer(str(path))
    assert secret.opens() == 0


# --- 2. unknown hosts ---------------------------------------------------------------------------
def test_untrusted_http_locations_get_no_request(tmp_path):
    www = tmp_path / "www"
    _h5(www / "public" / "x.h5", a=[1.0])
    _h5(www / "private" / "x.h5", a=[1.0])
    log = tmp_path / "requests.jsonl"
    with servers.http_server(www, log=log) as server:
        netloc = server.url.split("://", 1)[1]
        urls = [
            f"{server.url}/private/x.h5",  # not under the trusted root
            f"{server.url}/publicity/x.h5",  # a prefix, not a path segment
            f"{server.url}/public/../private/x.h5",
            f"{server.url}/public/%2e%2e/private/x.h5",
            f"{server.url}/public/..%2fprivate/x.h5",
            f"http://127.0.0.1:1@{netloc}/public/x.h5",  # userinfo naming a trusted host
            f"HTTP://{netloc}.evil.invalid/public/x.h5",
        ]
        reasons = [
            "outside the trusted roots",
            "outside the trusted roots",
            "a '..' or '.' segment",
            "a '..' or '.' segment",
            "a '..' or '.' segment",
            f"unknown host http://127.0.0.1:1@{netloc}",
            f"unknown host http://{netloc}.evil.invalid",
        ]
        for url, reason in zip(urls, reasons, strict=True):
            path = _foreign(tmp_path, type="remote", format="http", urls=[url])
            with pytest.raises(UntrustedBasinError, match="none was opened") as err:
                bf.open_referrer(
                    str(path),
                    trusted=[f"{server.url}/public"],
                    trusted_hosts=["http://127.0.0.1:1"],
                    storage_options={"headers": {"Authorization": "Bearer secret"}},
                )
            assert f"{url} (untrusted: {reason} (not opened))" in str(err.value)
        # the control: a trusted location is requested (the log does record requests)
        path = _foreign(tmp_path, type="remote", format="http", urls=[f"{server.url}/public/x.h5"])
        assert bf.open_referrer(str(path), trusted=[f"{server.url}/public"]).x.values[0] == 1.0
        assert {r["path"] for r in server.requests()} == {"/public/x.h5"}


def _http_basin_ref(path: Path, url: str) -> Path:
    basin = Basin(
        name="moved",
        type="remote",
        format="http",
        urls=[url],
        datasets={"x": {"path": "/a", "dims": ["i"]}},
    )
    return _plain_ref(path, [basin], ds=xr.Dataset({"v": ("i", np.zeros(1))}))


@pytest.fixture
def redirecting(tmp_path):
    """``(a, target)``: a trusted server ``a`` that redirects ``/away/`` to the server
    ``target`` (never trusted unless a test says so), ``/up/`` to ``/private/`` and
    ``/in/`` to ``/public/`` on itself, and ``/loop/`` to itself. Both log requests."""
    _h5(tmp_path / "a" / "public" / "x.h5", a=[1.0])
    _h5(tmp_path / "a" / "private" / "x.h5", a=[2.0])
    _h5(tmp_path / "t" / "x.h5", a=[3.0])
    with servers.http_server(tmp_path / "t", log=tmp_path / "t.jsonl") as target:
        redirects = {
            "/away/": f"{target.url}/",
            "/up/": "/private/",
            "/in/": "/public/",
            "/loop/": "/loop/",
        }
        with servers.http_server(tmp_path / "a", tmp_path / "a.jsonl", redirects) as a:
            yield a, target


def test_a_redirect_to_an_untrusted_location_gets_no_request(tmp_path, redirecting):
    """A trusted host answering ``302 Location: <elsewhere>`` does not make us contact
    elsewhere: the target is checked like any location, and refused."""
    a, target = redirecting
    auth = {a.url: {"headers": {"Authorization": "Bearer only-for-A"}}}
    refs = tmp_path / "refs"
    cases = [  # (basin URL, trusted roots, trusted hosts, where it redirects)
        (f"{a.url}/away/x.h5", [], [a.url], f"{target.url}/x.h5"),  # to an unknown host
        (f"{a.url}/up/x.h5", [f"{a.url}/up"], [], f"{a.url}/private/x.h5"),  # out of a root
    ]
    for i, (url, trusted, hosts, to) in enumerate(cases):
        ref = _http_basin_ref(refs / f"{i}.h5", url)
        with pytest.raises(UntrustedBasinError, match="redirect") as err:
            bf.open_referrer(str(ref), trusted=trusted, trusted_hosts=hosts, host_options=auth)
        msg = str(err.value)
        assert repr(url) in msg and repr(to) in msg and "was not contacted" in msg, msg
        assert "trusted_hosts=[...]" in msg and "fix the referrer" in msg
    assert target.requests() == []  # not a single request reached the target
    assert [r["path"] for r in a.requests()] == ["/away/x.h5", "/up/x.h5"]  # the 302s only
    # a redirect loop is a missing basin, not a hang
    with pytest.raises(BasinError, match="redirect loop"):
        bf.open_referrer(
            str(_http_basin_ref(refs / "loop.h5", f"{a.url}/loop/x.h5")), trusted_hosts=[a.url]
        )


def test_a_redirect_to_a_trusted_location_is_followed(tmp_path, redirecting):
    a, target = redirecting
    refs = tmp_path / "refs"
    # within the trusted host: read from where it led
    ds = bf.open_referrer(
        str(_http_basin_ref(refs / "in.h5", f"{a.url}/in/x.h5")), trusted_hosts=[a.url]
    )
    assert ds.x.values[0] == 1.0
    (res,) = ds.encoding["basins"]
    assert res.location == f"{a.url}/public/x.h5"
    assert res.tried[0] == (f"{a.url}/in/x.h5", f"redirected (HTTP 302) to {res.location}")
    # the control of the test above: trusting the target (what its message says to do)
    # makes the same redirect work, and the target's log does record requests; the
    # credentials configured for A stay with A
    auth = {a.url: {"headers": {"Authorization": "Bearer only-for-A"}}}
    ref = _http_basin_ref(refs / "away.h5", f"{a.url}/away/x.h5")
    ds = bf.open_referrer(str(ref), trusted_hosts=[a.url, target.url], host_options=auth)
    assert ds.x.values[0] == 3.0
    seen = target.requests()
    assert seen and not any("authorization" in r["headers"] for r in seen)
    assert any("authorization" in r["headers"] for r in a.requests() if r["path"] == "/away/x.h5")


def test_requests_for_basins_follow_no_redirect_but_raw_reads_do(redirecting):
    """Every kind of request made for a basin refuses a 3xx (metadata, ranges, libhdf5's
    reads through a file object, block fetches), naming both URLs; the repository's own
    reads (options without ``allow_redirects``) still follow redirects."""
    a, target = redirecting
    url = f"{a.url}/away/x.h5"
    opts = Trust.build(trusted_hosts=[a.url]).check(url)
    assert opts == {"allow_redirects": False}
    fsys, fpath = fs.url_to_fs(url, opts)
    calls = {
        "info": lambda: fs.info(url, opts),
        "exists": lambda: fs.exists(url, opts),
        "pin": lambda: pins.pin(url, opts),
        "cat_ranges": lambda: fs.cat_ranges(url, [(0, 8)], opts),
        "open_input": lambda: fs.open_input(url, opts),
        "h5py": lambda: hdf5.open_h5(url, opts),
        "basin file": lambda: meta_mod.open_h5(url, opts, "basin"),  # not "not HDF5"
        "referrer basin": lambda: read_meta(url, opts),
        "block fetch": lambda: fsys.open(fpath, "rb", size=4096).read(8),
    }
    for name, call in calls.items():
        with pytest.raises(RedirectRefusedError) as err:
            call()
        assert isinstance(err.value, UntrustedBasinError), name
        assert repr(url) in str(err.value) and repr(f"{target.url}/x.h5") in str(err.value)
        assert err.value.target == f"{target.url}/x.h5" and err.value.status == 302
    assert target.requests() == []
    # unchanged for reads that do not come from a referrer
    assert fs.cat_ranges(url, [(0, 8)]) == [b"\x89HDF\r\n\x1a\n"]
    assert [r["path"] for r in target.requests()] == ["/x.h5"]


class Listener:
    """A listening socket nobody should connect to; ``connections()`` counts those made
    (the kernel completes a handshake into the backlog even if nobody accepts)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        n = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return n
            conn.close()
            n += 1


@pytest.fixture
def listener():
    lis = Listener()
    yield lis
    lis.sock.close()


def test_unknown_endpoints_get_no_connection(tmp_path, listener):
    port = listener.port
    endpoint = f"http://127.0.0.1:{port}"
    options = {"client_kwargs": {"endpoint_url": endpoint}, "key": "k", "secret": "s"}
    for basin in (
        {"type": "remote", "format": "s3", "urls": ["s3://bucket/x.h5"]},
        {"type": "remote", "format": "http", "urls": [f"{endpoint}/x.h5"]},
    ):
        path = _foreign(tmp_path, **basin)
        with pytest.raises(UntrustedBasinError, match="none was opened"):
            bf.open_referrer(str(path), storage_options=options)
    # the control: the listener does see a client that is allowed to connect
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert listener.connections() == 1


def test_endpoint_written_into_a_basin_is_ignored(tmp_path, listener, s3_server, s3_options):
    """A definition cannot carry storage options: crafted keys are dropped, the caller's
    host_options decide where ``s3://bucket`` goes."""
    local = _h5(tmp_path / "src" / "a.h5", a=[5.0])
    servers.upload(local.parent, "s3://hostile-endpoint", s3_options)
    path = _foreign(tmp_path, type="remote", format="s3", urls=["s3://hostile-endpoint/a.h5"])
    evil = {"endpoint_url": f"http://127.0.0.1:{listener.port}"}
    with h5py.File(path, "a") as f:
        (key,) = f["basins"]
        text = json.loads(f["basins"][key][()])
        text.update(storage_options={"client_kwargs": evil}, client_kwargs=evil, **evil)
        del f["basins"][key]
        f["basins"][key] = json.dumps(text)
    ds = bf.open_referrer(
        str(path),
        trusted_hosts=["s3://hostile-endpoint"],
        host_options={"s3://hostile-endpoint": s3_options},
    )
    np.testing.assert_array_equal(ds.x.values, [5.0])
    assert listener.connections() == 0


# --- 3. credentials go only to their own host ---------------------------------------------------
@pytest.mark.parametrize("how", ["storage_options", "host_options"])
def test_authorization_reaches_only_its_host(tmp_path, how):
    wa, wb = tmp_path / "a", tmp_path / "b"
    _h5(wa / "refs" / "near.h5", a=np.arange(3.0))
    _h5(wb / "far.h5", b=np.arange(3.0) * 2)
    auth = {"headers": {"Authorization": "Bearer only-for-A"}}
    with (
        servers.http_server(wa, log=tmp_path / "a.jsonl") as a,
        servers.http_server(wb, log=tmp_path / "b.jsonl") as b,
    ):
        near = Basin(
            name="near",
            type="remote",
            format="http",
            urls=[f"{a.url}/refs/near.h5"],
            datasets={"xa": {"path": "/a", "dims": ["index"]}},
        )
        far = Basin(
            name="far",
            type="remote",
            format="http",
            urls=[f"{b.url}/far.h5"],
            datasets={"xb": {"path": "/b", "dims": ["index"]}},
            order=1,
        )
        ref = _plain_ref(wa / "refs" / "ref.h5", [near, far], ds=xr.Dataset())
        if how == "storage_options":  # the referrer is on A; A's options are the caller's
            ds = bf.open_referrer(
                f"{a.url}/refs/ref.h5", storage_options=auth, trusted_hosts=[b.url]
            )
        else:  # a local referrer; both hosts trusted, credentials configured for A only
            ds = bf.open_referrer(
                str(ref), trusted_hosts=[a.url, b.url], host_options={a.url: auth}
            )
        np.testing.assert_array_equal(ds.xb.values, np.arange(3.0) * 2)
        np.testing.assert_array_equal(ds.xa.values, np.arange(3.0))
        seen_a, seen_b = a.requests(), b.requests()
    assert seen_a and all("authorization" in r["headers"] for r in seen_a)
    assert seen_b and not any("authorization" in r["headers"] for r in seen_b)
    assert all(r["headers"] for r in seen_b)  # header names are recorded at all


def test_per_url_options_never_carry_credentials_elsewhere():
    a_opts = {"client_kwargs": {"endpoint_url": "http://a:9000"}, "key": "A", "secret": "S"}
    b_opts = {"client_kwargs": {"endpoint_url": "http://b:9000"}}
    trust = Trust.build(
        [("s3://raw/samples", a_opts)],
        ["s3://other", "http://web:80"],
        host_options={"s3://other": b_opts},
    )
    assert trust.check("s3://raw/samples/p1/1.h5") == a_opts
    # no credentials named for B: asked anonymously, never with the environment's keys
    assert trust.check("s3://other/x.h5") == {**b_opts, "anon": True}
    assert trust.check("http://web:80/x.h5") == {"allow_redirects": False}  # no credentials
    for url in ("s3://raw/samplesX/1.h5", "s3://raw/other.h5", "s3://third/x.h5"):
        with pytest.raises(UntrustedBasinError):
            trust.check(url)
    # HostOptions (repository options) hand a host's options to that host only
    home = fs.HostOptions(
        home="http://a:80/data",
        default={"headers": {"Authorization": "A"}},
        extra={"http://b:80": {"headers": {"X-Token": "B"}}},
    )
    assert home.for_url("http://a:80/data/x.h5") == {"headers": {"Authorization": "A"}}
    assert home.for_url("http://b:80/x.h5") == {"headers": {"X-Token": "B"}}
    for url in (
        "http://a:80@evil:80/x.h5",
        "http://evil:80/x.h5",
        "https://a:80/x.h5",
        "http://a:8080/x.h5",
        "s3://bucket/x.h5",
    ):
        assert "Authorization" not in json.dumps(home.for_url(url)), url
    s3_home = fs.HostOptions(home="s3://raw", default=a_opts)
    assert s3_home.for_url("http://a:9000/raw/x.h5") == {}
    assert s3_home.for_url("file:///etc/passwd") == {}


def test_s3_credentials_stay_with_their_endpoint(tmp_path, s3_server, s3_options):
    """A session token configured for endpoint A (moto) must not reach endpoint B (a
    logging HTTP server posing as S3); the header *name* ``x-amz-security-token`` shows
    whether it was sent."""
    a_opts = {**s3_options, "token": "session-token-for-A"}
    local = _h5(tmp_path / "src" / "a.h5", a=np.arange(3.0))
    servers.upload(local.parent, "s3://endpoint-a", a_opts)
    (tmp_path / "www").mkdir()

    def run(b_extra: dict) -> list[dict]:
        log = tmp_path / f"b{len(b_extra)}.jsonl"
        with servers.http_server(tmp_path / "www", log=log) as b:
            near = Basin(
                name="near",
                type="remote",
                format="s3",
                urls=["s3://endpoint-a/a.h5"],
                datasets={"xa": {"path": "/a", "dims": ["index"]}},
            )
            far = Basin(
                name="far",
                type="remote",
                format="s3",
                urls=["s3://endpoint-b/b.h5"],
                datasets={"xb": {"path": "/b", "dims": ["index"]}},
                order=1,
            )
            ref = _plain_ref(tmp_path / "refs" / "ref.h5", [near, far], ds=xr.Dataset())
            b_opts = {"client_kwargs": {"endpoint_url": b.url}, "key": "kb", "secret": "sb"}
            with pytest.warns(MissingBasinWarning, match="far"):
                ds = bf.open_referrer(
                    str(ref),
                    trusted=[("s3://endpoint-a", a_opts)],
                    trusted_hosts=["s3://endpoint-b"],
                    host_options={"s3://endpoint-b": {**b_opts, **b_extra}},
                    missing="warn",
                )
            np.testing.assert_array_equal(ds.xa.values, np.arange(3.0))  # A got its token
            return b.requests()

    seen = run({})
    assert seen and not any("x-amz-security-token" in r["headers"] for r in seen)
    control = run({"token": "session-token-for-B"})
    assert any("x-amz-security-token" in r["headers"] for r in control)


# --- 4. itself ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "how", ["same", "relative", "dot", "dotdot", "file-url", "symlink", "hard"]
)
def test_a_referrer_naming_itself_is_a_cycle(tmp_path, how):
    dl = tmp_path / "downloads"
    dl.mkdir()
    me = dl / "self.h5"
    target = {
        "same": str(me),
        "relative": "self.h5",
        "dot": "./self.h5",
        "dotdot": "../downloads/self.h5",
        "file-url": me.as_uri(),
        "symlink": "alias.h5",
        "hard": "hard.h5",
    }[how]
    _plain_ref(me, [Basin(name="me", type="file", paths=[target], layout="referrer")])
    (dl / "alias.h5").symlink_to(me)
    os.link(me, dl / "hard.h5")
    with pytest.raises(BasinCycleError, match="cycle") as err:
        bf.open_referrer(str(me))
    assert str(err.value).count(" -> ") == 1  # found at the first step, not after a loop


def test_a_remote_referrer_naming_itself_is_a_cycle(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    with servers.http_server(www) as server:
        for basin in (
            *(
                Basin(name="me", type="remote", format="http", urls=[url], layout="referrer")
                for url in (f"{server.url}/self.h5", f"{server.url}/self.h5?again")
            ),
            Basin(name="me", type="file", paths=["self.h5"], layout="referrer"),
        ):
            _plain_ref(www / "self.h5", [basin])
            with pytest.raises(BasinCycleError):
                bf.open_referrer(f"{server.url}/self.h5")


# --- 5. very deep chains -------------------------------------------------------------------------
def _chain(root: Path, depth: int, end: str) -> tuple[Path, Watched | None]:
    """``root/chain/ref.h5`` -> ``.../sub/ref.h5`` -> ... (``depth`` referrers); the next
    level is ``end``: "none" (the last referrer has no basin) or "garbage" (not HDF5,
    watched)."""
    link = Basin(name="below", type="file", paths=["sub/ref.h5"], layout="referrer")
    template = _plain_ref(root / "template" / "ref.h5", [link])
    last = _plain_ref(root / "template" / "last.h5")
    d = root / "chain"
    for i in range(depth):
        d.mkdir(parents=True)
        shutil.copy(template if (i < depth - 1 or end != "none") else last, d / "ref.h5")
        d = d / "sub"
    if end == "garbage":
        return root / "chain" / "ref.h5", Watched(d / "ref.h5", b"not HDF5 at all\n" * 64)
    return root / "chain" / "ref.h5", None


def test_a_chain_of_200_is_refused_before_its_deep_end(tmp_path):
    top, garbage = _chain(tmp_path, 200, "garbage")
    with pytest.raises(BasinDepthError) as err:
        bf.open_referrer(str(top))
    assert garbage.opens() == 0
    msg = str(err.value)
    assert isinstance(err.value, BasinError)
    assert f"{MAX_BASIN_DEPTH} referrers (MAX_BASIN_DEPTH)" in msg and "export" in msg.lower()
    assert os.path.realpath(top) in msg and f"{MAX_BASIN_DEPTH}th" in msg


def test_the_depth_limit_is_exact_and_opens_nothing_deeper(tmp_path):
    top, _ = _chain(tmp_path / "ok", MAX_BASIN_DEPTH, "none")
    ds = bf.open_referrer(str(top))  # exactly MAX_BASIN_DEPTH referrers: fine
    assert len(ds.encoding["basins"]) == 1
    top, garbage = _chain(tmp_path / "deep", MAX_BASIN_DEPTH, "garbage")
    with pytest.raises(BasinDepthError):  # not a format error: the next file is not opened
        bf.open_referrer(str(top))
    assert garbage.opens() == 0  # the (MAX_BASIN_DEPTH + 1)th


def test_fan_out_is_bounded(tmp_path, monkeypatch):
    """Each level names the next one 4 times: 4**6 opens without a total limit."""
    monkeypatch.setattr(open_mod, "MAX_REFERRERS", 30)
    fan = [
        Basin(name=f"b{i}", type="file", paths=["sub/ref.h5"], layout="referrer", order=i)
        for i in range(4)
    ]
    template = _plain_ref(tmp_path / "t.h5", fan)
    d = tmp_path / "fan"
    for _ in range(6):
        d.mkdir(parents=True)
        shutil.copy(template, d / "ref.h5")
        d = d / "sub"
    _plain_ref(d / "ref.h5")
    with pytest.raises(BasinLimitError, match="MAX_REFERRERS"):
        bf.open_referrer(str(tmp_path / "fan" / "ref.h5"))


# --- 6. bounded memory ---------------------------------------------------------------------------
def _peak(call) -> tuple[Exception, int]:
    """The exception ``call`` raises and the peak of Python-traced memory (NumPy arrays
    included) while it ran."""
    tracemalloc.start()
    try:
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - returned for the caller to check
            caught = exc
        else:
            caught = AssertionError("no error")
        return caught, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


_HUGE = 10**8  # entries declared; 800 MB if read as int64, a few KiB on disk (never written)


def _mapped_ref(path: Path, n: int = 4) -> Path:
    dark = xr.Dataset({"dark": (("index", "y"), np.ones((1, 3)))})
    return _plain_ref(
        path,
        [internal_basin("dark", ["dark"], mapping="basinmap0")],
        basinmaps={"basinmap0": np.zeros(n, int)},
        internal={"dark": dark},
        dims={"index": n},
        ds=xr.Dataset({"v": ("index", np.zeros(n))}),
    )


@pytest.mark.parametrize("dims", ["consistent", "inconsistent", "absent"])
def test_a_huge_basinmap_is_refused_unread(tmp_path, dims):
    path = _mapped_ref(tmp_path / "ref.h5")
    with h5py.File(path, "a") as f:
        del f["basinmaps/basinmap0"]
        f["basinmaps"].create_dataset(
            "basinmap0", shape=(_HUGE,), dtype="i8", chunks=(2**20,), compression="gzip"
        )
        if dims == "consistent":  # the attacker declares a matching referrer length too
            f.attrs["basinflow_dims"] = json.dumps({"index": _HUGE})
        elif dims == "absent":
            del f.attrs["basinflow_dims"]
    assert path.stat().st_size < 1_000_000
    err, peak = _peak(lambda: bf.open_referrer(str(path)))
    assert isinstance(err, ReferrerError), err
    assert "basinmap0" in str(err) and "not read" in str(err)
    if dims != "inconsistent":
        assert isinstance(err, BasinLimitError) and "MAX_BASINMAP_LENGTH" in str(err)
    assert peak < 50e6, peak  # reading it would take 800 MB


def test_thousands_of_basins_are_refused_unparsed(tmp_path):
    path = _plain_ref(tmp_path / "ref.h5")
    with h5py.File(path, "a") as f:
        g = f["basins"]
        g["k0"] = "this is not JSON: parsing it would fail differently"
        for i in range(1, 5000):
            g[f"k{i}"] = g["k0"]  # hard links: 5000 entries in a small file
    with pytest.raises(BasinLimitError, match="MAX_BASINS") as err:
        bf.open_referrer(str(path))
    assert "5000 basin definitions" in str(err.value) and str(MAX_BASINS) in str(err.value)


@pytest.mark.parametrize("where", ["basins/k", "provenance/document"])
def test_huge_declared_text_is_refused_unread(tmp_path, where):
    path = _plain_ref(tmp_path / "ref.h5")
    with h5py.File(path, "a") as f:
        if where in f:
            del f[where]
        f.create_dataset(where, shape=(_HUGE,), dtype="S8", chunks=(2**18,), compression="gzip")
    err, peak = _peak(lambda: bf.open_referrer(str(path)))
    assert isinstance(err, ReferrerError) and "not a scalar string" in str(err), err
    assert peak < 50e6, peak


def test_a_multi_megabyte_basin_definition_is_refused(tmp_path):
    path = _plain_ref(tmp_path / "ref.h5")
    huge = json.dumps({"name": "x", "type": "internal", "pad": " " * (3 * 2**20)})
    with h5py.File(path, "a") as f:
        f["basins/k"] = huge
    with pytest.raises(BasinLimitError, match="over the limit") as err:
        bf.open_referrer(str(path))
    assert "/basins/k" in str(err.value)
    with pytest.raises(BasinLimitError, match="MAX_BASIN_JSON_BYTES"):
        Basin.from_json(huge)
    assert len(huge) > basins_mod.MAX_BASIN_JSON_BYTES


# --- the resolution rules libhdf5 follows, checked against libhdf5 ------------------------------
def test_candidates_match_libhdf5(tmp_path, monkeypatch):
    """The audit relies on :func:`candidates` listing where libhdf5 looks: show that
    libhdf5 finds a linked file in the referencing file's directory first, then in the
    working directory, for both an absolute and a relative name."""
    (tmp_path / "a").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    _h5(tmp_path / "a" / "t.h5", x=[1])
    _h5(tmp_path / "cwd" / "t.h5", x=[2])
    with h5py.File(tmp_path / "a" / "m.h5", "w") as f:
        f["rel"] = h5py.ExternalLink("t.h5", "/x")
        f["abs"] = h5py.ExternalLink("/no/such/dir/t.h5", "/x")
    for name in ("rel", "abs"):
        filename = "t.h5" if name == "rel" else "/no/such/dir/t.h5"
        found = [c for c in candidates("external link", filename, str(tmp_path / "a"))]
        existing = [c for c in found if os.path.exists(c)]
        assert existing[:2] == [str(tmp_path / "a" / "t.h5"), str(tmp_path / "cwd" / "t.h5")]
        with h5py.File(tmp_path / "a" / "m.h5") as f:
            assert f[name][0] == 1  # the first existing candidate
    os.remove(tmp_path / "a" / "t.h5")
    with h5py.File(tmp_path / "a" / "m.h5") as f:
        assert f["rel"][0] == 2  # then the working directory: a candidate too


def test_no_warnings_leak_from_refusals(tmp_path, secret):
    """Refusals are errors, not warnings plus a read."""
    path = _foreign(tmp_path, type="file", paths=[str(secret.path)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UntrustedBasinError):
            bf.open_referrer(str(path), missing="warn")
    assert secret.opens() == 0


def test_a_tiff_frame_symlinked_outside_is_never_read(tmp_path):
    """A TIFF-stack basin inside the trusted directory whose frame is a symlink out."""
    import shutil

    from basinflow import samples

    site = tmp_path / "site"
    samples.generate(
        site, samples.SampleSpec(proposals={"p1": ("1",)}, ntheta=1, layouts=("tiff",))
    )
    (scan,) = [p.parent for p in site.rglob("manifest.dat")]
    frames = sorted(scan.glob("*.tif*"))
    stack = tmp_path / "downloads" / "stack"
    shutil.copytree(scan, stack)
    outside = Watched(tmp_path / "outside" / frames[1].name, frames[1].read_bytes())
    try:
        (stack / frames[1].name).unlink()
        (stack / frames[1].name).symlink_to(outside.path)
        basin = Basin(name="evil", type="file", paths=["stack"], layout="tiff")
        ds = xr.Dataset({"v": ("index", np.zeros(len(frames)))})
        path = _plain_ref(tmp_path / "downloads" / "ref.h5", [basin], ds=ds)
        with pytest.raises(UntrustedBasinError, match="outside the trusted roots") as err:
            bf.open_referrer(str(path)).compute()
        assert frames[1].name in str(err.value)
        assert outside.opens() == 0
        # the same stack without the symlink opens
        (stack / frames[1].name).unlink()
        shutil.copy(frames[1], stack / frames[1].name)
        ds = bf.open_referrer(str(path))
        assert ds["frames"].shape[0] == len(frames)
    finally:
        outside.close()


def test_a_tiff_basin_options_cannot_name_a_manifest_outside_the_stack(tmp_path):
    """Basins carry the layout options their scan was read with; a crafted ``manifest``
    option is a clear error before anything outside the stack directory is opened."""
    import shutil

    from basinflow import samples

    site = tmp_path / "site"
    samples.generate(
        site, samples.SampleSpec(proposals={"p1": ("1",)}, ntheta=1, layouts=("tiff",))
    )
    (scan,) = [p.parent for p in site.rglob("manifest.dat")]
    stack = tmp_path / "downloads" / "stack"
    shutil.copytree(scan, stack)
    outside = Watched(tmp_path / "downloads" / "outside.dat", (scan / "manifest.dat").read_bytes())
    try:
        ds = xr.Dataset({"v": ("index", np.zeros(1))})
        for manifest in ("../outside.dat", ".hidden", "a/b.dat"):
            basin = Basin(
                name="evil",
                type="file",
                paths=["stack"],
                layout="tiff",
                options={"manifest": manifest},
            )
            path = _plain_ref(tmp_path / "downloads" / "ref.h5", [basin], ds=ds)
            with pytest.raises(BasinError, match="must be a plain file name"):
                bf.open_referrer(str(path)).compute()
        assert outside.opens() == 0
    finally:
        outside.close()


def test_a_redirected_tiff_frame_is_refused_as_untrusted(tmp_path):
    """A TIFF-stack basin on a trusted host whose first frame answers with a redirect to
    an unknown host: refused as untrusted (not "not a readable TIFF"), nothing reaches
    the other host."""
    import shutil

    from basinflow import samples

    site = tmp_path / "site"
    samples.generate(
        site, samples.SampleSpec(proposals={"p1": ("1",)}, ntheta=1, layouts=("tiff",))
    )
    (scan,) = [p.parent for p in site.rglob("manifest.dat")]
    frames = sorted(scan.glob("*.tif*"))
    first = frames[0].name
    shutil.copytree(scan, tmp_path / "a" / "stack")
    shutil.copytree(scan, tmp_path / "t" / "stack")
    with servers.http_server(tmp_path / "t", log=tmp_path / "t.jsonl") as target:
        redirects = {f"/stack/{first}": f"{target.url}/stack/{first}"}
        with servers.http_server(tmp_path / "a", tmp_path / "a.jsonl", redirects) as a:
            basin = Basin(
                name="evil", type="remote", format="http", urls=[f"{a.url}/stack"], layout="tiff"
            )
            ds = xr.Dataset({"v": ("index", np.zeros(len(frames)))})
            path = _plain_ref(tmp_path / "ref.h5", [basin], ds=ds)
            with pytest.raises(UntrustedBasinError, match="redirect") as err:
                bf.open_referrer(str(path), trusted_hosts=[a.url]).compute()
            assert f"{target.url}/stack/{first}" in str(err.value)
            assert target.requests() == []
            # the control: the same stack without the redirect opens from the same host
            # (a frame's redirect is never followed, even to a trusted host: only a basin's
            # own location is resolved through redirects)
            clean = Basin(
                name="evil", type="remote", format="http", urls=[f"{a.url}/clean"], layout="tiff"
            )
            shutil.copytree(scan, tmp_path / "a" / "clean")
            path = _plain_ref(tmp_path / "clean.h5", [clean], ds=ds)
            got = bf.open_referrer(str(path), trusted_hosts=[a.url])["frames"]
            assert got.shape[0] == len(frames) and float(got[0].sum()) > 0
