"""The served reranker's token-bounded batches: a short rerank request that arrives while a
long one runs is scored in the next batch, alone, not after the whole long request, and
every request gets the scores it would get alone."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from PIL import Image

from uniembed.serving.config import RerankerSection
from uniembed.serving.rerank_budget import document_tokens
from uniembed.serving.reranker_host import RerankerHost


@pytest.fixture(scope="module")
def judge():
    from uniembed.reranker.scorer import JudgeScorer

    return JudgeScorer.load("tiny-text-lm")


def _doc(i: int) -> tuple[str, None]:
    return (f"document {i:02d} about cats and dogs", None)  # 32 chars: 11 tokens estimated


def test_a_short_request_is_not_held_up_by_a_long_one(judge) -> None:
    section = RerankerSection(max_batch_tokens=22, score_batch_size=4)
    host = RerankerHost(judge, section)
    assert document_tokens(_doc(0), section.max_text_tokens) == 11  # two per batch
    batches: list[list[str]] = []
    run = host.queue.run

    def recording(items):
        batches.append([doc[0] for _, doc in items])
        return run(items)

    host.queue.run = recording
    long_query, short_query = ("which document is about cats?", None), ("dogs", None)
    long_docs = [_doc(i) for i in range(8)]
    short_docs = [_doc(90), _doc(91)]

    async def main() -> tuple[np.ndarray, np.ndarray, list[str]]:
        gate = threading.Event()
        host._thread.submit(gate.wait, 10)  # the model thread is busy until the gate opens
        finished: list[str] = []

        async def call(name: str, query, docs) -> np.ndarray:
            scores = await host.score(query, docs)
            finished.append(name)
            return scores

        long = asyncio.ensure_future(call("long", long_query, long_docs))
        while not host.queue.batch_sizes:  # the long request's first batch is taken
            await asyncio.sleep(0.005)
        short = asyncio.ensure_future(call("short", short_query, short_docs))
        while not host.queue.queued == 8:  # 6 left of the long one, 2 of the short one
            await asyncio.sleep(0.005)
        gate.set()
        return await long, await short, finished

    long_scores, short_scores, finished = asyncio.run(main())
    texts = [d[0] for d in long_docs]
    # One request per batch, two documents each: the short request rides in the batch
    # right after the one that ran when it came, and is answered before the long one.
    assert batches == [texts[0:2], [d[0] for d in short_docs], texts[2:4], texts[4:6], texts[6:8]]
    assert finished == ["short", "long"]
    # Split or not, each document's score is the one it gets alone.
    from uniembed.reranker.scorer import JudgeInput

    alone = judge.score(JudgeInput(text=long_query[0]), [JudgeInput(text=t) for t in texts])
    np.testing.assert_allclose(long_scores, alone, atol=1e-5)
    alone = judge.score(JudgeInput(text="dogs"), [JudgeInput(text=d[0]) for d in short_docs])
    np.testing.assert_allclose(short_scores, alone, atol=1e-5)


def test_a_bad_document_fails_its_own_request_only(judge) -> None:
    host = RerankerHost(judge, RerankerSection(max_batch_tokens=1000))

    async def main():
        image_doc = ("a photo", Image.new("RGB", (8, 8)))  # a text-only judge refuses it
        bad = host.score(("q", None), [_doc(1), image_doc])
        good = host.score(("q", None), [_doc(2), _doc(3)])
        return await asyncio.gather(bad, good, return_exceptions=True)

    bad, good = asyncio.run(main())
    assert isinstance(bad, ValueError), bad
    assert good.shape == (2,)
