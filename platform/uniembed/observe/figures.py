"""A job's own figures: Ray metrics for Prometheus and the dashboard, and the job's record.

:func:`publish` sets one ``ray.util.metrics`` Gauge per figure, named
``uniembed_<job>_<figure>`` (Ray exports it as ``ray_uniembed_<job>_<figure>``) and tagged
with the job's submission id, and writes the figures into the metadata of the
``ray job submit`` record (``ray job list``, the dashboard's job API), so they stay with the
job after it ends. A judge that failed its sanity check is written there too
(``judge_sanity``), next to the job's status.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from uniembed.data.locations import submission_id

PREFIX = "uniembed"
_gauges: dict[str, Any] = {}
_counters: dict[str, Any] = {}


def metric_name(job: str, figure: str) -> str:
    """``uniembed_<job>_<figure>`` with anything but letters, digits and ``_`` as ``_``."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", f"{PREFIX}_{job}_{figure}")


def _tags() -> dict[str, str]:
    return {"submission": submission_id() or "local"}


def set_gauges(job: str, figures: Mapping[str, float]) -> None:
    """Set the job's numeric figures as Gauges (no-op for figures that are None)."""
    import ray

    if not ray.is_initialized():
        return
    from ray.util.metrics import Gauge

    for figure, value in figures.items():
        if value is None:
            continue
        name = metric_name(job, figure)
        if name not in _gauges:
            _gauges[name] = Gauge(name, description=f"{job}: {figure}", tag_keys=("submission",))
        _gauges[name].set(float(value), tags=_tags())


def count(job: str, figure: str, n: float) -> None:
    """Add ``n`` to the job's Counter ``figure`` (progress that moves while a stage runs)."""
    import ray

    if not ray.is_initialized():
        return
    from ray.util.metrics import Counter

    name = metric_name(job, figure)
    if name not in _counters:
        _counters[name] = Counter(name, description=f"{job}: {figure}", tag_keys=("submission",))
    _counters[name].inc(float(n), tags=_tags())


def write_job_metadata(entries: Mapping[str, str]) -> bool:
    """Merge ``entries`` into the metadata of this ``ray job submit`` job's record; the job
    supervisor keeps it when it writes the final status. False outside a submitted job."""
    job = submission_id()
    import ray

    if job is None or not ray.is_initialized():
        return False
    from ray.dashboard.modules.job.common import JobInfoStorageClient
    from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_put

    key = JobInfoStorageClient.JOB_DATA_KEY.format(job_id=job)
    raw = _internal_kv_get(key, namespace="job")
    if raw is None:
        return False
    info = json.loads(raw)
    info["metadata"] = {**(info.get("metadata") or {}), **{k: str(v) for k, v in entries.items()}}
    _internal_kv_put(key, json.dumps(info), overwrite=True, namespace="job")
    return True


def publish(job: str, figures: Mapping[str, Any], notes: Mapping[str, str] | None = None) -> None:
    """The job's final figures: Gauges for the numeric ones, and all of them (plus
    ``notes``, e.g. a failed sanity check) in the submitted job's metadata."""
    numeric = {k: v for k, v in figures.items() if isinstance(v, int | float)}
    set_gauges(job, numeric)
    entries = {
        f"{PREFIX}.{k}": f"{v:.4g}" if isinstance(v, float) else str(v)
        for k, v in figures.items()
        if v is not None
    }
    entries.update({f"{PREFIX}.{k}": v for k, v in (notes or {}).items()})
    write_job_metadata(entries)
