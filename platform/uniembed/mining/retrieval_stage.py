"""Ray Data actors of the mine pipeline before the judge: embed queries, retrieve candidates.

Rows carry ``error``/``stage`` from stage to stage: a failed row is passed through untouched
and quarantined by the shard writer, so every query is accounted for.

The pool is held once per node, in Ray's object store: :func:`share_pool` runs one task
that reads the pool's embeddings and items, builds its FAISS index (flat, or IVF above
``retrieval.approximate_above`` rows) and returns the index serialised as a uint8 array,
the ids and the items' text, image URI and group in index order. The driver holds only
their references; each retrieval actor maps them read-only from the object store and opens
the index over that memory without copying it (:mod:`uniembed.index.shared`). An actor's
own memory is the id -> position map (plus an IVF index's direct map, 8 bytes a row).
Pool items must name their images by URI to be judged with them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from uniembed import storage
from uniembed.data import schema as S
from uniembed.index import IdMap, build_index
from uniembed.index.choice import IndexPlan, plan_index
from uniembed.index.shared import OpenIndex, index_buffer, open_index
from uniembed.mining import drop_above, drop_easy, topk_candidates
from uniembed.mining.columns import retrieval_fields
from uniembed.mining.config import RetrievalSection
from uniembed.observe.live import report

if TYPE_CHECKING:
    from uniembed.embed.worker import WorkerOptions

logger = logging.getLogger(__name__)

EMBED_STAGE = "embed_query"
RETRIEVE_STAGE = "retrieve"


class QueryEmbedStage:
    """Embeds query rows with an :class:`EmbedWorker` and keeps the query's other columns."""

    def __init__(self, options: WorkerOptions) -> None:
        from uniembed.embed.worker import EmbedWorker  # the model stack: only here

        self.worker = EmbedWorker(options)

    def __call__(self, batch: pa.Table) -> pa.Table:
        start = time.perf_counter()
        out = self.worker(batch)
        seconds = time.perf_counter() - start
        stage = pc.if_else(pc.equal(out[S.STAGE], "embed"), pa.scalar(EMBED_STAGE), out[S.STAGE])
        batch = batch.set_column(batch.schema.get_field_index(S.ERROR), S.ERROR, out[S.ERROR])
        batch = batch.append_column(S.STAGE, stage)
        batch = batch.append_column(S.EMBEDDING, out[S.EMBEDDING])
        share = seconds / max(1, len(batch))
        return batch.append_column(S.EMBED_S, pa.array([share] * len(batch), pa.float64()))


@dataclass(frozen=True)
class SharedPool:
    """References to the pool in Ray's object store (see the module doc): ``index`` a
    serialised FAISS index (uint8), ``ids`` and ``items`` (text, image URI, group) in index
    order, as pyarrow arrays/tables; ``plan`` the index built, ``rows`` and ``dim`` its size."""

    index: Any  # ray.ObjectRef[np.ndarray]
    ids: Any  # ray.ObjectRef[pa.Array]
    items: Any  # ray.ObjectRef[pa.Table]
    plan: IndexPlan
    rows: int
    dim: int
    seconds: float = 0.0

    @property
    def nbytes(self) -> int:
        """Bytes of the pool's vectors: rows x dim x 4 (float32)."""
        return self.rows * self.dim * 4


