"""The mine pipeline (UniME-V2): retrieve, judge, filter false negatives, select, write.

Stages, each a Ray Data pipeline that streams::

    1 pool      read pool records -> pool/items/part-*.parquet (+ quarantine)
    2 embed     the embed pipeline over pool/items -> pool/embeddings/
    3 judge     read queries (one block per shard) -> QueryEmbedStage (actors)
                -> RetrievalStage (actor: FAISS over the pool, easy candidates dropped)
                -> JudgeWorker (actors) -> ShardBuffer (one actor) -> judged/<shard>.parquet
    4 select    one task per judged shard -> mined/, export/ (UniME-V2 JSON)
    5 report    report.md / report.json / judge_scores.png, then _SUCCESS.json

In judge mode stage 3 first judges the calibration shards (``sanity.calibration_queries``)
and checks the judge's AUC on them (:mod:`mine_sanity`) before its scores decide anything;
below the floor ``sanity.on_fail`` decides: ``fallback`` (the default) judges nothing more
and lets the embedder's similarities drive selection and soft labels, ``stop`` ends before
selection (exit code 3), ``continue`` uses the judge anyway. The verdict is kept in
``sanity.json`` so that a resumed run decides the same way.

Resuming: stages 1 and 2 are skipped when their ``_SUCCESS.json`` exists, stage 3 skips
every query of a shard whose judged file exists, and 4-5 are deterministic rewrites, so a
rerun after a kill ends with the same output as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data import shards
from uniembed.data.output_guard import (
    REASONS_SHOWN,
    STAGING_PREFIX,
    check_not_empty,
    check_output,
    claim_output,
    first_reasons,
    naming_input,
    new_run_id,
    publish,
    staging_folder,
)
from uniembed.data.record_files import input_files, input_root
from uniembed.data.shards import QUARANTINE_DIR
from uniembed.embed.config import EmbedConfig, IndexSection
from uniembed.embed.pipeline import check_model, run_embed
from uniembed.embed.worker import WorkerOptions
from uniembed.errors import EmptyOutputError, NoValidRowsError
from uniembed.mining.config import MineConfig
from uniembed.mining.inputs import POOL_SCHEMA, name_pool_sources, read_pool, read_queries
from uniembed.mining.judge_stage import JudgeOptions, JudgeWorker
from uniembed.mining.report import MineReport, write_report
from uniembed.mining.report_stage import add_judged, add_quarantine
from uniembed.mining.resume import RUN_FILE, check_resume
from uniembed.mining.retrieval_stage import (
    QueryEmbedStage,
    RetrievalOptions,
    RetrievalStage,
    SharedPool,
    share_pool,
)
from uniembed.mining.sanity import SanityVerdict, calibration_shards, decide
from uniembed.mining.sanity_stage import SANITY_FILE, measure, read_verdict, write_verdict
from uniembed.mining.selection_stage import SelectOptions, selector
from uniembed.mining.shards import JUDGED_DIR, ShardBuffer, finished_shards
from uniembed.observe.live import Watch, watch
from uniembed.observe.names import dataset_name, named
from uniembed.reranker.vllm_engine import actor_setup
from uniembed.runtime import actor_resources, init_ray, resolve_device

logger = logging.getLogger(__name__)

POOL_ITEMS = "pool/items"
POOL_EMBEDDINGS = "pool/embeddings"
EXIT_JUDGE_FAILED = 3
JUDGE_OP = "mine/judge"


def _stage_pool(cfg: MineConfig) -> float:
    """Stage 1: pool records -> item shards. Returns seconds (from the manifest if reused)."""
    out = storage.join(cfg.output, POOL_ITEMS)
    done = shards.read_manifest(out)
    if cfg.resume and done is not None:
        return float(done["seconds"])
    storage.delete(out)
    start = time.perf_counter()
    uri = cfg.pool or cfg.queries  # pairs: the pool is the pairs' titles
    fmt = "pairs" if cfg.pool is None else "items"
    writer = shards.shard_writer(
        storage.join(out, "items"),
        storage.join(out, QUARANTINE_DIR),
        # each staged item keeps its record's file:line (named in the embed stage's quarantine)
        lambda good: good.select(POOL_SCHEMA.names).drop_columns([S.ERROR]),
        lambda batch: {},
        storage.get_options(),
    )
    ds = read_pool(
        uri, fmt, cfg.group_field, tuple(cfg.image_prefixes), cfg.follow_symlinks
    ).map_batches(
        named(writer, "mine/stage-pool"), batch_size=None, batch_format="pyarrow", num_cpus=0.25
    )
    ds.set_name(dataset_name("mine/pool-items"))
    stats = ds.take_all()
    seconds = time.perf_counter() - start
    rows, ok = sum(s["rows"] for s in stats), sum(s["ok"] for s in stats)
    require_valid_rows("pool", uri, rows, ok, first_reasons(storage.join(out, QUARANTINE_DIR)))
    shards.write_manifest(
        out,
        {
            "rows": sum(s["rows"] for s in stats),
            "ok": sum(s["ok"] for s in stats),
            "quarantined": sum(s["quarantined"] for s in stats),
            "seconds": seconds,
        },
    )
    return seconds


def _stage_embed_pool(cfg: MineConfig) -> float:
    """Stage 2: the embed pipeline over the staged pool."""
    out = storage.join(cfg.output, POOL_EMBEDDINGS)
    done = shards.read_manifest(out)
    if cfg.resume and done is not None and done.get("model") == cfg.embedder.name:
        return float(done["seconds"])
    # The staged items name their images by the URIs stage 1 resolved and checked against
    # the pool's folder and image_prefixes: the same places are allowed here.
    staged = shards.read_manifest(storage.join(cfg.output, POOL_ITEMS)) or {}
    summary = run_embed(
        EmbedConfig(
            input=storage.join(cfg.output, POOL_ITEMS, "items"),
            output=out,
            model=cfg.embedder,
            compute=cfg.embed_compute,
            index=IndexSection(kind="none"),
            ray=cfg.ray,
            image_prefixes=[input_root(cfg.pool or cfg.queries), *cfg.image_prefixes],
        ),
        stage="mine/pool",
        expected_rows=staged.get("ok"),
    )
    logger.info(summary.line())
    q_dir = storage.join(out, QUARANTINE_DIR)
    name_pool_sources(q_dir, storage.join(cfg.output, POOL_ITEMS, "items"))
    uri = cfg.pool or cfg.queries
    require_valid_rows("pool", uri, summary.rows_in, summary.rows_out, first_reasons(q_dir))
    return summary.seconds


def require_valid_rows(key: str, uri: str, rows: int, valid: int, reasons: list[str]) -> None:
    """Raise :class:`NoValidRowsError` when no row of the input ``key`` (``uri``) is left
    to mine with: one line with the count and the first ``reasons``, instead of a later
    stage failing on nothing."""
    if valid:
        return
    if not rows:
        raise NoValidRowsError(f"{key} {uri}: no rows; give a {key} with at least one row")
    first = "; ".join(reasons[:REASONS_SHOWN]) or "none recorded"
    raise NoValidRowsError(
        f"{key} {uri}: none of its {rows} rows is valid (first reasons: {first}); "
        f"fix the {key} file"
    )


def _judge_dataset(  # noqa: ANN202
    cfg: MineConfig,
    device: str,
    skip: frozenset[str],
    use_judge: bool,
    max_queries: int | None,
    pool: SharedPool,
):
    """Stage 3's lazy dataset over the first ``max_queries`` queries (all: None) minus the
    shards in ``skip``, judged when ``use_judge``, ending in the shard writer's stats."""
    s3 = storage.get_options()
    ec, jc = cfg.embed_compute, cfg.judge.compute
    ds = read_queries(
        cfg.queries,
        cfg.queries_format,
        cfg.shard_size,
        max_queries,
        skip,
        tuple(cfg.image_prefixes),
        cfg.follow_symlinks,
    )
    ds = ds.map_batches(
        named(QueryEmbedStage, "mine/embed-queries"),
        fn_constructor_args=(
            WorkerOptions(
                model=cfg.embedder.name,
                device=device,
                dtype=cfg.embedder.dtype,
                pooling=cfg.embedder.pooling,
                max_length=cfg.embedder.max_length,
                micro_batch_size=ec.micro_batch_size,
                sort_by_length=ec.sort_by_length,
                s3=s3,
                cpu_threads=ec.cpu_threads,
                num_actors=ec.num_actors,
            ),
        ),
        compute=ActorPoolStrategy(size=ec.num_actors),
        batch_size=None,
        batch_format="pyarrow",
        **actor_resources(ec, device),
    )
    ds = ds.map_batches(
        named(RetrievalStage, "mine/retrieve"),
        fn_constructor_args=(
            RetrievalOptions(
                pool=pool,
                retrieval=cfg.retrieval,
                judge_stage=JUDGE_OP if use_judge else None,
            ),
        ),
        compute=ActorPoolStrategy(size=1),
        batch_size=None,
        batch_format="pyarrow",
        num_cpus=0.25,  # FAISS search of a shard is short next to embedding and judging
    )
    if use_judge:
        judge_device = resolve_device(cfg.judge.model)
        judge_model, judge_remote = actor_setup(
            cfg.judge.engine, cfg.judge.model.name, judge_device, cfg.judge.vllm
        )
        ds = ds.map_batches(
            named(JudgeWorker, JUDGE_OP),
            fn_constructor_args=(
                JudgeOptions(
                    model=judge_model,
                    device=judge_device,
                    dtype=cfg.judge.model.dtype,
                    batch_size=jc.micro_batch_size,
                    include_instruction=cfg.judge.include_instruction,
                    s3=s3,
                    engine=cfg.judge.engine,
                    vllm=cfg.judge.vllm,
                    max_text_tokens=cfg.judge.max_text_tokens,
                ),
            ),
            compute=ActorPoolStrategy(size=jc.num_actors),
            batch_size=jc.rows_per_call,
            batch_format="pyarrow",
            **actor_resources(jc, judge_device),
            **judge_remote,
        )
    # The writer holds part-shards in memory: restarted elsewhere it would have lost them
    # and wait forever for rows that already passed. It refuses to be restarted (ShardBuffer);
    # its loss fails the pass, and _until_written runs the pass again over the shards not
    # yet written.
    ds = ds.map_batches(
        named(ShardBuffer, "mine/write-shards"),
        fn_constructor_args=(cfg.output, s3, cfg.fail_after_shards),
        compute=ActorPoolStrategy(size=1),
        batch_size=None,
        batch_format="pyarrow",
        num_cpus=0.25,
    )
    ds.set_name(dataset_name("mine/queries"))
    return ds


