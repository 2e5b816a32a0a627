"""Pre-flight checks a job runs before it starts work: GPU availability and storage
reachability."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from uniembed import storage
from uniembed.runtime import PreflightError, require_gpus, require_storage


def test_require_gpus_says_what_asked_and_what_is_there() -> None:
    require_gpus(0, "scaling.use_gpu", available=0)
    require_gpus(2, "scaling.use_gpu", available=2)
    with pytest.raises(PreflightError, match="scaling.use_gpu asks for 8 GPU.* has no GPUs"):
        require_gpus(8, "scaling.use_gpu", available=0)
    with pytest.raises(PreflightError, match="asks for 8 GPU.* has 2;"):
        require_gpus(8, "scaling.use_gpu", available=2)


def test_require_storage_names_the_dead_endpoint(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = f"http://127.0.0.1:{port}"
    storage.configure(
        storage.S3Options(endpoint_url=dead, access_key_id="a", secret_access_key="b")
    )
    try:
        require_storage([str(tmp_path / "out")])  # a writable local folder passes
        with pytest.raises(PreflightError, match=f"storage not reachable: S3 endpoint {dead}"):
            require_storage(["s3://bucket/out"], timeout_s=5)
    finally:
        storage.configure(None)
