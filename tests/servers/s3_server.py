"""An S3-compatible server on loopback (moto in server mode) with the environment s3fs and boto read.

    with s3_server() as fs:      # an s3fs filesystem on it, bucket `imp-bucket` created
        ...
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

BUCKET = "imp-bucket"


@contextmanager
def s3_server() -> Iterator[object]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto keeps its buckets in process-wide state: start each server empty
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"), timeout=10)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}"}.items():
                mp.setenv(key, value)
            import s3fs

            s3fs.S3FileSystem.clear_instance_cache()
            fs = s3fs.S3FileSystem()
            fs.mkdir(BUCKET)
            yield fs
            s3fs.S3FileSystem.clear_instance_cache()
    finally:
        server.stop()
