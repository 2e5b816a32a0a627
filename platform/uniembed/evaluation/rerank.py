"""Re-score each query's top-k candidates with a reranker (the evaluate job's ``--rerank``).

For candidate-list tasks (MMEB style): the embedder's cosine ranks the candidates; the
``top_k`` best are re-scored with the reranker's pairwise P(Yes) (``JudgeScorer.score``,
the judge's shared-prefix path) and placed above the rest in that order (score
``2 + P(Yes)``, above any cosine); the others keep their cosine. Other task kinds have no
candidate list and are left as the embedder scored them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from uniembed.data import schema as S
from uniembed.data.images import load_image
from uniembed.evaluation.dedupe import EmbedPlan
from uniembed.evaluation.report import TaskResult
from uniembed.evaluation.scoring import Embeddings, _split_rows
from uniembed.evaluation.tasks import EvalTask
from uniembed.reranker.scorer import JudgeInput, JudgeScorer

RERANK_OFFSET = 2.0  # reranked scores sit above every cosine (<= 1)


def rerank_scores(cosine: np.ndarray, reranked: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Final scores of one query: ``cosine (c,)`` with the candidates ``top (k,)`` replaced
    by ``RERANK_OFFSET + reranked (k,)``."""
    out = np.asarray(cosine, dtype=np.float64).copy()
    out[top] = RERANK_OFFSET + np.asarray(reranked, dtype=np.float64)
    return out


def top_candidates(cosine: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first; ties keep candidate order."""
    return np.argsort(-np.asarray(cosine), kind="stable")[:k]


def _judge_input(item: Mapping[str, Any], source: str) -> JudgeInput:
    uri = item.get(S.IMAGE_URI)
    image = (
        load_image(item.get(S.IMAGE), uri, record=source) if (uri or item.get(S.IMAGE)) else None
    )
    return JudgeInput(text=item.get(S.TEXT) or None, image=image)


def rerank_tasks(
    tasks: Sequence[EvalTask],
    plan: EmbedPlan,
    emb: Embeddings,
    failed: Mapping[str, str],
    scorer: JudgeScorer,
    top_k: int,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, TaskResult]:
    """A reranked ``TaskResult`` for every candidate-list task (others are not in the dict).

    Rows are excluded exactly as ``scoring.score_tasks`` excludes them, so the embedder's
    and the reranked numbers count the same queries.
    """
    if top_k < 1:
        raise ValueError(f"rerank top_k must be >= 1, got {top_k}")
    out: dict[str, TaskResult] = {}
    for task, ids in zip(tasks, plan.ids, strict=True):
        if task.kind != "candidates":
            continue
        rows, excluded = _split_rows(task, ids, failed, emb)
        scores = []
        for row in rows:
            vecs = emb([ids[r] for r in row.refs])
            cosine = (vecs[1:] * vecs[0]).sum(axis=1)
            top = top_candidates(cosine, top_k)
            query = _judge_input(task.items[row.refs[0]], row.source)
            cands = [_judge_input(task.items[row.refs[1 + j]], row.source) for j in top]
            try:
                reranked = scorer.score(query, cands)
            except ValueError as e:
                raise ValueError(f"{row.source}: reranker {scorer.name}: {e}") from e
            scores.append(rerank_scores(cosine, reranked, top))
        result = TaskResult.from_candidate_scores(scores, ks)
        result.n_excluded = len(excluded)
        result.excluded = [f"{r.source}: {why}" for r, why in excluded[:20]]
        out[task.name] = result
    return out
