"""Resumable requests run a bounded step at a time, taking turns on one model thread.

The reranker's requests are not batched together (each scores behind its own query
prefix); what keeps a short one from waiting for a long one is that no request holds the
model thread for more than one step (:class:`~uniembed.reranker.steps.ScoringSteps`: at
most ``reranker.max_batch_tokens`` tokens). The queue runs the requests round-robin: a
request whose step ran goes behind those waiting, so a request that arrives waits for at
most one step of each request already in the queue, and a long request still advances
while short ones come and go.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

from uniembed.serving.batch_queue import fail_waiting


class Steps(Protocol):
    """A request's work, resumable between steps."""

    @property
    def done(self) -> bool: ...

    def advance(self) -> int:
        """Run one bounded step; the tokens it computed."""
        ...


@dataclass(eq=False)
class _Entry:
    steps: Steps
    future: asyncio.Future[None]


class StepQueue:
    """Runs the :class:`Steps` of concurrent :meth:`submit` calls a step at a time, in turn.

    Args:
        executor: where steps run (one worker: steps never overlap).
        on_step: called on the event loop after each step with its tokens, the requests
            still queued and the seconds it ran (metrics).
    """

    def __init__(
        self, executor: Executor, on_step: Callable[[int, int, float], None] | None = None
    ) -> None:
        self.executor = executor
        self.on_step = on_step
        self.steps_started = 0
        self.steps_run = 0
        self._entries: deque[_Entry] = deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Requests waiting for their next step."""
        return len(self._entries)

    async def submit(self, steps: Steps) -> None:
        """Returns once every step of ``steps`` has run; a step's exception fails this
        request only."""
        if steps.done:
            return
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._arrived = asyncio.Event()
            self._worker = loop.create_task(self._work())
            self._worker.add_done_callback(self._worker_ended)
        entry = _Entry(steps, loop.create_future())
        self._entries.append(entry)
        assert self._arrived is not None
        self._arrived.set()
        await entry.future

    def _worker_ended(self, task: asyncio.Task[None]) -> None:
        """Should the stepping task end, no queued request is left waiting forever."""
        fail_waiting(task, self._entries, "stepping")

    async def _work(self) -> None:
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._entries:
                self._arrived.clear()
                await self._arrived.wait()
            entry = self._entries.popleft()
            if entry.future.done():  # the caller went away: nothing more is computed
                continue
            started = loop.time()
            self.steps_started += 1
            tokens = 0
            try:
                tokens = await loop.run_in_executor(self.executor, entry.steps.advance)
            except Exception as e:  # noqa: BLE001 - the request whose step failed gets it
                if not entry.future.done():
                    entry.future.set_exception(e)
                continue
            finally:
                self.steps_run += 1
                if self.on_step is not None:
                    self.on_step(tokens, len(self._entries), loop.time() - started)
            if entry.steps.done:
                if not entry.future.done():
                    entry.future.set_result(None)
            else:
                self._entries.append(entry)
