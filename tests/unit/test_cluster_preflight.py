"""Static checks of cluster job configs: GPU demand and local paths."""

from __future__ import annotations

from pathlib import Path

import yaml
from cluster.preflight import gpu_demand, local_data_paths, local_model_paths

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
