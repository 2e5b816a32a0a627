"""Cutting a text to a number of tokens, before it is put into a prompt.

The text alone is cut (never the prompt), so an image's tokens and the template's
closing words stay whole: this is what bounds an MLLM's sequence length, whose processor
cannot truncate. Used by the embedders and by the served reranker.
"""

from __future__ import annotations

from typing import Any

# Texts of MLLMs and LMs without a configured max_length stop here: a 100 KB text would
# otherwise take ~85k tokens, minutes of compute and memory enough to kill the actor.
DEFAULT_MAX_TEXT_TOKENS = 8192


def truncate_text(tokenizer: Any, text: str, max_tokens: int) -> tuple[str, bool]:
    """``(text cut to its first max_tokens tokens, whether it was cut)``.

    Cheap for short texts: a token covers at least one UTF-8 byte, so a text of at most
    ``max_tokens`` bytes is returned without tokenizing it.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if len(text) <= max_tokens and len(text.encode("utf-8")) <= max_tokens:
        return text, False
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        if len(offsets) <= max_tokens:
            return text, False
        return text[: offsets[max_tokens - 1][1]], True
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text, False
    return tokenizer.decode(ids[:max_tokens]), True
