"""Hard-negative selection rules on hand-made scores (no Ray, no models)."""

from __future__ import annotations

import math

import pytest

from uniembed.mining import Selection, cyclic_order, select_by_similarity, select_with_judge

# The worked example of select_with_judge's docstring.
EXAMPLE_IDS = list("abcdefghijkl")
EXAMPLE_SCORES = [0.97, 0.50, 0.92, 0.80, 0.45, 0.75, 0.40, 0.70, 0.35, 0.65, 0.60, 0.55]


# --- judge mode ---------------------------------------------------------------------------


def test_cyclic_order_stride_five() -> None:
    assert cyclic_order(12, 5) == [0, 5, 10, 1, 6, 11, 2, 7, 3, 8, 4, 9]
    assert cyclic_order(3, 5) == [0, 1, 2]
    assert cyclic_order(0, 5) == []
    assert sorted(cyclic_order(50, 5)) == list(range(50))


def test_docstring_worked_example() -> None:
    sel = select_with_judge(EXAMPLE_IDS, EXAMPLE_SCORES, positive_score=0.9, k=4, beta=0.01)
    assert sel.false_negative_ids == ("a", "c")
    assert sel.negative_ids == ("d", "l", "f", "b")
    assert sel.scores == (0.80, 0.55, 0.75, 0.50)
    assert sel.positions == (3, 11, 5, 1)
    assert sel.ranks == sel.positions  # no ranks given: positions in the input list
    assert sel.n_available == 10 and not sel.filled and sel.n_filled == 0


def test_k_ten_of_ten_takes_every_valid_candidate_in_cyclic_order() -> None:
    sel = select_with_judge(EXAMPLE_IDS, EXAMPLE_SCORES, positive_score=0.9, k=10)
    # sorted remainder: d f h j k l b e g i; cyclic positions 0 5 1 6 2 7 3 8 4 9
    assert sel.negative_ids == tuple("dlfbhejgki")
    assert set(sel.negative_ids) == set("bdefghijkl")


def test_false_negative_boundary_is_exclusive() -> None:
    pos, beta = 0.75, 0.25  # threshold 0.5 exactly in binary floating point
    ids = ["at", "above", "below"]
    sel = select_with_judge(ids, [0.5, 0.5 + 1e-9, 0.25], positive_score=pos, k=2, beta=beta)
    assert sel.false_negative_ids == ("above",)
    assert sel.negative_ids == ("at", "below")
    # The paper's default: 0.9 - 0.01 as computed in floating point stays a negative.
    sel = select_with_judge(["x", "y"], [0.9 - 0.01, 0.895], positive_score=0.9, k=1)
    assert sel.negative_ids == ("x",) and sel.false_negative_ids == ("y",)


def test_beta_zero_keeps_ties_with_the_positive() -> None:
    sel = select_with_judge(["t", "u"], [0.9, 0.91], positive_score=0.9, k=1, beta=0.0)
    assert sel.negative_ids == ("t",) and sel.false_negative_ids == ("u",)


def test_fill_repeats_remainder_and_never_takes_positive_or_false_negative() -> None:
    ids = ["pos", "fn1", "d", "f", "h", "fn2"]
    scores = [0.99, 0.95, 0.80, 0.75, 0.70, 0.93]
    sel = select_with_judge(ids, scores, positive_score=0.9, k=8, positive_id="pos")
    assert sel.negative_ids == ("d", "f", "h", "d", "f", "h", "d", "f")
    assert sel.filled and sel.n_filled == 5 and sel.n_available == 3
    assert sel.false_negative_ids == ("fn1", "fn2")
    assert "pos" not in sel.negative_ids and "pos" not in sel.false_negative_ids
    assert sel.positions == (2, 3, 4, 2, 3, 4, 2, 3)


def test_positive_scoring_low_is_still_never_a_negative() -> None:
    # A judge can score the positive below a negative; it must still not be picked.
    sel = select_with_judge(["pos", "n1", "n2"], [0.2, 0.3, 0.1], 0.6, k=3, positive_id="pos")
    assert "pos" not in sel.negative_ids
    assert sel.negative_ids == ("n1", "n2", "n1")


def test_everything_filtered_gives_marked_empty_selection() -> None:
    sel = select_with_judge(["a", "b", "p"], [0.95, 0.99, 0.2], 0.9, k=10, positive_id="p")
    assert sel.is_empty and len(sel) == 0
    assert sel.n_available == 0 and not sel.filled and sel.n_filled == 0
    assert sel.false_negative_ids == ("a", "b") and sel.n_requested == 10
    empty = select_with_judge([], [], 0.9, k=3)
    assert empty.is_empty and empty.false_negative_ids == ()


