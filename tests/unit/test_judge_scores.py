"""Shared-prefix judge scores against one-pair-at-a-time scores, on tiny (M)LLMs.

Both shared-prefix strategies are checked: candidates packed in one row behind the prefix
(the default) and padded candidate batches on copies of the prefix cache.

Random tiny weights put every P(Yes) close to 0.5 and the last token (the generation
prompt's) is the same for all candidates, so a wrong suffix position moves a score by only
~4e-5: below the 1e-4 the scores must agree within. The equality tests therefore also
check a tight tolerance (``TIGHT``, 30x the float32 noise seen, ~6e-8), and negative
controls prove that an off-by-one or a rope-delta error breaks that tolerance.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from uniembed.reranker import cache as judge_cache
from uniembed.reranker import pack as judge_pack
from uniembed.reranker.scorer import JudgeInput, JudgeScorer

TOL = 1e-4  # the agreement the judge promises
TIGHT = 2e-6  # what float32 actually gives; errors of the kinds below exceed 5x this


@pytest.fixture(scope="module")
def judge() -> Callable[[str], JudgeScorer]:
    loaded: dict[str, JudgeScorer] = {}

    def get(name: str) -> JudgeScorer:
        if name not in loaded:
            loaded[name] = JudgeScorer.load(name)
        return loaded[name]

    return get


RED = Image.new("RGB", (60, 40), (220, 30, 30))
GRID = Image.new("RGB", (90, 120), (10, 10, 10))
for _x in range(0, 90, 10):
    for _y in range(0, 120, 10):
        GRID.putpixel((_x, _y), (250, 250, 250))

TEXT_QUERY = JudgeInput(text="Find me an everyday image that matches the given caption: a cat")
IMAGE_QUERY = JudgeInput(text="Represent the given image with the following question:", image=RED)
TEXT_CANDIDATES = [
    JudgeInput(text="a dog"),
    JudgeInput(text="a red square on a white background and a cat sits on the mat"),
    JudgeInput(text="mat"),
    JudgeInput(text="a cat sits on the mat"),
    JudgeInput(text="a dog runs in the park"),
]
IMAGE_CANDIDATES = [
    JudgeInput(image=GRID),
    JudgeInput(text="a red square"),
    JudgeInput(text="a dog runs in the park with a red ball", image=RED),
    JudgeInput(image=RED),
    JudgeInput(text="the mat", image=GRID),
]

CASES = {
    "qwen2vl-image-query-text-candidates": ("tiny-qwen2-vl", IMAGE_QUERY, TEXT_CANDIDATES),
    "qwen2vl-text-query-image-candidates": ("tiny-qwen2-vl", TEXT_QUERY, IMAGE_CANDIDATES),
    "qwen2vl-image-query-image-candidates": ("tiny-qwen2-vl", IMAGE_QUERY, IMAGE_CANDIDATES),
    "llava-image-query-mixed-candidates": ("tiny-llava", IMAGE_QUERY, IMAGE_CANDIDATES),
    "text-lm": ("tiny-text-lm", TEXT_QUERY, TEXT_CANDIDATES),
}


@pytest.fixture(params=["packed", "expanded"])
def strategy(request: pytest.FixtureRequest) -> str:
    return request.param


def _use(scorer: JudgeScorer, strategy: str, monkeypatch: pytest.MonkeyPatch) -> JudgeScorer:
    assert scorer.packs_candidates  # sdpa, full attention: packing is the default
    monkeypatch.setattr(scorer, "packs_candidates", strategy == "packed")
    return scorer


@pytest.mark.parametrize("case", sorted(CASES))
def test_shared_prefix_scores_equal_pair_scores(judge, case: str, strategy, monkeypatch) -> None:
    name, query, candidates = CASES[case]
    scorer = _use(judge(name), strategy, monkeypatch)
    assert scorer.shares_prefix
    reference = scorer.score_pairs([(query, c) for c in candidates])
    assert reference.shape == (len(candidates),) and reference.dtype == np.float32
    assert np.all((reference > 0) & (reference < 1))
    assert reference.max() - reference.min() > 10 * TIGHT  # candidates are told apart
    for batch_size in (1, 3, len(candidates) + 3):
        scores = scorer.score(query, candidates, batch_size=batch_size)
        assert scores.shape == reference.shape and scores.dtype == np.float32
        np.testing.assert_allclose(scores, reference, rtol=0, atol=TOL, err_msg=f"bs={batch_size}")
        np.testing.assert_allclose(
            scores, reference, rtol=0, atol=TIGHT, err_msg=f"bs={batch_size}"
        )


def _shifted(shift: int) -> Callable[[torch.Tensor], int]:
    return lambda prefix_positions: int(prefix_positions.max()) + 1 + shift


@pytest.mark.parametrize(
    "case", ["qwen2vl-image-query-text-candidates", "llava-image-query-mixed-candidates", "text-lm"]
)
def test_off_by_one_suffix_positions_are_caught(judge, case: str, strategy, monkeypatch) -> None:
    name, query, candidates = CASES[case]
    scorer = _use(judge(name), strategy, monkeypatch)
    reference = scorer.score_pairs([(query, c) for c in candidates])
    monkeypatch.setattr(judge_cache, "next_position", _shifted(1))
    wrong = scorer.score(query, candidates, batch_size=3)
    assert np.abs(wrong - reference).max() > 5 * TIGHT


def test_qwen2_vl_suffix_positions_follow_mrope_not_token_count(
    judge, strategy, monkeypatch
) -> None:
    # An image of n tokens advances M-RoPE positions by max(h, w) / merge, not n: a suffix
    # placed at the prefix's token count (ignoring rope deltas) scores differently.
    name, query, candidates = CASES["qwen2vl-image-query-text-candidates"]
    scorer = _use(judge(name), strategy, monkeypatch)
    reference = scorer.score_pairs([(query, c) for c in candidates])
    monkeypatch.setattr(judge_cache, "next_position", lambda pos: int(pos.shape[-1]))
    wrong = scorer.score(query, candidates, batch_size=3)
    assert np.abs(wrong - reference).max() > 5 * TIGHT


@pytest.mark.parametrize("case", sorted(CASES))
def test_prefix_and_suffix_tokens_concatenate_to_the_full_tokens(judge, case: str) -> None:
    name, query, candidates = CASES[case]
    scorer = judge(name)
    for candidate in candidates:
        prefix, suffix = scorer._split(query, candidate)
        images = [x.image for x in (query, candidate) if x.image is not None]
        full = scorer._encode([prefix + suffix], images)["input_ids"][0].tolist()
        head = scorer._encode([prefix], [query.image] if query.image else [])
        tail = scorer._encode_suffixes([suffix], [candidate.image] if candidate.image else [])
        assert head["input_ids"][0].tolist() + tail["input_ids"][0].tolist() == full
        assert tail["attention_mask"].shape == tail["input_ids"].shape


def test_candidate_order_is_kept_when_batches_are_sorted_by_length(
    judge, strategy, monkeypatch
) -> None:
    scorer = _use(judge("tiny-text-lm"), strategy, monkeypatch)
    candidates = list(reversed(TEXT_CANDIDATES))
    forward = scorer.score(TEXT_QUERY, TEXT_CANDIDATES, batch_size=2)
    backward = scorer.score(TEXT_QUERY, candidates, batch_size=2)
    np.testing.assert_allclose(backward, forward[::-1], atol=TOL, rtol=0)


def test_packed_candidates_see_the_prefix_and_themselves_only() -> None:
    # prefix of 2 tokens, candidates of 2 and 1 tokens: keys p0 p1 a0 a1 b0
    allowed = judge_pack.allowed_attention(2, [2, 1], with_prefix=True)
    expected = [
        [1, 0, 0, 0, 0],  # p0
        [1, 1, 0, 0, 0],  # p1
        [1, 1, 1, 0, 0],  # a0
        [1, 1, 1, 1, 0],  # a1
        [1, 1, 0, 0, 1],  # b0: not a0, a1
    ]
    assert allowed.int().tolist() == expected
    cached = judge_pack.allowed_attention(2, [2, 1], with_prefix=False)
    assert cached.int().tolist() == expected[2:]
    assert judge_pack.last_tokens(2, [2, 1]).tolist() == [3, 4]
    assert judge_pack.last_tokens(0, [2, 1]).tolist() == [1, 2]
    bias = judge_pack.attention_mask_4d(cached, "eager", torch.float32)
    assert bias.shape == (1, 1, 3, 5) and bias[0, 0, 2, 2] == torch.finfo(torch.float32).min
    assert bias[0, 0, 2, 4] == 0
    with pytest.raises(ValueError, match="flash_attention_2"):
        judge_pack.attention_mask_4d(cached, "flash_attention_2", torch.float32)


def test_packed_scores_with_eager_attention_equal_pair_scores(judge) -> None:
    base = judge("tiny-llava")
    model = type(base.model).from_pretrained(base.model.name_or_path, attn_implementation="eager")
    scorer = JudgeScorer(base.name, model.eval(), base.tokenizer, base.processor, base.settings)
    assert scorer._attention == "eager" and scorer.packs_candidates
    query, candidates = IMAGE_QUERY, IMAGE_CANDIDATES
    reference = scorer.score_pairs([(query, c) for c in candidates])
    for batch_size in (2, len(candidates)):
        scores = scorer.score(query, candidates, batch_size=batch_size)
        np.testing.assert_allclose(scores, reference, rtol=0, atol=TIGHT)


def test_empty_candidate_list_gives_an_empty_array(judge) -> None:
    scores = judge("tiny-qwen2-vl").score(IMAGE_QUERY, [])
    assert scores.shape == (0,) and scores.dtype == np.float32
    assert judge("tiny-text-lm").score_pairs([]).shape == (0,)


# The first GGUF conversion takes about a minute on 2 busy cores; scoring ~10 s more.
def test_smollm2_judge_answers_yes_no_and_shares_the_prefix() -> None:
    pytest.importorskip("gguf")
    scorer = JudgeScorer.load("smollm2-135m")
    assert scorer.shares_prefix and not scorer.supports_images
    decode = scorer.tokenizer.convert_ids_to_tokens
    assert decode([scorer.yes_token_id, scorer.no_token_id]) == ["Yes", "No"]
    query = JudgeInput(text='abnegate: "The King abnegated his power to the ministers"')
    candidates = [
        JudgeInput(text="surrender (power or a position)"),
        JudgeInput(text="deny or renounce"),
        JudgeInput(text="without musical accompaniment"),
    ]
    reference = scorer.score_pairs([(query, c) for c in candidates])
    np.testing.assert_allclose(scorer.score(query, candidates, batch_size=2), reference, atol=TOL)
