"""Bounding what one rerank request can cost, so that a long one cannot hold others up.

Texts are cut to ``reranker.max_text_tokens`` tokens before they are queued (here); the
Reranker then runs each request in steps of at most ``reranker.max_batch_tokens`` tokens
(:mod:`uniembed.reranker.steps`), requests taking turns step by step
(:mod:`.step_queue`), so a short request queued behind a long one waits for one step of
it, not for all of it.
"""

from __future__ import annotations

from typing import Any

from uniembed.models.truncation import truncate_text

Pair = tuple[str | None, Any]  # (text, decoded PIL image or None)


def fit_pair(tokenizer: Any, pair: Pair, max_tokens: int) -> Pair:
    """``pair`` with its text cut to ``max_tokens`` tokens."""
    text, image = pair
    if not text:
        return pair
    return truncate_text(tokenizer, text, max_tokens)[0], image
