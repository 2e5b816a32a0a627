"""Per-request error isolation inside a dynamic batch (pure functions, no Ray).

``@serve.batch`` fails every caller of a batch when the batch function raises. These
helpers run the batch and, if it fails, fall back to one call per item, so that the item
that caused the failure gets its error and every other item gets its result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from uniembed.models import EmbedInput
from uniembed.models.embedder import Embedder
from uniembed.models.micro_batches import embed_micro_batches

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ItemFailure:
    """One item of a batch failed: the error's message and whether the client caused it."""

    message: str
    client_error: bool


@dataclass(frozen=True)
class EmbedOutput:
    """The embedding (dim,) float32 of one input and the tokens it took."""

    vector: np.ndarray
    tokens: int


def _failure(exc: Exception) -> ItemFailure:
    # The embedder and the judge raise ValueError for inputs they cannot take (an image for
    # a text-only model, ...): those are the client's fault; anything else is ours.
    return ItemFailure(str(exc), client_error=isinstance(exc, ValueError))


def run_isolated(
    items: Sequence[T],
    batch_fn: Callable[[Sequence[T]], Sequence[R]],
    one_fn: Callable[[T], R],
) -> list[R | ItemFailure]:
    """``batch_fn(items)``; if it raises, ``one_fn`` per item, failures as ItemFailure."""
    try:
        results = list(batch_fn(items))
        if len(results) != len(items):
            raise RuntimeError(f"batch returned {len(results)} results for {len(items)} items")
        return results
    except Exception:  # noqa: BLE001 - retried one by one below to find the culprit
        pass
    out: list[R | ItemFailure] = []
    for item in items:
        try:
            out.append(one_fn(item))
        except Exception as e:  # noqa: BLE001 - reported to this item's caller only
            out.append(_failure(e))
    return out


def embed_isolated(
    embedder: Embedder, inputs: Sequence[EmbedInput], micro_batch_size: int | None = None
) -> list[EmbedOutput | ItemFailure]:
    """Embed ``inputs``, isolating failures per input, in input order: length-sorted
    micro-batches of ``micro_batch_size`` (None: all in one pass), as the embed job does
    (:func:`uniembed.models.micro_batches.embed_micro_batches`)."""
    return [
        _failure(r) if isinstance(r, Exception) else EmbedOutput(r.vector, r.tokens)
        for r in embed_micro_batches(embedder, inputs, micro_batch_size)
    ]


def count_inputs(lists: Sequence[Sequence[object]]) -> int:
    """The size of a batch of lists: the number of inputs in them."""
    return sum(len(part) for part in lists)


def split_like(flat: Sequence[R], lists: Sequence[Sequence[T]]) -> list[list[R]]:
    """``flat`` cut into consecutive pieces as long as each of ``lists``."""
    out: list[list[R]] = []
    start = 0
    for part in lists:
        out.append(list(flat[start : start + len(part)]))
        start += len(part)
    return out


def raise_failure(result: R | ItemFailure) -> R:
    """Return ``result``, or raise ValueError / RuntimeError for an ItemFailure."""
    if isinstance(result, ItemFailure):
        if result.client_error:
            raise ValueError(result.message)
        raise RuntimeError(result.message)
    return result
