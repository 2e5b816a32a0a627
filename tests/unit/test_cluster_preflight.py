"""Pre-flight checks: GPU demand of job configs, GPU availability, storage reachability and
local paths in cluster configs."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from uniembed import storage
from uniembed.cluster.preflight import (
    PreflightError,
    gpu_demand,
    local_data_paths,
    local_model_paths,
    require_gpus,
    require_storage,
)

CONFIGS = Path(__file__).resolve().parents[2] / "jobs" / "configs"


def test_gpu_demand_of_train_and_data_configs() -> None:
    assert gpu_demand({"scaling": {"use_gpu": True, "num_workers": 8, "gpus_per_worker": 1}}) == 8
    assert gpu_demand({"scaling": {"use_gpu": False, "num_workers": 8}}) == 0
    data = {"model": {"device": "cuda"}, "compute": {"num_actors": 4, "gpus_per_actor": 0.5}}
    assert gpu_demand(data) == 2
    assert gpu_demand({"model": {"device": "auto"}, "compute": {"num_actors": 4}}) == 0


def test_gpu_demand_of_the_shipped_configs() -> None:
    tune = yaml.safe_load((CONFIGS / "tune_qwen2_vl.yaml").read_text())
    assert gpu_demand(tune) == 8
    assert gpu_demand(yaml.safe_load((CONFIGS / "tune.yaml").read_text())) == 0


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


def test_local_paths_in_cluster_configs() -> None:
    config = {
        "input": "s3://b/in",
        "output": "outputs/embed",
        "teacher": {"embeddings": "/data/teacher"},
        "checkpoint": {"storage_path": "s3://b/train", "name": "run"},
        "model": {"name": "/models/Qwen2-VL-2B-Instruct"},
    }
    assert local_data_paths(config) == [
        "output = outputs/embed",
        "teacher.embeddings = /data/teacher",
    ]
    assert local_model_paths(config) == ["/models/Qwen2-VL-2B-Instruct"]
    tune = yaml.safe_load((CONFIGS / "tune_qwen2_vl.yaml").read_text())
    assert local_data_paths(tune) == []