def test_ranks_are_reported_from_retrieval() -> None:
    sel = select_with_judge(["x", "y", "z"], [0.1, 0.3, 0.2], 0.9, k=2, ranks=[4, 7, 9])
    assert sel.negative_ids == ("y", "z")
    assert sel.ranks == (7, 9) and sel.positions == (1, 2)


def test_ties_keep_input_order() -> None:
    sel = select_with_judge(["a", "b", "c"], [0.5, 0.5, 0.6], 0.9, k=3)
    assert sel.negative_ids == ("c", "a", "b")


def test_selection_is_frozen() -> None:
    sel = select_with_judge(["a"], [0.1], 0.9, k=1)
    assert isinstance(sel, Selection)
    with pytest.raises(AttributeError):
        sel.filled = True  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"judge_scores": [0.1]}, "judge_scores"),
        ({"k": 0}, "k: must be >= 1"),
        ({"beta": -0.01}, "beta"),
        ({"judge_scores": [0.1, math.nan]}, r"judge_scores\[1\].*'b'.*NaN"),
        ({"positive_score": math.nan}, "positive_score"),
        ({"candidate_ids": ["a", "a"]}, r"candidate_ids\[1\]"),
        ({"ranks": [1]}, "ranks"),
        ({"step": 0}, "step"),
    ],
)
def test_judge_validation_names_the_argument(kwargs: dict, match: str) -> None:
    args = {"candidate_ids": ["a", "b"], "judge_scores": [0.1, 0.2], "positive_score": 0.9}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        select_with_judge(**args)


# --- similarity mode ------------------------------------------------------------------------

SIM_IDS = ["p", "c1", "c2", "c3", "c4", "c5", "c6"]
SIMS = [0.90, 0.88, 0.85, 0.80, 0.70, 0.60, 0.50]


def test_similarity_top_without_options_takes_most_similar_non_positive() -> None:
    sel = select_by_similarity(SIM_IDS, SIMS, pos_sim=0.9, num_negatives=3, positive_id="p")
    assert sel.negative_ids == ("c1", "c2", "c3")
    assert sel.false_negative_ids == () and sel.n_available == 6


def test_similarity_absolute_margin() -> None:
    # keep sim <= pos_sim - margin: 0.9 - 0.05 = 0.85 keeps c2 (exactly at the bound)
    sel = select_by_similarity(
        SIM_IDS, SIMS, 0.9, num_negatives=2, absolute_margin=0.05, positive_id="p"
    )
    assert sel.false_negative_ids == ("c1",)
    assert sel.negative_ids == ("c2", "c3")


def test_similarity_relative_margin_uses_positive_magnitude() -> None:
    # threshold 0.9 - 0.9 * 0.1 = 0.81: c1, c2 dropped, c3 kept
    sel = select_by_similarity(SIM_IDS, SIMS, 0.9, num_negatives=2, relative_margin=0.1)
    assert sel.false_negative_ids == ("p", "c1", "c2")
    assert sel.negative_ids == ("c3", "c4")
    # A negative positive similarity lowers the threshold (sentence-transformers #3819).
    sel = select_by_similarity(["a", "b"], [-0.5, -0.6], -0.5, num_negatives=1, relative_margin=0.1)
    assert sel.negative_ids == ("b",)  # threshold -0.55


def test_similarity_max_and_min_score() -> None:
    sel = select_by_similarity(
        SIM_IDS, SIMS, 0.9, num_negatives=3, max_score=0.82, min_score=0.6, positive_id="p"
    )
    assert sel.false_negative_ids == ("c1", "c2")
    assert sel.negative_ids == ("c3", "c4", "c5")  # c6 (0.50) is below min_score
    assert sel.n_available == 3


def test_similarity_range_min_skips_most_similar_survivors() -> None:
    sel = select_by_similarity(
        SIM_IDS, SIMS, 0.9, num_negatives=2, range_min=1, absolute_margin=0.04, positive_id="p"
    )
    # survivors after the margin: c2 c3 c4 c5 c6; range_min=1 skips c2
    assert sel.negative_ids == ("c3", "c4")


def test_similarity_range_max_limits_the_window() -> None:
    sel = select_by_similarity(SIM_IDS, SIMS, 0.9, num_negatives=3, range_max=3, positive_id="p")
    assert sel.negative_ids == ("c1", "c2", "c3") and sel.n_available == 3
    sel = select_by_similarity(
        SIM_IDS, SIMS, 0.9, num_negatives=2, range_max=3, max_score=0.86, positive_id="p"
    )
    assert sel.negative_ids == ("c2", "c3") and sel.n_available == 2


