"""Training rows staged in Ray's object store, chunk by chunk, in a seeded order.

The driver of a train job holds references, never the rows: one Ray task on the driver's
node reads and checks the input (``training_rows.iter_tune_chunks`` and friends, the same
checks and errors), shuffles each chunk and stores it as it is produced, streaming the
references back (a Ray streaming generator). A chunk the driver itself put would count in
its resident memory (the object store is shared memory mapped into every process that
writes to it); written by the task it does not. A bad row is left out and recorded
(``training_rows.Quarantine``), and the task writes those rows to the run's quarantine
folder; without one, the first bad row stops the task and its error is raised in the
driver unchanged (file:line and field).

Order (:func:`ordered_rows` is its definition): the rows of chunk ``i`` (``ROWS_PER_CHUNK``
rows in input order) are permuted with ``default_rng([seed, i])``, and the chunks are then
put in the order ``default_rng(seed).permutation(n_chunks)``. The same input and seed give
the same order in every attempt, so a resumed run sees the rows it saw before. What this
gives up against one permutation of all rows: rows from the same chunk stay next to each
other, so when Ray Train splits the rows into equal shards a rank gets whole chunks (and
two part chunks) instead of a uniform draw of rows. Every rank still permutes its whole
shard every epoch (``sampler.random_batches``), so with one worker nothing is given up;
with several, which rank sees a row is decided per chunk, not per row. No whole-table
permutation (or Ray Data shuffle of all the rows) is needed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import ray
import ray.data
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from uniembed import storage
from uniembed.data.training_rows import Quarantine

# Called as ``read(quarantine=q)``: the rows, a bad one recorded in ``q`` (or raised for None).
ChunkReader = Callable[..., Iterator[pa.Table]]
QUARANTINE_FILE = "part-read.parquet"  # the reading task's quarantined rows, in input order
REASONS_KEPT = 3  # reasons a job names when it stops for lack of rows


class ChunkTally(Protocol):
    """Something counted over the rows in input order, in the reading task (e.g. the
    reranker's chats); it travels back to the driver with the row count."""

    def add(self, chunk: pa.Table) -> None:
        """Count one chunk (in input order, before it is shuffled)."""


@dataclass(frozen=True)
class StagedRows:
    """A run's checked rows as chunks in Ray's object store, in training order."""

    chunks: tuple[ray.ObjectRef, ...]
    num_rows: int
    tally: Any = None
    quarantined: int = 0  # rows left out (written to the quarantine folder)
    reasons: tuple[str, ...] = ()  # the first of their reasons

    def dataset(self) -> ray.data.Dataset:
        """The rows as a Ray Dataset over the stored chunks (zero-copy, nothing re-read)."""
        return ray.data.from_arrow_refs(list(self.chunks))


def shuffle_chunk(chunk: pa.Table, seed: int, index: int) -> pa.Table:
    """Chunk ``index``'s rows in the order fixed by ``(seed, index)``."""
    return chunk.take(np.random.default_rng([seed, index]).permutation(chunk.num_rows))


def chunk_order(n_chunks: int, seed: int) -> list[int]:
    """The order the ``n_chunks`` shuffled chunks are trained in, fixed by ``seed``."""
    return [int(i) for i in np.random.default_rng(seed).permutation(n_chunks)]


def shuffled_chunks(
    chunks: Iterable[pa.Table], seed: int, tally: ChunkTally | None = None
) -> Iterator[pa.Table]:
    """Each chunk with its rows shuffled (:func:`shuffle_chunk`), in input order; ``tally``
    counts each chunk first, unshuffled."""
    for i, chunk in enumerate(chunks):
        if tally is not None:
            tally.add(chunk)
        yield shuffle_chunk(chunk, seed, i)


def ordered_rows(chunks: Iterable[pa.Table], seed: int) -> pa.Table:
    """All rows of ``chunks`` in the order :func:`stage_rows` gives them, as one table (the
    definition of the order, and its test; the jobs never build it)."""
    shuffled = list(shuffled_chunks(chunks, seed))
    return pa.concat_tables([shuffled[i] for i in chunk_order(len(shuffled), seed)])


def count_rows(read: ChunkReader, enough: int, quarantine: Quarantine | None = None) -> int:
    """The usable rows ``read()`` gives, reading only until ``enough`` are seen (at most one
    chunk more), the rows left out so far recorded in ``quarantine``: a job checks it has
    one batch in the driver, before Ray starts."""
    seen = 0
    chunks = read(quarantine=Quarantine() if quarantine is None else quarantine)
    try:
        for chunk in chunks:
            seen += chunk.num_rows
            if seen >= enough:
                break
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return seen


def _read_in_task(
    read: ChunkReader,
    seed: int,
    tally: ChunkTally | None,
    s3: storage.S3Options,
    cwd: str,
    quarantine_dir: str | None,
) -> Iterator[Any]:
    """The reading task: each shuffled chunk, then ``(rows, tally, quarantined, reasons)``,
    the quarantined rows written to ``quarantine_dir`` (a stale file of an earlier attempt
    removed). It runs on the driver's node in the driver's folder, so a local input reads
    as it would there."""
    storage.configure(s3)
    home = os.getcwd()
    os.chdir(cwd)
    try:
        quarantine = Quarantine() if quarantine_dir else None
        rows = 0
        for chunk in shuffled_chunks(read(quarantine=quarantine), seed, tally):
            rows += chunk.num_rows
            yield chunk
        reasons: tuple[str, ...] = ()
        if quarantine_dir and quarantine is not None:
            target = storage.join(quarantine_dir, QUARANTINE_FILE)
            storage.delete(target)
            if len(quarantine):
                storage.write_parquet(target, quarantine.table())
            reasons = quarantine.reasons(REASONS_KEPT)
        yield rows, tally, len(quarantine or ()), reasons
    finally:
        os.chdir(home)


def stage_rows(
    read: ChunkReader,
    seed: int,
    tally: ChunkTally | None = None,
    quarantine_dir: str | None = None,
) -> StagedRows:
    """Read ``read()``'s chunks in a Ray task into the object store, in the seeded order
    (see the module's docstring). Ray must be initialised. With ``quarantine_dir`` a bad
    row is left out and written there (``part-read.parquet``); without, the reading task's
    error (TrainingDataError naming file:line and field) is raised here as it was raised."""
    task = ray.remote(
        num_returns="streaming",
        # No CPU asked: a head node without CPUs for tasks still runs the reader.
        num_cpus=0,
        # Its own worker process, which exits when done: the reader's memory (and the object
        # store pages it wrote, which count in its RSS) does not linger beside the training.
        max_calls=1,
        max_retries=0,
    )(_read_in_task).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=False
        ),
    )
    refs = list(task.remote(read, seed, tally, storage.get_options(), os.getcwd(), quarantine_dir))
    try:
        rows, tally, quarantined, reasons = ray.get(refs.pop())
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, Exception):
            raise e.cause from None
        raise
    order = chunk_order(len(refs), seed)
    return StagedRows(tuple(refs[i] for i in order), rows, tally, quarantined, reasons)
