"""Static checks of a job config meant for a cluster: how many GPUs it asks for, and that
every data location is a URI the workers can read (not a path on the submitting machine).

Not imported at run time; the checks a job runs before it starts work (GPUs present,
storage reachable) are in :mod:`uniembed.runtime`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from uniembed import storage

# Config keys (last dotted part) that name data the job reads or writes.
DATA_KEYS = (
    "input",
    "output",
    "queries",
    "pool",
    "storage_path",
    "embeddings",
    "documents",
    "corpus",
)


# (where a model's device is set, where its actor pool is) in the Ray Data job configs.
_MODEL_POOLS = (
    ("model", "compute"),
    ("embedder", "embed_compute"),
    ("judge.model", "judge.compute"),
)


def _get(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def gpu_demand(config: Mapping[str, Any]) -> float:
    """GPUs a job config asks for at once (0 for CPU jobs).

    Train jobs: ``scaling.use_gpu`` -> ``num_workers x gpus_per_worker``. Ray Data jobs: each
    model whose ``device`` is ``cuda`` -> its pool's ``num_actors x gpus_per_actor``; the
    stages run one after another, so the largest pool counts.
    """
    scaling = config.get("scaling") or {}
    if scaling.get("use_gpu"):
        return float(scaling.get("num_workers", 1)) * float(scaling.get("gpus_per_worker", 1.0))
    demand = 0.0
    for model_key, pool_key in _MODEL_POOLS:
        model = _get(config, model_key)
        if isinstance(model, Mapping) and model.get("device") == "cuda":
            pool = _get(config, pool_key) or {}
            gpus = float(pool.get("num_actors", 1)) * float(pool.get("gpus_per_actor", 1.0))
            demand = max(demand, gpus)
    return demand


def _walk(node: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _walk(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def local_data_paths(config: Mapping[str, Any]) -> list[str]:
    """``key = value`` of every data location in a config that is not a storage URI.

    On a cluster the job runs on other machines: a relative or absolute local path names a
    file that exists (at best) only where the job was submitted.
    """
    bad = []
    for key, value in _walk(config):
        if key.rsplit(".", 1)[-1] not in DATA_KEYS or not isinstance(value, str) or not value:
            continue
        if not storage.is_remote(value):
            bad.append(f"{key} = {value}")
    return bad


def local_model_paths(config: Mapping[str, Any]) -> list[str]:
    """Absolute local paths a config loads models from (``*.model``, ``model.name``): they
    must be mounted into every pod."""
    paths = []
    for key, value in _walk(config):
        last = key.rsplit(".", 1)[-1]
        named = key.endswith("model.name") or last == "model"
        if named and isinstance(value, str) and value.startswith("/"):
            paths.append(value)
    return paths