def test_similarity_unsorted_input_is_ordered_by_similarity() -> None:
    sel = select_by_similarity(["a", "b", "c"], [0.1, 0.7, 0.4], 0.9, num_negatives=2)
    assert sel.negative_ids == ("b", "c") and sel.positions == (1, 2)


def test_similarity_random_is_seeded_and_sorted() -> None:
    ids = [f"c{i}" for i in range(20)]
    sims = [0.8 - 0.01 * i for i in range(20)]
    a = select_by_similarity(ids, sims, 0.9, num_negatives=5, sampling_strategy="random", seed=3)
    b = select_by_similarity(ids, sims, 0.9, num_negatives=5, sampling_strategy="random", seed=3)
    c = select_by_similarity(ids, sims, 0.9, num_negatives=5, sampling_strategy="random", seed=4)
    assert a == b
    assert a.negative_ids != c.negative_ids
    assert len(set(a.negative_ids)) == 5
    assert list(a.scores) == sorted(a.scores, reverse=True)
    top = select_by_similarity(ids, sims, 0.9, num_negatives=5)
    assert top.negative_ids == tuple(ids[:5])
    # Over many seeds, random draws reach beyond the top 5.
    seen = set()
    for seed in range(20):
        seen |= set(
            select_by_similarity(
                ids, sims, 0.9, 5, sampling_strategy="random", seed=seed
            ).negative_ids
        )
    assert len(seen) > 10


def test_similarity_too_few_survivors_is_short_not_filled() -> None:
    sel = select_by_similarity(["a", "b"], [0.95, 0.5], 0.9, num_negatives=3, absolute_margin=0.0)
    assert sel.negative_ids == ("b",)
    assert sel.n_available == 1 and sel.n_requested == 3 and not sel.filled


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sims": [0.1]}, "sims"),
        ({"num_negatives": 0}, "num_negatives"),
        ({"sims": [math.nan, 0.1]}, r"sims\[0\]"),
        ({"pos_sim": math.nan}, "pos_sim"),
        ({"absolute_margin": -0.1}, "absolute_margin"),
        ({"relative_margin": -0.1}, "relative_margin"),
        ({"range_min": -1}, "range_min"),
        ({"range_max": 1, "num_negatives": 2}, "range_max"),
        ({"min_score": 0.5, "max_score": 0.4}, "min_score"),
        ({"sampling_strategy": "best"}, "sampling_strategy"),
    ],
)
def test_similarity_validation_names_the_argument(kwargs: dict, match: str) -> None:
    args = {"candidate_ids": ["a", "b"], "sims": [0.1, 0.2], "pos_sim": 0.9, "num_negatives": 1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        select_by_similarity(**args)


def test_similarity_known_positives_are_never_negatives() -> None:
    """Candidates the data marks as also correct (identical definitions) are reported as
    false negatives, never chosen."""
    sel = select_by_similarity(
        ["a", "b", "c", "d"], [0.8, 0.7, 0.6, 0.5], 0.9, 2, known_positive_ids=["b"]
    )
    assert sel.negative_ids == ("a", "c") and sel.false_negative_ids == ("b",)


def test_resolution_makes_near_equal_scores_ties_in_retrieval_order() -> None:
    """Two engines agree on P(Yes) to ~1e-5: with a resolution the chosen negatives do not
    depend on which one scored. Hand-computed: candidates a..f in retrieval order, k=2,
    step=1 (the first two of the hardness order)."""
    ids = ["a", "b", "c", "d", "e", "f"]
    one = [0.305004, 0.305001, 0.2, 0.1, 0.05, 0.01]  # engine 1: a above b
    two = [0.304998, 0.305003, 0.2, 0.1, 0.05, 0.01]  # engine 2: b above a, by 5e-6
    exact = [list(select_with_judge(ids, s, 0.9, k=2, step=1).negative_ids) for s in (one, two)]
    assert exact == [["a", "b"], ["b", "a"]]  # the exact order follows the noise
    stepped = [
        list(select_with_judge(ids, s, 0.9, k=2, step=1, resolution=0.01).negative_ids)
        for s in (one, two)
    ]
    assert stepped == [["a", "b"], ["a", "b"]]  # one step: a tie, kept in retrieval order
    # scores a full step apart still order by score, not by retrieval order
    scores = [0.1, 0.3, 0.2, 0.0, 0.0, 0.0]
    apart = select_with_judge(ids, scores, 0.9, k=3, step=1, resolution=0.01)
    assert list(apart.negative_ids) == ["b", "c", "a"]
    with pytest.raises(ValueError, match="resolution"):
        select_with_judge(ids, one, 0.9, k=2, resolution=-0.1)