# What a lost node or process raises through Ray Data; a bug in a stage raises anything else
# (a RayTaskError wrapping it) and is not retried.
_LOST = (
    ray.exceptions.ActorDiedError,
    ray.exceptions.ActorUnavailableError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.ObjectLostError,
    ray.exceptions.OwnerDiedError,
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.LocalRayletDiedError,
)


def _lost_to_failure(exc: BaseException) -> bool:
    """True if ``exc`` (or an exception it was raised from) is a lost node, actor,
    worker or object, not an error of the job's own code."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _LOST):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _judge_watch(
    cfg: MineConfig, use_judge: bool, max_queries: int | None, skip: frozenset[str]
) -> list[Watch]:
    """The judge's live progress line for a pass (none without the judge): pairs judged of
    the pairs retrieval passes on, for the pass's queries when their number is known."""
    if not use_judge:
        return []
    expected = None if max_queries is None else max(0, max_queries - len(skip) * cfg.shard_size)
    return [Watch(JUDGE_OP, "pairs", "judged", expected)]


def _until_written(
    cfg: MineConfig,
    device: str,
    use_judge: bool,
    max_queries: int | None,
    skip: frozenset[str],
    pool: SharedPool,
) -> None:
    """Run stage 3's pass over the shards not in ``skip``; when a node, actor or object is
    lost mid-pass (pre-emption, OOM), run it again over the shards still unwritten, at most
    ``cfg.query_stage_attempts`` times. Written shards are whole and never rewritten."""
    for attempt in range(1, cfg.query_stage_attempts + 1):
        try:
            with watch(_judge_watch(cfg, use_judge, max_queries, skip)):
                _judge_dataset(cfg, device, skip, use_judge, max_queries, pool).take_all()
            return
        except Exception as exc:
            if not _lost_to_failure(exc) or attempt == cfg.query_stage_attempts:
                raise
            skip = finished_shards(cfg.output)
            logger.warning(
                "query stage attempt %d/%d lost a node or worker (%s: %s); %d shards are "
                "written, running again over the rest",
                attempt,
                cfg.query_stage_attempts,
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
                len(skip),
            )


