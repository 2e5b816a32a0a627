"""The served reranker's bounded steps: a short rerank request that arrives while a long one
runs takes turns with it, step by step, and is answered first; no step computes more than
``reranker.max_batch_tokens`` tokens; every request gets the scores it would get alone."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from PIL import Image

from uniembed.reranker.scorer import JudgeInput, JudgeScorer
from uniembed.serving.config import RerankerSection
from uniembed.serving.reranker_host import RerankerHost


@pytest.fixture(scope="module")
def judge() -> JudgeScorer:
    return JudgeScorer.load("tiny-text-lm")


def _doc(i: int) -> tuple[str, None]:
    return (f"document {i:02d} about cats and dogs that sat on the old mat by the door", None)


def test_a_short_request_takes_turns_with_a_long_one_and_ends_first(judge) -> None:
    host = RerankerHost(judge, RerankerSection(max_batch_tokens=16, score_batch_size=4))
    steps_run: list[tuple[str, int]] = []
    plan = host.plan

    def recording_plan(query, documents):
        steps = plan(query, documents)
        advance, name = steps.advance, "short" if query[0] == "dogs" else "long"

        def recorded() -> int:
            tokens = advance()
            steps_run.append((name, tokens))
            return tokens

        steps.advance = recorded
        return steps

    host.plan = recording_plan
    long_query = ("which of these documents is about a cat that sat on the mat by the door?", None)
    long_docs, short_docs = [_doc(i) for i in range(8)], [_doc(90), _doc(91)]

    async def main():
        gate = threading.Event()
        host._thread.submit(gate.wait, 10)  # the model thread is busy until the gate opens
        finished: list[str] = []

        async def call(name: str, query, docs) -> np.ndarray:
            scores = await host.score(query, docs)
            finished.append(name)
            return scores

        long = asyncio.ensure_future(call("long", long_query, long_docs))
        while not host.queue.steps_started:  # its first step is taken
            await asyncio.sleep(0.005)
        short = asyncio.ensure_future(call("short", ("dogs", None), short_docs))
        while host.queue.queued < 1:
            await asyncio.sleep(0.005)
        gate.set()
        return await long, await short, finished

    long_scores, short_scores, finished = asyncio.run(main())
    assert finished == ["short", "long"]
    assert max(tokens for _, tokens in steps_run) <= 16
    names = [name for name, _ in steps_run]
    short_steps = names.count("short")
    last_short = len(names) - 1 - names[::-1].index("short")
    # Round-robin: before its last step the short request waited one long step per step.
    assert names[: last_short + 1].count("long") == short_steps
    assert names.count("long") > 2 * short_steps  # the long request had many more to go
    alone = judge.score(JudgeInput(text=long_query[0]), [JudgeInput(text=t) for t, _ in long_docs])
    np.testing.assert_allclose(long_scores, alone, atol=1e-5)
    alone = judge.score(JudgeInput(text="dogs"), [JudgeInput(text=t) for t, _ in short_docs])
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


def test_a_failing_step_fails_its_request_with_a_server_error_and_others_go_on(judge) -> None:
    host = RerankerHost(judge, RerankerSection(max_batch_tokens=16))
    plan = host.plan

    def breaking_plan(query, documents):
        steps = plan(query, documents)
        if query[0] == "broken":

            def fail() -> int:
                raise MemoryError("out of memory")

            steps.advance = fail
        return steps

    host.plan = breaking_plan

    async def main():
        bad = host.score(("broken", None), [_doc(1)])
        good = host.score(("q", None), [_doc(2), _doc(3)])
        return await asyncio.gather(bad, good, return_exceptions=True)

    bad, good = asyncio.run(main())
    assert isinstance(bad, RuntimeError) and "MemoryError" in str(bad), bad
    assert good.shape == (2,) and np.all((good > 0) & (good < 1))


def test_a_request_whose_caller_left_is_not_computed_further(judge) -> None:
    host = RerankerHost(judge, RerankerSection(max_batch_tokens=8))

    async def main() -> int:
        task = asyncio.ensure_future(host.score(("q " * 40, None), [_doc(i) for i in range(6)]))
        while host.queue.steps_run < 2:
            await asyncio.sleep(0.005)
        task.cancel()
        await asyncio.sleep(0.3)
        ran = host.queue.steps_run
        await asyncio.sleep(0.3)
        return host.queue.steps_run - ran

    assert asyncio.run(main()) == 0
