"""Worker nice values: set when allowed, a clear message when not; background loads."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from collections.abc import Callable
from typing import Any

from uniembed.priority import background_priority, can_lower_niceness, set_niceness


def _child(queue: mp.Queue) -> None:  # type: ignore[type-arg]
    os.nice(10)  # like a Ray worker (nice 15): raising it is always allowed
    message = set_niceness(0)
    queue.put((message, os.getpriority(os.PRIO_PROCESS, 0)))


def _in_child(target: Callable[[mp.Queue], None]) -> Any:  # type: ignore[type-arg]
    """What ``target`` puts on its queue, run in a forked process (nice values only ever
    go up without CAP_SYS_NICE: the test process keeps its own)."""
    queue: mp.Queue = mp.get_context("fork").Queue()  # type: ignore[type-arg]
    proc = mp.get_context("fork").Process(target=target, args=(queue,))
    proc.start()
    got = queue.get(timeout=60)
    proc.join()
    return got


def test_nice_value_is_restored_or_the_refusal_is_explained() -> None:
    message, nice = _in_child(_child)
    if message is None:
        assert nice == 0
    else:  # no CAP_SYS_NICE here
        assert "could not set this worker's nice value" in message and nice >= 10
    assert set_niceness(os.getpriority(os.PRIO_PROCESS, 0)) is None


def _loader(queue: mp.Queue) -> None:  # type: ignore[type-arg]
    os.nice(5)
    seen = {"base": os.getpriority(os.PRIO_PROCESS, 0)}  # 5, or more under `nice pytest`

    started, done = threading.Event(), threading.Event()

    def started_inside() -> None:  # a thread the block starts, like torch's intra-op pool
        seen["started"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        started.set()
        done.wait()

    with background_priority(19):
        seen["inside"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        worker = threading.Thread(target=started_inside)
        worker.start()
        started.wait(timeout=30)
    seen["after"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen["pool_after"] = os.getpriority(os.PRIO_PROCESS, worker.native_id or 0)
    done.set()
    worker.join()
    queue.put((seen, can_lower_niceness()))


def test_background_priority_lowers_the_block_and_restores_every_thread() -> None:
    seen, allowed = _in_child(_loader)
    base = seen.pop("base")
    if allowed and base < 19:
        assert seen == {"inside": 19, "started": 19, "after": base, "pool_after": base}
    else:  # unchanged rather than stuck at 19
        assert seen == {"inside": base, "started": base, "after": base, "pool_after": base}
