"""Global retrieval of hard-negative candidates (UniME-V2 step 1) and the easy-candidate filter.

Every query is searched against the whole candidate pool (not just its batch); the top ``k``
pool items other than the query's positive (and, optionally, the query itself) become its
candidates. The query–positive similarity is computed directly, so it is known even when the
positive is not retrieved, and thresholds relative to it can always be applied.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from uniembed.index.faiss_index import as_float32_matrix, build_index, search
from uniembed.index.ids import IdMap


@dataclass(frozen=True)
class Candidates:
    """Retrieved candidates of one query, most similar first.

    ``ranks[j]`` is the 0-based rank of ``ids[j]`` in the query's full retrieval order over
    the pool; the positive counts in that order (so candidates after it skip its rank), the
    query itself does not when ``exclude_self`` was set. ``positive_rank`` is the positive's
    rank when it is among the top ``k``, else None; ``positive_sim`` is the query–positive
    similarity, computed directly. Both are None when no positive was given.
    """

    query_index: int
    query_id: str | None
    ids: tuple[str, ...]
    scores: tuple[float, ...]
    ranks: tuple[int, ...]
    positive_id: str | None = None
    positive_rank: int | None = None
    positive_sim: float | None = None
    positions: tuple[int, ...] = ()  # index positions of ``ids`` (the pool's row order)

    def __len__(self) -> int:
        return len(self.ids)


def topk_candidates(
    query_emb: np.ndarray,
    pool_emb: np.ndarray | None,
    pool_ids: Sequence[str] | IdMap,
    k: int = 50,
    positives: Sequence[str] | None = None,
    exclude_self: bool = False,
    *,
    query_ids: Sequence[str] | None = None,
    index: faiss.Index | None = None,
    batch_size: int = 4096,
) -> list[Candidates]:
    """Top-``k`` candidates per query from the pool, by inner product (cosine on unit vectors).

    Args:
        query_emb: (q, d) L2-normalised query embeddings.
        pool_emb: (n, d) L2-normalised pool embeddings; row ``i`` has id ``pool_ids[i]``.
            None: ``index`` holds them (a flat index, or an IVF one with its direct map, as
            :func:`~uniembed.index.shared.open_index` opens it), and nothing is copied.
        pool_ids: n unique ids (or an :class:`IdMap` over them).
        k: candidates per query; fewer when the pool holds fewer eligible items.
        positives: one positive pool id per query, or None. The positive is never a
            candidate; its rank (if in the top ``k``) and similarity are reported.
        exclude_self: drop the pool item whose id equals the query's id (queries drawn from
            the pool itself); needs ``query_ids``.
        query_ids: q query ids, reported in the results and used by ``exclude_self``.
        index: a prebuilt index over ``pool_emb`` (same rows, same order), e.g. an IVF index
            from :func:`~uniembed.index.build_index`; a flat (exact) one is built if None.
        batch_size: queries per FAISS search call.

    Returns:
        q :class:`Candidates`, in query order.
    """
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    queries = as_float32_matrix(query_emb, "query_emb")
    if pool_emb is None:
        if index is None:
            raise ValueError("pool_emb: None needs an index holding the pool")
        pool = None
        n_pool = index.ntotal
    else:
        pool = as_float32_matrix(pool_emb, "pool_emb", dim=queries.shape[1])
        n_pool = pool.shape[0]
    id_map = pool_ids if isinstance(pool_ids, IdMap) else IdMap.from_ids(pool_ids)
    n_q = queries.shape[0]
    if len(id_map) != n_pool:
        raise ValueError(f"pool_ids: {len(id_map)} ids for {n_pool} pool_emb rows")
    if positives is not None and len(positives) != n_q:
        raise ValueError(f"positives: {len(positives)} positives for {n_q} queries")
    if query_ids is not None and len(query_ids) != n_q:
        raise ValueError(f"query_ids: {len(query_ids)} ids for {n_q} queries")
    if exclude_self and query_ids is None:
        raise ValueError("exclude_self: needs query_ids to know which pool item is the query")

    pos_sims: np.ndarray | None = None
    if positives is not None:
        pos_positions = np.empty(n_q, dtype=np.int64)
        for i, pos_id in enumerate(positives):
            if pos_id not in id_map:
                raise ValueError(f"positives[{i}]: id {pos_id!r} is not in pool_ids")
            pos_positions[i] = id_map.position(pos_id)
        pos_rows = pool[pos_positions] if pool is not None else _stored_rows(index, pos_positions)
        pos_sims = np.einsum("ij,ij->i", queries, pos_rows)

    if index is None:
        index = build_index(pool, kind="flat")
    elif index.ntotal != n_pool:
        raise ValueError(f"index: holds {index.ntotal} rows but pool_emb has {n_pool}")
    # One extra slot each for the positive and the query itself, which are removed below.
    extra = int(positives is not None) + int(exclude_self)
    scores, positions = search(index, queries, min(k + extra, n_pool), batch_size=batch_size)

    results = []
    for i in range(n_q):
        qid = query_ids[i] if query_ids is not None else None
        pos_id = positives[i] if positives is not None else None
        ids: list[str] = []
        sims: list[float] = []
        ranks: list[int] = []
        rows: list[int] = []
        pos_rank = None
        rank = 0
        row_positions = positions[i].tolist()
        for score, cid, row in zip(scores[i].tolist(), id_map.lookup(row_positions), row_positions):
            if cid is None or (exclude_self and cid == qid):
                continue
            if cid == pos_id:
                pos_rank = rank if rank < k else None
            elif len(ids) < k:
                ids.append(cid)
                sims.append(score)
                ranks.append(rank)
                rows.append(row)
            rank += 1
        results.append(
            Candidates(
                query_index=i,
                query_id=qid,
                ids=tuple(ids),
                scores=tuple(sims),
                ranks=tuple(ranks),
                positive_id=pos_id,
                positive_rank=pos_rank,
                positive_sim=float(pos_sims[i]) if pos_sims is not None else None,
                positions=tuple(rows),
            )
        )
    return results


def _stored_rows(index: faiss.Index, positions: np.ndarray) -> np.ndarray:
    """The vectors ``index`` stores at ``positions``; a ValueError when it cannot say."""
    try:
        return index.reconstruct_batch(positions)
    except RuntimeError as e:
        raise ValueError(
            "index: cannot reconstruct the positives' vectors (an IVF index needs its direct "
            f"map: open it with uniembed.index.shared.open_index): {e}"
        ) from e


def _keep(candidates: Candidates, keep: list[int]) -> Candidates:
    """``candidates`` with only the entries at ``keep`` (in order)."""
    return dataclasses.replace(
        candidates,
        ids=tuple(candidates.ids[j] for j in keep),
        scores=tuple(candidates.scores[j] for j in keep),
        ranks=tuple(candidates.ranks[j] for j in keep),
        positions=tuple(candidates.positions[j] for j in keep) if candidates.positions else (),
    )


def drop_easy(
    candidates: Candidates,
    *,
    easy_margin: float | None = None,
    min_sim: float | None = None,
    pos_sim: float | None = None,
) -> Candidates:
    """Drop easy candidates: those far below the positive, or below an absolute floor.

    A candidate with similarity ``s`` is dropped when

    - ``easy_margin`` is set and ``s < pos_sim - easy_margin`` (relative to the positive), or
    - ``min_sim`` is set and ``s < min_sim`` (absolute floor).

    Candidates exactly at a bound are kept. ``pos_sim`` defaults to
    ``candidates.positive_sim``. With both bounds None nothing is dropped. Order, ranks and the
    positive's fields are kept.

    Example: scores (0.80, 0.62, 0.30), positive 0.85, easy_margin 0.25 -> threshold 0.60,
    keeps 0.80 and 0.62; adding ``min_sim=0.7`` keeps only 0.80.
    """
    ref = candidates.positive_sim if pos_sim is None else pos_sim
    if easy_margin is not None:
        if math.isnan(easy_margin) or easy_margin < 0:
            raise ValueError(f"easy_margin: must be >= 0, got {easy_margin}")
        if ref is None or math.isnan(ref):
            raise ValueError(
                f"pos_sim: easy_margin needs the positive's similarity for query "
                f"{candidates.query_id or candidates.query_index}, got {ref}"
            )
    if min_sim is not None and math.isnan(min_sim):
        raise ValueError("min_sim: must not be NaN")
    keep = []
    for j, s in enumerate(candidates.scores):
        if easy_margin is not None and s < ref - easy_margin:  # type: ignore[operator]
            continue
        if min_sim is not None and s < min_sim:
            continue
        keep.append(j)
    return _keep(candidates, keep)


def drop_above(candidates: Candidates, max_sim: float | None) -> Candidates:
    """The upper filter (δ): drop candidates whose similarity to the query is above
    ``max_sim``. So close to the query, a candidate is a near-duplicate of the positive far
    more often than a negative (sentence-transformers' ``max_score``). A candidate exactly
    at ``max_sim`` is kept; ``None`` keeps all. Order, ranks and the positive's fields stay.

    Example: scores (0.97, 0.80, 0.62) with ``max_sim=0.95`` keep 0.80 and 0.62.
    """
    if max_sim is None:
        return candidates
    if math.isnan(max_sim):
        raise ValueError("max_sim: must not be NaN")
    keep = [j for j, s in enumerate(candidates.scores) if s <= max_sim]
    return _keep(candidates, keep)
