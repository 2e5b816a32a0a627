"""One compact driver line per stage per interval, instead of Ray Data's non-TTY dumps.

When the driver's stdout is not a terminal (``ray job submit``, a log file), Ray Data logs
a ten-line block per dataset every 10 s (resources, queued blocks, one line per operator
and its sub-bars). :func:`install` replaces that logger with one that writes, per interval,
one line per stage that has work left::

    [mine-queries] mine/judge: 96 rows in, 64 out, 2 tasks

The interval is ``RAY_DATA_NON_TTY_PROGRESS_LOG_INTERVAL`` (Ray's own variable, seconds).
Terminal runs keep Ray Data's progress bars. Stages shown live (:mod:`observe.live`: pairs
judged, rows embedded, per call) are left out here: rows only move when a block is done.
"""

from __future__ import annotations

import re
from typing import Any

from uniembed.observe.live import watched

_OP_NAME = re.compile(r"^\w+\((?P<inner>.+)\)$")


def stage_of(op_name: str) -> str:
    """``MapBatches(mine/judge)`` -> ``mine/judge``; fused operators stage by stage
    (``MapBatches(mine/read-pool)->MapBatches(mine/stage-pool)`` ->
    ``mine/read-pool->mine/stage-pool``); other names as they are."""
    parts = []
    for part in op_name.split("->"):
        m = _OP_NAME.match(part)
        parts.append(m.group("inner") if m and "/" in m.group("inner") else part)
    return "->".join(parts)


def progress_line(dataset: str, stage: str, rows_in: int, rows_out: int, tasks: int) -> str:
    """The compact line for one stage."""
    return f"[{dataset}] {stage}: {rows_in} rows in, {rows_out} out, {tasks} tasks"


def _dataset_name(dataset_id: str) -> str:
    # ``<name>_<uuid>_<run>``: the name the job gave (dataset for none).
    return dataset_id.rsplit("_", 2)[0] if dataset_id.count("_") >= 2 else dataset_id


def install() -> bool:
    """Use the compact logger for Ray Data's non-TTY progress in this process (the
    driver). Returns False when this Ray version has no such logger to replace."""
    try:
        from ray.data._internal.execution.operators.input_data_buffer import InputDataBuffer
        from ray.data._internal.progress import logging_progress
    except ImportError:
        return False
    base = logging_progress.LoggingExecutionProgressManager
    if getattr(base, "_uniembed_compact", False):
        return True

    class CompactProgressManager(base):  # type: ignore[misc, valid-type]
        """Ray Data's non-TTY progress logger, one line per unfinished stage."""

        _uniembed_compact = True

        def refresh(self) -> None:
            now = self._get_time()
            if now - self._last_log_time < self.LOG_REPORT_INTERVAL_SEC:
                return
            self._last_log_time = now
            name = _dataset_name(self._dataset_id)
            live = watched()
            for state in self._topology.values():
                op: Any = state.op
                if isinstance(op, InputDataBuffer) or op.has_completed():
                    continue
                if stage_of(op.name) in live:  # its own line counts calls, not blocks
                    continue
                m = op.metrics
                if not m.num_row_inputs_received and not op.num_active_tasks():
                    continue  # waiting for its first rows: nothing to say yet
                print(
                    progress_line(
                        name,
                        stage_of(op.name),
                        int(m.num_row_inputs_received),
                        int(m.rows_task_outputs_generated),
                        int(op.num_active_tasks()),
                    ),
                    flush=True,
                )

    logging_progress.LoggingExecutionProgressManager = CompactProgressManager
    return True
