"""One training step's forward and backward, for both stages.

Every rank encodes its own rows in one forward pass (queries, positives and negatives
together: one forward per step keeps DDP-style hooks out and lets GradCache chunk across
the whole list), gathers the representations of all ranks with
:func:`~uniembed.training.gather_with_grad` and computes the *same* global loss. The
gradients of the ranks are then summed (not averaged: see ``gather.py``) by the loop, which
gives exactly the single-process gradient of the global batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from uniembed.data import schema as S
from uniembed.data.images import load_image
from uniembed.losses import DistillLoss, PairBatch, PairLoss
from uniembed.models import EmbedInput
from uniembed.training.gather import gather_with_grad
from uniembed.training.gradcache import GradCache
from uniembed.training.metrics import similarity_stats

Encode = Callable[[Sequence[EmbedInput]], Tensor]


@dataclass
class TuneBatch:
    """A rank's share of a stage-2 batch, ready to encode.

    ``inputs`` holds the ``n`` queries, then the ``n`` positives, then the real negatives
    row by row; ``mask (n, k)`` says which of the ``k`` negative slots of a row are real,
    ``scores (n, 1 + k)`` are the judge scores, positive first.
    """

    inputs: list[EmbedInput]
    n: int
    mask: Tensor
    scores: Tensor
    ids: list[str]


def _input(text: Any, image_uri: Any, record: str, instruction: Any = None) -> EmbedInput:
    image = load_image(None, image_uri, record=record) if image_uri else None
    return EmbedInput(text=text or None, image=image, instruction=instruction or None)


def tune_batch(rows: list[dict[str, Any]], num_negatives: int) -> TuneBatch:
    """Turn rows (``TUNE_SCHEMA`` dicts) into a :class:`TuneBatch` using at most
    ``num_negatives`` mined negatives per row (the first ones: the mine job stores them in
    the order it selected them)."""
    queries, positives, negatives = [], [], []
    k = num_negatives
    mask = torch.zeros(len(rows), k, dtype=torch.bool)
    scores = torch.zeros(len(rows), 1 + k)
    for i, row in enumerate(rows):
        src = row[S.SOURCE]
        queries.append(_input(row[S.QUERY_TEXT], row[S.QUERY_IMAGE], src, row[S.QUERY_INSTRUCTION]))
        positives.append(_input(row[S.POS_TEXT], row[S.POS_IMAGE], src))
        scores[i, 0] = float(row[S.POS_SCORE])
        triples = list(zip(row[S.NEG_TEXTS], row[S.NEG_IMAGES], row[S.NEG_SCORES]))[:k]
        for j, (text, image, score) in enumerate(triples):
            negatives.append(_input(text, image, src))
            mask[i, j] = True
            scores[i, 1 + j] = float(score)
    ids = [str(r[S.QUERY_ID]) for r in rows]
    return TuneBatch(queries + positives + negatives, len(rows), mask, scores, ids)


def _gather_mask(mask: Tensor) -> Tensor:
    # gloo cannot all-gather bool tensors.
    return gather_with_grad(mask.to(torch.uint8)).bool()


def run_backward(
    encode: Encode, loss_fn: Callable[[Tensor], Tensor], inputs: list[EmbedInput], chunk: int
) -> Tensor:
    """Encode ``inputs``, compute ``loss_fn(reps (len(inputs), d))`` and backpropagate;
    with ``chunk > 0`` through GradCache, ``chunk`` inputs per forward. Returns the loss."""
    if chunk > 0:
        cache = GradCache(lambda c: encode(c["inputs"]), loss_fn, chunk_size=chunk)
        return cache.step({"inputs": inputs})
    loss = loss_fn(encode(inputs))
    loss.backward()
    return loss.detach()


def grouped_encode(encode: Encode, bounds: Sequence[int], chunk: int = 0) -> Encode:
    """``encode`` run once per group ``inputs[bounds[i]:bounds[i + 1]]`` of text-only
    inputs, the results concatenated in order; a group longer than ``chunk`` (> 0) is
    encoded in forwards of ``chunk`` inputs of similar length (sorted by text length, the
    results put back in order).

    A short query padded to the length of the longest definition in one forward costs as
    much as that definition; encoding queries, positives and negatives apart pads each
    group to its own longest (what sentence-transformers does), and 8 negatives per row
    in chunks of a row count pad each chunk to its own longest. Inputs with images keep
    one forward (their length is the image's, not the text's)."""

    def run(inputs: Sequence[EmbedInput]) -> Tensor:
        if any(inp.image is not None for inp in inputs) or len(inputs) != bounds[-1]:
            return encode(inputs)
        parts = [
            _encode_by_length(encode, inputs[a:b], chunk)
            for a, b in zip(bounds[:-1], bounds[1:])
            if b > a
        ]
        return torch.cat(parts, dim=0)

    return run


def _encode_by_length(encode: Encode, group: Sequence[EmbedInput], chunk: int) -> Tensor:
    if chunk <= 0 or len(group) <= chunk:
        return encode(group)
    order = sorted(range(len(group)), key=lambda i: len(group[i].text or ""))
    reps = torch.cat(
        [encode([group[i] for i in order[s : s + chunk]]) for s in range(0, len(order), chunk)]
    )
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return reps[inverse.to(reps.device)]


def tune_step(
    encode: Encode, loss: PairLoss, batch: TuneBatch, chunk: int
) -> tuple[Tensor, dict[str, float]]:
    """Forward and backward of one stage-2 step on this rank; returns (loss, similarity
    statistics of the global batch). The loss is called as it declares (``on_batch``)."""
    n, k = batch.n, batch.mask.shape[1]
    stats: dict[str, float] = {}
    if chunk == 0:  # GradCache chunks the list itself
        encode = grouped_encode(encode, [0, n, 2 * n, len(batch.inputs)], chunk=max(n, 1))

    def loss_fn(reps: Tensor) -> Tensor:
        q, p, flat = reps[:n], reps[n : 2 * n], reps[2 * n :]
        slots = batch.mask.reshape(-1).nonzero().squeeze(1).to(reps.device)
        d = reps.shape[1]
        negs = reps.new_zeros(n * k, d).index_copy(0, slots, flat).view(n, k, d)
        gq, gp, gn = gather_with_grad(q), gather_with_grad(p), gather_with_grad(negs)
        gm = _gather_mask(batch.mask.to(reps.device))
        gs = gather_with_grad(batch.scores.to(reps.device))
        stats.update(similarity_stats(gq, gp, gn, gm))
        return loss.on_batch(PairBatch(gq, gp, gn, gm, gs))

    value = run_backward(encode, loss_fn, batch.inputs, chunk)
    return value, stats


def distill_step(
    encode: Encode, loss: DistillLoss, texts: list[str], teacher: Tensor, chunk: int
) -> tuple[Tensor, dict[str, float]]:
    """Forward and backward of one stage-1 step: ``texts`` are this rank's rows and
    ``teacher (n, d')`` their teacher embeddings."""
    inputs = [EmbedInput(text=t) for t in texts]
    stats: dict[str, float] = {}

    def loss_fn(reps: Tensor) -> Tensor:
        student = gather_with_grad(reps)
        target = gather_with_grad(teacher.to(reps.device, torch.float32))
        with torch.no_grad():
            s = torch.nn.functional.normalize(student.float(), dim=-1)
            t = torch.nn.functional.normalize(target, dim=-1)
            # How far the student's similarity matrix is from the teacher's.
            stats["sim_gap"] = float((s @ s.T - t @ t.T).abs().mean())
        return loss(student, target)

    return run_backward(encode, loss_fn, inputs, chunk), stats
