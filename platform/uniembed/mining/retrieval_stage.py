"""Ray Data actors of the mine pipeline before the judge: embed queries, retrieve candidates.

Rows carry ``error``/``stage`` from stage to stage: a failed row is passed through untouched
and quarantined by the shard writer, so every query is accounted for.

The retrieval actor holds the whole pool: its embeddings, the FAISS index and each item's
id, text, image URI and group (no image bytes). That is the one place the pool is held in
memory; the driver never holds it. Pool items must name their images by URI to be judged
with them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from uniembed import storage
from uniembed.data import schema as S
from uniembed.embed.pipeline import read_embeddings
from uniembed.embed.worker import EmbedWorker, WorkerOptions
from uniembed.index import IdMap, build_index
from uniembed.mining import drop_above, drop_easy, topk_candidates
from uniembed.mining.columns import retrieval_fields
from uniembed.mining.config import RetrievalSection

EMBED_STAGE = "embed_query"
RETRIEVE_STAGE = "retrieve"


class QueryEmbedStage:
    """Embeds query rows with an :class:`EmbedWorker` and keeps the query's other columns."""

    def __init__(self, options: WorkerOptions) -> None:
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
class RetrievalOptions:
    """What every retrieval actor needs: the job's ``retrieval`` section and where the
    staged pool is; picklable."""

    pool_embeddings: str  # an embed output folder
    pool_items: str  # staged pool rows (POOL_SCHEMA Parquet)
    retrieval: RetrievalSection = field(default_factory=RetrievalSection)
    s3: storage.S3Options | None = None


class RetrievalStage:
    """Top-K candidates per query over the whole pool, the positive located, easy ones dropped."""

    def __init__(self, options: RetrievalOptions) -> None:
        storage.configure(options.s3)
        self.options = options
        self.section = r = options.retrieval
        ids, matrix = read_embeddings(options.pool_embeddings)
        if not ids:
            raise ValueError(f"{options.pool_embeddings}: the pool has no embedded items")
        self.ids = IdMap.from_ids(ids)
        self.matrix = matrix
        self.index = build_index(
            matrix,
            kind=r.index,
            nlist=r.nlist,
            nprobe=r.nprobe,  # type: ignore[arg-type]
        )
        pool = storage.read_parquet(
            options.pool_items, columns=[S.ID, S.TEXT, S.IMAGE_URI, S.GROUP]
        )
        self.lookup = {r[S.ID]: (r[S.TEXT], r[S.IMAGE_URI], r[S.GROUP]) for r in pool.to_pylist()}

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
                self.matrix,
                self.ids,
                k=self.section.k,
                positives=[rows[i][S.POS_ID] for i in good],
                exclude_self=self.section.exclude_self,
                query_ids=[rows[i][S.ID] for i in good],
                index=self.index,
            )
        for i, c in zip(good, cands, strict=True):
            self._fill(rows[i], c)
        share = (time.perf_counter() - start) / max(1, len(rows))
        for row in rows:
            row[S.RETRIEVE_S] = share
        schema = pa.schema([f for f in batch.schema if f.name != S.EMBEDDING] + retrieval_fields())
        return pa.Table.from_pylist(rows, schema=schema)

    def _fill(self, row: dict[str, Any], retrieved: Any) -> None:
        r = self.section
        below = drop_above(retrieved, r.max_sim)
        kept = drop_easy(below, easy_margin=r.easy_margin, min_sim=r.min_sim)
        pos_text, pos_image, pos_group = self.lookup[row[S.POS_ID]]
        row[S.POS_TEXT], row[S.POS_IMAGE] = pos_text, pos_image

        def true_fn(cid: str) -> bool:
            return pos_group is not None and self.lookup[cid][2] == pos_group

        row[S.POS_RANK] = None if retrieved.positive_rank is None else retrieved.positive_rank + 1
        row[S.POS_SIM] = retrieved.positive_sim
        row[S.CAND_IDS] = list(kept.ids)
        row[S.CAND_TEXTS] = [self.lookup[c][0] for c in kept.ids]
        row[S.CAND_IMAGES] = [self.lookup[c][1] for c in kept.ids]
        row[S.CAND_SIMS] = list(kept.scores)
        row[S.CAND_RANKS] = [r + 1 for r in kept.ranks]
        row[S.CAND_TRUE_FN] = [true_fn(c) for c in kept.ids]
        row[S.N_RETRIEVED] = len(retrieved)
        row[S.N_ABOVE_MAX] = len(retrieved) - len(below)
        row[S.N_EASY] = len(below) - len(kept)
        row[S.N_TRUE_FN_RETRIEVED] = sum(true_fn(c) for c in retrieved.ids)
