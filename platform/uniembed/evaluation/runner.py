"""The evaluate job's pipeline: read tasks, embed distinct items on Ray, score, report.

read + validate (driver) -> plan distinct items -> embed_table per model (Ray Data
actor pool, so a cluster runs it unchanged) -> cosine scores and metrics (driver)
-> report written to a local temp folder, then uploaded to the output URI
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uniembed import storage
from uniembed.data import schema as S
from uniembed.evaluation.config import EvalConfig
from uniembed.evaluation.dedupe import EmbedPlan, plan_items
from uniembed.evaluation.groups import load_groups
from uniembed.evaluation.report import EvalResults, write_report
from uniembed.evaluation.scoring import Embeddings, score_tasks
from uniembed.evaluation.tasks import EvalTask, absolute, read_tasks
from uniembed.sections import ModelSection

WORK_DIR = "_work"
BASELINE_DIR = "baseline"  # the baseline model's own full report, beside ours


@dataclass
class ModelRun:
    """One model's embeddings of a plan."""

    model: str
    embeddings: Embeddings
    failed: dict[str, str]  # item id -> why it was not embedded
    seconds: float


def embed_plan(plan: EmbedPlan, model: ModelSection, cfg: EvalConfig, work_uri: str) -> ModelRun:
    """Embed the plan's items with ``model`` through the embed pipeline."""
    from uniembed.embed.pipeline import embed_table

    start = time.perf_counter()
    from uniembed.data.record_files import input_root

    ids, matrix, quarantine = embed_table(
        plan.table,
        work_uri,
        model=model,
        compute=cfg.compute,
        ray_section=cfg.ray,
        image_prefixes=[input_root(uri) for uri in cfg.data],
    )
    failed = dict(zip(quarantine[S.ID].to_pylist(), quarantine[S.REASON].to_pylist()))
    return ModelRun(model.name, Embeddings(ids, matrix), failed, time.perf_counter() - start)


def _results(
    model: str,
    cfg: EvalConfig,
    tasks: Sequence[EvalTask],
    plan: EmbedPlan,
    run: ModelRun,
    failed: Mapping[str, str],
    groups: dict[str, tuple[str, ...]] | None,
) -> EvalResults:
    start = time.perf_counter()
    scored = score_tasks(tasks, plan, run.embeddings, failed, cfg.ks)
    n_items = plan.stats.n_unique
    return EvalResults(
        model=model,
        data=", ".join(cfg.data),
        tasks=scored,
        dedupe=plan.stats,
        timings={"embed": run.seconds, "score": time.perf_counter() - start},
        groups=groups,
        extra={
            "Items embedded": n_items,
            "Embed throughput (items/s)": round(n_items / run.seconds, 1),
            "Failed items (all models of this run)": len(failed),
        },
    )


def _upload(local_dir: Path, output: str) -> list[str]:
    uris = []
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        uri = storage.join(output, *path.relative_to(local_dir).parts)
        storage.write_bytes(uri, path.read_bytes())
        uris.append(uri)
    return uris


def _read_earlier(uri: str) -> dict[str, Any]:
    try:
        return json.loads(storage.read_text(absolute(uri)))
    except json.JSONDecodeError as e:
        raise ValueError(f"baseline {uri}: not a metrics.json ({e})") from e


