"""Task-homogeneous batches (CoDiEmb): every batch holds the rows of one task only.

In-batch negatives of a mixed batch are mostly easy (a caption against a definition);
drawn from one task they are the competitors a query really meets. The task of a row is
the value of a column (``sampler.task_field``; the query instruction by default, which in
instruction-tuned data names the task).

Per epoch and rank, with ``rng = default_rng([seed, epoch, rank])``:

1. the rows of each task (tasks in sorted order) are permuted and cut into full batches;
2. the rows left over (fewer than a batch in a task) are pooled, permuted and cut into
   mixed batches, so no row is left out for good (what still does not fill a batch waits
   for the next epoch, as with random batches);
3. the batches are permuted.

The order is a pure function of ``(tasks, batch, seed, epoch, rank)``, so a resumed run
replays it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SAMPLERS = ("random", "task_homogeneous")


def task_homogeneous_batches(
    tasks: Sequence[str | None], batch: int, seed: int, epoch: int, rank: int
) -> list[list[int]]:
    """The epoch's batches as lists of row indices (see the module docstring).

    Args:
        tasks: the task of each row (``None`` is a task of its own).
        batch: rows per batch (>= 1).
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    rng = np.random.default_rng([seed, epoch, rank])
    groups: dict[str, list[int]] = {}
    for i, task in enumerate(tasks):
        groups.setdefault("" if task is None else str(task), []).append(i)
    batches: list[list[int]] = []
    leftover: list[int] = []
    for task in sorted(groups):
        idx = [int(i) for i in rng.permutation(groups[task])]
        full = len(idx) // batch * batch
        batches.extend(idx[b : b + batch] for b in range(0, full, batch))
        leftover.extend(idx[full:])
    mixed = [int(i) for i in rng.permutation(leftover)] if leftover else []
    batches.extend(mixed[b : b + batch] for b in range(0, len(mixed) // batch * batch, batch))
    return [batches[i] for i in rng.permutation(len(batches))]


def random_batches(n_rows: int, batch: int, seed: int, epoch: int, rank: int) -> list[list[int]]:
    """The default: one permutation of the rows per epoch and rank, cut into full batches."""
    order = np.random.default_rng([seed, epoch, rank]).permutation(n_rows)
    return [[int(i) for i in order[b * batch : (b + 1) * batch]] for b in range(n_rows // batch)]
