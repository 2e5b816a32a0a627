"""The driver side of a train job: stage the checked rows, build the TorchTrainer, run it.

The rows never sit in the driver: a Ray task reads and checks them chunk by chunk into the
object store, in the run's seeded order (``uniembed.data.staged_rows``); the driver holds
references, so its memory does not grow with the number of rows.

Storage (DESIGN §3b): a local ``storage_path`` is passed as a path; an ``s3://`` one as
``bucket/prefix`` with the pyarrow S3 filesystem of ``uniembed.storage``, so Ray Train
talks to the same endpoint with the same credentials as the rest of the job.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import ray
import ray.data
from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from uniembed import storage
from uniembed.data.job_outputs import clear_run_manifest, write_run_manifest
from uniembed.data.shards import QUARANTINE_DIR
from uniembed.data.staged_rows import (
    REASONS_KEPT,
    ChunkReader,
    ChunkTally,
    StagedRows,
    count_rows,
    stage_rows,
)
from uniembed.data.training_rows import (
    Quarantine,
    TrainingDataError,
    iter_distill_chunks,
    iter_text_chunks,
    iter_tune_chunks,
)
from uniembed.losses import LOSSES
from uniembed.runtime import init_ray
from uniembed.training.loop import EXPORT_DIR, AnyTrainConfig, run_uri, train_loop_per_worker
from uniembed.training.state import check_run_model
from uniembed.training.train_config import DistillConfig, TrainConfig, TuneConfig

logger = logging.getLogger(__name__)


class OrderedSplit(DataConfig):
    """Split the training rows into ``world_size`` equal shards, deterministically.

    Ray Train's default ``streaming_split`` hands blocks to whichever worker asks first, so
    which rows a rank sees changes between attempts; resuming at a batch index then repeats
    some rows and skips others. ``Dataset.split(equal=True)`` on an order-preserving
    execution gives every attempt the same shards.
    """

    def configure(
        self,
        datasets: dict[str, ray.data.Dataset],
        world_size: int,
        worker_handles: Any,
        worker_node_ids: Any,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """One ``{name: DataIterator}`` per rank."""
        out: list[dict[str, Any]] = [{} for _ in range(world_size)]
        for name, ds in datasets.items():
            ds = ds.copy(ds)
            label = ds.name or f"{name}-rows"
            ds.context.execution_options.preserve_order = True
            # The rows are an in-memory table split once: a progress bar for it would be
            # re-printed every few seconds for the whole run (off a terminal), burying the
            # training log; the run's own progress is its step lines and metrics.
            ds.context.enable_progress_bars = False
            for rank, part in enumerate(ds.split(world_size, equal=True)):
                # What the Ray Data view lists is each rank's part, read on its worker; Ray
                # registers it under a generated name (dataset_<id>) unless it has one.
                part.set_name(f"{label}-rank{rank}")
                out[rank][name] = part.iterator()
        return out


@dataclass
class TrainSummary:
    """What a finished run left behind."""

    run: str
    steps: int
    rows: int
    metrics: dict[str, Any]
    checkpoint: str | None
    export: str | None
    quarantined: int = 0  # input rows left out, in ``<run>/quarantine``

    def figures(self) -> dict[str, Any]:
        """The run's last figures (steps, rows, loss, samples/s) for the job's metrics."""
        out: dict[str, Any] = {
            "steps": self.steps,
            "rows": self.rows,
            "quarantined": self.quarantined,
        }
        for key in ("loss", "samples_per_s", "lr"):
            if isinstance(self.metrics.get(key), int | float):
                out[key] = float(self.metrics[key])
        return out

    def line(self) -> str:
        """One line for the job log."""
        loss = self.metrics.get("loss")
        loss_text = f"{loss:.4g}" if isinstance(loss, float) else "n/a"
        left_out = ""
        if self.quarantined:
            left_out = (
                f" ({self.quarantined} quarantined: {storage.join(self.run, QUARANTINE_DIR)})"
            )
        return (
            f"trained {self.steps} steps on {self.rows} rows{left_out}; last loss {loss_text}; "
            f"run {self.run}; export {self.export or '(none)'}"
        )


def check_one_batch(
    cfg: AnyTrainConfig, rows: int, quarantined: int = 0, reasons: tuple[str, ...] = ()
) -> None:
    """Raise TrainingDataError (a user error) when ``rows`` is fewer than one batch, naming
    how many rows were quarantined and the first reasons."""
    if rows < cfg.train.batch_size:
        left_out = ""
        if quarantined:
            left_out = f" ({quarantined} more quarantined; first reasons: {'; '.join(reasons)})"
        raise TrainingDataError(
            f"{cfg.input}: {rows} usable rows{left_out}, fewer than one batch "
            f"(train.batch_size {cfg.train.batch_size}); give more rows or a smaller "
            "train.batch_size"
        )


def check_enough_rows(cfg: AnyTrainConfig, read: ChunkReader) -> None:
    """In the driver, before Ray starts: TrainingDataError unless ``read`` gives one batch
    of usable rows (reading only that far), naming the first reasons rows were left out."""
    left_out = Quarantine()
    usable = count_rows(read, cfg.train.batch_size, left_out)
    check_one_batch(cfg, usable, len(left_out), left_out.reasons(REASONS_KEPT))


def quarantine_dir(cfg: AnyTrainConfig) -> str:
    """The run's folder of rows left out of training: ``<run>/quarantine``."""
    return storage.join(storage.absolute(run_uri(cfg)), QUARANTINE_DIR)


