"""Score every task from the embedded items: cosine similarity, then the task's metrics.

Rows that could not be read (``EvalTask.unreadable``) are counted and named among a task's
excluded rows (one query each).

Missing images: the embed pipeline quarantines an item whose image cannot be read. A row
(query with its candidates, image with its captions, or compositional pair) that uses
such an item is excluded from its task's metrics, and the count and reasons go into the
report. Scoring the query against the candidates that remain would raise its chance of
ranking the gold first, so that number would be wrong without saying so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from uniembed.evaluation.dedupe import EmbedPlan
from uniembed.evaluation.metrics import caption_retrieval_metrics, compositional_accuracy
from uniembed.evaluation.report import TaskResult
from uniembed.evaluation.tasks import EvalTask, TaskRow


class Embeddings:
    """Id -> unit vector lookup over the embed pipeline's output."""

    def __init__(self, ids: Sequence[str], matrix: np.ndarray) -> None:
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[0] != len(ids):
            raise ValueError(f"embeddings: {len(ids)} ids for a matrix of shape {matrix.shape}")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        if np.any(norms == 0) or not np.all(np.isfinite(matrix)):
            raise ValueError("embeddings: zero or non-finite vectors cannot be scored")
        self.matrix = matrix / norms  # cosine = dot product of unit vectors
        self.row = {rid: i for i, rid in enumerate(ids)}

    def __call__(self, ids: Sequence[str]) -> np.ndarray:
        """``(len(ids), dim)`` unit vectors."""
        return self.matrix[[self.row[i] for i in ids]]


def _split_rows(
    task: EvalTask, ids: list[str], failed: Mapping[str, str], emb: Embeddings
) -> tuple[list[TaskRow], list[tuple[TaskRow, str]]]:
    """Rows to score, and the rows excluded with the reason."""
    kept, excluded = [], []
    for row in task.rows:
        bad = [ids[r] for r in row.refs if ids[r] in failed]
        if bad:
            excluded.append((row, failed[bad[0]]))
            continue
        missing = [ids[r] for r in row.refs if ids[r] not in emb.row]
        if missing:
            # Neither embedded nor quarantined: the pipeline lost it; no number is safe.
            raise RuntimeError(f"{row.source}: item {missing[0]} came back without an embedding")
        kept.append(row)
    if not kept:
        raise ValueError(
            f"task {task.name}: all {len(excluded)} rows were excluded, e.g. "
            f"{excluded[0][0].source}: {excluded[0][1]}"
        )
    return kept, excluded


def note_excluded(
    result: TaskResult, task: EvalTask, excluded: Sequence[tuple[TaskRow, str]]
) -> None:
    """Count in ``result`` the task's unreadable rows and its ``excluded`` ones (in queries,
    as ``n_queries`` counts them: a caption row holds one query per caption) and name
    every one (the report lists the first few; ``excluded.jsonl`` holds them all)."""
    per_row = (lambda r: len(r.refs) - 1) if task.kind == "captions" else (lambda r: 1)
    result.n_excluded = len(task.unreadable) + sum(per_row(r) for r, _ in excluded)
    reasons = task.unreadable + [f"{r.source}: {why}" for r, why in excluded]
    result.excluded = reasons


def _candidates(
    rows: list[TaskRow], ids: list[str], emb: Embeddings, ks: Sequence[int]
) -> TaskResult:
    scores = []
    for row in rows:
        vecs = emb([ids[r] for r in row.refs])
        # Row-wise products, not a BLAS matrix-vector call: BLAS may take another code path
        # for some rows, and identical candidates must get bit-identical scores so that
        # ties really are ties (and count against the gold). Candidate order is kept.
        scores.append((vecs[1:] * vecs[0]).sum(axis=1))
    return TaskResult.from_candidate_scores(scores, ks)


def _captions(
    rows: list[TaskRow], ids: list[str], emb: Embeddings, ks: Sequence[int]
) -> TaskResult:
    if len(rows) < 2:
        raise ValueError(f"{rows[0].source}: caption retrieval needs two scorable images")
    images = emb([ids[row.refs[0]] for row in rows])
    texts = emb([ids[r] for row in rows for r in row.refs[1:]])
    owner = np.repeat(np.arange(len(rows)), [len(row.refs) - 1 for row in rows])
    metrics = caption_retrieval_metrics(images, texts, owner, ks)
    # Per-query arrays for the plots: each caption retrieving its image among all images.
    sim = texts @ images.T  # (n_texts, n_images)
    gold = sim[np.arange(len(owner)), owner]
    others = np.where(np.arange(len(rows))[None, :] == owner[:, None], -np.inf, sim)
    ranks = np.count_nonzero(sim >= gold[:, None], axis=1)  # includes the gold: ties against
    return TaskResult(
        metrics={k: v for k, v in metrics.items() if k not in ("n_images", "n_texts")},
        gold_scores=gold,
        best_distractor_scores=others.max(axis=1),
        gold_ranks=ranks,
        n_queries=len(owner),
        primary_metric=f"text_to_image_R@{min(ks)}",
        kind="captions",
    )


def _compositional(rows: list[TaskRow], ids: list[str], emb: Embeddings) -> TaskResult:
    image, true, altered = (emb([ids[row.refs[j]] for row in rows]) for j in range(3))
    cats = [row.category or "" for row in rows]
    m = compositional_accuracy(image, true, altered, cats)
    pos, neg = (image * true).sum(axis=1), (image * altered).sum(axis=1)
    return TaskResult(
        metrics={"accuracy": m["accuracy"]},
        gold_scores=pos,
        best_distractor_scores=neg,
        gold_ranks=np.where(pos > neg, 1, 2),  # a tie counts against the true caption
        n_queries=m["n"],
        primary_metric="accuracy",
        kind="compositional",
        categories={
            c: {"accuracy": acc, "n": m["n_per_category"][c]}
            for c, acc in m["per_category"].items()
        },
    )


def score_tasks(
    tasks: Sequence[EvalTask],
    plan: EmbedPlan,
    emb: Embeddings,
    failed: Mapping[str, str],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, TaskResult]:
    """A ``TaskResult`` per task.

    Args:
        tasks: the tasks as read.
        plan: their items' ids (``plan.ids[t][i]``).
        emb: the embeddings of the plan's items.
        failed: id -> reason for items the pipeline could not embed (the union over the
            models of a run, so a model and its baseline are scored on the same rows).
        ks: cutoffs for hit@k / R@k.
    """
    out: dict[str, TaskResult] = {}
    for task, ids in zip(tasks, plan.ids, strict=True):
        rows, excluded = _split_rows(task, ids, failed, emb)
        if task.kind == "candidates":
            result = _candidates(rows, ids, emb, ks)
        elif task.kind == "captions":
            result = _captions(rows, ids, emb, ks)
        else:
            result = _compositional(rows, ids, emb)
        note_excluded(result, task, excluded)
        out[task.name] = result
    return out
