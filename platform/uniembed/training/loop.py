"""The Ray Train loop every worker of a train job runs (distill, tune, train_reranker).

Data position: the rows are staged once in an order fixed by the run's seed
(``uniembed.data.staged_rows``: a seeded chunk order, a seeded order within each chunk);
Ray Train splits them into equal, deterministic shards
(:class:`~uniembed.training.trainer.OrderedSplit`); each rank permutes its shard per epoch
with a seed of (run seed, epoch, rank). Batch ``b`` of epoch ``e`` is therefore the same
rows in every attempt, and a checkpoint only needs ``(epoch, batch_in_epoch)`` to resume
without repeating or skipping a batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ray.data
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch import Tensor, nn

from uniembed import storage
from uniembed.data import schema as S
from uniembed.losses import LOSSES, DistillLoss
from uniembed.models import EmbedInput, TransformerEmbedder, load_embedder
from uniembed.models.pooling import set_bidirectional
from uniembed.models.pooling_config import PoolingConfig
from uniembed.models.registry import resolve_model
from uniembed.priority import set_niceness
from uniembed.reranker.config import RerankConfig
from uniembed.training.export import export_model
from uniembed.training.gather import is_distributed
from uniembed.training.lora import prepare_trainable, trainable_parameters
from uniembed.training.metrics import METRICS_FILE, MetricsLog
from uniembed.training.sampler import random_batches, task_homogeneous_batches
from uniembed.training.shard_rows import ArrowRows
from uniembed.training.state import (
    Fingerprint,
    Position,
    TrainState,
    load_checkpoint,
    save_checkpoint,
)
from uniembed.training.steps import distill_step, tune_batch, tune_step
from uniembed.training.tracking import RunTracker
from uniembed.training.train_config import DistillConfig, TrainConfig, TuneConfig

EXPORT_DIR = "export"
AnyTrainConfig = TrainConfig | RerankConfig  # the configs run_worker takes


def run_uri(cfg: AnyTrainConfig) -> str:
    """The run folder ``<storage_path>/<name>`` (checkpoints, metrics, export)."""
    return storage.join(cfg.checkpoint.storage_path, cfg.checkpoint.name)


def build_loss(cfg: TuneConfig) -> nn.Module:
    """The stage-2 loss named in the config, with the hyperparameters it accepts."""
    cls = LOSSES[cfg.loss.name]
    accepted = inspect.signature(cls.__init__).parameters
    values = dataclasses.asdict(cfg.loss)  # None: the loss's own default
    kwargs = {k: v for k, v in values.items() if k in accepted and k != "name" and v is not None}
    return cls(**kwargs)


def lr_lambda(warmup: int, total: int) -> Any:
    """Linear warmup to the peak over ``warmup`` steps, then linear decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def autocast_for(precision: str, device: str) -> contextlib.AbstractContextManager[Any]:
    """The forward's context for ``scaling.precision``: bf16 autocast, or nothing (fp32)."""
    if precision == "bf16":
        return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()


def load_student(cfg: TrainConfig, device: str) -> TransformerEmbedder:
    """The embedder to train, prompt overrides applied, trainable parts prepared."""
    embedder = load_embedder(cfg.model.name, device=device, dtype="float32")
    assert isinstance(embedder, TransformerEmbedder)
    updates: dict[str, Any] = {}
    if cfg.prompt.text_template is not None:
        updates["text_template"] = cfg.prompt.text_template
    if cfg.prompt.max_length is not None and embedder.settings.max_length is None:
        updates["max_length"] = cfg.prompt.max_length
    if cfg.pooling.mode is not None:
        updates["pooling"] = cfg.pooling.mode
    if cfg.pooling.attention == "bidirectional":
        if embedder.family.kind != "decoder":
            raise ValueError(
                f"pooling.attention=bidirectional: {cfg.model.name} is a "
                f"{embedder.family.kind} model; the switch is for decoder students"
            )
        set_bidirectional(embedder.model)
    embedder.settings = dataclasses.replace(embedder.settings, **updates)
    embedder.model = prepare_trainable(embedder.model, cfg.lora).train()
    return embedder


