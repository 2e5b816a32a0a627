"""Task-homogeneous batches (CoDiEmb's sampler): one task per batch, every row once."""

from __future__ import annotations

import numpy as np

from uniembed.training.sampler import random_batches, task_homogeneous_batches


def test_each_batch_holds_one_task_and_leftovers_fill_mixed_batches() -> None:
    tasks = ["a", "a", "a", "b", "b", "c", "a", "b", "b"]
    batches = task_homogeneous_batches(tasks, 2, seed=0, epoch=0, rank=0)
    # a: 4 rows -> 2 batches; b: 4 rows -> 2 batches; c's single row waits (1 < 2).
    assert len(batches) == 4
    for b in batches:
        assert len(b) == 2 and len({tasks[i] for i in b}) == 1
    used = sorted(i for b in batches for i in b)
    assert used == [0, 1, 2, 3, 4, 6, 7, 8]
    # Leftovers of several tasks are pooled rather than lost: a 3, b 2, c 1 with batch 2.
    tasks = ["a", "a", "a", "b", "b", "c"]
    batches = task_homogeneous_batches(tasks, 2, seed=0, epoch=0, rank=0)
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4, 5]
    mixed = [b for b in batches if len({tasks[i] for i in b}) > 1]
    assert len(mixed) == 1 and {tasks[i] for i in mixed[0]} == {"a", "c"}


def test_the_order_is_a_function_of_seed_epoch_and_rank() -> None:
    tasks = [t for t in "abcd" for _ in range(8)]
    once = task_homogeneous_batches(tasks, 4, seed=3, epoch=1, rank=0)
    assert once == task_homogeneous_batches(tasks, 4, seed=3, epoch=1, rank=0)
    assert once != task_homogeneous_batches(tasks, 4, seed=3, epoch=2, rank=0)


def test_random_batches_are_the_seeded_permutation_cut_in_batches() -> None:
    order = np.random.default_rng([5, 0, 1]).permutation(7)
    assert random_batches(7, 3, 5, 0, 1) == [list(order[:3]), list(order[3:6])]
