"""Embedding many inputs at once: length-sorted micro-batches, one failing input failing alone.

The embed job's worker (``embed/worker.py``) and the serve embedder (``serving/batching.py``)
both embed through :func:`embed_micro_batches`. Inputs of similar token length share a
micro-batch, so a short input is not padded to the longest of a large batch (padded
positions cost as much compute as real ones). When a micro-batch fails, its inputs run one
by one, so the input that caused the failure gets the error and the others their vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


def _embed_group(embedder: Embedder, inputs: list[EmbedInput]) -> list[np.ndarray | Exception]:
    """Embed a micro-batch; if it fails, embed one by one to find the culprit."""
    try:
        vectors = list(embedder.embed(inputs))
        if len(vectors) != len(inputs):
            raise RuntimeError(f"embedded {len(vectors)} vectors for {len(inputs)} inputs")
        return vectors
    except Exception as e:  # noqa: BLE001 - isolated below
        if len(inputs) == 1:
            return [e]
    out: list[np.ndarray | Exception] = []
    for inp in inputs:
        try:
            out.append(embedder.embed([inp])[0])
        except Exception as e:  # noqa: BLE001 - recorded for this input only
            out.append(e)
    return out


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
    lengths: dict[int, int] = {}
    for i, inp in enumerate(inputs):
        try:
            lengths[i] = embedder.token_length(inp)
        except Exception as e:  # noqa: BLE001 - e.g. an image for a text-only model
            results[i] = e
    positions = list(lengths)
    size = micro_batch_size or max(1, len(positions))
    for group in plan_micro_batches([lengths[i] for i in positions], size, sort_by_length):
        idx = [positions[g] for g in group]
        longest = max(lengths[i] for i in idx)
        for i, res in zip(idx, _embed_group(embedder, [inputs[i] for i in idx]), strict=True):
            if isinstance(res, Exception):
                results[i] = res
            else:
                results[i] = Embedded(np.asarray(res, dtype=np.float32), lengths[i], longest)
    return [r for r in results if r is not None]
