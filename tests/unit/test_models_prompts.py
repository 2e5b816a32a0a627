"""Family table and prompts: image tokens, instruction placement, chat templates."""

from __future__ import annotations

import pytest
from PIL import Image
from transformers import BertConfig, LlamaConfig, Qwen2VLConfig

from uniembed.models import MODEL_TYPES, EmbedInput, family_for_config
from uniembed.models.families import ENCODER, LLAVA_ONEVISION, QWEN2_VL, TEXT_DECODER
from uniembed.models.pooling_config import PoolingConfig, resolve_pooling
from uniembed.models.prompts import render_content

IMG = Image.new("RGB", (30, 30), (0, 0, 255))
QWEN_TOKEN = "<|vision_start|><|image_pad|><|vision_end|>"


def test_family_is_picked_by_model_type_then_architecture() -> None:
    assert family_for_config(Qwen2VLConfig(), "m") is QWEN2_VL
    assert family_for_config(LlamaConfig(), "m") is TEXT_DECODER
    assert family_for_config(BertConfig(), "m") is ENCODER
    assert MODEL_TYPES["llava_onevision"] is LLAVA_ONEVISION

    class Odd:
        model_type = "brand_new_lm"
        architectures = ["BrandNewForCausalLM"]

    assert family_for_config(Odd(), "m") is TEXT_DECODER
    Odd.architectures = ["BrandNewForAudio"]
    with pytest.raises(
        ValueError, match="my-model: no embedder family for model_type 'brand_new_lm'"
    ):
        family_for_config(Odd(), "my-model")


def test_render_content_follows_the_design_prompts() -> None:
    cfg = resolve_pooling(QWEN2_VL, None)
    assert render_content(EmbedInput(text="a cat"), cfg) == (
        "a cat\nSummary above sentence in one word:"
    )
    assert render_content(EmbedInput(image=IMG), cfg) == (
        f"{QWEN_TOKEN}\nSummary above image in one word:"
    )
    both = EmbedInput(text="what colour?", image=IMG, instruction="Represent the image:")
    assert render_content(both, cfg) == (
        f"{QWEN_TOKEN}\nRepresent the image: what colour?\nSummary above image in one word:"
    )
    override = PoolingConfig(text_template="Q: {text}", image_token="<img>")
    cfg2 = resolve_pooling(QWEN2_VL, override)
    assert render_content(EmbedInput(text="x", instruction="Find:"), cfg2) == "Q: Find: x"
    assert render_content(EmbedInput(image=IMG), cfg2).startswith("<img>\n")


def test_qwen2_vl_prompt_has_its_image_tokens_and_chat_turn(tiny_qwen2_vl) -> None:
    (prompt,) = tiny_qwen2_vl.prompts(
        [EmbedInput(image=IMG, text="a sky", instruction="Represent the given image:")]
    )
    assert prompt == (
        "<|im_start|>user\n"
        f"{QWEN_TOKEN}\nRepresent the given image: a sky\nSummary above image in one word:"
        "<|im_end|>\n<|im_start|>assistant\n"
    )


def test_llava_prompt_has_its_image_token(tiny_llava) -> None:
    image_prompt, text_prompt = tiny_llava.prompts(
        [EmbedInput(image=IMG, instruction="Find a caption:"), EmbedInput(text="a sky")]
    )
    assert image_prompt == (
        "USER: <image>\nFind a caption:\nSummary above image in one word: ASSISTANT:"
    )
    assert "<|image_pad|>" not in image_prompt
    assert text_prompt == "USER: a sky\nSummary above sentence in one word: ASSISTANT:"
    # The processor expands the one <image> into the vision tower's 2x2 patch tokens.
    batch = tiny_llava.encode([EmbedInput(image=IMG)])
    image_id = tiny_llava.tokenizer.convert_tokens_to_ids("<image>")
    assert int((batch["input_ids"] == image_id).sum()) == 4


def test_qwen2_vl_processor_expands_image_pad_per_image_size(tiny_qwen2_vl) -> None:
    pad = tiny_qwen2_vl.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    small = tiny_qwen2_vl.encode([EmbedInput(image=Image.new("RGB", (56, 56)))])
    large = tiny_qwen2_vl.encode([EmbedInput(image=Image.new("RGB", (112, 112)))])
    # 28x28 pixels per merged token: 2x2 = 4 and 4x4 = 16 tokens.
    assert int((small["input_ids"] == pad).sum()) == 4
    assert int((large["input_ids"] == pad).sum()) == 16


def test_text_families_prompt_without_images(tiny_text_lm, minilm) -> None:
    (lm_prompt,) = tiny_text_lm.prompts([EmbedInput(text="a cat", instruction="Classify:")])
    assert lm_prompt == (
        "<|im_start|>user\nClassify: a cat\nSummary above sentence in one word:<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # Encoders get the plain text (instruction in front), no summary prompt.
    assert minilm.prompts([EmbedInput(text="a cat", instruction="query:")]) == ["query: a cat"]
