"""Starting or joining Ray, and resource choices shared by the pipelines."""

from __future__ import annotations

import os
from typing import Any

import ray

from uniembed.sections import ActorPoolSection, ModelSection, RaySection


def init_ray(section: RaySection) -> None:
    """Join the cluster named by the config, RAY_ADDRESS or `ray job submit`; else start a
    local one. Idempotent."""
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"configure_logging": False, "log_to_driver": True}
    address = section.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=section.num_cpus, include_dashboard=False, **kwargs)
    # The progress bars are the job's live view; keep them, but not the per-op chatter.
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = True
    ctx.print_on_execution_start = False


def cluster_gpus() -> float:
    """GPUs in the cluster (0 on CPU-only clusters)."""
    return float(ray.cluster_resources().get("GPU", 0))


def resolve_device(model: ModelSection) -> str:
    """``auto`` becomes cuda when the cluster has GPUs; asking for cuda without any fails
    fast instead of leaving actors pending forever."""
    gpus = cluster_gpus()
    if model.device == "auto":
        return "cuda" if gpus > 0 else "cpu"
    if model.device == "cuda" and gpus == 0:
        raise RuntimeError(
            "model.device is cuda but the Ray cluster has no GPUs; "
            "set model.device=cpu or add GPU workers"
        )
    return model.device


def actor_resources(pool: ActorPoolSection, device: str) -> dict[str, float]:
    """num_cpus / num_gpus for each model actor."""
    if device == "cuda":
        return {"num_gpus": pool.gpus_per_actor, "num_cpus": 1}
    return {"num_cpus": pool.cpus_per_actor}
