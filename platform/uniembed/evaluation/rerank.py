"""Re-score each query's top-k candidates with a reranker (the evaluate job's ``--rerank``).

For candidate-list tasks (MMEB style): the embedder's cosine ranks the candidates; the
``top_k`` best are re-scored with the reranker's pairwise P(Yes) (``JudgeScorer.score``,
the judge's shared-prefix path) and placed above the rest in that order (score
``2 + P(Yes)``, above any cosine); the others keep their cosine. Other task kinds have no
candidate list and are left as the embedder scored them.

Three steps, so the scoring can run anywhere: :func:`plan_rerank` (which pairs, pure),
scoring every :class:`RerankRequest` (the evaluate job: on the judge actor pool,
``rerank_pool``; :func:`rerank_tasks`: in this process), :func:`finish_rerank` (results).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uniembed.data import schema as S
from uniembed.data.images import load_image
from uniembed.evaluation.dedupe import EmbedPlan
from uniembed.evaluation.report import TaskResult
from uniembed.evaluation.scoring import Embeddings, _split_rows, note_excluded
from uniembed.evaluation.tasks import EvalTask, TaskRow
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


@dataclass
class RerankRequest:
    """One query's top-k to re-score; ``query`` and ``candidates`` are task items (dicts
    with ``S.TEXT``, ``S.IMAGE``, ``S.IMAGE_URI``)."""

    source: str  # file:line of the task row
    query: Mapping[str, Any]
    candidates: list[Mapping[str, Any]]


@dataclass
class _TaskRerank:
    name: str
    cosines: list[np.ndarray]
    tops: list[np.ndarray]
    task: EvalTask
    excluded: list[tuple[TaskRow, str]]
    first: int  # index of the task's first request in RerankPlan.requests


@dataclass
class RerankPlan:
    """What to re-score (``requests``, in task then row order) and how to put it back."""

    tasks: list[_TaskRerank] = field(default_factory=list)
    requests: list[RerankRequest] = field(default_factory=list)

    @property
    def n_pairs(self) -> int:
        """Query-candidate pairs to score."""
        return sum(len(r.candidates) for r in self.requests)


def plan_rerank(
    tasks: Sequence[EvalTask],
    plan: EmbedPlan,
    emb: Embeddings,
    failed: Mapping[str, str],
    top_k: int,
) -> RerankPlan:
    """The top-k of every row of every candidate-list task, by the embedder's cosine.

    Rows are excluded exactly as ``scoring.score_tasks`` excludes them, so the embedder's
    and the reranked numbers count the same queries.
    """
    if top_k < 1:
        raise ValueError(f"rerank top_k must be >= 1, got {top_k}")
    out = RerankPlan()
    for task, ids in zip(tasks, plan.ids, strict=True):
        if task.kind != "candidates":
            continue
        rows, excluded = _split_rows(task, ids, failed, emb)
        entry = _TaskRerank(task.name, [], [], task, excluded, len(out.requests))
        for row in rows:
            vecs = emb([ids[r] for r in row.refs])
            cosine = (vecs[1:] * vecs[0]).sum(axis=1)
            top = top_candidates(cosine, top_k)
            entry.cosines.append(cosine)
            entry.tops.append(top)
            cands = [task.items[row.refs[1 + j]] for j in top]
            out.requests.append(RerankRequest(row.source, task.items[row.refs[0]], cands))
        out.tasks.append(entry)
    return out


def finish_rerank(
    rerank: RerankPlan, reranked: Sequence[np.ndarray], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, TaskResult]:
    """A reranked ``TaskResult`` per task of ``rerank``, from the P(Yes) of each request's
    candidates (``reranked[i]`` (k,), in ``rerank.requests`` order)."""
    if len(reranked) != len(rerank.requests):
        raise ValueError(f"{len(reranked)} score lists for {len(rerank.requests)} requests")
    out: dict[str, TaskResult] = {}
    for entry in rerank.tasks:
        scores = [
            rerank_scores(cosine, reranked[entry.first + i], top)
            for i, (cosine, top) in enumerate(zip(entry.cosines, entry.tops, strict=True))
        ]
        result = TaskResult.from_candidate_scores(scores, ks)
        note_excluded(result, entry.task, entry.excluded)
        out[entry.name] = result
    return out


def rerank_tasks(
    tasks: Sequence[EvalTask],
    plan: EmbedPlan,
    emb: Embeddings,
    failed: Mapping[str, str],
    scorer: JudgeScorer,
    top_k: int,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, TaskResult]:
    """A reranked ``TaskResult`` for every candidate-list task (others are not in the dict),
    scored in this process with ``scorer``."""
    rerank = plan_rerank(tasks, plan, emb, failed, top_k)
    reranked = []
    for req in rerank.requests:
        query = _judge_input(req.query, req.source)
        cands = [_judge_input(c, req.source) for c in req.candidates]
        try:
            reranked.append(scorer.score(query, cands))
        except ValueError as e:
            raise ValueError(f"{req.source}: reranker {scorer.name}: {e}") from e
    return finish_rerank(rerank, reranked, ks)
