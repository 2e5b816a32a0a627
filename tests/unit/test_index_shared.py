"""One index per node: opened zero-copy over a read-only buffer; the automatic index plan and
the recall measure that picks its settings."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from uniembed.index import build_index, search
from uniembed.index.choice import (
    APPROXIMATE_ABOVE,
    IndexPlan,
    auto_nlist,
    auto_nprobe,
    plan_index,
    recall_at_k,
)
from uniembed.index.shared import OpenIndex, index_buffer, is_zero_copy, open_index
from uniembed.mining import topk_candidates


def unit_rows(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_opened_index_views_the_buffer_and_searches_like_the_original(kind: str) -> None:
    pool, queries = unit_rows(2000), unit_rows(20, seed=1)
    index = build_index(pool, kind=kind, nlist=16, nprobe=4)
    buffer = index_buffer(index)
    assert not buffer.flags.writeable
    opened = open_index(buffer)
    assert is_zero_copy(opened)
    np.testing.assert_array_equal(search(opened.index, queries, 5)[1], search(index, queries, 5)[1])
    rows = np.array([0, 7, 1999])
    np.testing.assert_array_equal(opened.reconstruct(rows), pool[rows])


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_the_zero_copy_check_fails_on_a_copied_index(kind: str) -> None:
    buffer = index_buffer(build_index(unit_rows(500), kind=kind, nlist=8))
    copied = faiss.deserialize_index(buffer)  # FAISS's own reader copies the vectors
    assert not is_zero_copy(OpenIndex(copied, buffer))


def test_open_index_refuses_what_is_not_a_buffer() -> None:
    with pytest.raises(ValueError, match="1-D uint8"):
        open_index(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="1-D uint8"):
        open_index(np.zeros(0, np.uint8))


def test_candidates_from_the_opened_index_equal_those_from_the_matrix() -> None:
    pool, queries = unit_rows(300), unit_rows(10, seed=2)
    ids = [f"p{i}" for i in range(300)]
    positives = [f"p{i * 7}" for i in range(10)]
    opened = open_index(index_buffer(build_index(pool)))
    a = topk_candidates(queries, pool, ids, k=5, positives=positives)
    b = topk_candidates(queries, None, ids, k=5, positives=positives, index=opened.index)
    assert [c.ids for c in a] == [c.ids for c in b]
    assert [c.positive_sim for c in a] == pytest.approx([c.positive_sim for c in b])
    assert [list(c.positions) for c in b] == [[int(i[1:]) for i in c.ids] for c in b]


def test_candidates_without_a_matrix_need_an_index() -> None:
    with pytest.raises(ValueError, match="needs an index"):
        topk_candidates(unit_rows(1), None, ["a"], k=1)


def test_plan_is_flat_up_to_the_threshold_and_ivf_above() -> None:
    assert plan_index(APPROXIMATE_ABOVE) == IndexPlan("flat")
    above = plan_index(APPROXIMATE_ABOVE + 1)
    assert above.kind == "ivf"
    assert above.nlist == auto_nlist(APPROXIMATE_ABOVE + 1) == round((APPROXIMATE_ABOVE + 1) ** 0.5)
    assert above.nprobe == auto_nprobe(above.nlist)
    assert auto_nprobe(548) == 192 and auto_nprobe(1000) == 350 and auto_nprobe(1) == 1
    assert plan_index(1000, approximate_above=999).kind == "ivf"
    assert plan_index(10**7, kind="flat") == IndexPlan("flat")
    forced = plan_index(100, kind="ivf", nlist=4, nprobe=9)
    assert (forced.kind, forced.nlist, forced.nprobe) == ("ivf", 4, 4)  # nprobe capped
    assert auto_nlist(50) == 1 and auto_nlist(1_000_000) == 1000


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rows": 0}, "rows"),
        ({"rows": 10, "kind": "hnsw"}, "kind"),
        ({"rows": 10, "approximate_above": 0}, "approximate_above"),
    ],
)
def test_plan_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        plan_index(**kwargs)


def test_recall_at_k_by_hand() -> None:
    exact = np.array([[1, 2, 3, 4], [5, 6, -1, -1]])
    found = np.array([[4, 3, 9, 8], [6, 5, 7, 0]])
    # query 0: 2 of 4 found; query 1: both of its 2 true neighbours found
    assert recall_at_k(found, exact) == pytest.approx((0.5 + 1.0) / 2)
    with pytest.raises(ValueError, match="need"):
        recall_at_k(found[:1], exact)


def test_recall_of_a_small_ivf_index_is_one_at_full_probe_and_measured_below() -> None:
    pool, queries = unit_rows(3000, d=32), unit_rows(50, d=32, seed=3)
    _, exact = search(build_index(pool), queries, 10)
    plan = plan_index(len(pool), approximate_above=1000)
    index = build_index(pool, kind=plan.kind, nlist=plan.nlist, train_per_list=64)
    index.nprobe = plan.nlist
    assert recall_at_k(search(index, queries, 10)[1], exact) == 1.0
    index.nprobe = 1
    low = recall_at_k(search(index, queries, 10)[1], exact)
    assert 0.0 < low < 1.0
