"""The driver side of the reranker job: rows, chat plan record, TorchTrainer, run.

The same storage, split and checkpoint settings as the train jobs (``training.trainer``);
the chat plan is built and recorded on the driver first (``<run>/rerank_data.json``), so a
bad row fails before any worker starts and short rows are named, not dropped.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import ray.data
from ray.train import ScalingConfig
from ray.train.torch import TorchTrainer

from uniembed import storage
from uniembed.pipelines.runtime import init_ray
from uniembed.training.loop import EXPORT_DIR, run_uri
from uniembed.training.rerank_config import RerankConfig
from uniembed.training.rerank_data import ChatCounts, plan_rows
from uniembed.training.rerank_loop import rerank_loop_per_worker
from uniembed.training.rows import read_tune_rows
from uniembed.training.state import check_run_model
from uniembed.training.trainer import OrderedSplit, TrainSummary, _run_config

PLAN_FILE = "rerank_data.json"


def reranker_rows(cfg: RerankConfig) -> tuple[pa.Table, ChatCounts]:
    """The run's rows (checked, shuffled once with ``train.seed``) and their chat counts.

    Raises ValueError naming the row when a row cannot give chats.
    """
    table = read_tune_rows(cfg.input, cfg.format, need_scores=False)
    if table.num_rows < cfg.train.batch_size:
        raise ValueError(
            f"{cfg.input}: {table.num_rows} rows, fewer than one batch "
            f"(train.batch_size {cfg.train.batch_size})"
        )
    _, counts = plan_rows(table.to_pylist(), cfg.data.list_size, cfg.data.seed)
    order = np.random.default_rng(cfg.train.seed).permutation(table.num_rows)
    return table.take(order), counts


def build_reranker_trainer(cfg: RerankConfig, rows: pa.Table) -> TorchTrainer:
    """The TorchTrainer of the run (Ray must be initialised)."""
    sc = cfg.scaling
    resources = {"CPU": sc.cpus_per_worker}
    if sc.use_gpu:
        resources["GPU"] = sc.gpus_per_worker
    return TorchTrainer(
        rerank_loop_per_worker,
        train_loop_config={"cfg": cfg},
        scaling_config=ScalingConfig(
            num_workers=sc.num_workers, use_gpu=sc.use_gpu, resources_per_worker=resources
        ),
        run_config=_run_config(cfg),  # type: ignore[arg-type]
        datasets={"train": ray.data.from_arrow(rows)},
        dataset_config=OrderedSplit(),
    )


def run_reranker_training(cfg: RerankConfig) -> tuple[TrainSummary, ChatCounts]:
    """Run (or resume: same ``checkpoint.name``) the reranker job to ``train.max_steps``."""
    storage.configure(cfg.storage)
    storage.check_reachable(cfg.checkpoint.storage_path)
    run = run_uri(cfg)  # type: ignore[arg-type]
    check_run_model(run, cfg.model.name)
    rows, counts = reranker_rows(cfg)
    storage.write_text(storage.join(run, PLAN_FILE), json.dumps(counts.to_dict(), indent=1))
    init_ray(cfg.ray)
    result = build_reranker_trainer(cfg, rows).fit()
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
    )
    return summary, counts
