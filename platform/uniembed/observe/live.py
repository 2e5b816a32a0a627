"""Live progress of a long stage in its own units (pairs judged, rows embedded), per call.

Ray Data counts rows only when a block leaves an operator, so a judge working through one
block of 64 queries shows ``64 rows in, 0 out`` until the block is done. Here the stage's
actors report what each model call finished to one small named actor of the job
(:class:`Tally`, no CPU reserved); the upstream stage reports how much work is coming (the
retrieval stage: the pairs of every query it passes on). While the stage runs, the driver
prints, every ``UNIEMBED_PROGRESS_INTERVAL_S`` seconds (default 10) in which it moved, one
line per watched stage, on stdout (so in a terminal, a log file and the ``ray job submit``
log alike)::

    [mine/judge] 640/1,344 pairs judged (48%), 6.4 pairs/s, about 1m50s left

and one closing line when it ends. ``UNIEMBED_PROGRESS_INTERVAL_S=0`` prints a line for
every reported call. Reports from a process without a tally (a stage run outside a watched
job) are dropped.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

INTERVAL_ENV = "UNIEMBED_PROGRESS_INTERVAL_S"
DEFAULT_INTERVAL_S = 10.0
NAMESPACE = "uniembed"
_RETRY_LOOKUP_S = 10.0

_watched: set[str] = set()


@dataclass(frozen=True)
class Watch:
    """A stage to show: its name (the Ray Data operator's, ``mine/judge``), its unit and
    verb (``pairs``, ``judged``), and what the driver knows of the total: the units
    outright (``total``: the rows to embed), or the items the upstream stage will announce
    units for (``expected_items``: the queries whose pairs retrieval passes on). Neither:
    the total is what the upstream stage has announced so far."""

    stage: str
    unit: str
    verb: str
    expected_items: int | None = None
    total: int | None = None


@dataclass
class Counts:
    """One stage's counters as the tally holds them.

    ``done``: units finished; ``total``: units announced by the upstream stage for
    ``items`` items; ``expected_items``: items the pass will bring (None: unknown);
    ``first``/``last``: wall times of the first and latest finished call, and ``done`` at
    the first (the rate is measured from there, after the model has loaded)."""

    done: int = 0
    total: int = 0
    items: int = 0
    expected_items: int | None = None
    known_total: int | None = None
    first: float | None = None
    first_done: int = 0
    last: float | None = None
    events: list[tuple[float, int, int, int]] = field(default_factory=list)


def estimated_total(c: Counts) -> tuple[int | None, bool]:
    """The stage's total in units and whether it is final: the announced units, plus, for
    items expected but not yet announced, the mean units per announced item. (None, False)
    when nothing is known."""
    if c.known_total is not None:
        return c.known_total, True
    if c.expected_items is None:
        return (c.total or None), False
    missing = max(0, c.expected_items - c.items)
    if missing == 0:
        return c.total, True
    if c.items == 0:
        return None, False
    return c.total + round(missing * c.total / c.items), False


def duration_text(seconds: float) -> str:
    """``95`` -> ``1m35s``; ``4000`` -> ``1h06m``; under a minute ``42s``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_text(w: Watch, c: Counts, now: float) -> str:
    """One progress line for stage ``w`` with counters ``c`` at wall time ``now``."""
    total, final = estimated_total(c)
    head = f"[{w.stage}] {c.done:,}"
    if total:
        head += f"/{total:,}" if final else f"/~{total:,}"
    head += f" {w.unit} {w.verb}"
    if total:
        head += f" ({min(1.0, c.done / total):.0%})"
    if c.first is None or c.last is None or c.last <= c.first:
        return head + (", starting" if c.done == 0 else "")
    rate = (c.done - c.first_done) / (c.last - c.first)
    head += f", {rate:.1f} {w.unit}/s"
    if total and rate > 0:
        left = max(0.0, (total - c.done) / rate - (now - c.last))
        head += f", about {duration_text(left)} left" if c.done < total else ""
    return head


def closing_text(w: Watch, c: Counts, seconds: float) -> str:
    """The line printed when the stage has ended: its wall time (model loading included)
    and the rate from its first finished call to its last."""
    line = f"[{w.stage}] {c.done:,} {w.unit} {w.verb} in {duration_text(seconds)}"
    if c.first is not None and c.last is not None and c.last > c.first:
        return (
            line + f", {(c.done - c.first_done) / (c.last - c.first):.1f} {w.unit}/s once started"
        )
    return line


class Tally:
    """The job's counters, one :class:`Counts` per stage (a named Ray actor)."""

    def __init__(self) -> None:
        self.counts: dict[str, Counts] = {}
        self.keep_events: set[str] = set()

    def reset(
        self,
        stage: str,
        expected_items: int | None,
        keep_events: bool,
        known_total: int | None = None,
    ) -> None:
        """Start counting ``stage`` afresh (a new pass)."""
        self.counts[stage] = Counts(expected_items=expected_items, known_total=known_total)
        if keep_events:
            self.keep_events.add(stage)
        else:
            self.keep_events.discard(stage)

    def add(self, stage: str, done: int, total: int, items: int, at: float) -> None:
        """``done`` units finished at wall time ``at``; ``total`` units for ``items`` items
        announced."""
        c = self.counts.setdefault(stage, Counts())
        c.total += total
        c.items += items
        if done:
            if c.first is None:
                c.first, c.first_done = at, c.done + done
            c.done += done
            c.last = max(at, c.last or at)
        if stage in self.keep_events and (done or total):
            c.events.append((at, c.done, c.total, c.items))

    def snapshot(self, stages: Sequence[str]) -> dict[str, Counts]:
        """The counters of ``stages``; each stage's kept events are handed over once."""
        out = {}
        for s in stages:
            c = self.counts.setdefault(s, Counts())
            out[s] = Counts(**{**vars(c), "events": list(c.events)})
            c.events.clear()
        return out


def _tally_name() -> str:
    import ray

    return f"progress-{ray.get_runtime_context().get_job_id()}"


_handle: Any = None
_lookup_failed_at = -_RETRY_LOOKUP_S


def _tally() -> Any:
    """This job's tally, looked up once per process (None if there is none)."""
    global _handle, _lookup_failed_at
    if _handle is not None:
        return _handle
    if time.monotonic() - _lookup_failed_at < _RETRY_LOOKUP_S:
        return None
    import ray

    try:
        if not ray.is_initialized():
            raise ValueError("no Ray")
        _handle = ray.get_actor(_tally_name(), namespace=NAMESPACE)
    except ValueError:
        _lookup_failed_at = time.monotonic()
        return None
    return _handle


def report(stage: str, done: int = 0, total: int = 0, items: int = 0) -> None:
    """From a stage's actor or task: ``done`` units finished by the call that just ended;
    ``total`` units of work for ``items`` items passed on to ``stage`` (fire and forget)."""
    if not (done or total or items):
        return
    handle = _tally()
    if handle is not None:
        handle.add.remote(stage, int(done), int(total), int(items), time.time())


def interval_s() -> float:
    """Seconds between progress lines (``UNIEMBED_PROGRESS_INTERVAL_S``, default 10)."""
    raw = os.environ.get(INTERVAL_ENV, "")
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_INTERVAL_S
    except ValueError:
        return DEFAULT_INTERVAL_S


def watched() -> frozenset[str]:
    """Stages this driver is showing live (the compact Ray Data line leaves them out)."""
    return frozenset(_watched)


def _start_tally() -> Any:
    import ray

    actor = ray.remote(num_cpus=0, max_restarts=0)(Tally)
    return actor.options(name=_tally_name(), namespace=NAMESPACE, get_if_exists=True).remote()


@contextmanager
def watch(stages: Sequence[Watch]) -> Iterator[None]:
    """Show the progress of ``stages`` while the body runs (the driver's side)."""
    import ray

    if not ray.is_initialized() or not stages:
        yield
        return
    interval = interval_s()
    tally = _start_tally()
    ray.get(
        [tally.reset.remote(w.stage, w.expected_items, interval == 0, w.total) for w in stages],
        timeout=120,
    )
    names = [w.stage for w in stages]
    by_name = {w.stage: w for w in stages}
    printed: dict[str, int] = {}
    stop = threading.Event()
    start = time.time()

    def show(final: bool) -> dict[str, Counts]:
        counts = ray.get(tally.snapshot.remote(names), timeout=60)
        for name, c in counts.items():
            w = by_name[name]
            for at, done, total, items in c.events:  # interval 0: one line per call
                step = Counts(**{**vars(c), "done": done, "total": total, "items": items})
                step.last = at
                print(progress_text(w, step, at), flush=True)
                printed[name] = done
            if not c.events and not final and printed.get(name) != c.done:
                print(progress_text(w, c, time.time()), flush=True)
                printed[name] = c.done
        return counts

    def loop() -> None:
        while not stop.wait(interval or 0.2):
            try:
                show(False)
            except Exception:  # noqa: BLE001 - the view never stops the job
                continue

    thread = threading.Thread(target=loop, name="uniembed-progress", daemon=True)
    _watched.update(names)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=70)
        _watched.difference_update(names)
        try:
            counts = show(True)
            for name, c in counts.items():
                if c.done:
                    print(closing_text(by_name[name], c, time.time() - start), flush=True)
        except Exception:  # noqa: BLE001, S110 - the view never fails the job
            pass
