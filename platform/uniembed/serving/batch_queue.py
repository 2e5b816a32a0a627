"""Dynamic batching inside one process, a request at a time: the embedder's inputs.

Each request enters the queue whole (its inputs, one future), not as one queued call per
input: a request of 32 texts costs one queue entry. A batch is cut from the front of the
queue, bounded in inputs (``max_batch_size``), splitting a request across batches where
it does not fit; a request split so goes behind the requests queued after it before the
next batch is cut, so they ride in that batch instead of waiting for all of it: a short
request waits for at most the one batch running when it came. One batch runs
at a time, on the caller's executor (the model thread), while the event loop keeps
queueing the requests that arrive meanwhile.

After a batch of more than one input the next one may wait ``wait_s`` for company (under
concurrent load the requests that arrived during the last forward pass are still being
parsed); a lone client's batches of one never wait (:meth:`BatchQueue.next_wait_s`).
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Waiting(Protocol):
    future: asyncio.Future[Any]


def fail_waiting(task: asyncio.Task[None], entries: deque[Any], what: str) -> None:
    """Empty ``entries``, giving each waiting future the error that ended ``task`` (a
    queue's ``what`` task), so that no request waits forever."""
    if task.cancelled():
        error: BaseException = RuntimeError(f"the {what} task was cancelled")
    else:
        error = task.exception() or RuntimeError(f"the {what} task ended")
    while entries:
        entry: _Waiting = entries.popleft()
        if not entry.future.done():
            entry.future.set_exception(error)


@dataclass(eq=False)
class _Entry(Generic[T, R]):
    """One request in the queue: its inputs, how many are taken, their results."""

    inputs: Sequence[T]
    future: asyncio.Future[list[R]]
    taken: int = 0
    results: list[R | None] = field(default_factory=list)
    done: int = 0

    def __post_init__(self) -> None:
        self.results = [None] * len(self.inputs)


class BatchQueue(Generic[T, R]):
    """Batches the inputs of concurrent :meth:`submit` calls for ``run``.

    Args:
        run: takes a batch of inputs, returns one result per input in order (failures as
            values: it must isolate them, see :func:`~uniembed.serving.batching.
            embed_isolated`); an exception fails every request in the batch.
        executor: where ``run`` runs (one worker: batches never overlap).
        max_batch_size: the most inputs a batch may hold.
        wait_s: how long a batch may wait to fill after a batch of more than one input.
        adaptive_wait: False: every batch may wait ``wait_s``.
        on_batch: called on the event loop after each batch with its size in inputs, the
            inputs still queued and the seconds the batch ran (metrics).
    """

    def __init__(
        self,
        run: Callable[[list[T]], Sequence[R]],
        executor: Executor,
        max_batch_size: int,
        wait_s: float,
        adaptive_wait: bool = True,
        on_batch: Callable[[int, int, float], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.run = run
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self.adaptive_wait = adaptive_wait
        self.on_batch = on_batch
        self.batch_sizes: Counter[int] = Counter()
        self._entries: deque[_Entry[T, R]] = deque()
        self._queued = 0  # inputs queued and not yet taken into a batch
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._last_batch = 0

    def next_wait_s(self, last_batch: int) -> float:
        """How long the next batch may wait to fill after a batch of ``last_batch`` inputs
        (0: none yet). Under concurrent load a short wait lets the event loop parse the
        requests that arrived during the last forward pass, so that batches fill instead
        of the model thread running many small ones (32 clients on 2 cores: 69 -> 125
        req/s with 20 ms); a lone client (batches of one) is never made to wait."""
        if not self.adaptive_wait or last_batch > 1:
            return self.wait_s
        return 0.0

    @property
    def queued(self) -> int:
        """Inputs waiting for a batch."""
        return self._queued

    async def submit(self, inputs: Sequence[T]) -> list[R]:
        """The results of ``inputs``, in order, computed in batches shared with the
        inputs of other calls."""
        if not inputs:
            return []
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._arrived = asyncio.Event()
            self._worker = loop.create_task(self._work())
            self._worker.add_done_callback(self._worker_ended)
        entry: _Entry[T, R] = _Entry(inputs, loop.create_future())
        self._entries.append(entry)
        self._queued += len(inputs)
        assert self._arrived is not None
        self._arrived.set()
        return await entry.future

    def _worker_ended(self, task: asyncio.Task[None]) -> None:
        """The batching task never returns; should it fail, no queued request is left
        waiting forever: each gets the error (the next submit starts a new task)."""
        fail_waiting(task, self._entries, "batching")
        self._queued = 0

    async def _fill(self) -> None:
        """Wait until a batch is full or the wait after the last batch has passed."""
        assert self._arrived is not None
        wait = self.next_wait_s(self._last_batch)
        deadline = asyncio.get_running_loop().time() + wait
        while self._queued < self.max_batch_size:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                return

    def _take(self) -> list[tuple[_Entry[T, R], int]]:
        """(entry, input index) pairs from the queue's front, at most ``max_batch_size``
        of them; requests cancelled by their callers are dropped. A request part-served by
        the last batch first goes behind the requests queued after it, so that they need
        not wait for the rest of it."""
        batch: list[tuple[_Entry[T, R], int]] = []
        if len(self._entries) > 1 and self._entries[0].taken:
            self._entries.rotate(-1)
        while self._entries and len(batch) < self.max_batch_size:
            entry = self._entries[0]
            if entry.future.done():  # the caller went away: skip what is left of it
                self._queued -= len(entry.inputs) - entry.taken
                self._entries.popleft()
                continue
            start = entry.taken
            while entry.taken < len(entry.inputs) and len(batch) < self.max_batch_size:
                batch.append((entry, entry.taken))
                entry.taken += 1
            self._queued -= entry.taken - start
            if entry.taken < len(entry.inputs):
                break  # the batch is full
            self._entries.popleft()
        return batch

    async def _work(self) -> None:
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._entries:
                self._arrived.clear()
                await self._arrived.wait()
            await self._fill()
            batch = self._take()
            if not batch:
                continue
            self._last_batch = len(batch)
            self.batch_sizes[len(batch)] += 1
            inputs = [entry.inputs[i] for entry, i in batch]
            started = loop.time()
            try:
                results = await loop.run_in_executor(self.executor, self.run, inputs)
                if len(results) != len(inputs):
                    raise RuntimeError(f"{len(results)} results for a batch of {len(inputs)}")
            except Exception as e:  # noqa: BLE001 - every request in the batch gets it
                for entry in {entry for entry, _ in batch}:
                    if not entry.future.done():
                        entry.future.set_exception(e)
                continue
            finally:
                if self.on_batch is not None:
                    self.on_batch(len(inputs), self._queued, loop.time() - started)
            for (entry, i), result in zip(batch, results):
                entry.results[i] = result
                entry.done += 1
                if entry.done == len(entry.inputs) and not entry.future.done():
                    entry.future.set_result(list(entry.results))  # type: ignore[arg-type]
