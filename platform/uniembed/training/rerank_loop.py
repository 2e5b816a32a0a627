"""The Ray Train loop of the reranker job, on the train job's building blocks.

Checkpoints (weights, optimizer, scheduler, RNG, data position), the deterministic batch
order, the metrics file and the export are those of ``training.loop``; only the model (a
causal (M)LLM with its LM head, loaded by ``JudgeScorer.load``) and the step (next-token
cross-entropy on the answer tokens of the row's chats) differ. Each rank computes the mean
over its own answer tokens; gradients are averaged across ranks.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import ray.train
import ray.train.torch
import torch

from uniembed import storage
from uniembed.data import schema as S
from uniembed.losses.rerank import RerankLMLoss
from uniembed.models.judge import JudgeScorer
from uniembed.models.pooling_config import PoolingConfig
from uniembed.models.registry import resolve_model
from uniembed.training.export import export_model
from uniembed.training.gather import is_distributed
from uniembed.training.loop import (
    EXPORT_DIR,
    _broadcast_parameters,
    _gather_ids,
    _maybe_fail,
    epoch_batches,
    lr_lambda,
    run_uri,
    sum_gradients,
)
from uniembed.training.lora import trainable_parameters
from uniembed.training.metrics import METRICS_FILE, MetricsLog
from uniembed.training.rerank_config import RerankConfig
from uniembed.training.rerank_data import plan_rows
from uniembed.training.rerank_model import prepare_reranker, rerank_step
from uniembed.training.rerank_tokens import ChatEncoder
from uniembed.training.state import (
    Fingerprint,
    Position,
    TrainState,
    load_checkpoint,
    save_checkpoint,
)


def load_reranker(cfg: RerankConfig, device: str) -> JudgeScorer:
    """The scorer whose model is trained, its language model made trainable."""
    scorer = JudgeScorer.load(cfg.model.name, device=device, dtype="float32")
    scorer.model = prepare_reranker(scorer.model, cfg.lora).train()
    return scorer


def _average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    # Each rank's loss is the mean over its own answer tokens: average, not sum.
    sum_gradients(params)
    if is_distributed():
        for p in params:
            if p.grad is not None:
                p.grad.div_(world)


def rerank_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: ``config = {"cfg": RerankConfig}``."""
    cfg: RerankConfig = config["cfg"]
    storage.configure(cfg.storage)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = str(ray.train.torch.get_device())
    torch.manual_seed(cfg.train.seed)
    scorer = load_reranker(cfg, device)
    encoder = ChatEncoder(scorer)
    trainable = trainable_parameters(scorer.model)
    params = list(trainable.values())
    _broadcast_parameters(params)
    torch.manual_seed(cfg.train.seed + 1 + rank)
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
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
    rows = [r for b in shard.iter_batches(batch_format="pyarrow") for r in b.to_pylist()]
    local_batch = cfg.train.batch_size // world
    if len(rows) < local_batch:
        raise ValueError(
            f"rank {rank}: its shard has {len(rows)} rows, fewer than one batch of {local_batch}"
        )
    loss_fn = RerankLMLoss()
    autocast = (
        torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
        if cfg.scaling.precision == "bf16"
        else None
    )
    metrics = MetricsLog(storage.join(run_uri(cfg), METRICS_FILE))
    remote = storage.is_remote(metrics.uri)
    if rank == 0:
        metrics.resume(pos.step)
    batches_seen = state.extra.setdefault("batches", []) if cfg.debug.record_batches else None

    while pos.step < cfg.train.max_steps:
        for batch_rows in epoch_batches(
            rows, local_batch, cfg.train.seed, pos.epoch, rank, pos.batch_in_epoch
        ):
            _maybe_fail(cfg, pos.step + 1, rank)  # type: ignore[arg-type]
            start = time.perf_counter()
            chats, _ = plan_rows(batch_rows, cfg.data.list_size, cfg.data.seed)
            loss, stats = rerank_step(
                scorer.model, encoder, chats, loss_fn, cfg.data.chats_per_forward, autocast
            )
            _average_gradients(params, world)
            if cfg.train.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - start
            pos.advance()
            if batches_seen is not None:
                batches_seen.append(_gather_ids([str(r[S.QUERY_ID]) for r in batch_rows]))
            row = {
                "step": pos.step,
                "epoch": pos.epoch,
                "loss": float(loss),
                "lr": lr,
                "samples_per_s": cfg.train.batch_size / elapsed,
                "step_time_s": elapsed,
                "time": time.time(),
                "chats": len(chats),
                **stats,
            }
            done = pos.step >= cfg.train.max_steps
            save = done or pos.step % cfg.checkpoint.every_steps == 0
            if rank == 0:
                metrics.add(row)
                if save or not remote:
                    metrics.flush()
            if save:
                with tempfile.TemporaryDirectory(prefix="uniembed-ckpt-") as folder:
                    save_checkpoint(folder, rank, state, trainable, optimizer, scheduler)
                    ray.train.report(row, checkpoint=ray.train.Checkpoint.from_directory(folder))
            else:
                ray.train.report(row)
            if done:
                break
        else:
            pos.next_epoch()

    if rank == 0 and cfg.checkpoint.export:
        out = storage.join(run_uri(cfg), EXPORT_DIR)
        scorer.model.eval()
        # The export keeps the LM head: JudgeScorer.load(<export>) scores with it.
        export_model(scorer.model, resolve_model(cfg.model.name), out, PoolingConfig())
        print(f"[rank 0] exported the reranker to {out}")
