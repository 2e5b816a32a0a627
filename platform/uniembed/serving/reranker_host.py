"""The reranker inside its replica: a request's documents scored in token-bounded batches.

A rerank request's documents enter a :class:`~uniembed.serving.batch_queue.BatchQueue`
whole; each batch holds at most ``reranker.max_batch_tokens`` (estimated) document tokens
of one request, scored behind that request's query prefix on the replica's one model
thread. A request that does not fit goes behind the requests queued after it, so a short
request arriving while a long one runs waits for one bounded batch, not for the whole long
request (see :mod:`.rerank_budget`). Texts are cut to ``reranker.max_text_tokens`` first,
off the event loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from uniembed.serving.batch_queue import BatchQueue
from uniembed.serving.batching import ItemFailure, raise_failure, run_isolated
from uniembed.serving.config import RerankerSection
from uniembed.serving.rerank_budget import Pair, document_tokens, fit_pair

Item = tuple[Pair, Pair]  # (query, document) of one request


class RerankerHost:
    """One judge (a :class:`~uniembed.reranker.scorer.JudgeScorer`), its documents batched
    by tokens; a failing document fails its own request only."""

    def __init__(self, scorer: Any, section: RerankerSection) -> None:
        self.scorer = scorer
        self.score_batch_size = section.score_batch_size
        self.max_text_tokens = section.max_text_tokens
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reranker")
        self.queue: BatchQueue[Item, float | ItemFailure] = BatchQueue(
            self._run,
            self._thread,
            max_batch_size=section.max_batch_tokens,
            wait_s=0.0,
            cost=lambda item: document_tokens(item[1], self.max_text_tokens),
            shared=False,  # each request scores behind its own query prefix
        )

    def _fit(self, query: Pair, documents: list[Pair]) -> list[Item]:
        tok, cap = self.scorer.tokenizer, self.max_text_tokens
        query = fit_pair(tok, query, cap)
        return [(query, fit_pair(tok, d, cap)) for d in documents]

    def _score(self, items: list[Item]) -> list[float]:
        from uniembed.reranker.scorer import JudgeInput

        (q_text, q_image), _ = items[0]
        query = JudgeInput(text=q_text, image=q_image)
        docs = [JudgeInput(text=t, image=i) for _, (t, i) in items]
        return [float(s) for s in self.scorer.score(query, docs, batch_size=self.score_batch_size)]

    def _run(self, items: list[Item]) -> list[float | ItemFailure]:
        """Scores of one batch (documents of one request), a failing document alone."""
        return run_isolated(items, self._score, lambda item: self._score([item])[0])

    async def score(self, query: Pair, documents: list[Pair]) -> np.ndarray:
        """P(Yes) (len(documents),) of each document for the query; ValueError for a
        document the judge cannot take (the client's), RuntimeError for our failures."""
        if not documents:
            return np.zeros(0, dtype=np.float32)
        # Tokenising 32 long texts takes a while: not on the loop that takes requests.
        items = await asyncio.to_thread(self._fit, query, documents)
        results = await self.queue.submit(items)
        return np.asarray([raise_failure(r) for r in results], dtype=np.float32)
