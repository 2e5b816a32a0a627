"""The reranker's trainable model and its training step.

The reranker is a causal (M)LLM *with* its LM head (``JudgeScorer.load``); LoRA adapts the
projections of its body (``model.model``) through ``training.lora.prepare_trainable``, so
the LoRA / DoRA layers sit exactly where the embedder's do, and the LM head, the vision
tower and the projector stay frozen.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from uniembed.losses.rerank import IGNORE_INDEX, RerankGroupLoss, RerankLMLoss
from uniembed.reranker.cache import expand_cache
from uniembed.reranker.data import RerankChat
from uniembed.reranker.tokens import ChatEncoder, RerankBatch, SharedPrefixBatch
from uniembed.training.lora import body_of, prepare_trainable, target_modules
from uniembed.training.train_config import LoraSection

BODY = "model"  # the attribute of a *ForCausalLM / *ForConditionalGeneration holding the body


def reranker_targets(model: nn.Module) -> list[str]:
    """Full names of the LM projections LoRA adapts in a causal (M)LLM with an LM head."""
    return [f"{BODY}.{name}" for name in target_modules(body_of(model, BODY))]


def prepare_reranker(model: nn.Module, lora: LoraSection) -> nn.Module:
    """:func:`~uniembed.training.lora.prepare_trainable` on the body under the LM head:
    LoRA/DoRA on :func:`reranker_targets`, or (``lora.enabled=False``) the whole LM body."""
    return prepare_trainable(model, lora, body=BODY)


def answer_aligned(inputs: dict[str, Tensor], labels: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """Move each right-padded row to the right end (left padding), so that every row's
    answer ends at the last position, and cut ``labels`` to the answer window.

    Returns ``(inputs, window)`` where ``window`` is ``labels[:, -(n + 1):]`` of the aligned
    batch, ``n`` the longest answer: the model then needs logits at those ``n + 1`` positions
    only (``logits_to_keep``), not at every prompt token. Token-aligned (b, t) integer tensors
    are moved with the ids; image tensors are untouched. Rotary positions are relative, so
    scores do not change.
    """
    mask = inputs["attention_mask"]
    b, t = mask.shape
    shift = t - mask.sum(dim=1, keepdim=True)
    index = (torch.arange(t, device=mask.device).unsqueeze(0) - shift) % t

    def align(x: Tensor) -> Tensor:
        return torch.gather(x, 1, index)

    out = {
        k: align(v) if v.dim() == 2 and v.shape == (b, t) and not v.is_floating_point() else v
        for k, v in inputs.items()
    }
    labels = align(labels)
    answer = (labels != IGNORE_INDEX).any(dim=0).nonzero()
    first = int(answer.min()) if answer.numel() else t - 1
    return out, labels[:, max(first - 1, 0) :]


def _groups(chats: Sequence[RerankChat]) -> list[list[RerankChat]]:
    """Runs of consecutive chats with the same query (a row's pairwise chats)."""
    out: list[list[RerankChat]] = []
    for chat in chats:
        if out and out[-1][0].query == chat.query and chat.kind != "listwise":
            out[-1].append(chat)
        else:
            out.append([chat])
    return out


def plan_forwards(
    encoder: ChatEncoder,
    chats: Sequence[RerankChat],
    chats_per_forward: int = 0,
    share_prefix: bool = True,
) -> list[RerankBatch | SharedPrefixBatch]:
    """The encoded forward passes of a step: each run of a query's pairwise chats on one
    shared prefix (when ``share_prefix`` and :meth:`ChatEncoder.can_share`), the other
    chats ``chats_per_forward`` at a time (0: all in one)."""
    shared: list[RerankBatch | SharedPrefixBatch] = []
    rest: list[RerankChat] = []
    for group in _groups(chats) if share_prefix else [list(chats)]:
        if share_prefix and encoder.can_share(group):
            shared.append(encoder.encode_shared(group))
        else:
            rest.extend(group)
    step = chats_per_forward if chats_per_forward > 0 else max(len(rest), 1)
    return shared + [encoder.encode(rest[i : i + step]) for i in range(0, len(rest), step)]


def answer_logits(
    model: nn.Module, batch: RerankBatch | SharedPrefixBatch
) -> tuple[Tensor, Tensor]:
    """(logits, labels) over the answer window of ``batch`` (:func:`answer_aligned`).

    A :class:`SharedPrefixBatch` runs its prefix once with the KV cache kept, then every
    suffix on a copy of that cache, positions continuing after the prefix: the same
    computation as the chats' full prompts, with the prefix's share done once (gradients
    flow into the prefix through the cache).
    """
    if isinstance(batch, RerankBatch):
        inputs, window = answer_aligned(batch.inputs, batch.labels)
        return model(**inputs, logits_to_keep=window.shape[1]).logits, window
    prefix = model(**batch.prefix, use_cache=True, logits_to_keep=1).past_key_values
    p = batch.prefix["input_ids"].shape[1]
    inputs, window = answer_aligned(batch.suffix, batch.labels)
    mask = inputs["attention_mask"]
    c, t = mask.shape
    shift = t - mask.sum(dim=1, keepdim=True)
    positions = (p + torch.arange(t, device=mask.device).unsqueeze(0) - shift).clamp(min=0)
    ones = torch.ones(c, p, dtype=mask.dtype, device=mask.device)
    out = model(
        input_ids=inputs["input_ids"],
        attention_mask=torch.cat([ones, mask], dim=1),
        position_ids=positions,
        past_key_values=expand_cache(prefix, c, model.config),
        logits_to_keep=window.shape[1],
    )
    return out.logits, window


def answer_margins(logits: Tensor, window: Tensor, yes_id: int, no_id: int) -> Tensor:
    """(b,) float: ``l_yes - l_no`` of each row of an answer window (:func:`answer_logits`)
    at the position that predicts the row's first answer token (what the judge's P(Yes)
    reads); 0 for a row without an answer."""
    rows, first, has = first_answer(window[:, 1:])
    at = logits[rows, first]
    return (at[:, yes_id] - at[:, no_id]).float() * has


def first_answer(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(rows, first, has) of ``labels`` (b, t): each row's index, the position of its first
    answer token (0 when it has none) and whether it has one."""
    answer = labels != IGNORE_INDEX
    has = answer.any(dim=1)
    first = torch.where(has, answer.float().argmax(dim=1), 0)
    return torch.arange(labels.shape[0], device=labels.device), first, has


@dataclass
class RankTerm:
    """The optional ranking term of a reranker step: ``weight`` x :class:`RerankGroupLoss`
    over each query's pairwise chats, read at the scorer's Yes/No token ids."""

    loss: RerankGroupLoss
    weight: float
    yes_id: int
    no_id: int

    def targets(self, batch: RerankBatch | SharedPrefixBatch) -> tuple[Tensor, Tensor]:
        """(positive, groups) of ``batch``'s rows, read from its labels before the forward:
        whether a row's first answer token is Yes, and its query group (-1 for a row
        without an answer or a batch without groups, which take no part)."""
        rows, first, has = first_answer(batch.labels)
        positive = (batch.labels[rows, first] == self.yes_id) & has
        if batch.groups is None:
            return positive, torch.full_like(first, -1)
        return positive, torch.where(has, batch.groups, -1)


def rerank_step(
    model: nn.Module,
    encoder: ChatEncoder,
    chats: Sequence[RerankChat],
    loss_fn: RerankLMLoss,
    chats_per_forward: int = 0,
    autocast: AbstractContextManager[Any] | None = None,
    share_prefix: bool = True,
    rank: RankTerm | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Forward and backward of one step over ``chats``; returns (loss, stats).

    The loss is the mean cross-entropy over *all* answer tokens of ``chats``, also when
    they run in several forward passes (:func:`plan_forwards`): each pass's mean is
    weighted by its share of the answer tokens, so the gradient equals the one-forward one.
    Logits are computed at the answer positions only (:func:`answer_aligned`). With
    ``rank``, ``rank.weight`` x the mean :class:`RerankGroupLoss` over the step's query
    groups is added, each pass weighted by its share of the groups (a query's pairwise
    chats share one pass when they share a prefix; a group split over passes by
    ``chats_per_forward`` is ranked within each part that holds both answers).
    """
    batches = plan_forwards(encoder, chats, chats_per_forward, share_prefix)
    total = sum(b.n_answer_tokens for b in batches)
    targets = [rank.targets(b) if rank is not None else None for b in batches]
    ranked = [rank.loss.ranked_groups(*t) if rank and t else [] for t in targets]
    all_groups = sum(len(r) for r in ranked)
    value = torch.zeros(())
    rank_value = torch.zeros(())
    correct = counted = ranked_first = 0
    for batch, target, groups in zip(batches, targets, ranked):
        with autocast if autocast is not None else nullcontext():
            logits, window = answer_logits(model, batch)
        loss = loss_fn(logits, window) * (batch.n_answer_tokens / max(total, 1))
        if rank is not None and target is not None and groups:
            positive, ids = target
            margins = answer_margins(logits, window, rank.yes_id, rank.no_id)
            term = rank.loss(margins, positive, ids) * (len(groups) / all_groups)
            loss = loss + rank.weight * term
            rank_value += term.detach().cpu()
            with torch.no_grad():
                for g in groups:
                    member = ids == g
                    ranked_first += int(bool(positive[member][margins[member].argmax()]))
        loss.backward()
        value += loss.detach().cpu()
        with torch.no_grad():
            # Answer tokens predicted right (position j predicts token j + 1).
            labels = window[:, 1:]
            keep = labels != IGNORE_INDEX
            pred = logits[:, :-1].argmax(dim=-1)
            correct += int((pred[keep] == labels[keep]).sum())
            counted += int(keep.sum())
    stats = {"answer_token_acc": correct / max(counted, 1), "answer_tokens": float(total)}
    if rank is not None:
        stats["rank_loss"] = float(rank_value)
        stats["rank_top1"] = ranked_first / max(all_groups, 1)
    return value, stats