def _rerank(
    cfg: EvalConfig,
    tasks: Sequence[EvalTask],
    plan: EmbedPlan,
    run: ModelRun,
    failed: Mapping[str, str],
    ours: EvalResults,
) -> None:
    """Re-score the top-k of every candidate-list task with ``cfg.rerank`` on the judge
    actor pool (in place); the embedder-alone numbers stay in the report's extras."""
    from uniembed.evaluation.rerank import finish_rerank, plan_rerank
    from uniembed.evaluation.rerank_pool import score_on_pool
    from uniembed.mining.judge_stage import JudgeOptions
    from uniembed.reranker.vllm_engine import actor_setup
    from uniembed.runtime import actor_resources, resolve_device
    from uniembed.training.export import download_model

    assert cfg.rerank is not None
    start = time.perf_counter()
    pool = cfg.rerank_compute
    device = resolve_device(cfg.model)
    source = download_model(cfg.rerank) if storage.is_remote(cfg.rerank) else cfg.rerank
    model, remote = actor_setup(cfg.rerank_engine, source, device, cfg.rerank_vllm)
    rerank = plan_rerank(tasks, plan, run.embeddings, failed, cfg.rerank_top_k)
    options = JudgeOptions(
        model=model,
        device=device,
        batch_size=pool.micro_batch_size,
        s3=storage.get_options(),
        cpu_threads=pool.cpu_threads,
        engine=cfg.rerank_engine,
        vllm=cfg.rerank_vllm,
    )
    resources = {**actor_resources(pool, device), **remote}
    scored = score_on_pool(rerank.requests, options, pool, resources)
    reranked = finish_rerank(rerank, scored.scores, cfg.ks)
    ours.extra["Reranker"] = f"{cfg.rerank} (pairwise P(Yes) over the top {cfg.rerank_top_k})"
    ours.extra["Embedder alone"] = {n: round(ours.tasks[n].score, 4) for n in reranked}
    ours.extra["Reranked queries"] = len(rerank.requests)
    ours.extra["Reranked pairs"] = scored.n_pairs
    ours.extra["Rerank throughput (pairs/s, stage wall time)"] = round(scored.pairs_per_s, 2)
    judge_rate = scored.n_pairs / scored.judge_seconds if scored.judge_seconds else 0.0
    ours.extra["Rerank throughput (pairs/s, in the judge)"] = round(judge_rate, 2)
    ours.tasks.update(reranked)
    ours.timings["rerank"] = time.perf_counter() - start


def _check_scored(cfg: EvalConfig, output: str, ours: EvalResults, reasons: list[str]) -> None:
    """Refuse to replace an earlier report with one that scored no query (every item
    failed to embed), unless ``allow_empty``."""
    from uniembed.data.output_guard import check_not_empty

    scored = sum(t.n_queries for t in ours.tasks.values())
    read = scored + sum(t.n_excluded for t in ours.tasks.values())
    names = ("report.md", "metrics.json")
    data = ", ".join(cfg.data)
    check_not_empty("evaluate", data, output, (read, scored), names, cfg.allow_empty, reasons)


def run_evaluation(cfg: EvalConfig) -> tuple[EvalResults, str]:
    """Evaluate ``cfg.model`` (and ``cfg.baseline``) on ``cfg.data``; write the report.

    Returns the results and the URI of ``report.md``.
    """
    from uniembed.runtime import init_ray

    storage.configure(storage.get_options().merged(cfg.storage))
    output = absolute(cfg.output)
    tasks = read_tasks(cfg.data)  # every bad row fails here, before any compute is spent
    groups = load_groups(absolute(cfg.groups)) if cfg.groups else None
    plan = plan_items(tasks, cfg.dedupe)
    storage.check_reachable(output)
    work = absolute(cfg.work_dir) if cfg.work_dir else storage.join(output, WORK_DIR)
    earlier = None
    models = [cfg.model]
    if cfg.baseline and cfg.baseline.endswith(".json"):
        earlier = _read_earlier(cfg.baseline)
    elif cfg.baseline:
        models.append(dataclasses.replace(cfg.model, name=cfg.baseline, pooling=None))

    init_ray(cfg.ray)
    work_dirs = [storage.join(work, f"model{i}") for i in range(len(models))]
    runs = [embed_plan(plan, m, cfg, w) for m, w in zip(models, work_dirs, strict=True)]
    # Both models are scored on the same rows: a row one of them could not embed is out.
    failed = {k: f"{r.model}: {v}" for r in runs for k, v in r.failed.items()}
    results = [_results(r.model, cfg, tasks, plan, r, failed, groups) for r in runs]
    ours = results[0]
    _check_scored(cfg, output, ours, list(failed.values()))
    if cfg.rerank:
        _rerank(cfg, tasks, plan, runs[0], failed, ours)
    with tempfile.TemporaryDirectory(prefix="uniembed-eval-") as tmp:
        baseline: Mapping[str, Any] | None = earlier
        if len(results) > 1:
            write_report(str(Path(tmp) / BASELINE_DIR), results[1], None)
            ours.extra["Baseline report"] = f"{BASELINE_DIR}/report.md"
            ours.timings["embed (baseline)"] = runs[1].seconds
            baseline = results[1].to_dict()
        write_report(tmp, ours, baseline)
        _upload(Path(tmp), output)
    if not cfg.keep_work:
        # Only what this run wrote: a work_dir given by the user may hold other things.
        for w in work_dirs if cfg.work_dir else [work]:
            storage.delete(w)
    return ours, storage.join(output, "report.md")
