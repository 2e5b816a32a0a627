"""The reranker's trainable model and its training step.

The reranker is a causal (M)LLM *with* its LM head (``JudgeScorer.load``); LoRA adapts the
projections of its body (``model.model``) through ``training.lora.prepare_trainable``, so
the LoRA / DoRA layers sit exactly where the embedder's do, and the LM head, the vision
tower and the projector stay frozen.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from uniembed.losses.rerank import IGNORE_INDEX, RerankLMLoss
from uniembed.reranker.data import RerankChat
from uniembed.reranker.tokens import ChatEncoder
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


def rerank_step(
    model: nn.Module,
    encoder: ChatEncoder,
    chats: Sequence[RerankChat],
    loss_fn: RerankLMLoss,
    chats_per_forward: int = 0,
    autocast: AbstractContextManager[Any] | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Forward and backward of one step over ``chats``; returns (loss, stats).

    The loss is the mean cross-entropy over *all* answer tokens of ``chats``, also when
    they run ``chats_per_forward`` at a time (0: all in one forward): each chunk's mean is
    weighted by its share of the answer tokens, so the gradient equals the one-forward one.
    Logits are computed at the answer positions only (:func:`answer_aligned`).
    """
    step = chats_per_forward if chats_per_forward > 0 else len(chats)
    batches = [encoder.encode(chats[i : i + step]) for i in range(0, len(chats), step)]
    total = sum(b.n_answer_tokens for b in batches)
    value = torch.zeros(())
    correct = counted = 0
    for batch in batches:
        inputs, window = answer_aligned(batch.inputs, batch.labels)
        with autocast if autocast is not None else nullcontext():
            logits = model(**inputs, logits_to_keep=window.shape[1]).logits
        loss = loss_fn(logits, window) * (batch.n_answer_tokens / max(total, 1))
        loss.backward()
        value += loss.detach().cpu()
        with torch.no_grad():
            # Answer tokens predicted right (position j predicts token j + 1).
            labels = window[:, 1:]
            keep = labels != IGNORE_INDEX
            pred = logits[:, :-1].argmax(dim=-1)
            correct += int((pred[keep] == labels[keep]).sum())
            counted += int(keep.sum())
    return value, {"answer_token_acc": correct / max(counted, 1), "answer_tokens": float(total)}
