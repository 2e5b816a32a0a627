"""Evaluation: eval-set readers, dedupe, scoring, retrieval metrics, task groups, the
written report, and the evaluate job's pipeline (``run_evaluation``)."""

from __future__ import annotations

from uniembed.evaluation.config import EvalConfig
from uniembed.evaluation.dedupe import EmbedPlan, content_key, plan_items
from uniembed.evaluation.groups import (
    MMEB_GROUPS,
    OTHER,
    OVERALL,
    aggregate,
    group_of,
    groups_from_mapping,
    load_groups,
)
from uniembed.evaluation.metrics import (
    candidate_list_metrics,
    caption_retrieval_metrics,
    compositional_accuracy,
    retrieval_metrics,
)
from uniembed.evaluation.report import (
    DedupeStats,
    EvalResults,
    TaskResult,
    baseline_scores,
    write_report,
)
from uniembed.evaluation.runner import run_evaluation
from uniembed.evaluation.scoring import Embeddings, score_tasks
from uniembed.evaluation.tasks import TASK_KINDS, EvalTask, TaskRow, read_task, read_tasks

__all__ = [
    "MMEB_GROUPS",
    "OTHER",
    "OVERALL",
    "TASK_KINDS",
    "DedupeStats",
    "EmbedPlan",
    "Embeddings",
    "EvalConfig",
    "EvalResults",
    "EvalTask",
    "TaskResult",
    "TaskRow",
    "aggregate",
    "baseline_scores",
    "candidate_list_metrics",
    "caption_retrieval_metrics",
    "compositional_accuracy",
    "content_key",
    "group_of",
    "groups_from_mapping",
    "load_groups",
    "plan_items",
    "read_task",
    "read_tasks",
    "retrieval_metrics",
    "run_evaluation",
    "score_tasks",
    "write_report",
]
