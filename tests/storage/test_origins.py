"""Credentials and headers belong to an origin (scheme, host, port).

Observed on real loopback servers whose request logs record header *names*: a header
configured for one server never reaches another, whether a redirect leads there (raw
reads follow redirects; aiohttp alone drops only ``Authorization`` and cookies) or the
other server is merely trusted (AWS credentials from the environment are not sent to an
S3 endpoint the user trusts without pairing credentials with it).
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

import basinflow as bf
from basinflow.errors import Error, MissingBasinWarning, RangeNotSupportedError
from basinflow.storage import fs
from basinflow.storage.referrer.basins import Basin
from tests.storage import test_hostile_referrers as hostile
from tests.storage.test_hostile_referrers import _plain_ref
from tests.support import servers

redirecting = hostile.redirecting  # the fixture: a server that redirects to another

SECRET_HEADERS = {"X-Api-Key": "k-for-A", "Authorization": "Bearer only-for-A"}


def _names(requests: list[dict]) -> set[str]:
    return {h for r in requests for h in r["headers"]}


@pytest.mark.parametrize("where", ["headers", "client_kwargs"])
def test_headers_stay_with_their_origin_on_a_redirect(redirecting, where):
    a, target = redirecting
    opts = (
        {"headers": dict(SECRET_HEADERS)}
        if where == "headers"
        else {"client_kwargs": {"headers": dict(SECRET_HEADERS)}}
    )
    url = f"{a.url}/away/x.h5"
    assert fs.cat_ranges(url, [(0, 8)], opts) == [b"\x89HDF\r\n\x1a\n"]
    assert fs.info(url, opts)["size"] > 0
    with fs.open_input(url, opts) as f, h5py.File(f, "r") as h:  # block fetches
        assert h["a"][0] == 3.0
    seen = target.requests()
    assert seen, "the control: the redirect was followed to the target"
    assert not _names(seen) & {"x-api-key", "authorization"}
    assert any(r["range"] for r in seen)  # a byte range is no secret: kept
    # on A itself (and on a redirect within A) the headers were sent
    sent = [r for r in a.requests() if r["path"].startswith(("/away/", "/in/"))]
    assert sent and all({"x-api-key", "authorization"} <= set(r["headers"]) for r in sent)
    assert fs.cat_ranges(f"{a.url}/in/x.h5", [(0, 8)], opts) == [b"\x89HDF\r\n\x1a\n"]
    within = [r for r in a.requests() if r["path"] == "/public/x.h5"]
    assert within and all("x-api-key" in r["headers"] for r in within)


@pytest.fixture
def no_range(tmp_path):
    """``python -m http.server`` (it ignores ``Range``) serving ``x.h5`` (400 KB)."""
    (tmp_path / "plain").mkdir()
    with h5py.File(tmp_path / "plain" / "x.h5", "w") as f:
        f.create_dataset("a", data=np.arange(50_000.0), chunks=(10_000,))
    port = servers.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path / "plain",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_server_without_range_support_is_a_clear_error(no_range):
    """fsspec says ``ValueError`` for a block fetch and, worse, returns the whole file for
    a byte range; both are a basinflow error naming the URL."""
    url = f"{no_range}/x.h5"
    with pytest.raises(RangeNotSupportedError, match="Range") as err:
        fs.cat_ranges(url, [(1000, 1008)])
    assert url in str(err.value)
    with pytest.raises(RangeNotSupportedError, match="Range"), fs.open_input(url) as f:
        f.seek(300_000)
        f.read(8)
    assert fs.cat_ranges(url, [(0, None)])[0][:4] == b"\x89HDF"  # the whole file is fine


def test_a_redirect_to_a_trusted_server_without_range_support(tmp_path, no_range):
    (tmp_path / "a").mkdir()
    with servers.http_server(tmp_path / "a", redirects={"/away/": f"{no_range}/"}) as a:
        basin = Basin(
            name="moved",
            type="remote",
            format="http",
            urls=[f"{a.url}/away/x.h5"],
            datasets={"x": {"path": "/a", "dims": ["i"]}},
        )
        ds = xr.Dataset({"v": ("i", np.zeros(50_000))})
        ref = _plain_ref(tmp_path / "refs" / "ref.h5", [basin], ds=ds)
        with pytest.raises(Error, match="Range") as err:
            bf.open_referrer(str(ref), trusted_hosts=[a.url, no_range]).x.load()
        assert f"{no_range}/x.h5" in str(err.value)


def _s3_ref(path: Path) -> Path:
    far = Basin(
        name="far",
        type="remote",
        format="s3",
        urls=["s3://endpoint-b/b.h5"],
        datasets={"xb": {"path": "/b", "dims": ["index"]}},
    )
    return _plain_ref(path, [far], ds=xr.Dataset({"v": ("index", np.zeros(3))}))


def test_environment_credentials_stay_with_their_endpoint(tmp_path):
    """AWS credentials in the environment (set by the test session's conftest) are not
    sent to an S3 endpoint the user trusts without giving it credentials of its own."""
    (tmp_path / "www").mkdir()
    ref = _s3_ref(tmp_path / "refs" / "ref.h5")
    with servers.http_server(tmp_path / "www", log=tmp_path / "b.jsonl") as b:
        host_opts = {"client_kwargs": {"endpoint_url": b.url}}
        with pytest.warns(MissingBasinWarning, match="far"):
            bf.open_referrer(
                str(ref),
                trusted_hosts=["s3://endpoint-b"],
                host_options={"s3://endpoint-b": host_opts},
                missing="warn",
            )
        seen = b.requests()
        assert seen, "the control: the trusted endpoint was asked"
        assert "authorization" not in _names(seen) and "x-amz-security-token" not in _names(seen)
        # the control: credentials paired with the endpoint are sent to it
        b.log.unlink()
        with pytest.warns(MissingBasinWarning, match="far"):
            bf.open_referrer(
                str(ref),
                trusted_hosts=["s3://endpoint-b"],
                host_options={"s3://endpoint-b": {**host_opts, "key": "kb", "secret": "sb"}},
                missing="warn",
            )
        assert "authorization" in _names(b.requests())


def test_scoped_s3_options():
    aws = {"client_kwargs": {"region_name": "eu-west-1"}}
    other = {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}}
    assert fs.scoped_s3_options(aws) == aws  # AWS itself: the environment's credentials
    assert fs.scoped_s3_options(other)["anon"] is True
    for creds in ({"key": "k", "secret": "s"}, {"profile": "p"}, {"anon": False}):
        assert "anon" not in fs.scoped_s3_options({**other, **creds}) or creds.get("anon") is False
