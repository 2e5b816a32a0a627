"""The CPU priority of Ray worker processes: train workers and Serve's start-up loads.

Ray starts its worker processes at nice 15 (raylet's ``worker_niceness``) so that they
yield to the raylet and the driver. A train worker is then the first process starved on a
shared machine: beside one busy process at nice 0 it gets a small share of a core (the
domain-adaptation benchmark measured a nice-15 train worker at about a third of the CPU
share of the peer trainer running at nice 0 beside it). ``scaling.niceness`` sets the
worker back; lowering a nice value needs ``CAP_SYS_NICE`` (root on a plain machine, an
added capability in a container), so a refusal is reported, never fatal.

A Serve replica that loads a model beside the HTTP replica's own start-up (the reranker,
the retriever's index) loads at nice 19 (:func:`background_priority`), so that on a small
machine the replica that answers embeddings comes up first.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator


def _threads() -> list[int]:
    # On Linux a nice value belongs to a thread: set every thread of the process (the
    # actor's main thread, the one running the loop, the intra-op pool). 0: the caller.
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def set_niceness(value: int) -> str | None:
    """Set the nice value of every thread of this process (and of threads it starts
    later from the calling one) to ``value``; None when done (or already there), else
    why it could not be done."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        for tid in _threads():
            try:
                if os.getpriority(os.PRIO_PROCESS, tid) != value:
                    os.setpriority(os.PRIO_PROCESS, tid, value)
            except ProcessLookupError:  # a thread that ended meanwhile
                continue
    except OSError as e:
        return (
            f"could not set this worker's nice value from {current} to {value} ({e}); "
            "it keeps Ray's low priority (grant CAP_SYS_NICE, or set scaling.niceness=null "
            "to silence this)"
        )
    return None


def can_lower_niceness() -> bool:
    """Whether this process may lower a nice value again (root, CAP_SYS_NICE, or an
    RLIMIT_NICE that reaches its current value)."""
    if os.geteuid() == 0:
        return True
    try:
        for line in open("/proc/self/status", encoding="ascii"):  # noqa: SIM115
            if line.startswith("CapEff:") and int(line.split()[1], 16) >> 23 & 1:
                return True
    except OSError:
        pass
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)  # allows nice >= 20 - soft
    return soft == resource.RLIM_INFINITY or 20 - soft <= os.getpriority(os.PRIO_PROCESS, 0)


@contextlib.contextmanager
def background_priority(value: int = 19) -> Iterator[None]:
    """Run the block in the calling thread at nice ``value``; afterwards every thread of the
    process (those the block started included, e.g. torch's intra-op pool) goes back to the
    caller's value. Without the right to lower it again the block runs unchanged (a
    replica left at 19 would serve at that priority)."""
    tid = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, tid)
    if value <= before or not can_lower_niceness():
        yield
        return
    os.setpriority(os.PRIO_PROCESS, tid, value)
    try:
        yield
    finally:
        set_niceness(before)
