"""Worker nice values: set when allowed, a clear message when not; background loads."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading

from uniembed.priority import background_priority, can_lower_niceness, set_niceness


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
        assert "could not set this worker's nice value" in message and nice >= 10
    assert set_niceness(os.getpriority(os.PRIO_PROCESS, 0)) is None


def _loader(queue: mp.Queue) -> None:  # type: ignore[type-arg]
    os.nice(5)
    seen: dict[str, int] = {}

    def started_inside() -> None:
        seen["started"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    with background_priority(19):
        seen["inside"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        worker = threading.Thread(target=lambda: (started_inside(), pool.wait()))
        pool = threading.Event()
        worker.start()
        while "started" not in seen:
            pass
    seen["after"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen["pool_after"] = os.getpriority(os.PRIO_PROCESS, worker.native_id or 0)
    pool.set()
    worker.join()
    queue.put((seen, can_lower_niceness()))


def test_background_priority_lowers_the_block_and_restores_every_thread() -> None:
    queue: mp.Queue = mp.get_context("fork").Queue()  # type: ignore[type-arg]
    proc = mp.get_context("fork").Process(target=_loader, args=(queue,))
    proc.start()
    seen, allowed = queue.get(timeout=60)
    proc.join()
    if allowed:
        assert seen == {"inside": 19, "started": 19, "after": 5, "pool_after": 5}
    else:  # unchanged rather than stuck at 19
        assert seen == {"inside": 5, "started": 5, "after": 5, "pool_after": 5}
