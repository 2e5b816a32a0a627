"""Embedder families and the one table that picks a family from a model's config.

A family fixes what differs between backbones: whether images are accepted and how they
are spelled in a prompt, which processor class prepares the inputs, the default pooling
and the prompt templates (DESIGN §1). Everything else is shared code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["mllm", "decoder", "encoder"]

# DESIGN §1 prompts; ``{image}`` becomes the family's image token, ``{text}`` the input text
# with any instruction in front of it.
SUMMARY_TEXT = "{text}\nSummary above sentence in one word:"
SUMMARY_IMAGE = "{image}\nSummary above image in one word:"
SUMMARY_IMAGE_TEXT = "{image}\n{text}\nSummary above image in one word:"

QWEN_IMAGE_TOKEN = "<|vision_start|><|image_pad|><|vision_end|>"
LLAVA_IMAGE_TOKEN = "<image>"


@dataclass(frozen=True)
class Family:
    """How one kind of backbone is prompted, processed and pooled.

    ``chat_content`` says how a user turn is handed to the chat template: ``parts`` (a list
    of typed parts, the multimodal processors' format) or ``string`` (plain text LMs).
    """

    name: str
    kind: Kind
    pooling: str
    text_template: str
    image_template: str | None = None
    image_text_template: str | None = None
    image_token: str | None = None
    processor_class: str | None = None
    chat_content: Literal["parts", "string"] = "string"

    @property
    def supports_images(self) -> bool:
        """True when the family accepts image inputs."""
        return self.kind == "mllm"


def _mllm(name: str, image_token: str, processor_class: str) -> Family:
    return Family(
        name=name,
        kind="mllm",
        pooling="last",
        text_template=SUMMARY_TEXT,
        image_template=SUMMARY_IMAGE,
        image_text_template=SUMMARY_IMAGE_TEXT,
        image_token=image_token,
        processor_class=processor_class,
        chat_content="parts",
    )


QWEN2_VL = _mllm("qwen2_vl", QWEN_IMAGE_TOKEN, "Qwen2VLProcessor")
QWEN2_5_VL = _mllm("qwen2_5_vl", QWEN_IMAGE_TOKEN, "Qwen2_5_VLProcessor")
LLAVA = _mllm("llava", LLAVA_IMAGE_TOKEN, "LlavaProcessor")
LLAVA_NEXT = _mllm("llava_next", LLAVA_IMAGE_TOKEN, "LlavaNextProcessor")
LLAVA_ONEVISION = _mllm("llava_onevision", LLAVA_IMAGE_TOKEN, "LlavaOnevisionProcessor")
TEXT_DECODER = Family(name="decoder", kind="decoder", pooling="last", text_template=SUMMARY_TEXT)
ENCODER = Family(name="encoder", kind="encoder", pooling="mean", text_template="{text}")

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (QWEN2_VL, QWEN2_5_VL, LLAVA, LLAVA_NEXT, LLAVA_ONEVISION, TEXT_DECODER, ENCODER)
}

# config.model_type -> family. The single place a backbone is mapped to its family.
MODEL_TYPES: dict[str, Family] = {
    "qwen2_vl": QWEN2_VL,
    "qwen2_5_vl": QWEN2_5_VL,
    "llava": LLAVA,
    "llava_next": LLAVA_NEXT,
    "llava_onevision": LLAVA_ONEVISION,
    **{
        t: TEXT_DECODER
        for t in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "smollm3")
    },
    **{
        t: ENCODER
        for t in (
            "bert",
            "roberta",
            "xlm-roberta",
            "distilbert",
            "mpnet",
            "modernbert",
            "nomic_bert",
        )
    },
}

# Fallback for model types not listed above: the suffix of config.architectures[0].
ARCHITECTURE_SUFFIXES: dict[str, Family] = {
    "ForCausalLM": TEXT_DECODER,
    "ForMaskedLM": ENCODER,
}


def family_for_config(config: Any, model: str) -> Family:
    """The family of a transformers config (by ``model_type``, then architecture suffix).

    Raises ValueError naming ``model`` and its model type when no family fits.
    """
    model_type = getattr(config, "model_type", None)
    if model_type in MODEL_TYPES:
        return MODEL_TYPES[model_type]
    for arch in getattr(config, "architectures", None) or []:
        for suffix, family in ARCHITECTURE_SUFFIXES.items():
            if arch.endswith(suffix):
                return family
    raise ValueError(
        f"{model}: no embedder family for model_type {model_type!r}; known model types: "
        f"{', '.join(sorted(MODEL_TYPES))} (or set 'family' in uniembed.json)"
    )


def family_by_name(name: str, model: str) -> Family:
    """The family called ``name`` (as written in uniembed.json); ValueError naming ``model``."""
    if name not in FAMILIES:
        raise ValueError(f"{model}: unknown family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]
