"""Prompt text for one input: template filling (DESIGN §1) and the backbone's chat template."""

from __future__ import annotations

from typing import Any

from uniembed.models.inputs import EmbedInput
from uniembed.models.pooling_config import ResolvedPooling


def render_content(inp: EmbedInput, cfg: ResolvedPooling) -> str:
    """The user-turn text for ``inp``: the instruction in front of the text, the family's
    image token in place of ``{image}``.

    Examples (Qwen2-VL family, default templates)::

        text only   -> "a cat\\nSummary above sentence in one word:"
        image only  -> "<|vision_start|><|image_pad|><|vision_end|>\\nSummary above image ..."
        image+text  -> "<|vision_start|>...<|vision_end|>\\n<instruction> <text>\\nSummary ..."
    """
    body = " ".join(part.strip() for part in (inp.instruction, inp.text) if part and part.strip())
    if not inp.has_image:
        return cfg.text_template.format(text=body)
    if cfg.image_token is None or cfg.image_template is None or cfg.image_text_template is None:
        raise ValueError(f"family {cfg.family.name} has no image prompt")
    if body:
        return cfg.image_text_template.format(image=cfg.image_token, text=body)
    return cfg.image_template.format(image=cfg.image_token)


def wrap_chat(content: str, chat_owner: Any, cfg: ResolvedPooling) -> str:
    """Wrap ``content`` as one user turn in the chat template of ``chat_owner`` (a tokenizer
    or processor) with the generation prompt appended, so the last token is the one the
    model would answer from. Without a chat template (or with it switched off) the content
    is returned as is.
    """
    if not cfg.use_chat_template or not getattr(chat_owner, "chat_template", None):
        return content
    if cfg.family.chat_content == "parts":
        message: dict[str, Any] = {"role": "user", "content": [{"type": "text", "text": content}]}
    else:
        message = {"role": "user", "content": content}
    return chat_owner.apply_chat_template([message], tokenize=False, add_generation_prompt=True)


def build_prompt(inp: EmbedInput, chat_owner: Any, cfg: ResolvedPooling) -> str:
    """The full prompt string for ``inp`` (content, then chat template)."""
    return wrap_chat(render_content(inp, cfg), chat_owner, cfg)
