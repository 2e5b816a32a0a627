"""A train worker's nice value: set when allowed, a clear message when not."""

from __future__ import annotations

import multiprocessing as mp
import os

from uniembed.training.priority import set_niceness


def _child(queue: mp.Queue) -> None:  # type: ignore[type-arg]
    os.nice(10)  # like a Ray worker (nice 15): raising it is always allowed
    message = set_niceness(0)
    queue.put((message, os.getpriority(os.PRIO_PROCESS, 0)))


def test_nice_value_is_restored_or_the_refusal_is_explained() -> None:
    queue: mp.Queue = mp.get_context("fork").Queue()  # type: ignore[type-arg]
    proc = mp.get_context("fork").Process(target=_child, args=(queue,))
    proc.start()
    message, nice = queue.get(timeout=60)
    proc.join()
    if message is None:
        assert nice == 0
    else:  # no CAP_SYS_NICE here
        assert "could not set the train worker's nice value" in message and nice >= 10
    assert set_niceness(os.getpriority(os.PRIO_PROCESS, 0)) is None
