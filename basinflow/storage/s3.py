"""s3fs with basinflow's S3 defaults: botocore does the retrying, s3fs adds no loop.

s3fs retries each call (resets, read timeouts, ``SlowDown``) ``retries`` times, but reads
that number only from a class attribute: passed as an option it would reach botocore's
session and fail. This subclass takes it as an option (basinflow sets it to 1), so the
only retries are botocore's, in ``config_kwargs``
(:meth:`RetryingS3FileSystem.prepare_options` sets them from the ``retries`` option).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from s3fs import S3FileSystem

from basinflow.storage.retry import CONNECT_TIMEOUT, READ_TIMEOUT

#: botocore's retries of an S3 request after its first attempt by default ("standard"
#: mode; botocore calls it ``config_kwargs.retries.max_attempts``). botocore alone retries:
#: transient answers (5xx, throttling), dropped connections and read timeouts, with its
#: backoff. The ``retries`` storage option (attempts per call, the first included, as for
#: HTTP) sets it; s3fs's own loop around botocore is one attempt, so nothing multiplies.
#: (s3fs's hook for retrying more answers, ``set_custom_error_handler``, is process-wide,
#: so basinflow leaves it alone.)
S3_MAX_ATTEMPTS = 3


class RetryingS3FileSystem(S3FileSystem):
    """``S3FileSystem`` whose per-call attempts come from the ``retries`` option."""

    def __init__(self, *args, retries: int = S3FileSystem.retries, **kwargs):
        super().__init__(*args, **kwargs)
        self.retries = max(1, int(retries))

    @staticmethod
    def prepare_options(options: Mapping[str, Any]) -> dict[str, Any]:
        """storage_options as this class takes them: timeouts and retries into botocore's
        ``config_kwargs`` (values given there win), HTTP-only options dropped.

        botocore's "legacy" retry mode retries a refused connection 4 times with backoff
        (~7 s per call, several calls per open); AWS's recommended "standard" mode still
        retries 5xx, throttling, resets and read timeouts but lets a wrong endpoint fail in
        a few seconds. Flows retry whole scans on top of this.
        """
        opts = dict(options)
        config = dict(opts.get("config_kwargs") or {})
        attempts = int(opts.pop("retries", 1 + S3_MAX_ATTEMPTS))
        config.setdefault("retries", {"max_attempts": max(0, attempts - 1), "mode": "standard"})
        config.setdefault("connect_timeout", opts.pop("connect_timeout", CONNECT_TIMEOUT))
        config.setdefault("read_timeout", opts.pop("read_timeout", READ_TIMEOUT))
        for name in ("connect_timeout", "read_timeout", "retry_backoff", "retry_backoff_max"):
            opts.pop(name, None)  # HTTP-only or given in config_kwargs as well
        opts["config_kwargs"] = config
        opts["retries"] = 1  # s3fs's loop: botocore's retries are the only ones
        return opts


__all__ = ["S3_MAX_ATTEMPTS", "RetryingS3FileSystem"]