def select_blocks(shards: int, cpus: float) -> int:
    """Tasks of the select stage: one per CPU of the cluster (each writes its share of the
    shards in turn), never more than there are shards, at least 1. A task per shard paid a
    worker's start-up and imports for every 16-512 queries."""
    return max(1, min(shards, int(cpus)))


def _select_options(cfg: MineConfig, verdict: SanityVerdict | None) -> SelectOptions:
    return SelectOptions(
        selection=cfg.selection,
        score_source=S.SCORE_EMBEDDER if verdict is None else verdict.score_source,
        embedder=cfg.embedder.name,
        judge=cfg.judge_name,
        k=cfg.retrieval.k,
    )


REPORT_FILES = ("report.md", "report.json", "judge_scores.png")
RUN_DIRS = ("pool", "judged", "mined", "export", QUARANTINE_DIR)
# What a run publishes, the manifest last.
PUBLISHED = (*RUN_DIRS, SANITY_FILE, RUN_FILE, *REPORT_FILES, shards.MANIFEST)
MINE_LAYOUT = (*(f"{d}/*" for d in RUN_DIRS), SANITY_FILE, RUN_FILE, *REPORT_FILES, "*.png")


def prepare_output(cfg: MineConfig) -> str:
    """Validate the inputs and the output folder, and return the folder the run works in.

    With ``resume`` that is the output itself (finished shards are kept and skipped).
    Without it, a previous run's output stays untouched: the run works in a fresh staging
    folder inside the output, and ``output_guard.publish`` replaces the previous entries once
    it has finished. A missing input or a folder holding files the mine job did not write
    fails before anything is written.
    """
    storage.check_reachable(cfg.output)
    with naming_input("queries"):
        input_files(cfg.queries)
    if cfg.pool is not None:
        with naming_input("pool"):
            input_files(cfg.pool)
    check_output(cfg.output, "mine", MINE_LAYOUT, cfg.overwrite)
    claim_output(cfg.output, "mine")
    if cfg.resume:
        check_resume(cfg.output, cfg)
        storage.delete(storage.join(cfg.output, shards.MANIFEST))
        return cfg.output
    for f in storage.list_files(cfg.output):  # stale staging folders of crashed runs
        name = f[len(cfg.output.rstrip("/")) + 1 :].split("/", 1)[0]
        if name.startswith(STAGING_PREFIX):
            storage.delete(storage.join(cfg.output, name))
    return staging_folder(cfg.output, new_run_id())


