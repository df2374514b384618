"""Fixtures of the task-layer tests."""

from __future__ import annotations

import fsspec
import pytest

from tests.storage.conftest import make_repo


@pytest.fixture
def s3_site(tmp_path, s3_options):
    """``(s3 filesystem, repository)``: a sample site on local disk whose outputs go to the
    bucket ``cooked`` of the S3 server on loopback."""
    fs = fsspec.filesystem("s3", **s3_options)
    if not fs.exists("cooked"):
        fs.mkdir("cooked")
    repo = make_repo(
        tmp_path / "site",
        out="s3://cooked/{proposal}/{scan}/{recipe}.h5",
        storage_options=s3_options,
    )
    return fs, repo