def in_id_order(ids: list[str], matrix: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The pool's ids and vectors sorted by id. The embed stage writes rows in the order its
    actors finish, which changes from run to run; the index's row order is what breaks
    exact ties in a search (identical documents have identical vectors), and those ties
    decide the candidates' order, which selection keeps for scores it cannot tell apart.
    In id order every run builds the same index. A pool already in order is not copied;
    otherwise the vectors are copied once (the index build copies them anyway)."""
    order = np.asarray(pc.sort_indices(pa.array(ids, pa.string())))
    if np.array_equal(order, np.arange(len(ids))):
        return ids, matrix
    return [ids[i] for i in order], matrix[order]


def _pool_parts(
    pool_embeddings: str, pool_items: str, retrieval: RetrievalSection, s3: Any
) -> tuple[np.ndarray, pa.Array, pa.Table, tuple[IndexPlan, int, int]]:
    """The task behind :func:`share_pool`: (index buffer, ids, items, (plan, rows, dim))."""
    from uniembed.embed.pipeline import read_embeddings

    storage.configure(s3)
    ids, matrix = read_embeddings(pool_embeddings)
    if not ids:
        raise ValueError(f"{pool_embeddings}: the pool has no embedded items")
    ids, matrix = in_id_order(ids, matrix)
    plan = plan_index(
        len(ids), retrieval.index, retrieval.nlist, retrieval.nprobe, retrieval.approximate_above
    )
    index = build_index(
        matrix,
        kind=plan.kind,
        nlist=plan.nlist,
        nprobe=plan.nprobe,
        train_per_list=plan.train_per_list,
    )
    dim = matrix.shape[1]
    del matrix
    buffer = index_buffer(index)
    del index
    id_array = pa.array(ids, pa.string())
    items = storage.read_parquet(pool_items, columns=[S.ID, S.TEXT, S.IMAGE_URI, S.GROUP])
    order = pc.index_in(id_array, value_set=items[S.ID])
    if order.null_count:
        missing = ids[int(pc.index(pc.is_null(order), True).as_py())]
        raise ValueError(f"{pool_embeddings}: embedded id {missing!r} is not in {pool_items}")
    aligned = items.drop_columns([S.ID]).take(order)
    return buffer, id_array, aligned, (plan, len(ids), dim)


def share_pool(
    pool_embeddings: str,
    pool_items: str,
    retrieval: RetrievalSection,
    s3: storage.S3Options | None = None,
) -> SharedPool:
    """Build the pool's index in one Ray task and leave it, the ids and the items in the
    object store; returns their references (the driver never holds the arrays)."""
    start = time.perf_counter()
    task = ray.remote(_pool_parts).options(num_returns=4, num_cpus=1, name="mine/pool-index")
    index, ids, items, sizes = task.remote(pool_embeddings, pool_items, retrieval, s3)
    plan, rows, dim = ray.get(sizes)
    pool = SharedPool(index, ids, items, plan, rows, dim, time.perf_counter() - start)
    logger.info("%s; %.1f s", plan.line(rows), pool.seconds)
    return pool


@dataclass(frozen=True)
class RetrievalOptions:
    """What every retrieval actor needs: the job's ``retrieval`` section and the pool in
    the object store; picklable."""

    pool: SharedPool
    retrieval: RetrievalSection = field(default_factory=RetrievalSection)
    judge_stage: str | None = None  # the judge's operator when one follows (progress)


class RetrievalStage:
    """Top-K candidates per query over the whole pool, the positive located, easy ones dropped."""

    def __init__(self, options: RetrievalOptions) -> None:
        self.options = options
        self.section = options.retrieval
        pool = options.pool
        # Zero-copy: the buffer and the items' columns are read-only views of the object
        # store's memory, shared by every actor on this node.
        buffer, id_array, self.items = ray.get([pool.index, pool.ids, pool.items])
        self.index: OpenIndex = open_index(buffer)
        self.ids = IdMap.from_ids(id_array.to_pylist())

    def __call__(self, batch: pa.Table) -> pa.Table:
        start = time.perf_counter()
        rows = batch.drop_columns([S.EMBEDDING]).to_pylist()
        emb = batch[S.EMBEDDING].to_pylist()
        good: list[int] = []
        for i, row in enumerate(rows):
            if row[S.ERROR]:
                continue
            pos = row[S.POS_ID]
            if pos not in self.ids:
                row[S.ERROR] = (
                    f"record {row[S.ID]}: positive {pos!r} is not in the pool "
                    "(absent, or quarantined when the pool was embedded)"
                )
                row[S.STAGE] = RETRIEVE_STAGE
                continue
            good.append(i)
        cands = []
        if good:
            cands = topk_candidates(
                np.asarray([emb[i] for i in good], dtype=np.float32),
                None,
                self.ids,
                k=self.section.k,
                positives=[rows[i][S.POS_ID] for i in good],
                exclude_self=self.section.exclude_self,
                query_ids=[rows[i][S.ID] for i in good],
                index=self.index.index,
            )
        self._fill_all([rows[i] for i in good], cands)
        share = (time.perf_counter() - start) / max(1, len(rows))
        for row in rows:
            row[S.RETRIEVE_S] = share
        if self.options.judge_stage:  # the judge's work to come: the positive + candidates
            pairs = sum(1 + len(rows[i][S.CAND_IDS]) for i in good)
            report(self.options.judge_stage, total=pairs, items=len(rows))
        schema = pa.schema([f for f in batch.schema if f.name != S.EMBEDDING] + retrieval_fields())
        return pa.Table.from_pylist(rows, schema=schema)

    def _fill_all(self, rows: list[dict[str, Any]], cands: list[Any]) -> None:
        """Fill the retrieval columns of ``rows`` from their candidates; the pool items'
        fields are gathered with one ``take`` per column for the whole batch."""
        r = self.section
        kept_all = []
        wanted: list[int] = []
        for row, retrieved in zip(rows, cands, strict=True):
            below = drop_above(retrieved, r.max_sim)
            kept = drop_easy(below, easy_margin=r.easy_margin, min_sim=r.min_sim)
            kept_all.append((retrieved, below, kept))
            wanted.append(self.ids.position(row[S.POS_ID]))
            wanted.extend(retrieved.positions)
        if not rows:
            return
        taken = self.items.take(pa.array(wanted, pa.int64()))
        texts = taken[S.TEXT].to_pylist()
        images = taken[S.IMAGE_URI].to_pylist()
        groups = taken[S.GROUP].to_pylist()
        at = 0
        for row, (retrieved, below, kept) in zip(rows, kept_all, strict=True):
            # The positive's fields, then those of every retrieved candidate, in order.
            pos_group = groups[at]
            row[S.POS_TEXT], row[S.POS_IMAGE] = texts[at], images[at]
            slot = {p: at + 1 + j for j, p in enumerate(retrieved.positions)}
            at += 1 + len(retrieved.positions)

            def true_fn(position: int, slot: dict[int, int] = slot, g: Any = pos_group) -> bool:
                return g is not None and groups[slot[position]] == g

            row[S.POS_RANK] = (
                None if retrieved.positive_rank is None else retrieved.positive_rank + 1
            )
            row[S.POS_SIM] = retrieved.positive_sim
            row[S.CAND_IDS] = list(kept.ids)
            row[S.CAND_TEXTS] = [texts[slot[p]] for p in kept.positions]
            row[S.CAND_IMAGES] = [images[slot[p]] for p in kept.positions]
            row[S.CAND_SIMS] = list(kept.scores)
            row[S.CAND_RANKS] = [rank + 1 for rank in kept.ranks]
            row[S.CAND_TRUE_FN] = [true_fn(p) for p in kept.positions]
            row[S.N_RETRIEVED] = len(retrieved)
            row[S.N_ABOVE_MAX] = len(retrieved) - len(below)
            row[S.N_EASY] = len(below) - len(kept)
            row[S.N_TRUE_FN_RETRIEVED] = sum(true_fn(p) for p in retrieved.positions)
