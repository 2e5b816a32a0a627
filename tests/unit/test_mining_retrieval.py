"""Global top-K candidate retrieval and the easy-candidate filter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from uniembed.index import build_index
from uniembed.mining import Candidates, drop_above, drop_easy, topk_candidates


def at_similarity(sims: list[float], d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A query along axis 0 and one unit pool row per wanted cosine similarity."""
    query = np.zeros((1, d), dtype=np.float32)
    query[0, 0] = 1.0
    pool = np.zeros((len(sims), d), dtype=np.float32)
    for i, s in enumerate(sims):
        pool[i, 0] = s
        pool[i, 1 + i % (d - 1)] = math.sqrt(1.0 - s * s)
    return query, pool


# pool ids p0..p7 with similarities to the query, shuffled so that order != rank
SIMS = [0.30, 0.95, 0.50, 0.85, 0.10, 0.75, 0.65, 0.20]
IDS = [f"p{i}" for i in range(len(SIMS))]
# ranks by similarity: p1 .95, p3 .85, p5 .75, p6 .65, p2 .50, p0 .30, p7 .20, p4 .10


def test_candidates_are_top_k_in_similarity_order() -> None:
    q, pool = at_similarity(SIMS)
    (c,) = topk_candidates(q, pool, IDS, k=3)
    assert c.ids == ("p1", "p3", "p5")
    assert c.ranks == (0, 1, 2)
    np.testing.assert_allclose(c.scores, [0.95, 0.85, 0.75], atol=1e-6)
    assert c.positive_id is None and c.positive_rank is None and c.positive_sim is None


def test_positive_is_located_with_its_rank_and_never_a_candidate() -> None:
    q, pool = at_similarity(SIMS)
    (c,) = topk_candidates(q, pool, IDS, k=4, positives=["p5"])
    assert c.positive_rank == 2
    assert "p5" not in c.ids
    # k candidates other than the positive; ranks skip the positive's rank
    assert c.ids == ("p1", "p3", "p6", "p2")
    assert c.ranks == (0, 1, 3, 4)
    assert c.positive_sim == pytest.approx(0.75, abs=1e-6)


def test_positive_outside_top_k_is_none_but_its_similarity_is_computed() -> None:
    q, pool = at_similarity(SIMS)
    (c,) = topk_candidates(q, pool, IDS, k=3, positives=["p4"])
    assert c.positive_rank is None
    assert c.positive_sim == pytest.approx(0.10, abs=1e-6)
    assert c.ids == ("p1", "p3", "p5")
    # just outside: rank 3 with k=3 is not in the top 3
    (c,) = topk_candidates(q, pool, IDS, k=3, positives=["p6"])
    assert c.positive_rank is None and c.ids == ("p1", "p3", "p5")
    assert c.positive_sim == pytest.approx(0.65, abs=1e-6)


def test_exclude_self_drops_the_query_and_does_not_count_its_rank() -> None:
    q, pool = at_similarity(SIMS)
    (c,) = topk_candidates(q, pool, IDS, k=3, positives=["p3"], exclude_self=True, query_ids=["p1"])
    assert c.query_id == "p1"
    assert "p1" not in c.ids and "p3" not in c.ids
    assert c.positive_rank == 0
    assert c.ids == ("p5", "p6", "p2") and c.ranks == (1, 2, 3)
    with pytest.raises(ValueError, match="exclude_self: needs query_ids"):
        topk_candidates(q, pool, IDS, k=3, exclude_self=True)


