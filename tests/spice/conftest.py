"""Fixtures for the spice tests: a typed test schema, snapshots of the file system, and a
real S3 server (moto in server mode on loopback, used through s3fs as in production).

The S3 fixture is self-contained (an in-process ``ThreadedMotoServer``) so these tests do
not depend on other packages' fixtures; it is named ``spice_s3`` to not shadow the
session-wide ``s3_server``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from basinflow.spice import register_spice_type, unregister_spice_type

from ._schemas import Geom

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(autouse=True)
def geom_type() -> Iterator[type[BaseModel]]:
    register_spice_type("geom", Geom, replace=True)
    yield Geom
    unregister_spice_type("geom")


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its content."""
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def spice_s3() -> Iterator[dict]:
    """A moto S3 server on 127.0.0.1; yields the s3fs storage_options for it."""
    old = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield {
            "client_kwargs": {"endpoint_url": f"http://{host}:{port}"},
            # explicit, so worker processes need nothing from the environment
            "key": S3_ENV["AWS_ACCESS_KEY_ID"],
            "secret": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        }
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_store_url(spice_s3) -> tuple[str, dict]:
    """``(s3://<fresh bucket>/spice/p1, storage_options)``."""
    import s3fs

    bucket = f"spice-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(**spice_s3)
    fs.mkdir(bucket)
    return f"s3://{bucket}/spice/p1", spice_s3
