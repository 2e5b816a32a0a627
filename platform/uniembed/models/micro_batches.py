"""Embedding many inputs at once: length-sorted micro-batches, one failing input failing alone.

The embed job's worker (``embed/worker.py``) and the serve embedder (``serving/batching.py``)
both embed through :func:`embed_micro_batches`. Inputs of similar token length share a
micro-batch, so a short input is not padded to the longest of a large batch (padded
positions cost as much compute as real ones). When a micro-batch fails, its inputs run one
by one, so the input that caused the failure gets the error and the others their vectors.

Embedders of text-only families that offer ``token_ids``/``embed_ids``
(:class:`~uniembed.models.transformer_embedder.TransformerEmbedder`) tokenise all the inputs
in one call and their micro-batches are padded from those ids: each text is tokenised once,
not three times (length, prompt, batch), with the same tensors and vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from uniembed.models.embedder import Embedder
from uniembed.models.inputs import EmbedInput


@dataclass(frozen=True)
class Embedded:
    """One input's embedding (dim,) float32, the tokens it took, and the tokens it was
    padded to (the longest input of its micro-batch)."""

    vector: np.ndarray
    tokens: int
    padded_tokens: int


def plan_micro_batches(lengths: list[int], size: int, sort: bool) -> list[list[int]]:
    """Split row positions into micro-batches of at most ``size``.

    With ``sort`` the rows are ordered by length first (stable), so rows of similar length
    share a batch and padding shrinks; the caller restores the original order.
    """
    order = (
        sorted(range(len(lengths)), key=lambda i: lengths[i]) if sort else list(range(len(lengths)))
    )
    return [order[i : i + size] for i in range(0, len(order), size)]


def _embed_group(
    embed: Callable[[list[Any]], Sequence[np.ndarray]], items: list[Any]
) -> list[np.ndarray | Exception]:
    """Embed a micro-batch; if it fails, embed one by one to find the culprit."""
    try:
        vectors = list(embed(items))
        if len(vectors) != len(items):
            raise RuntimeError(f"embedded {len(vectors)} vectors for {len(items)} inputs")
        return vectors
    except Exception as e:  # noqa: BLE001 - isolated below
        if len(items) == 1:
            return [e]
    out: list[np.ndarray | Exception] = []
    for item in items:
        try:
            out.append(embed([item])[0])
        except Exception as e:  # noqa: BLE001 - recorded for this input only
            out.append(e)
    return out


def _token_ids(embedder: Embedder, inputs: Sequence[EmbedInput]) -> list[list[int]] | None:
    """Every input's token ids from one tokenizer call, or None: the embedder does not
    offer them (MLLMs, other embedders) or an input failed (each is then measured alone,
    so that the failure is its own)."""
    token_ids = getattr(embedder, "token_ids", None)
    if token_ids is None or not hasattr(embedder, "embed_ids") or not inputs:
        return None
    if any(not isinstance(inp, EmbedInput) or inp.has_image for inp in inputs):
        return None
    try:
        return token_ids(inputs)
    except Exception:  # noqa: BLE001 - the per-input path names the bad one
        return None


def embed_micro_batches(
    embedder: Embedder,
    inputs: Sequence[EmbedInput],
    micro_batch_size: int | None = None,
    sort_by_length: bool = True,
) -> list[Embedded | Exception]:
    """Embed ``inputs`` ``micro_batch_size`` at a time (None: all in one pass), sorted by
    token length unless ``sort_by_length`` is False; in input order, an input that could
    not be measured or embedded as its exception."""
    results: list[Embedded | Exception | None] = [None] * len(inputs)
    ids = _token_ids(embedder, inputs)
    embed: Callable[[list[Any]], Sequence[np.ndarray]]
    if ids is not None:
        lengths = {i: len(row) for i, row in enumerate(ids)}
        items: Sequence[Any] = ids
        embed = embedder.embed_ids  # type: ignore[attr-defined]
    else:
        lengths = {}
        for i, inp in enumerate(inputs):
            try:
                lengths[i] = embedder.token_length(inp)
            except Exception as e:  # noqa: BLE001 - e.g. an image for a text-only model
                results[i] = e
        items, embed = inputs, embedder.embed
    positions = list(lengths)
    size = micro_batch_size or max(1, len(positions))
    for group in plan_micro_batches([lengths[i] for i in positions], size, sort_by_length):
        idx = [positions[g] for g in group]
        longest = max(lengths[i] for i in idx)
        for i, res in zip(idx, _embed_group(embed, [items[i] for i in idx]), strict=True):
            if isinstance(res, Exception):
                results[i] = res
            else:
                results[i] = Embedded(np.asarray(res, dtype=np.float32), lengths[i], longest)
    return [r for r in results if r is not None]
