"""Bounding what one rerank request can cost, so that a long one cannot hold others up.

Texts are cut to ``reranker.max_text_tokens`` tokens before they are queued, and the
Reranker's batches are bounded in (estimated) document tokens rather than in requests: a
request's documents enter the Reranker's :class:`~uniembed.serving.batch_queue.BatchQueue`
whole and are scored ``reranker.max_batch_tokens`` at a time, one request per batch, so a
short request queued behind a long one waits for one such batch, not for all of it.
"""

from __future__ import annotations

from typing import Any

from uniembed.models.truncation import truncate_text

Pair = tuple[str | None, Any]  # (text, decoded PIL image or None)
IMAGE_TOKENS = 256  # a rough budget for one image; images are size-limited at the ingress
CHARS_PER_TOKEN = 3  # a pessimistic average: more tokens estimated, smaller batches


def fit_pair(tokenizer: Any, pair: Pair, max_tokens: int) -> Pair:
    """``pair`` with its text cut to ``max_tokens`` tokens."""
    text, image = pair
    if not text:
        return pair
    return truncate_text(tokenizer, text, max_tokens)[0], image


def document_tokens(pair: Pair, max_text_tokens: int) -> int:
    """Estimated tokens of one document already cut to ``max_text_tokens`` (its cost in a
    rerank batch)."""
    text, image = pair
    text_tokens = min(max_text_tokens, len(text or "") // CHARS_PER_TOKEN + 1)
    return text_tokens + (IMAGE_TOKENS if image is not None else 0)
