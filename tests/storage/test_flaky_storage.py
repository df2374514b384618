"""Flaky storage: a fault-injecting proxy on loopback in front of the S3 server (moto) and
the HTTP server, failing a share of requests with 500/503, dropped connections and stalls
past the client's read timeout.

* transient failures are retried by the storage layer (botocore for S3, ours for
  HTTP) and a read completes with the same bytes as without faults;
* a failure that outlives the retries is a clear :class:`RetriesExhaustedError` naming the
  URL, which the flows treat as transient;
* a permanent answer (404, a file that is not HDF5) is raised at once, never retried.

Timeouts and backoffs are set low through storage_options; no timing is asserted.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

import basinflow as bf
from basinflow import errors, samples
from basinflow.storage import fs, hdf5
from basinflow.tasks.results import is_transient
from tests.support import servers
from tests.support.proxy import NO_FAULTS, mixed_faults

SPEC = samples.SampleSpec(proposals={"p1": ("1", "2", "3")}, ntheta=3, layouts=("nexus",))
MIXED = mixed_faults(seed=7)
READ_TIMEOUT = 0.5


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """Three small scans on disk, with rsm spice."""
    root = tmp_path_factory.mktemp("flaky")
    samples.generate(root, SPEC)
    repo = bf.Repository(_raw(root.as_uri()), spice=_spice(root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo["p1"].spice.seed("rsm", **samples.rsm_spice())
    return root


def _raw(base: str) -> str:
    return f"{base}/nexus/{{proposal}}/{{scan}}.h5#entry"


def _spice(root) -> str:
    return f"{root.as_uri()}/spice/{{proposal}}"


@pytest.fixture(scope="module")
def http_proxy(local):
    with servers.http_server(local) as http, servers.proxy(http.url) as px:
        yield px


@pytest.fixture(scope="module")
def s3_proxy(local, s3_server, s3_options):
    servers.upload(local, "s3://raw/flaky-storage", s3_options)
    with servers.proxy(s3_server.url) as px:
        yield px


class Backend:
    """One storage scheme behind the proxy: its base URL and storage_options."""

    def __init__(self, name: str, px: servers.Server):
        self.name, self.px = name, px
        self.base = px.url if name == "http" else "s3://raw/flaky-storage"

    def url(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def path(self, rel: str) -> str:
        """The request path the proxy sees for ``rel``."""
        return f"/{rel}" if self.name == "http" else f"/raw/flaky-storage/{rel}"

    def options(self, retries: int) -> dict:
        """Short timeouts and backoffs; ``retries`` attempts per call (botocore's for S3,
        whose backoff, up to 2**n s, cannot be lowered)."""
        opts = {"read_timeout": READ_TIMEOUT, "connect_timeout": 5, "retries": retries}
        if self.name == "http":
            return {**opts, "retry_backoff": 0.02, "retry_backoff_max": 0.2}
        return {**servers.s3_options(self.px.url), **opts}

    def requests_per_call(self, retries: int) -> int:
        return retries


@pytest.fixture(params=["http", "s3"])
def backend(request) -> Backend:
    px = request.getfixturevalue(f"{request.param}_proxy")
    px.faults(**NO_FAULTS)
    px.reset()
    yield Backend(request.param, px)
    px.faults(**NO_FAULTS)


def _paths(px) -> dict[str, int]:
    return px.stats()["paths"]


# --- the proxy -------------------------------------------------------------------------------
def test_proxy_faults_only_the_targeted_object(http_proxy):
    import urllib.error
    import urllib.request

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(http_proxy.url + path, timeout=10) as r:
                r.read()
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    http_proxy.reset()
    cfg = http_proxy.faults(fail_rate=1.0, fail_status=503, fail_paths=[r"/p1/2\.h5$"])
    try:
        assert cfg["fail_paths"] == [r"/p1/2\.h5$"] and cfg["fail_status"] == [503]
        assert status("/nexus/p1/2.h5") == 503
        assert status("/nexus/p1/1.h5") == 200
        http_proxy.faults(fail_paths=[])  # changed at run time: now every path fails
        assert status("/nexus/p1/1.h5") == 503
        stats = http_proxy.stats()
        assert stats["failed"] == stats["faults"] == 2 and stats["requests"] == 3
        assert stats["paths"] == {"/nexus/p1/2.h5": 1, "/nexus/p1/1.h5": 2}
    finally:
        http_proxy.faults(**NO_FAULTS)


# --- one call: retried when transient, raised at once when permanent -------------------------
def test_404_is_not_retried(backend):
    url = backend.url("nexus/p1/missing.h5")
    with pytest.raises(errors.NotFound) as e:
        fs.cat_ranges(url, [(0, 10)], backend.options(retries=4))
    assert url in str(e.value) and not is_transient(e.value)
    assert _paths(backend.px) == {backend.path("nexus/p1/missing.h5"): 1}


def test_a_file_that_is_not_hdf5_is_not_retried(backend, local):
    backend.px.faults(fail_paths=[r"/truth\.json$"])  # counts, no faults
    with pytest.raises(errors.NotHDF5Error) as e:
        hdf5.open_h5(backend.url("truth.json"), backend.options(retries=4))
    assert "truth.json" in str(e.value) and not is_transient(e.value)
    stats = backend.px.stats()
    assert stats["faults"] == 0
    # the size (HEAD, or HEAD + GET over HTTP) and the blocks libhdf5 asked for, once each
    assert stats["paths"][backend.path("truth.json")] <= 3


@pytest.mark.parametrize("status", [503, 500])
def test_a_5xx_is_retried_then_a_clear_error(backend, status):
    rel = "nexus/p1/2.h5"
    backend.px.faults(fail_rate=1.0, fail_status=status, fail_paths=[rf"/{rel}$"])
    url = backend.url(rel)
    with pytest.raises(errors.RetriesExhaustedError) as e:
        fs.cat_ranges(url, [(0, 100)], backend.options(retries=2))
    message = str(e.value)
    assert url in message and "unreachable" in message and str(status) in message
    assert "Retry later" in message and "storage_options" in message
    assert isinstance(e.value, errors.UnreachableError | ConnectionError)
    assert is_transient(e.value)
    # S3: botocore's 1 + 1 (s3fs adds no loop of its own); HTTP: our 2
    assert _paths(backend.px) == {backend.path(rel): backend.requests_per_call(2)}
    # the neighbours are untouched
    assert fs.cat_ranges(backend.url("nexus/p1/1.h5"), [(0, 8)], backend.options(retries=2))


@pytest.mark.parametrize("kind", ["reset", "stall"])
def test_dropped_and_stalled_requests_are_retried_then_a_clear_error(backend, kind):
    rel = "nexus/p1/3.h5"
    rate = {"reset": {"reset_rate": 1.0}, "stall": {"stall_rate": 1.0, "stall": 3.0}}[kind]
    backend.px.faults(fail_paths=[rf"/{rel}$"], **rate)
    url = backend.url(rel)
    with pytest.raises(errors.RetriesExhaustedError) as e:
        fs.info(url, backend.options(retries=2))
    assert url in str(e.value) and is_transient(e.value)
    assert ("timeout" if kind == "stall" else "connection") in str(e.value).lower()
    stats = backend.px.stats()
    # every attempt was answered with the fault (aiohttp may resend once on a dropped
    # keep-alive connection, so a reset can cost two requests per attempt)
    assert stats["faults"] == stats["requests"] >= backend.requests_per_call(2)


def test_hdf5_metadata_read_failing_is_unreachable_not_corrupt(backend):
    """libhdf5 reads metadata through the file object; a failure there that outlives the
    retries must say "unreachable", not "not a readable HDF5 file"."""
    rel = "nexus/p1/1.h5"
    url = backend.url(rel)
    # the size is read (HEAD passes), then every block libhdf5 asks for fails
    backend.px.faults(fail_rate=1.0, fail_paths=[rf"/{rel}$"], fail_methods=["GET"])
    opts = backend.options(retries=2)
    with pytest.raises(errors.RetriesExhaustedError) as e:
        hdf5.open_h5(url, opts).close()
    assert url in str(e.value) and is_transient(e.value)


# --- whole scans at 20 % faults: same bytes, same cooked results -------------------------------
def _values(ds: xr.Dataset) -> dict[str, np.ndarray]:
    return {name: np.asarray(v.values) for name, v in ds.variables.items()}


def _assert_same(got: xr.Dataset, want: xr.Dataset, what: str) -> None:
    a, b = _values(got), _values(want)
    assert sorted(a) == sorted(b) and a, what
    for name in b:
        assert np.array_equal(a[name], b[name], equal_nan=a[name].dtype.kind == "f"), (what, name)


def _faults_seen(px) -> dict:
    stats = px.stats()
    assert stats["faults"] > 0, f"no fault was injected: {stats}"
    return stats


def test_raw_scans_read_at_20_percent_faults_are_exact(backend, local):
    clean = bf.Repository(_raw(local.as_uri()))
    backend.px.faults(**MIXED)
    flaky = bf.Repository(_raw(backend.base), storage_options=backend.options(retries=8))
    assert flaky.proposals() == ["p1"] and flaky["p1"].scans() == ["1", "2", "3"]
    for key in ("1", "2", "3"):
        want, got = clean["p1"][key], flaky["p1"][key]
        assert got.summary == want.summary
        _assert_same(got.raw.compute(), want.raw.compute(), f"raw p1/{key}")
    _faults_seen(backend.px)


def test_bf_cook_over_http_at_20_percent_faults_matches_a_clean_cook(http_proxy, local, tmp_path):
    backend = Backend("http", http_proxy)
    http_proxy.faults(**NO_FAULTS)
    clean = bf.Repository(_raw(local.as_uri()), spice=_spice(local))
    flaky = bf.Repository(
        _raw(backend.base), spice=_spice(local), storage_options=backend.options(retries=8)
    )
    out = f"{tmp_path.as_uri()}/{{which}}/{{proposal}}/{{scan}}/{{recipe}}.h5"
    want = {
        k: bf.cook(clean["p1"][k], "rsm", output=out.replace("{which}", "clean"))
        for k in ("1", "2", "3")
    }
    http_proxy.reset()
    http_proxy.faults(**MIXED)
    try:
        for key in ("1", "2", "3"):
            got = bf.cook(flaky["p1"][key], "rsm", output=out.replace("{which}", "flaky"))
            assert got.status == "cooked" and want[key].status == "cooked", (got, want[key])
            with (
                xr.open_dataset(fs.local_path(got.output), engine="h5netcdf") as a,
                xr.open_dataset(fs.local_path(want[key].output), engine="h5netcdf") as b,
            ):
                _assert_same(a, b, f"cooked p1/{key}")
        _faults_seen(http_proxy)
    finally:
        http_proxy.faults(**NO_FAULTS)


# --- sorting errors for the flows ------------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (errors.RetriesExhaustedError("'s3://raw/x.h5': storage unreachable"), True),
        (errors.NotFound("'s3://raw/x.h5' does not exist"), False),
        (errors.NotHDF5Error("'s3://raw/x.h5' is not a readable HDF5 file"), False),
    ],
)
def test_flows_retry_exhausted_storage_but_not_bad_input(exc, transient):
    assert is_transient(exc) is transient


def test_library_errors_are_sorted_by_their_answer():
    import aiohttp
    from botocore.exceptions import ClientError, ConnectionClosedError

    def http(status):
        return aiohttp.ClientResponseError(None, (), status=status)

    def s3(code, status):
        body = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return ClientError(body, "GetObject")

    def wrapped(cause):  # how fsspec's HTTP info reports any failure
        outer = FileNotFoundError("http://h/x.h5")
        outer.__cause__ = cause
        return outer

    for exc in (http(503), http(500), s3("SlowDown", 503), s3("InternalError", 500)):
        assert is_transient(exc) and is_transient(wrapped(exc)), exc
    assert is_transient(ConnectionClosedError(endpoint_url="http://h"))
    assert is_transient(aiohttp.ServerDisconnectedError())
    for exc in (http(404), http(403), s3("NoSuchKey", 404), s3("AccessDenied", 403)):
        assert not is_transient(exc) and not is_transient(wrapped(exc)), exc
