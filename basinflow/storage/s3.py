"""s3fs with its ``retries`` as a constructor option.

s3fs retries each call (resets, read timeouts, ``SlowDown``) ``retries`` times, but reads
that number only from a class attribute: passed as an option it would reach botocore's
session and fail. This subclass takes it as an option, so file systems with different
retries are different (cached, picklable) instances. botocore's own retries and timeouts
stay in ``config_kwargs`` (:func:`basinflow.storage.fs.url_to_fs` sets them).
"""

from __future__ import annotations

from s3fs import S3FileSystem


class RetryingS3FileSystem(S3FileSystem):
    """``S3FileSystem`` whose per-call attempts come from the ``retries`` option."""

    def __init__(self, *args, retries: int = S3FileSystem.retries, **kwargs):
        super().__init__(*args, **kwargs)
        self.retries = max(1, int(retries))


__all__ = ["RetryingS3FileSystem"]
