"""A request's candidates scored in bounded steps (chunked prefill) give the scores each pair
gets alone, whatever the step, with no forward over the step's tokens (except an image,
which cannot be split) and requests interleaved step by step."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from uniembed.reranker.scorer import JudgeInput, JudgeScorer
from uniembed.reranker.steps import ScoringSteps

TIGHT = 2e-6  # float32 rounding between forwards of other shapes (see test_judge_scores)

LONG_QUERY = JudgeInput(
    text="Which of these passages tells how a small grey cat found its way home across "
    "the old river bridge after the storm, and what it ate on the way?"
)
CANDIDATES = [
    JudgeInput(text="a dog"),
    JudgeInput(
        text="After the storm the small grey cat crossed the old river bridge, ate a fish "
        "a fisherman dropped, slept under a cart and was home by the next evening."
    ),
    JudgeInput(text="mat"),
    JudgeInput(text="the cat ate fish near the bridge"),
    JudgeInput(
        text="Seven wizards quietly hex every jolly bank clerk near the old river bridge at "
        "noon while the quick brown fox jumps over a lazy dog and nobody sees a cat."
    ),
]
RED = Image.new("RGB", (60, 40), (220, 30, 30))
IMAGE_QUERY = JudgeInput(text="Represent the given image with the following question:", image=RED)
MIXED = [
    JudgeInput(image=RED),
    CANDIDATES[1],
    JudgeInput(text="a dog runs in the park with a red ball", image=RED),
    CANDIDATES[0],
]


@pytest.fixture(scope="module")
def text_judge() -> JudgeScorer:
    return JudgeScorer.load("tiny-text-lm")


@pytest.fixture(scope="module")
def vl_judge() -> JudgeScorer:
    return JudgeScorer.load("tiny-qwen2-vl")


def _forwards(steps: ScoringSteps) -> list[int]:
    """Run ``steps`` one forward at a time; the tokens of each."""
    sizes = []
    while not steps.done:
        sizes.append(steps.advance(budget=1))
    return sizes


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("step_tokens", [3, 8, 20, 1000])
def test_stepwise_scores_equal_pair_scores_and_no_forward_exceeds_the_step(
    text_judge, step_tokens: int, packed: bool, monkeypatch
) -> None:
    monkeypatch.setattr(text_judge, "packs_candidates", packed)
    reference = text_judge.score_pairs([(LONG_QUERY, c) for c in CANDIDATES])
    assert reference.max() - reference.min() > 10 * TIGHT  # candidates are told apart
    steps = ScoringSteps(text_judge, LONG_QUERY, CANDIDATES, step_tokens=step_tokens, batch_size=2)
    sizes = _forwards(steps)
    assert max(sizes) <= step_tokens
    prompt_tokens = len(text_judge._token_ids(text_judge.prompt(LONG_QUERY, CANDIDATES[1])))
    if step_tokens < prompt_tokens // 2:  # the prefix and the long candidates were split
        assert len(sizes) > len(CANDIDATES) + 2
    np.testing.assert_allclose(steps.scores, reference, rtol=0, atol=TIGHT)


def test_images_run_whole_and_text_around_them_in_steps(vl_judge) -> None:
    reference = vl_judge.score_pairs([(IMAGE_QUERY, c) for c in MIXED])
    steps = ScoringSteps(vl_judge, IMAGE_QUERY, MIXED, step_tokens=6, batch_size=4)
    sizes = _forwards(steps)
    image_tokens = 6 < max(sizes)  # the image-bearing prefix and candidates
    assert image_tokens and sizes.count(6) >= 2  # the long text candidate went in chunks
    np.testing.assert_allclose(steps.scores, reference, rtol=0, atol=TIGHT)
    text_query = JudgeInput(text=LONG_QUERY.text)
    reference = vl_judge.score_pairs([(text_query, c) for c in MIXED])
    chunked = ScoringSteps(vl_judge, text_query, MIXED, step_tokens=5, batch_size=4).run()
    np.testing.assert_allclose(chunked, reference, rtol=0, atol=TIGHT)


def test_interleaved_requests_do_not_share_state(text_judge) -> None:
    queries = [LONG_QUERY, JudgeInput(text="dogs")]
    alone = [text_judge.score(q, CANDIDATES) for q in queries]
    a, b = (ScoringSteps(text_judge, q, CANDIDATES, step_tokens=7) for q in queries)
    while not (a.done and b.done):
        for steps in (a, b):
            if not steps.done:
                steps.advance()
    np.testing.assert_allclose(a.scores, alone[0], rtol=0, atol=TIGHT)
    np.testing.assert_allclose(b.scores, alone[1], rtol=0, atol=TIGHT)


def test_a_budget_runs_several_small_forwards_in_one_step(text_judge) -> None:
    steps = ScoringSteps(text_judge, JudgeInput(text="dogs"), CANDIDATES[:1], step_tokens=1000)
    assert steps.forwards == 2  # the prefix, then the one candidate
    steps.advance()
    assert steps.done


def test_a_judge_that_cannot_share_the_prefix_goes_pair_by_pair(text_judge, monkeypatch) -> None:
    monkeypatch.setattr(text_judge, "shares_prefix", False)
    steps = ScoringSteps(text_judge, LONG_QUERY, CANDIDATES, step_tokens=8)
    assert steps.forwards == len(CANDIDATES)
    reference = text_judge.score_pairs([(LONG_QUERY, c) for c in CANDIDATES])
    np.testing.assert_allclose(steps.run(), reference, rtol=0, atol=TIGHT)


def test_a_candidate_the_judge_cannot_take_is_refused_before_anything_runs(text_judge) -> None:
    with pytest.raises(ValueError, match="candidate 1"):
        ScoringSteps(text_judge, LONG_QUERY, [CANDIDATES[0], JudgeInput(image=RED)], step_tokens=8)


def test_no_candidates_is_done_at_once(text_judge) -> None:
    steps = ScoringSteps(text_judge, LONG_QUERY, [], step_tokens=8)
    assert steps.done and steps.scores.shape == (0,)
