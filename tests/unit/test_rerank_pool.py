"""The evaluate job's rerank worker (what each judge actor runs), without Ray."""

from __future__ import annotations

import numpy as np

from uniembed.data import schema as S
from uniembed.data.schema import CAND_SCORES, N_PAIRS
from uniembed.evaluation.rerank import RerankRequest
from uniembed.evaluation.rerank_pool import RerankWorker, request_table
from uniembed.mining.judge_stage import JudgeOptions
from uniembed.reranker.scorer import JudgeInput


def _item(text: str | None) -> dict[str, object]:
    return {S.TEXT: text, S.IMAGE: None, S.IMAGE_URI: None, S.INSTRUCTION: None}


def test_worker_scores_each_query_as_the_scorer_does_and_names_bad_rows() -> None:
    requests = [
        RerankRequest("t.jsonl:1", _item("a cat"), [_item("feline"), _item("a dog runs")]),
        RerankRequest("t.jsonl:2", _item("a car"), [_item("wheels")]),
        RerankRequest("t.jsonl:3", _item("a bird"), [_item("wings"), _item(None)]),
    ]
    table = request_table(requests)
    assert table[S.ID].to_pylist() == ["0", "1", "2"]
    worker = RerankWorker(JudgeOptions(model="tiny-text-lm", batch_size=1))
    out = worker(table).to_pylist()
    assert [r[S.ID] for r in out] == ["0", "1", "2"] and [r[N_PAIRS] for r in out] == [2, 1, 2]
    for row, req in zip(out[:2], requests[:2], strict=True):
        expected = worker.scorer.score(
            JudgeInput(text=req.query[S.TEXT]), [JudgeInput(text=c[S.TEXT]) for c in req.candidates]
        )
        assert row[S.ERROR] is None
        np.testing.assert_allclose(row[CAND_SCORES], expected, rtol=0, atol=1e-6)
    # A candidate with nothing to judge fails its row only, naming the row and the model.
    assert out[2][CAND_SCORES] is None
    assert out[2][S.ERROR].startswith("t.jsonl:3: reranker tiny-text-lm: ")
    assert "t.jsonl:3 candidate 1" in out[2][S.ERROR]
