"""The driver side of the reranker job: rows and chat plan record, then ``trainer.fit``.

The same storage, split, checkpoint and GPU checks as the train jobs (``training.trainer``);
the chat plan is counted while the rows are staged (in the reading task, chunk by chunk)
and recorded by the driver (``<run>/rerank_data.json``) before any worker starts, so a bad
row fails first and short rows are named, not dropped.
"""

from __future__ import annotations

import json
from functools import partial

import pyarrow as pa

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.staged_rows import StagedRows
from uniembed.data.training_rows import iter_tune_chunks
from uniembed.reranker.config import RerankConfig
from uniembed.reranker.data import ChatCounts, build_chats
from uniembed.reranker.loop import rerank_loop_per_worker
from uniembed.runtime import init_ray
from uniembed.training.loop import run_uri
from uniembed.training.state import check_run_model
from uniembed.training.trainer import TrainSummary, check_enough_rows, fit, stage_checked

PLAN_FILE = "rerank_data.json"


class ChatTally:
    """The chat counts of the rows in input order (``plan_rows``' counts), chunk by chunk."""

    def __init__(self, list_size: int, seed: int, pairwise_negatives: int) -> None:
        self.list_size, self.seed, self.pairwise_negatives = list_size, seed, pairwise_negatives
        self.counts = ChatCounts()

    def add(self, chunk: pa.Table) -> None:
        """Plan and count each row's chats; ValueError naming a row that cannot give any."""
        for row in chunk.to_pylist():
            plan = build_chats(row, self.list_size, self.seed, self.pairwise_negatives)
            self.counts.add(str(row[S.QUERY_ID]), plan)


def reranker_rows(cfg: RerankConfig) -> tuple[StagedRows, ChatCounts]:
    """The run's rows (checked, staged in the order fixed by ``train.seed``, as the train
    jobs' ``training_rows``) and their chat counts.

    A bad row is quarantined (``<run>/quarantine``) as in the train jobs; ValueError
    naming the row when a checked row still cannot give chats.
    """
    read = partial(iter_tune_chunks, cfg.input, cfg.format, False)
    check_enough_rows(cfg, read)
    init_ray(cfg.ray)
    tally = ChatTally(cfg.data.list_size, cfg.data.seed, cfg.data.pairwise_negatives)
    rows = stage_checked(cfg, read, tally)
    return rows, rows.tally.counts


def run_reranker_training(cfg: RerankConfig) -> tuple[TrainSummary, ChatCounts]:
    """Run (or resume: same ``checkpoint.name``) the reranker job to ``train.max_steps``."""
    storage.configure(cfg.storage)
    storage.check_reachable(cfg.checkpoint.storage_path)
    run = run_uri(cfg)
    check_run_model(run, cfg.model.name)
    rows, counts = reranker_rows(cfg)
    storage.write_text(storage.join(run, PLAN_FILE), json.dumps(counts.to_dict(), indent=1))
    return fit(cfg, rows, rerank_loop_per_worker, job="train_reranker"), counts
