"""The reranker inside its replica: each request scored in bounded steps, requests taking
turns on the replica's one model thread.

A rerank request's texts are cut to ``reranker.max_text_tokens`` and tokenised off the
event loop and off the model thread; its work is then planned as forwards of at most
``reranker.max_batch_tokens`` tokens each (:class:`~uniembed.reranker.steps.ScoringSteps`:
the query prefix in chunks on a KV cache, short documents packed behind it, a long document
in chunks on its own view of the cache). A :class:`~uniembed.serving.step_queue.StepQueue`
runs one step of one request at a time, round-robin, so a short request arriving while a
long one runs waits for at most one bounded step of each request ahead of it, never for a
whole long request (see :mod:`.rerank_budget`).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from uniembed.serving.config import RerankerSection
from uniembed.serving.rerank_budget import Pair, fit_pair
from uniembed.serving.step_queue import StepQueue


class RerankerHost:
    """One judge (a :class:`~uniembed.reranker.scorer.JudgeScorer`), its requests run in
    bounded steps; a failing request fails alone."""

    def __init__(self, scorer: Any, section: RerankerSection) -> None:
        self.scorer = scorer
        self.score_batch_size = section.score_batch_size
        self.max_text_tokens = section.max_text_tokens
        scorer.max_text_tokens = section.max_text_tokens  # texts come cut to it already
        self.step_tokens = section.max_batch_tokens
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reranker")
        # A fast tokenizer is not safe to call from two threads at once; forwards on the
        # model thread never tokenise, so only the planning threads take this.
        self._tokenizing = threading.Lock()
        self.queue = StepQueue(self._thread)

    def plan(self, query: Pair, documents: list[Pair]) -> Any:
        """The request's :class:`~uniembed.reranker.steps.ScoringSteps`, texts cut to
        ``max_text_tokens``; ValueError for a document the judge cannot take."""
        from uniembed.reranker.scorer import JudgeInput
        from uniembed.reranker.steps import ScoringSteps

        tok, cap = self.scorer.tokenizer, self.max_text_tokens
        with self._tokenizing:
            q_text, q_image = fit_pair(tok, query, cap)
            docs = [
                JudgeInput(text=t, image=i) for t, i in (fit_pair(tok, d, cap) for d in documents)
            ]
            return ScoringSteps(
                self.scorer,
                JudgeInput(text=q_text, image=q_image),
                docs,
                step_tokens=self.step_tokens,
                batch_size=self.score_batch_size,
            )

    async def score(self, query: Pair, documents: list[Pair]) -> np.ndarray:
        """P(Yes) (len(documents),) of each document for the query; ValueError for a
        document the judge cannot take (the client's), RuntimeError for our failures."""
        if not documents:
            return np.zeros(0, dtype=np.float32)
        # Tokenising 32 long texts takes a while: not on the loop that takes requests.
        steps = await asyncio.to_thread(self.plan, query, documents)
        try:
            await self.queue.submit(steps)
        except ValueError:
            raise
        except Exception as e:  # noqa: BLE001 - a failed forward is ours, not the client's
            raise RuntimeError(f"reranking failed: {type(e).__name__}: {e}") from e
        return steps.scores.copy()
