"""Starting or joining Ray, device resolution, and the checks a job runs before it starts
work (pre-flight), so a bad configuration fails in seconds with a message that says what is
wrong, instead of leaving tasks pending for GPUs that do not exist or retrying an object
store that does not answer."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable
from typing import Any

import ray

from uniembed import storage
from uniembed.observe import console, progress
from uniembed.sections import ActorPoolSection, ModelSection, RaySection

# Ray Train's state tracking feeds the dashboard's Train page (runs, attempts, workers).
TRAIN_STATE_TRACKING = {"RAY_TRAIN_ENABLE_STATE_TRACKING": "1"}


def init_ray(section: RaySection) -> None:
    """Join the cluster named by the config, RAY_ADDRESS or `ray job submit`; else start a
    local one; print the dashboard's address. Idempotent."""
    if ray.is_initialized():
        return
    for name, value in TRAIN_STATE_TRACKING.items():
        # Read by the Train controller (the driver's process and its actors).
        os.environ.setdefault(name, value)
    kwargs: dict[str, Any] = {"configure_logging": False, "log_to_driver": True}
    address = section.address or os.environ.get("RAY_ADDRESS")
    if address:
        info = ray.init(address=address, **kwargs)
    else:
        info = ray.init(num_cpus=section.num_cpus, include_dashboard=False, **kwargs)
    print(dashboard_line(getattr(info, "dashboard_url", None)), flush=True)
    # The progress lines are the job's live view; keep them, but not the per-op chatter:
    # off a terminal, one compact line per stage per interval (observe.progress).
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = True
    ctx.print_on_execution_start = False
    if not sys.stdout.isatty():
        progress.install()
    console.spend_actor_argument_warning()  # Ray Data's actor pools trip it, not our code


def dashboard_line(url: str | None) -> str:
    """The line a driver prints at start: where to watch the job."""
    if not url:
        return "Ray dashboard: none (a local Ray without one; start `ray start --head` to get one)"
    return f"Ray dashboard: {url if '://' in url else 'http://' + url}"


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


def local_device(device: str) -> str:
    """``auto`` -> cuda when this process (a Serve replica, an evaluation driver) sees a
    GPU, else cpu; ``cpu`` and ``cuda`` stay as they are."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _cgroup_cpu_limit() -> float | None:
    """The CPU quota of this process's cgroup in CPUs (v2 ``cpu.max``, else v1's CFS
    quota), None when unlimited or unknown."""
    v1 = "/sys/fs/cgroup/cpu/cpu.cfs_"
    files = (("/sys/fs/cgroup/cpu.max", None), (v1 + "quota_us", v1 + "period_us"))
    for quota_file, period_file in files:
        try:
            with open(quota_file, encoding="ascii") as f:
                fields = f.read().split()
            if period_file is not None:
                with open(period_file, encoding="ascii") as f:
                    fields.append(f.read().strip())
        except OSError:
            continue
        if len(fields) < 2 or fields[0] in ("max", "-1"):
            return None
        return int(fields[0]) / int(fields[1])
    return None


def usable_cpus() -> int:
    """The CPUs this process may run on: its CPU affinity, capped by its cgroup's quota
    (a container's CPU limit), at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    limit = _cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus or 1, math.ceil(limit))
    return max(1, cpus or 1)


def actor_resources(pool: ActorPoolSection, device: str) -> dict[str, Any]:
    """num_cpus / num_gpus (and the pool's custom ``resources``) for each model actor."""
    out: dict[str, Any] = {"resources": dict(pool.resources)} if pool.resources else {}
    if device == "cuda":
        return {"num_gpus": pool.gpus_per_actor, "num_cpus": 1, **out}
    return {"num_cpus": pool.cpus_per_actor, **out}


class PreflightError(RuntimeError):
    """A job's configuration cannot work on this cluster; the message says which part."""


def require_gpus(requested: float, what: str, available: float | None = None) -> None:
    """Raise unless the Ray cluster has at least ``requested`` GPUs in total.

    ``what`` names the setting that asked (e.g. ``"scaling.use_gpu"``). ``available``
    defaults to ``ray.cluster_resources()["GPU"]`` (Ray must be initialised). Autoscaling
    clusters only count GPU nodes that are up, so keep one GPU worker running.
    """
    if requested <= 0:
        return
    if available is None:
        available = cluster_gpus()
    if available <= 0:
        raise PreflightError(
            f"{what} asks for {requested:g} GPU(s) but the Ray cluster has no GPUs; "
            f"run on a cluster with GPU workers or switch the job to CPU"
        )
    if requested > available:
        raise PreflightError(
            f"{what} asks for {requested:g} GPU(s) but the Ray cluster has {available:g}; "
            f"lower the worker/actor count or add GPU workers"
        )


def require_storage(uris: Iterable[str], timeout_s: float = 10) -> None:
    """Raise within about ``timeout_s`` per URI if a storage location cannot be reached;
    the message names the URI and the S3 endpoint (``storage.check_reachable``)."""
    for uri in uris:
        try:
            storage.check_reachable(uri, timeout_s=timeout_s)
        except storage.StorageError as exc:
            raise PreflightError(f"storage not reachable: {exc}") from exc