def stage_checked(
    cfg: AnyTrainConfig, read: ChunkReader, tally: ChunkTally | None = None
) -> StagedRows:
    """Stage the run's rows (Ray must be up), bad rows to ``<run>/quarantine``; at least
    one batch must be left, else TrainingDataError naming the quarantine reasons."""
    folder = quarantine_dir(cfg)
    rows = stage_rows(read, cfg.train.seed, tally, folder)
    check_one_batch(cfg, rows.num_rows, rows.quarantined, rows.reasons)
    if rows.quarantined:
        logger.warning(
            "%s: %d rows quarantined (first: %s); they are in %s",
            cfg.input,
            rows.quarantined,
            rows.reasons[0],
            folder,
        )
    return rows


def row_reader(cfg: TrainConfig, teacher: bool = True) -> ChunkReader:
    """The run's checked rows, chunk by chunk in input order: tune rows, or distill texts
    (with the teacher's embeddings unless ``teacher`` is False)."""
    if isinstance(cfg, TuneConfig):
        need_scores = LOSSES[cfg.loss.name].needs_scores
        return partial(iter_tune_chunks, cfg.input, cfg.format, need_scores)
    if teacher and cfg.teacher.embeddings:
        return partial(iter_distill_chunks, cfg.input, cfg.teacher.embeddings)
    return partial(iter_text_chunks, cfg.input)


def training_rows(cfg: TrainConfig) -> StagedRows:
    """The run's rows, checked, in Ray's object store in the order fixed by ``train.seed``.

    Fewer rows than one batch is found in the driver before Ray starts (it reads at most a
    batch and a chunk); then Ray starts and a task stages every row (``stage_rows``).
    """
    check_enough_rows(cfg, row_reader(cfg, teacher=False))
    init_ray(cfg.ray)
    return stage_checked(cfg, row_reader(cfg))


def _run_config(cfg: AnyTrainConfig) -> RunConfig:
    ck = cfg.checkpoint
    fs, path = storage.patient_filesystem_for(ck.storage_path)
    return RunConfig(
        name=ck.name,
        storage_path=path,
        storage_filesystem=fs if storage.is_remote(ck.storage_path) else None,
        checkpoint_config=CheckpointConfig(num_to_keep=ck.num_to_keep),
        failure_config=FailureConfig(max_failures=ck.max_failures),
    )


def build_trainer(
    cfg: AnyTrainConfig,
    rows: StagedRows,
    loop: Callable[[dict[str, Any]], None] = train_loop_per_worker,
) -> TorchTrainer:
    """The TorchTrainer of the run (Ray must be initialised); ``loop`` is the worker's."""
    sc = cfg.scaling
    resources = {"CPU": sc.cpus_per_worker, **sc.resources}
    if sc.use_gpu:
        resources["GPU"] = sc.gpus_per_worker
    dataset = rows.dataset()  # named by OrderedSplit: see there
    return TorchTrainer(
        loop,
        train_loop_config={"cfg": cfg},
        scaling_config=ScalingConfig(
            num_workers=sc.num_workers, use_gpu=sc.use_gpu, resources_per_worker=resources
        ),
        run_config=_run_config(cfg),
        datasets={"train": dataset},
        dataset_config=OrderedSplit(),
    )


def fit(
    cfg: AnyTrainConfig,
    rows: StagedRows,
    loop: Callable[[dict[str, Any]], None] = train_loop_per_worker,
    job: str = "tune",
) -> TrainSummary:
    """Start Ray, check the GPUs asked for exist, train ``rows`` to ``train.max_steps``;
    the finished run folder gets a ``_SUCCESS.json`` naming its export, so the next job
    takes the run folder itself.

    A relative ``checkpoint.storage_path`` is taken from the driver's working folder: the
    workers run elsewhere (Ray's session folder), and their export and metrics must land
    where the user looks."""
    path = storage.absolute(cfg.checkpoint.storage_path)
    cfg = dataclasses.replace(
        cfg, checkpoint=dataclasses.replace(cfg.checkpoint, storage_path=path)
    )
    init_ray(cfg.ray)
    if cfg.scaling.use_gpu:
        # Without this a GPU run on a CPU cluster waits for resources forever.
        from uniembed.runtime import require_gpus

        sc = cfg.scaling
        require_gpus(sc.num_workers * sc.gpus_per_worker, "scaling.use_gpu")
    run = run_uri(cfg)
    clear_run_manifest(run)
    result = build_trainer(cfg, rows, loop).fit()
    if result.error is not None:
        raise result.error
    metrics = dict(result.metrics or {})
    summary = TrainSummary(
        run=run,
        steps=int(metrics.get("step", 0)),
        rows=rows.num_rows,
        metrics=metrics,
        checkpoint=result.checkpoint.path if result.checkpoint else None,
        export=storage.join(run, EXPORT_DIR) if cfg.checkpoint.export else None,
        quarantined=rows.quarantined,
    )
    write_run_manifest(
        run,
        job,
        {
            "steps": summary.steps,
            "rows": summary.rows,
            "quarantined": summary.quarantined,
            "metrics": metrics,
        },
        summary.export,
    )
    return summary


def run_training(cfg: TuneConfig | DistillConfig) -> TrainSummary:
    """Run (or resume: same ``checkpoint.name``) a train job to ``train.max_steps``."""
    storage.configure(cfg.storage)
    storage.check_reachable(cfg.checkpoint.storage_path)
    check_run_model(run_uri(cfg), cfg.model.name)
    job = "tune" if isinstance(cfg, TuneConfig) else "distill"
    return fit(cfg, training_rows(cfg), job=job)