def test_matches_brute_force_on_random_data_for_many_queries() -> None:
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((400, 16)).astype(np.float32)
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    queries = rng.standard_normal((25, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids = [f"d{i}" for i in range(400)]
    positives = [ids[int(j)] for j in rng.integers(0, 400, size=25)]
    results = topk_candidates(queries, pool, ids, k=20, positives=positives, batch_size=7)
    sims = queries @ pool.T
    for i, c in enumerate(results):
        order = np.argsort(-sims[i], kind="stable")
        pos = ids.index(positives[i])
        want = [ids[j] for j in order if j != pos][:20]
        assert list(c.ids) == want
        rank = int(np.where(order == pos)[0][0])
        assert c.positive_rank == (rank if rank < 20 else None)
        assert c.positive_sim == pytest.approx(float(sims[i, pos]), abs=1e-5)
        assert c.query_index == i


def test_prebuilt_ivf_index_is_used() -> None:
    rng = np.random.default_rng(1)
    pool = rng.standard_normal((800, 8)).astype(np.float32)
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    ids = [f"d{i}" for i in range(800)]
    q = pool[:5] + 0.01
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    exact = topk_candidates(q, pool, ids, k=10)
    ivf = build_index(pool, "ivf", nlist=8, nprobe=8)
    assert topk_candidates(q, pool, ids, k=10, index=ivf) == exact
    with pytest.raises(ValueError, match="index: holds 800 rows but pool_emb has 799"):
        topk_candidates(q, pool[:799], ids[:799], k=10, index=ivf)


def test_small_pool_gives_fewer_candidates() -> None:
    q, pool = at_similarity([0.9, 0.8, 0.7])
    (c,) = topk_candidates(q, pool, ["a", "b", "c"], k=50, positives=["a"])
    assert c.ids == ("b", "c") and c.positive_rank == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"positives": ["nope"]}, r"positives\[0\]: id 'nope' is not in pool_ids"),
        ({"positives": ["p0", "p1"]}, "positives: 2 positives for 1 queries"),
        ({"pool_ids": IDS[:-1]}, "pool_ids: 7 ids for 8 pool_emb rows"),
        ({"k": 0}, "k: must be >= 1"),
        ({"query_ids": ["a", "b"]}, "query_ids"),
    ],
)
def test_argument_errors(kwargs: dict, match: str) -> None:
    q, pool = at_similarity(SIMS)
    args = {"query_emb": q, "pool_emb": pool, "pool_ids": IDS, "k": 3}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        topk_candidates(**args)


def make_candidates(scores: tuple[float, ...], pos_sim: float | None = 0.85) -> Candidates:
    n = len(scores)
    return Candidates(
        query_index=0,
        query_id="q",
        ids=tuple(f"c{i}" for i in range(n)),
        scores=scores,
        ranks=tuple(range(1, n + 1)),
        positive_id="p",
        positive_rank=0,
        positive_sim=pos_sim,
    )


def test_drop_easy_margin_relative_to_positive() -> None:
    c = make_candidates((0.80, 0.625, 0.30))
    kept = drop_easy(c, easy_margin=0.25)  # threshold 0.85 - 0.25 = 0.60
    assert kept.ids == ("c0", "c1") and kept.ranks == (1, 2)
    assert kept.positive_sim == 0.85 and kept.positive_rank == 0
    # exactly at the bound is kept (0.75 - 0.25 = 0.5 exactly)
    at = drop_easy(make_candidates((0.5, 0.49), pos_sim=0.75), easy_margin=0.25)
    assert at.ids == ("c0",)


def test_drop_easy_absolute_floor_and_both() -> None:
    c = make_candidates((0.80, 0.625, 0.30))
    assert drop_easy(c, min_sim=0.5).ids == ("c0", "c1")
    assert drop_easy(c, min_sim=0.625).ids == ("c0", "c1")
    assert drop_easy(c, easy_margin=0.25, min_sim=0.7).ids == ("c0",)
    assert drop_easy(c) == c
    # explicit pos_sim overrides the stored one
    assert drop_easy(c, easy_margin=0.1, pos_sim=0.7).ids == ("c0", "c1")


def test_drop_easy_errors() -> None:
    with pytest.raises(ValueError, match="pos_sim: easy_margin needs"):
        drop_easy(make_candidates((0.5,), pos_sim=None), easy_margin=0.1)
    with pytest.raises(ValueError, match="easy_margin: must be >= 0"):
        drop_easy(make_candidates((0.5,)), easy_margin=-0.1)
    with pytest.raises(ValueError, match="min_sim"):
        drop_easy(make_candidates((0.5,)), min_sim=math.nan)


def test_drop_above_is_the_upper_filter() -> None:
    c = make_candidates((0.97, 0.95, 0.80, 0.62))
    kept = drop_above(c, 0.95)  # δ: above 0.95 is dropped, exactly at it is kept
    assert kept.ids == ("c1", "c2", "c3") and kept.scores == (0.95, 0.80, 0.62)
    assert kept.ranks == (2, 3, 4) and kept.positive_sim == c.positive_sim
    assert drop_above(c, None) == c
    with pytest.raises(ValueError, match="max_sim"):
        drop_above(c, math.nan)


def test_pool_in_id_order_whatever_order_it_was_written_in() -> None:
    """The index's row order breaks exact ties (identical documents): the pool is sorted by
    id, so two runs whose embed stage wrote rows in different orders build the same index."""
    from uniembed.mining.retrieval_stage import in_id_order

    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    ids, matrix = in_id_order(["c", "a", "d", "b"], vectors)
    assert ids == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(matrix, vectors[[1, 3, 0, 2]])
    same, untouched = in_id_order(["a", "b"], vectors[:2])
    assert same == ["a", "b"] and untouched is not None and np.shares_memory(untouched, vectors)
