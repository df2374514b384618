"""Plain pieces of the orchestration layer: error sorting, redaction, cluster specs."""

from __future__ import annotations

import errno
import pickle

import pytest

from basinflow.config import ClusterConfig, Config, JobqueueConfig, redact
from basinflow.errors import LayoutError, NotHDF5Error, StorageError, UnreachableError
from basinflow.flows import artifacts
from basinflow.flows.cluster import cluster_spec
from basinflow.flows.parameters import config_parameter
from basinflow.flows.parameters import reveal as _reveal
from basinflow.tasks.results import CookResult, ScanFailed, is_transient, reason_of


def _chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (UnreachableError("host s3.example did not answer"), True),
        (ConnectionResetError(errno.ECONNRESET, "reset"), True),
        (TimeoutError("read timed out"), True),
        (_chained(StorageError("reading s3://raw/x failed"), ConnectionRefusedError()), True),
        (_chained(StorageError("x"), OSError(errno.ECONNRESET, "reset")), True),
        (StorageError("permission denied on s3://raw/x"), False),
        (NotHDF5Error("s3://raw/x.h5 is not HDF5"), False),
        (LayoutError("scan has zero frames"), False),
        (_chained(LayoutError("bad"), ConnectionError()), False),
        (ValueError("bug"), False),
    ],
)
def test_is_transient(exc, transient):
    assert is_transient(exc) is transient


def test_scan_failed_pickles_with_its_result():
    r = CookResult("p1", "2", "rsm", "failed", None, 0.1, 0, 0, "s3://raw/2.h5 is not HDF5")
    exc = pickle.loads(pickle.dumps(ScanFailed(r)))
    assert exc.result == r and "is not HDF5" in str(exc)


def test_reason_of_names_unexpected_types():
    assert reason_of(NotHDF5Error("x.h5 is not HDF5")) == "x.h5 is not HDF5"
    assert reason_of(KeyError("k")).startswith("KeyError")


def test_secrets_are_masked_in_flow_parameters_only():
    from fastapi.encoders import jsonable_encoder

    cfg = Config.model_validate(
        {
            "repositories": {
                "r": {
                    "raw": "s3://b/{proposal}/{scan}.h5",
                    "storage_options": {
                        "key": "AKIA",
                        "secret": "s3cr3t",
                        "client_kwargs": {"endpoint_url": "http://h"},
                    },
                }
            }
        }
    )
    param = config_parameter(cfg)
    shown = jsonable_encoder(param)
    so = shown["repositories"]["r"]["storage_options"]
    assert so["secret"] == "**********" and so["key"] == "**********"
    assert so["client_kwargs"]["endpoint_url"] == "http://h"
    assert Config.model_validate(_reveal(param)) == cfg
    assert redact({"secret": "x", "a": [{"token": "y"}]}) == {
        "secret": "***",
        "a": [{"token": "***"}],
    }


def test_scrub_and_keys():
    assert artifacts.scrub("s3://user:pw@host/b/x.h5 failed") == "s3://host/b/x.h5 failed"
    assert (
        artifacts.artifact_key("cook", "Demo Repo", "2021-05", "rsm")
        == "cook-demo-repo-2021-05-rsm"
    )


def test_cluster_specs():
    cls, kw = cluster_spec(ClusterConfig(workers=3))
    assert cls == "distributed.LocalCluster"
    assert kw == {
        "n_workers": 3,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": ":0",
    }
    cls, kw = cluster_spec(ClusterConfig(jobqueue=JobqueueConfig(kind="pbs", options={"cores": 4})))
    assert (cls, kw) == ("dask_jobqueue.PBSCluster", {"cores": 4})
