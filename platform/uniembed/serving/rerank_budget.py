"""Bounding what one rerank request can cost, so that a long one cannot hold others up.

Texts are cut to ``reranker.max_text_tokens`` tokens before they are queued, and the
Reranker's dynamic batch is bounded in (estimated) tokens rather than in requests: a long
request fills a batch alone, and short requests queued behind it wait for at most that one
batch instead of sharing it.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def pair_cost(pair: Pair) -> int:
    """Estimated tokens of one (text, image) pair."""
    text, image = pair
    return len(text or "") // CHARS_PER_TOKEN + 1 + (IMAGE_TOKENS if image is not None else 0)


def request_cost(query: Pair, documents: Sequence[Pair], budget: int) -> int:
    """Estimated tokens a rerank request takes (query once, as its prefix is shared, plus
    every document), at most ``budget`` so that a single request always forms a batch."""
    return min(budget, pair_cost(query) + sum(pair_cost(d) for d in documents))


def batch_cost(requests: Sequence[tuple[Pair, list[Pair], int]]) -> int:
    """``serve.batch``'s ``batch_size_fn``: the summed cost of queued ``(query, documents,
    cost)`` requests."""
    return sum(r[2] for r in requests)
