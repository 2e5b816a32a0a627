"""Listwise prompt, strict answer parser, generation; the evaluate job's top-k rerank."""

from __future__ import annotations

import re

import numpy as np
import pytest

from uniembed.data import schema as S
from uniembed.evaluation.dedupe import plan_items
from uniembed.evaluation.rerank import rerank_scores, rerank_tasks, top_candidates
from uniembed.evaluation.scoring import Embeddings, score_tasks
from uniembed.evaluation.tasks import EvalTask, TaskRow
from uniembed.reranker.listwise import (
    ListwiseReranker,
    listwise_answer,
    listwise_content,
    parse_listwise_answer,
)
from uniembed.reranker.scorer import JudgeInput, JudgeScorer


@pytest.mark.parametrize(
    ("text", "choice"),
    [("Ans: (3)", 2), ("Ans: (1)<|im_end|>", 0), (" Ans:(6) ", 5), ("(2) because (2)", 1)],
)
def test_parser_reads_one_number_in_range(text: str, choice: int) -> None:
    answer = parse_listwise_answer(text, 6)
    assert answer.ok and answer.choice == choice and answer.error is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("Ans: 3", r"no '\(k\)'"),
        ("", r"no '\(k\)'"),
        ("Ans: (2) or (4)", r"several candidate numbers \[2, 4\]"),
        ("Ans: (7)", "outside 1..6"),
        ("Ans: (0)", "outside 1..6"),
    ],
)
def test_parser_reports_instead_of_guessing(text: str, why: str) -> None:
    answer = parse_listwise_answer(text, 6)
    assert not answer.ok and answer.choice is None
    assert answer.error is not None

    assert re.search(why, answer.error)


def test_answer_round_trips_through_the_parser() -> None:
    for slot in range(6):
        assert parse_listwise_answer(listwise_answer(slot), 6).choice == slot
    with pytest.raises(ValueError, match="slot must be >= 0"):
        listwise_answer(-1)


def test_listwise_content_numbers_every_candidate() -> None:
    text = listwise_content(JudgeInput("q text"), [JudgeInput("a"), JudgeInput("b")], None)
    assert "2 candidates" in text and "Query: q text" in text
    assert text.endswith("(1) a\n(2) b")
    with pytest.raises(ValueError, match="at least one candidate"):
        listwise_content(JudgeInput("q"), [], None)


def test_generation_on_a_tiny_model_is_parsed_or_reported() -> None:
    scorer = JudgeScorer.load("tiny-text-lm")
    ranker = ListwiseReranker(scorer, max_new_tokens=4)
    cands = [JudgeInput(f"candidate {i}") for i in range(10)]
    answer = ranker.choose(JudgeInput("the query"), cands)
    # A random-weight model writes noise: the result is either a valid choice or a reason.
    assert answer.ok == (answer.error is None)
    assert (
        answer.ok or "(k)" in answer.error or "outside" in answer.error or "several" in answer.error
    )
    assert isinstance(answer.text, str)


def test_rerank_scores_put_the_top_k_above_the_rest_in_reranker_order() -> None:
    cosine = np.array([0.2, 0.9, 0.5, 0.8, 0.1])
    top = top_candidates(cosine, 3)
    assert top.tolist() == [1, 3, 2]
    final = rerank_scores(cosine, np.array([0.1, 0.3, 0.99]), top)
    assert np.argsort(-final).tolist() == [2, 3, 1, 0, 4]
    assert final[0] == 0.2 and final[4] == 0.1


def test_rerank_tasks_rescore_and_keep_exclusions() -> None:
    # Query 0's gold is ranked 2nd by cosine; a reranker that prefers it fixes precision@1.
    items = [
        {S.TEXT: t, S.IMAGE: None, S.IMAGE_URI: None, S.INSTRUCTION: None}
        for t in ("cat", "feline pet", "dog", "car", "query two", "gold two", "other")
    ]
    task = EvalTask(
        "t",
        "t.jsonl",
        "candidates",
        items,
        [TaskRow("t:1", (0, 1, 2, 3)), TaskRow("t:2", (4, 5, 6))],
    )
    plan = plan_items([task])
    vec = {
        "cat": [1, 0, 0],
        "feline pet": [0.8, 0.6, 0],
        "dog": [0.9, 0.1, 0],
        "car": [0, 0, 1],
        "query two": [0, 1, 0],
        "gold two": [0, 1, 0.1],
        "other": [0, 0, 1],
    }
    ids = plan.table[S.ID].to_pylist()
    texts = plan.table[S.TEXT].to_pylist()
    emb = Embeddings(ids, np.array([vec[t] for t in texts], dtype=float))
    base = score_tasks([task], plan, emb, {}, (1,))["t"]
    assert base.metrics["precision@1"] == 0.5

    class Prefers:
        name = "prefers-gold"

        def score(self, query: JudgeInput, cands: list[JudgeInput]) -> np.ndarray:
            return np.array([1.0 if c.text in ("feline pet", "gold two") else 0.0 for c in cands])

    out = rerank_tasks([task], plan, emb, {}, Prefers(), top_k=2, ks=(1,))  # type: ignore[arg-type]
    assert out["t"].metrics["precision@1"] == 1.0 and out["t"].n_queries == 2
    # top_k=1 re-scores only the cosine winner: nothing can change.
    same = rerank_tasks([task], plan, emb, {}, Prefers(), top_k=1, ks=(1,))  # type: ignore[arg-type]
    assert same["t"].metrics["precision@1"] == 0.5
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        rerank_tasks([task], plan, emb, {}, Prefers(), top_k=0)  # type: ignore[arg-type]
