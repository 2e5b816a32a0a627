"""Tiny random-weight MLLMs built offline, for tests and CPU runs of the whole pipeline.

Each builder writes a normal ``save_pretrained`` folder (weights, config, processor,
tokenizer, chat template), so tiny models load through exactly the code path of real
ones. Weights come from a fixed seed and the tokenizer is a byte-level BPE trained with
``tokenizers`` on a fixed corpus, so a build is deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from uniembed.models.processors import save_processor

TINY_SEED = 1234
_CORPUS = [
    "a cat sits on the mat",
    "a dog runs in the park",
    "a red square on a white background",
    "Summary above sentence in one word:",
    "Summary above image in one word:",
    "Represent the given image with the following question:",
    "Find me an everyday image that matches the given caption:",
    "I will provide you with a query and a candidate.",
    "Yes No Query: Candidate:",
]

# Chat templates in the shape of the real ones (Qwen2-VL ChatML; LLaVA-1.5 USER/ASSISTANT).
_QWEN_CHAT = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_LLAVA_CHAT = (
    "{% for m in messages %}{{ 'USER: ' if m['role'] == 'user' else 'ASSISTANT: ' }}"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% elif c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %} {% endfor %}{% if add_generation_prompt %}ASSISTANT:"
    "{% endif %}"
)


def train_tokenizer(special_tokens: list[str], **named: str) -> Any:
    """A byte-level BPE tokenizer (vocab ~400) trained on a fixed corpus plus
    ``special_tokens``; ``named`` sets e.g. ``pad_token="<pad>"``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named)


def _seeded_model(model_cls: Any, config: Any, seed: int) -> Any:
    # fork_rng: the build must not move the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_cls(config).eval()


def build_tiny_qwen2_vl(folder: str | Path, seed: int = TINY_SEED) -> None:
    """Write a tiny Qwen2-VL (text hidden 64, 2 layers; vision depth 2) to ``folder``."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    from uniembed.models.processors import image_only_processor_class

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>"]
    special += ["<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = train_tokenizer(special, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = tok.convert_tokens_to_ids
    text = dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        # head_dim 16 -> 8 rotary pairs split over (time, height, width).
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        bos_token_id=None,
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
    )
    vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2)
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    model = _seeded_model(Qwen2VLForConditionalGeneration, config, seed)
    # Small images: 4..16 merged tokens per image (28x28 pixels per merged token).
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
    processor = image_only_processor_class("Qwen2VLProcessor")(
        image_processor=image_processor, tokenizer=tok, chat_template=_QWEN_CHAT
    )
    model.save_pretrained(str(folder))
    save_processor(processor, folder, "Qwen2VLProcessor")


def build_tiny_llava(folder: str | Path, seed: int = TINY_SEED) -> None:
    """Write a tiny LLaVA (CLIP vision 32 px, patch 16; Llama text hidden 64) to ``folder``."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = train_tokenizer(
        ["<pad>", "<s>", "</s>", "<image>"], bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    ids = tok.convert_tokens_to_ids
    vision = CLIPVisionConfig(
        image_size=32,
        patch_size=16,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=ids("<pad>"),
        bos_token_id=ids("<s>"),
        eos_token_id=ids("</s>"),
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    model = _seeded_model(LlavaForConditionalGeneration, config, seed)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    # 2x2 patches; the CLS token is dropped by the "default" feature strategy.
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=16,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=_LLAVA_CHAT,
    )
    model.save_pretrained(str(folder))
    save_processor(processor, folder, "LlavaProcessor")


def build_tiny_text_lm(folder: str | Path, seed: int = TINY_SEED) -> None:
    """Write a tiny Llama causal LM (hidden 64, 2 layers) with a ChatML template to ``folder``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = train_tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tok.chat_template = _QWEN_CHAT
    ids = tok.convert_tokens_to_ids
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=ids("<|endoftext|>"),
        bos_token_id=None,
        eos_token_id=ids("<|im_end|>"),
    )
    model = _seeded_model(LlamaForCausalLM, config, seed)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