def run_mine(cfg: MineConfig) -> tuple[MineReport, int]:
    """Run the mine job; returns its report and exit code (0, or 3 when it stopped before
    selection because the judge failed the AUC floor)."""
    storage.configure(storage.get_options().merged(cfg.storage))
    check_model(cfg.embedder.name)
    if cfg.selection.mode == "judge":
        check_model(cfg.judge.model.name)
    work = prepare_output(cfg)
    if work != cfg.output:
        check_resume(work, cfg)
    report, code = _run(dataclasses.replace(cfg, output=work))
    if work != cfg.output:
        try:
            if code == 0:
                rows = (report.queries, report.rows_written)
                check_not_empty(
                    "mine",
                    cfg.queries,
                    cfg.output,
                    rows,
                    PUBLISHED,
                    cfg.allow_empty,
                    report.quarantine_reasons,
                )
        except EmptyOutputError:
            storage.delete(work)
            raise
        publish(work, cfg.output, PUBLISHED, shards.MANIFEST)
        storage.delete(work)
    return report, code


def _run(cfg: MineConfig) -> tuple[MineReport, int]:
    init_ray(cfg.ray)
    device = resolve_device(cfg.embedder)
    report = MineReport(
        embedder=cfg.embedder.name,
        judge=cfg.judge_name,
        k=cfg.retrieval.k,
        beta=cfg.selection.beta,
        max_fn_share=cfg.selection.max_fn_share,
        auc_floor=cfg.sanity.auc_floor,
    )
    t = report.stage_seconds
    t["pool: read and stage"] = _stage_pool(cfg)
    t["pool: embed"] = _stage_embed_pool(cfg)
    verdict = _judge_queries(cfg, device, report)
    add_quarantine(report, cfg.output)
    add_judged(report, cfg.output)
    _, judged = shards.count_rows(storage.join(cfg.output, JUDGED_DIR))
    require_valid_rows("queries", cfg.queries, report.queries, judged, report.quarantine_reasons)
    report.sanity = verdict
    if verdict is not None and verdict.action != "judge":
        logger.warning("\n%s\n%s\n%s", "!" * 80, verdict.line(cfg.judge_name or ""), "!" * 80)
    if verdict is not None and verdict.action == "stop":
        write_report(report, cfg.output)
        return report, EXIT_JUDGE_FAILED
    start = time.perf_counter()
    names = sorted(finished_shards(cfg.output))
    options = _select_options(cfg, verdict)
    blocks = select_blocks(len(names), ray.cluster_resources().get("CPU", 1))
    ds = ray.data.from_items([{S.SHARD: n} for n in names], override_num_blocks=blocks).map_batches(
        named(selector(cfg.output, cfg.output, options, storage.get_options()), "mine/select"),
        batch_size=None,
        batch_format="numpy",
        num_cpus=0.25,
    )
    ds.set_name(dataset_name("mine/select"))
    stats = ds.take_all()
    _add_selected(report, stats)
    t["select and write"] = time.perf_counter() - start
    write_report(report, cfg.output)
    shards.write_manifest(cfg.output, {"shards": len(names), **report.to_dict()})
    return report, 0


