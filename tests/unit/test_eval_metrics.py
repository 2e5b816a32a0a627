"""Metrics against values worked out by hand on 2-4 queries, ties, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from uniembed.evaluation.metrics import (
    candidate_list_metrics,
    caption_retrieval_metrics,
    compositional_accuracy,
    retrieval_metrics,
)

# --- candidate lists (gold at index 0) --------------------------------------------------
# q0: gold 0.9 beats everything                       -> rank 1
# q1: gold 0.4; 0.8 above, 0.4 tied (tie goes against) -> rank 3
# q2: gold 0.2; 0.3, 0.5, 0.6, 0.7 above               -> rank 5
# q3: gold 0.0; eleven distractors at 1.0              -> rank 12 (outside nDCG@10)
CANDIDATES = [
    np.array([0.9, 0.1, 0.5]),
    np.array([0.4, 0.8, 0.4, 0.1]),
    np.array([0.2, 0.3, 0.5, 0.6, 0.7, 0.1, 0.0]),
    np.array([0.0] + [1.0] * 11),
]


def test_candidate_list_hand_computed() -> None:
    m = candidate_list_metrics(CANDIDATES, ks=(1, 3, 5, 10))
    assert m["gold_rank"].tolist() == [1, 3, 5, 12]
    assert m["precision@1"] == pytest.approx(1 / 4)
    assert m["hit@1"] == pytest.approx(1 / 4)
    assert m["hit@3"] == pytest.approx(2 / 4)
    assert m["hit@5"] == pytest.approx(3 / 4)
    assert m["hit@10"] == pytest.approx(3 / 4)
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 5 + 1 / 12) / 4)  # = 97/240
    assert m["ndcg@10"] == pytest.approx((1 + 1 / 2 + 1 / math.log2(6) + 0) / 4)
    assert m["n_queries"] == 4
    np.testing.assert_allclose(m["gold_score"], [0.9, 0.4, 0.2, 0.0])
    np.testing.assert_allclose(m["best_distractor_score"], [0.5, 0.8, 0.7, 1.0])


def test_candidate_list_matrix_equals_list_input() -> None:
    rows = np.array([[0.3, 0.1, 0.2], [0.1, 0.5, 0.2]])
    a = candidate_list_metrics(rows)
    b = candidate_list_metrics(list(rows))
    assert a["gold_rank"].tolist() == [1, 3]
    for key in ("precision@1", "hit@5", "mrr", "ndcg@10"):
        assert a[key] == b[key]


def test_candidate_list_constant_scores_score_zero() -> None:
    # A collapsed model (same score for all candidates) must not be credited.
    m = candidate_list_metrics(np.full((5, 8), 0.3))
    assert m["precision@1"] == 0.0
    assert m["gold_rank"].tolist() == [8] * 5
    assert m["hit@5"] == 0.0
    assert m["hit@10"] == 1.0


@pytest.mark.parametrize(
    ("scores", "ks", "match"),
    [
        ([], (1,), r"scores: no queries"),
        ([np.array([0.5, 0.1]), np.array([0.9])], (1,), r"scores\[1\]: has 1 candidate"),
        ([np.array([0.5, np.nan])], (1,), r"scores\[0\]: scores must be finite"),
        (np.zeros((2, 3, 4)), (1,), r"scores: expected a 2-D array"),
        ([np.zeros((2, 2))], (1,), r"scores\[0\]: expected a 1-D array"),
        ([np.array([0.5, 0.1])], (0,), r"ks: every cutoff"),
        ([np.array([0.5, 0.1])], (), r"ks: need at least one"),
    ],
)
def test_candidate_list_rejects_bad_input(scores: object, ks: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        candidate_list_metrics(scores, ks)  # type: ignore[arg-type]


# --- retrieval with relevance sets -------------------------------------------------------
# q0 ranks docs 1, 3, 2, 4, 0; relevant {3, 4} sit at ranks 2 and 4.
# q1 ranks docs 2, 0, 1, 3, 4 (0 and 1 tie at 0.5: lower index first); relevant {1} at 3.
RET_SCORES = np.array([[0.1, 0.9, 0.3, 0.8, 0.2], [0.5, 0.5, 0.7, 0.1, 0.0]])
RET_RELEVANT = [{3, 4}, {1}]


def test_retrieval_hand_computed() -> None:
    m = retrieval_metrics(RET_SCORES, RET_RELEVANT, ks=(1, 3, 5))
    a, b = 1 / math.log2(3), 1 / math.log2(5)
    expected = {
        "accuracy@1": 0.0,
        "accuracy@3": 1.0,
        "accuracy@5": 1.0,
        "precision@1": 0.0,
        "precision@3": (1 / 3 + 1 / 3) / 2,
        "precision@5": (2 / 5 + 1 / 5) / 2,
        "recall@1": 0.0,
        "recall@3": (1 / 2 + 1) / 2,
        "recall@5": 1.0,
        "mrr@1": 0.0,
        "mrr@3": (1 / 2 + 1 / 3) / 2,
        "mrr@5": (1 / 2 + 1 / 3) / 2,
        "ndcg@1": 0.0,
        # q0: DCG a over ideal 1 + a (two relevant); q1: 1/log2(4) over ideal 1.
        "ndcg@3": (a / (1 + a) + 0.5) / 2,
        "ndcg@5": ((a + b) / (1 + a) + 0.5) / 2,
        "map@1": 0.0,
        # q0: precision 1/2 at rank 2 (and 2/4 at rank 4), over min(k, 2); q1: 1/3 over 1.
        "map@3": (1 / 4 + 1 / 3) / 2,
        "map@5": ((1 / 2 + 2 / 4) / 2 + 1 / 3) / 2,
    }
    assert m.keys() == expected.keys()
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), key


def test_retrieval_precision_divides_by_k_beyond_corpus() -> None:
    m = retrieval_metrics(np.array([[0.9, 0.1]]), [{0}], ks=(10,))
    assert m["precision@10"] == pytest.approx(0.1)
    assert m["recall@10"] == 1.0


def test_retrieval_ties_at_the_cut_take_lowest_index() -> None:
    scores = np.array([[0.1, 0.5, 0.5, 0.9, 0.5, 0.5, 0.0, 0.2]])
    # Order 3, 1, 2, 4, 5, ...: doc 2 is third, doc 5 is fifth.
    assert retrieval_metrics(scores, [{2}], ks=(3,))["mrr@3"] == pytest.approx(1 / 3)
    assert retrieval_metrics(scores, [{5}], ks=(3,))["accuracy@3"] == 0.0


def test_retrieval_matches_full_sort_on_tie_heavy_scores() -> None:
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 4, size=(40, 60)).astype(np.float64)  # many ties
    relevant = [
        set(rng.choice(60, size=int(rng.integers(1, 4)), replace=False).tolist()) for _ in range(40)
    ]
    ks = (1, 3, 10)
    got = retrieval_metrics(scores, relevant, ks)
    for k in ks:
        mrr = []
        for row, rel in zip(scores, relevant):
            order = sorted(range(60), key=lambda j: (-row[j], j))[:k]
            first = [r for r, d in enumerate(order) if d in rel]
            mrr.append(1 / (first[0] + 1) if first else 0.0)
        assert got[f"mrr@{k}"] == pytest.approx(np.mean(mrr))


@pytest.mark.parametrize(
    ("scores", "relevant", "match"),
    [
        (np.zeros(5), [{0}], r"scores: expected a 2-D array"),
        (np.zeros((2, 5)), [{0}], r"relevant: has 1 sets for 2 queries"),
        (np.zeros((1, 5)), [set()], r"relevant\[0\]: empty set"),
        (np.zeros((1, 5)), [{5}], r"relevant\[0\]: 5 is not a corpus index"),
        (np.array([[0.1, np.inf]]), [{0}], r"scores\[0\]: scores must be finite"),
    ],
)
def test_retrieval_rejects_bad_input(scores: np.ndarray, relevant: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(scores, relevant)


# --- caption retrieval -------------------------------------------------------------------
IMAGES = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
TEXTS = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
OWNER = np.array([0, 1, 1, 2])


def test_caption_retrieval_hand_computed() -> None:
    # image -> text: img0 and img1 find their own caption first; img2's only caption t3
    # (cos -0.6) is beaten by t0 (0.6), t1 (0.96), t2 (0.8): rank 4.
    # text -> image: t0 rank 1; t1 scores img0 0.8, img2 0.96 above img1 0.6: rank 3;
    # t2 rank 1; t3 scores img1 0.0 above img2 -0.6: rank 2.
    m = caption_retrieval_metrics(IMAGES, TEXTS, OWNER, ks=(1, 2, 5))
    assert m["image_to_text_R@1"] == pytest.approx(2 / 3)
    assert m["image_to_text_R@2"] == pytest.approx(2 / 3)
    assert m["image_to_text_R@5"] == 1.0
    assert m["text_to_image_R@1"] == pytest.approx(2 / 4)
    assert m["text_to_image_R@2"] == pytest.approx(3 / 4)
    assert m["text_to_image_R@5"] == 1.0
    assert (m["n_images"], m["n_texts"]) == (3, 4)


def test_caption_retrieval_uses_cosine_and_ties_count_against() -> None:
    scaled = caption_retrieval_metrics(IMAGES * 3.0, TEXTS * 0.5, OWNER)
    assert scaled == caption_retrieval_metrics(IMAGES, TEXTS, OWNER)
    same = caption_retrieval_metrics(np.ones((3, 4)), np.ones((6, 4)), np.array([0, 0, 1, 1, 2, 2]))
    assert same["image_to_text_R@1"] == 0.0
    assert same["text_to_image_R@1"] == 0.0


@pytest.mark.parametrize(
    ("texts", "owner", "match"),
    [
        (TEXTS, np.array([0, 1, 1, 3]), r"text_to_image\[3\]: 3 is not an image index"),
        (TEXTS, np.array([0, 1, 1]), r"text_to_image: expected shape \(4,\)"),
        (TEXTS, np.array([0, 1, 1, 1]), r"text_to_image: image 2 has no caption"),
        (TEXTS, np.array([0.0, 1.0, 1.0, 2.0]), r"text_to_image: expected integer"),
        (np.zeros((4, 2)), OWNER, r"text_emb\[0\]: zero vector"),
        (np.ones((4, 3)), OWNER, r"text_emb: dim 3 differs"),
    ],
)
def test_caption_retrieval_rejects_bad_input(
    texts: np.ndarray, owner: np.ndarray, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        caption_retrieval_metrics(IMAGES, texts, owner)


# --- compositional pairs -----------------------------------------------------------------
def test_compositional_accuracy_hand_computed() -> None:
    img = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    true = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    altered = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, -1.0], [1.0, 0.0]])
    cats = ["replace", "replace", "swap", "add"]
    # right, wrong, tie (wrong: both at cos 0.707), right
    m = compositional_accuracy(img, true, altered, cats)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["n"] == 4
    assert m["per_category"] == {"replace": 0.5, "swap": 0.0, "add": 1.0}
    assert m["n_per_category"] == {"replace": 2, "swap": 1, "add": 1}


def test_compositional_accuracy_rejects_bad_input() -> None:
    img = np.eye(2)
    with pytest.raises(ValueError, match=r"altered_text_emb: shape \(1, 2\) differs"):
        compositional_accuracy(img, img, img[:1], ["a", "b"])
    with pytest.raises(ValueError, match=r"categories: has 1 entries for 2"):
        compositional_accuracy(img, img, img, ["a"])
    with pytest.raises(ValueError, match=r"categories\[1\]: expected a non-empty string"):
        compositional_accuracy(img, img, img, ["a", ""])
    with pytest.raises(ValueError, match=r"image_emb: embeddings must be finite"):
        compositional_accuracy(np.array([[np.nan, 1.0]]), img[:1], img[:1], ["a"])