def adamw(params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over ``params``; fused (one kernel over all tensors) on CPU and CUDA, where a
    step of all-MiniLM-L6-v2 on CPU takes 21 ms fused against 132 ms tensor by tensor."""
    fused = bool(params) and all(
        p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params
    )
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def sum_gradients(params: list[nn.Parameter]) -> None:
    """All-reduce (SUM) the gradients of ``params`` across ranks in one flat buffer.

    SUM, not the mean: every rank computed the same global loss (see ``gather.py``).
    """
    if not is_distributed():
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    for g, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        g.copy_(synced)


def _broadcast_parameters(params: list[nn.Parameter]) -> None:
    # Every rank starts from rank 0's adapter init, whatever its RNG did.
    if is_distributed():
        for p in params:
            dist.broadcast(p.data, src=0)


def epoch_batches(
    rows: ArrowRows,
    batch: int,
    seed: int,
    epoch: int,
    rank: int,
    skip: int,
    tasks: list[Any] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """This rank's batches of ``epoch`` in their fixed order, starting after ``skip``;
    task-homogeneous ones when ``tasks`` (each row's task) is given."""
    if tasks is None:
        order = random_batches(len(rows), batch, seed, epoch, rank)
    else:
        order = task_homogeneous_batches(tasks, batch, seed, epoch, rank)
        if is_distributed():  # every rank must run the same number of steps per epoch
            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            count = torch.tensor([len(order)], device=device)
            dist.all_reduce(count, op=dist.ReduceOp.MIN)
            order = order[: int(count)]
    for b in range(skip, len(order)):
        yield rows.take(order[b])


def row_tasks(cfg: AnyTrainConfig, rows: ArrowRows) -> list[Any] | None:
    """Each row's task when the config asks for task-homogeneous batches, else None."""
    sampler = getattr(cfg, "sampler", None)
    if sampler is None or sampler.name == "random":
        return None
    field = sampler.task_field
    if len(rows) and field not in rows.columns:
        raise ValueError(
            f"sampler.task_field: the training rows have no column {field!r} "
            f"(columns: {sorted(rows.columns)})"
        )
    return rows.column(field)


def _maybe_fail(cfg: AnyTrainConfig, step: int, rank: int) -> None:
    """Test knob: kill this worker process once at ``debug.fail_at_step``."""
    if cfg.debug.fail_at_step != step or rank != cfg.debug.fail_rank:
        return
    marker = storage.join(run_uri(cfg), f".debug-failed-at-{step}")
    if storage.exists(marker):
        return
    storage.write_text(marker, "killed once on purpose (debug.fail_at_step)\n")
    os._exit(1)  # like a killed process: no exception, no cleanup


def _gather_ids(ids: list[str]) -> list[str]:
    if not is_distributed():
        return list(ids)
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, list(ids))
    return [i for part in out for i in part]


@dataclass
class WorkerTask:
    """What one job trains on a worker; everything else is :func:`run_worker`'s.

    Attributes:
        module: the model; its parameters with ``requires_grad`` are trained, checkpointed
            and all-reduced.
        step: one batch of rows -> (loss, stats for the metrics row, the rows' ids); runs
            forward and backward, leaving the gradients on ``module``.
        export: writes the trained model to the folder URI it is given (rank 0, at the end).
        mean_gradients: each rank's loss is the mean over its own rows (average the
            gradients), not the same global loss on every rank (sum them, see ``gather.py``).
        extra_parameters: trained beside the model's (a loss's learnable temperature), by
            name; optimised, checkpointed and all-reduced the same way, never exported.
    """

    module: nn.Module
    step: Callable[[list[dict[str, Any]]], tuple[Tensor, dict[str, float], list[str]]]
    export: Callable[[str], None]
    mean_gradients: bool = False
    extra_parameters: dict[str, nn.Parameter] = dataclasses.field(default_factory=dict)


def run_worker(cfg: AnyTrainConfig, build: Callable[[str], WorkerTask]) -> None:
    """The loop every worker runs: seeds, optimizer and schedule, resume, the batches in
    their fixed order, gradient sync, metrics, checkpoints and the export.

    ``build(device)`` loads the task's model after the run seed is set, so that every rank
    builds the same adapter initialisation (rank 0's is broadcast anyway).
    """
    storage.configure(cfg.storage)
    # The rows' iterator executes here; off a terminal its progress bar would be printed
    # again every few seconds for the whole run. The run's progress is its step metrics.
    ray.data.DataContext.get_current().enable_progress_bars = False
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = str(ray.train.torch.get_device())
    niceness = getattr(cfg.scaling, "niceness", None)
    if niceness is not None and (refused := set_niceness(niceness)):
        print(f"[rank {rank}] {refused}")
    if device == "cpu":
        local = max(1, ctx.get_local_world_size())
        torch.set_num_threads(cfg.scaling.cpu_threads or max(1, (os.cpu_count() or 1) // local))
    torch.manual_seed(cfg.train.seed)
    task = build(device)
    trainable = {**trainable_parameters(task.module), **task.extra_parameters}
    params = list(trainable.values())
    _broadcast_parameters(params)
    torch.manual_seed(cfg.train.seed + 1 + rank)  # dropout differs per rank
    optimizer = adamw(params, cfg.train.lr, cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.train.warmup_steps, cfg.train.max_steps)
    )
    fingerprint = Fingerprint.of(cfg.model.name, trainable)
    state = TrainState(Position(), fingerprint)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = load_checkpoint(folder, rank, fingerprint, trainable, optimizer, scheduler)
        print(f"[rank {rank}] resumed at step {state.position.step} from {checkpoint.path}")
    pos = state.position

    shard = ray.train.get_dataset_shard("train")
    rows = ArrowRows.from_shard(shard)  # columnar: a batch becomes dicts when it is trained
    local_batch = cfg.train.batch_size // world
    if len(rows) < local_batch:
        raise ValueError(
            f"rank {rank}: its shard has {len(rows)} rows, fewer than one batch of "
            f"{local_batch} (train.batch_size {cfg.train.batch_size} over {world} workers)"
        )
    metrics = MetricsLog(storage.join(run_uri(cfg), METRICS_FILE))
    remote = storage.is_remote(metrics.uri)
    if rank == 0:
        metrics.resume(pos.step)
    batches_seen = state.extra.setdefault("batches", []) if cfg.debug.record_batches else None
    tracker = RunTracker(cfg, run_uri(cfg), rank)

    tasks = row_tasks(cfg, rows)
    last_report = float("-inf")
    while pos.step < cfg.train.max_steps:
        for batch_rows in epoch_batches(
            rows, local_batch, cfg.train.seed, pos.epoch, rank, pos.batch_in_epoch, tasks
        ):
            _maybe_fail(cfg, pos.step + 1, rank)
            start = time.perf_counter()
            loss, stats, ids = task.step(batch_rows)
            sum_gradients(params)
            if task.mean_gradients and world > 1:
                for p in params:
                    if p.grad is not None:
                        p.grad.div_(world)
            if cfg.train.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - start
            if cfg.debug.step_delay_s:
                time.sleep(cfg.debug.step_delay_s)
            pos.advance()
            if batches_seen is not None:
                batches_seen.append(_gather_ids(ids))
            row = {
                "step": pos.step,
                "epoch": pos.epoch,
                "loss": float(loss),
                "lr": lr,
                "samples_per_s": cfg.train.batch_size / elapsed,
                "step_time_s": elapsed,
                "time": time.time(),
                **stats,
            }
            done = pos.step >= cfg.train.max_steps
            save = done or pos.step % cfg.checkpoint.every_steps == 0
            tracker.step(row)
            if rank == 0:
                metrics.add(row)
                if save or not remote:
                    metrics.flush()
            if save:
                with tempfile.TemporaryDirectory(prefix="uniembed-ckpt-") as folder:
                    save_checkpoint(folder, rank, state, trainable, optimizer, scheduler)
                    ray.train.report(row, checkpoint=ray.train.Checkpoint.from_directory(folder))
                last_report = time.monotonic()
            elif time.monotonic() - last_report >= cfg.checkpoint.report_every_s:
                ray.train.report(row)
                last_report = time.monotonic()
            if done:
                break
        else:
            pos.next_epoch()

    out = None
    if rank == 0 and cfg.checkpoint.export:
        out = storage.join(run_uri(cfg), EXPORT_DIR)
        task.module.eval()
        task.export(out)
        print(f"[rank 0] exported the model to {out}")
    tracker.finish(out)


def embedder_task(cfg: TrainConfig, device: str) -> WorkerTask:
    """Stage 1 (distill) or stage 2 (tune) of the embedder: its model, step and export."""
    student = load_student(cfg, device)

    def encode(inputs: list[EmbedInput]) -> Tensor:
        with autocast_for(cfg.scaling.precision, device):
            return student.features(inputs)

    chunk = cfg.train.grad_cache_chunk
    if isinstance(cfg, TuneConfig):
        tune_loss = build_loss(cfg).to(device)
        extra = {f"loss.{n}": p for n, p in tune_loss.named_parameters()}
        num_neg = cfg.loss.num_negatives if tune_loss.encodes_negatives else 0

        def step(rows: list[dict[str, Any]]) -> tuple[Tensor, dict[str, float], list[str]]:
            batch = tune_batch(rows, num_neg)
            value, stats = tune_step(encode, tune_loss, batch, chunk)
            loss_stats = getattr(tune_loss, "stats", None)  # e.g. a learned temperature
            return value, {**stats, **(loss_stats() if loss_stats else {})}, batch.ids

    else:
        distill_loss = DistillLoss(cfg.loss.temperature, cfg.loss.average, cfg.loss.exclude_self)
        teacher = load_embedder(cfg.teacher.model, device=device) if cfg.teacher.model else None

        def step(rows: list[dict[str, Any]]) -> tuple[Tensor, dict[str, float], list[str]]:
            texts = [r[S.TEXT] for r in rows]
            if teacher is not None:
                target = torch.from_numpy(teacher.embed([EmbedInput(text=t) for t in texts]))
            else:
                target = torch.tensor([r[S.EMBEDDING] for r in rows])
            loss, stats = distill_step(encode, distill_loss, texts, target, chunk)
            return loss, stats, [r[S.ID] for r in rows]

    def export(out: str) -> None:
        pooling = PoolingConfig(
            pooling=cfg.pooling.mode,
            text_template=cfg.prompt.text_template,
            max_length=student.settings.max_length if student.family.kind != "mllm" else None,
        )
        export_model(student.model, resolve_model(cfg.model.name), out, pooling)

    if isinstance(cfg, TuneConfig):
        return WorkerTask(student.model, step, export, extra_parameters=extra)
    return WorkerTask(student.model, step, export)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point of the train jobs: ``config = {"cfg": TuneConfig | DistillConfig}``."""
    cfg: TrainConfig = config["cfg"]
    run_worker(cfg, lambda device: embedder_task(cfg, device))


__all__ = [
    "DistillConfig",
    "TuneConfig",
    "WorkerTask",
    "run_uri",
    "run_worker",
    "train_loop_per_worker",
]