def _judge_queries(cfg: MineConfig, device: str, report: MineReport) -> SanityVerdict | None:
    """Stage 3: embed, retrieve and judge every query; in judge mode the first shards are
    judged and checked first (:mod:`mine_sanity`), and the verdict decides whether the
    judge also scores the rest. Returns the verdict (None in similarity mode)."""
    # The pool's index, ids and items: built once, held in the object store (one copy per
    # node, read zero-copy by the retrieval actors), never in the driver.
    pool = share_pool(
        storage.join(cfg.output, POOL_EMBEDDINGS),
        storage.join(cfg.output, POOL_ITEMS, "items"),
        cfg.retrieval,
        storage.get_options(),
    )
    report.stage_seconds["pool: index"] = pool.seconds
    start = time.perf_counter()
    skip = finished_shards(cfg.output) if cfg.resume else frozenset()
    verdict = None
    if cfg.selection.mode == "judge":
        verdict = read_verdict(cfg.output) if cfg.resume else None
        if verdict is None:
            verdict = _calibrate(cfg, device, skip, pool)
            write_verdict(cfg.output, verdict)
            skip = finished_shards(cfg.output)
        logger.info(verdict.line(cfg.judge_name or ""))
    if (verdict is None or verdict.action != "stop") and not _calibration_covers_all(cfg):
        use_judge = verdict is not None and verdict.score_source == S.SCORE_JUDGE
        _until_written(cfg, device, use_judge, cfg.max_queries, skip, pool)
    report.stage_seconds["queries: embed+retrieve+judge (wall)"] = time.perf_counter() - start
    return verdict


def _calibration_limit(cfg: MineConfig) -> int:
    """The queries the calibration pass judges: whole shards, at most ``max_queries``."""
    limit = -(-cfg.sanity.calibration_queries // cfg.shard_size) * cfg.shard_size
    return limit if cfg.max_queries is None else min(limit, cfg.max_queries)


def _calibration_covers_all(cfg: MineConfig) -> bool:
    """True when the calibration pass judged every query the job mines (e.g. the demo's 64
    of 64): a second pass would start the actor pools for no row."""
    return (
        cfg.selection.mode == "judge"
        and cfg.max_queries is not None
        and _calibration_limit(cfg) >= cfg.max_queries
    )


def _calibrate(
    cfg: MineConfig, device: str, skip: frozenset[str], pool: SharedPool
) -> SanityVerdict:
    """Judge the calibration shards and measure the judge on them."""
    limit = _calibration_limit(cfg)
    _until_written(cfg, device, True, limit, skip, pool)
    names = calibration_shards(
        sorted(finished_shards(cfg.output)), cfg.shard_size, cfg.sanity.calibration_queries
    )
    auc, rows = measure(cfg.output, names)
    return decide(auc, rows, tuple(names), cfg.sanity)


def _add_selected(report: MineReport, stats: list[dict[str, Any]]) -> None:
    for row in stats:
        report.add_select_stats(row)


def read_mined(output: str) -> pa.Table:
    """All training rows (MINED_SCHEMA) of a finished mine output, in shard order."""
    return storage.read_parquet(storage.join(output, "mined"))
