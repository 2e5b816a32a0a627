"""The CPU priority of a train worker.

Ray starts its worker processes at nice 15 (raylet's ``worker_niceness``) so that they
yield to the raylet and the driver. A train worker is then the first process starved on a
shared machine: beside one busy process at nice 0 it gets a small share of a core (the
domain-adaptation benchmark measured a nice-15 train worker at about a third of the CPU
share of the peer trainer running at nice 0 beside it). ``scaling.niceness`` sets the
worker back; lowering a nice value needs ``CAP_SYS_NICE`` (root on a plain machine, an
added capability in a container), so a refusal is reported, never fatal.
"""

from __future__ import annotations

import os


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
            f"could not set the train worker's nice value from {current} to {value} ({e}); "
            "it keeps Ray's low priority (grant CAP_SYS_NICE, or set scaling.niceness=null "
            "to silence this)"
        )
    return None
