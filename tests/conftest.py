"""Shared fixtures: sample data and real servers on loopback, started once per session.

Prefect and AWS settings are put in the environment before anything imports Prefect, so
tests never touch ~/.prefect, send telemetry, or reach a real AWS endpoint.
"""

from __future__ import annotations

import os
import tempfile

_PREFECT_HOME = tempfile.mkdtemp(prefix="basinflow-prefect-")
os.environ.update(
    {
        # the summary cache in a directory of the run's own, never the user's ~/.cache
        "BASINFLOW_CACHE": tempfile.mkdtemp(prefix="basinflow-cache-"),
        "PREFECT_HOME": _PREFECT_HOME,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
os.environ.pop("PREFECT_API_URL", None)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from basinflow import samples  # noqa: E402
from tests.support import servers  # noqa: E402

settings.register_profile("ci", max_examples=60, deadline=None)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    """The default sample repository (all layouts), written once per session."""
    root = tmp_path_factory.mktemp("samples")
    samples.generate(root)
    return root


@pytest.fixture(scope="session")
def truth(sample_root) -> dict:
    return json.loads((sample_root / "truth.json").read_text())


@pytest.fixture(scope="session")
def http_server(sample_root, tmp_path_factory):
    log = tmp_path_factory.mktemp("httplog") / "requests.jsonl"
    with servers.http_server(sample_root, log=log) as server:
        yield server


@pytest.fixture(scope="session")
def s3_server():
    with servers.s3_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3_options(s3_server) -> dict:
    return servers.s3_options(s3_server.url)


@pytest.fixture(scope="session")
def s3_samples(sample_root, s3_server, s3_options) -> str:
    """The sample repository uploaded to ``s3://raw/samples``."""
    servers.upload(sample_root, "s3://raw/samples", s3_options)
    return "s3://raw/samples"


@pytest.fixture(params=["file", "http", "s3"])
def remote_root(request, sample_root):
    """``(root URL, storage_options)`` of the sample repository on each scheme."""
    if request.param == "file":
        return sample_root.as_uri(), {}
    if request.param == "http":
        return request.getfixturevalue("http_server").url, {}
    return request.getfixturevalue("s3_samples"), request.getfixturevalue("s3_options")
