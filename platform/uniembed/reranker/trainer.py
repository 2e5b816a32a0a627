"""The driver side of the reranker job: rows and chat plan record, then ``trainer.fit``.

The same storage, split, checkpoint and GPU checks as the train jobs (``training.trainer``);
the chat plan is built and recorded on the driver first (``<run>/rerank_data.json``), so a
bad row fails before any worker starts and short rows are named, not dropped.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from uniembed import storage
from uniembed.data.training_rows import TrainingDataError, read_tune_rows
from uniembed.reranker.config import RerankConfig
from uniembed.reranker.data import ChatCounts, plan_rows
from uniembed.reranker.loop import rerank_loop_per_worker
from uniembed.training.loop import run_uri
from uniembed.training.state import check_run_model
from uniembed.training.trainer import TrainSummary, fit

PLAN_FILE = "rerank_data.json"


def reranker_rows(cfg: RerankConfig) -> tuple[pa.Table, ChatCounts]:
    """The run's rows (checked, shuffled once with ``train.seed``) and their chat counts.

    Raises ValueError naming the row when a row cannot give chats.
    """
    table = read_tune_rows(cfg.input, cfg.format, need_scores=False)
    if table.num_rows < cfg.train.batch_size:
        raise TrainingDataError(
            f"{cfg.input}: {table.num_rows} rows, fewer than one batch "
            f"(train.batch_size {cfg.train.batch_size}); give more rows or a smaller "
            "train.batch_size"
        )
    _, counts = plan_rows(
        table.to_pylist(), cfg.data.list_size, cfg.data.seed, cfg.data.pairwise_negatives
    )
    order = np.random.default_rng(cfg.train.seed).permutation(table.num_rows)
    return table.take(order), counts


def run_reranker_training(cfg: RerankConfig) -> tuple[TrainSummary, ChatCounts]:
    """Run (or resume: same ``checkpoint.name``) the reranker job to ``train.max_steps``."""
    storage.configure(cfg.storage)
    storage.check_reachable(cfg.checkpoint.storage_path)
    run = run_uri(cfg)
    check_run_model(run, cfg.model.name)
    rows, counts = reranker_rows(cfg)
    storage.write_text(storage.join(run, PLAN_FILE), json.dumps(counts.to_dict(), indent=1))
    return fit(cfg, rows, rerank_loop_per_worker, job="train_reranker"), counts
