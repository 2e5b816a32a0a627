"""The serve batch queue (the embedder's inputs, the reranker's documents): requests share
batches, long requests span batches without holding up the short ones behind them, batches
are bounded in cost, a failing batch fails only its requests, a cancelled request leaves the
queue, and a lone client never waits."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from uniembed.serving.batch_queue import BatchQueue


class _Model:
    """Records each batch it runs; ``gate`` holds a batch until released (so that the
    test can queue requests while one runs); inputs named ``bad`` fail the batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.running = threading.Event()  # set when a batch has started

    def __call__(self, inputs: list[str]) -> list[str]:
        self.running.set()
        self.gate.wait(timeout=10)
        self.batches.append(list(inputs))
        if "bad" in inputs:
            raise RuntimeError("the batch failed")
        return [x.upper() for x in inputs]


def _queue(model: _Model, max_batch_size: int = 4, wait_s: float = 0.0) -> BatchQueue:
    return BatchQueue(model, ThreadPoolExecutor(max_workers=1), max_batch_size, wait_s)


async def _started(model: _Model, queue: BatchQueue, first: list[str]) -> asyncio.Task:
    """Submit ``first`` with the model held, and wait until its (first) batch is running."""
    model.gate.clear()
    model.running.clear()
    task = asyncio.ensure_future(queue.submit(first))
    while not model.running.is_set():
        await asyncio.sleep(0.001)
    return task


def test_requests_queued_during_a_batch_share_the_next_one() -> None:
    async def main() -> None:
        model = _Model()
        queue = _queue(model)
        first = await _started(model, queue, ["a"])
        rest = [asyncio.ensure_future(queue.submit([x])) for x in "bcd"]
        await asyncio.sleep(0.01)
        model.gate.set()
        assert await first == ["A"]
        assert [await t for t in rest] == [["B"], ["C"], ["D"]]
        assert model.batches == [["a"], ["b", "c", "d"]]
        assert queue.batch_sizes == {1: 1, 3: 1}

    asyncio.run(main())


def test_a_request_longer_than_a_batch_spans_batches_in_order() -> None:
    async def main() -> None:
        model = _Model()
        queue = _queue(model, max_batch_size=4)
        first = await _started(model, queue, ["x"])
        long = asyncio.ensure_future(queue.submit([f"t{i}" for i in range(10)]))
        short = asyncio.ensure_future(queue.submit(["s"]))
        await asyncio.sleep(0.01)
        model.gate.set()
        await first
        assert await long == [f"T{i}" for i in range(10)]
        assert await short == ["S"]
        # The long request's first share goes, then it queues behind the short one: the
        # short request rides in the very next batch, not behind all ten inputs.
        assert model.batches == [
            ["x"],
            ["t0", "t1", "t2", "t3"],
            ["s", "t4", "t5", "t6"],
            ["t7", "t8", "t9"],
        ]

    asyncio.run(main())


def test_a_short_request_arriving_during_a_long_one_waits_for_one_batch() -> None:
    async def main() -> None:
        model = _Model()
        queue = _queue(model, max_batch_size=4)
        long = await _started(model, queue, [f"t{i}" for i in range(12)])
        short = asyncio.ensure_future(queue.submit(["s1", "s2"]))
        await asyncio.sleep(0.01)
        model.gate.set()
        assert await short == ["S1", "S2"]
        # it came while the long request's first batch ran, and is in the next one
        assert model.batches[:2] == [["t0", "t1", "t2", "t3"], ["s1", "s2", "t4", "t5"]]
        assert await long == [f"T{i}" for i in range(12)]
        assert [len(b) for b in model.batches] == [4, 4, 4, 2]

    asyncio.run(main())


def test_each_batch_is_reported_with_what_is_still_queued() -> None:
    async def main() -> None:
        model = _Model()
        seen: list[tuple[int, int]] = []

        def record(size: int, waiting: int, seconds: float) -> None:
            seen.append((size, waiting))

        queue = BatchQueue(model, ThreadPoolExecutor(max_workers=1), 4, 0.0, on_batch=record)
        first = await _started(model, queue, ["x"])
        rest = asyncio.ensure_future(queue.submit([f"t{i}" for i in range(6)]))
        await asyncio.sleep(0.01)
        model.gate.set()
        await first
        await rest
        assert seen == [(1, 6), (4, 2), (2, 0)]

    asyncio.run(main())


def test_a_failing_batch_fails_its_requests_and_the_queue_goes_on() -> None:
    async def main() -> None:
        model = _Model()
        queue = _queue(model, max_batch_size=2)
        first = await _started(model, queue, ["x"])
        doomed = [asyncio.ensure_future(queue.submit([x])) for x in ("ok", "bad")]
        later = asyncio.ensure_future(queue.submit(["fine"]))
        await asyncio.sleep(0.01)
        model.gate.set()
        await first
        for task in doomed:
            with pytest.raises(RuntimeError, match="the batch failed"):
                await task
        assert await later == ["FINE"]

    asyncio.run(main())


def test_a_cancelled_request_leaves_the_queue() -> None:
    async def main() -> None:
        model = _Model()
        queue = _queue(model, max_batch_size=8)
        first = await _started(model, queue, ["x"])
        gone = asyncio.ensure_future(queue.submit(["gone1", "gone2"]))
        kept = asyncio.ensure_future(queue.submit(["kept"]))
        await asyncio.sleep(0.01)
        gone.cancel()
        model.gate.set()
        await first
        assert await kept == ["KEPT"]
        assert model.batches == [["x"], ["kept"]]
        assert queue.queued == 0

    asyncio.run(main())


def test_a_lone_request_never_waits_and_a_crowd_waits_for_its_batch() -> None:
    queue = BatchQueue(_Model(), ThreadPoolExecutor(max_workers=1), 8, wait_s=0.5)
    assert queue.next_wait_s(0) == 0.0  # before any batch
    assert queue.next_wait_s(1) == 0.0  # a batch of one: the next one starts at once
    assert queue.next_wait_s(4) == 0.5  # a crowd: the next batch may wait to fill
    fixed = BatchQueue(_Model(), ThreadPoolExecutor(max_workers=1), 8, 0.5, adaptive_wait=False)
    assert fixed.next_wait_s(0) == fixed.next_wait_s(1) == 0.5


def test_after_a_crowd_the_next_batch_waits_to_fill() -> None:
    async def main() -> None:
        model = _Model()
        queue = _queue(model, max_batch_size=4, wait_s=0.3)
        await asyncio.gather(*(queue.submit([x]) for x in "ab"))  # one batch of two
        late = [asyncio.ensure_future(queue.submit(["c"]))]
        await asyncio.sleep(0.05)  # inside the 0.3 s wait: it joins c's batch
        late.append(asyncio.ensure_future(queue.submit(["d"])))
        assert [await t for t in late] == [["C"], ["D"]]
        assert model.batches == [["a", "b"], ["c", "d"]]

    asyncio.run(main())


def test_if_the_batching_task_fails_no_request_waits_forever() -> None:
    async def main() -> None:
        model = _Model()
        queue = _queue(model, max_batch_size=4)

        def broken() -> list:
            raise KeyError("a bug in batching")

        queue._take = broken  # type: ignore[method-assign]
        with pytest.raises(KeyError, match="a bug in batching"):
            await asyncio.wait_for(queue.submit(["a"]), 5)
        del queue._take  # the next request starts a new task, which works
        assert await asyncio.wait_for(queue.submit(["b"]), 5) == ["B"]

    asyncio.run(main())
