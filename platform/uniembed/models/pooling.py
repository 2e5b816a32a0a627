"""Pooling of token hidden states into one vector per sequence.

All poolers take hidden states (batch, seq, dim) and the attention mask (batch, seq) with 1
for real tokens, work for left or right padding, and return (batch, dim) in float32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hidden state of the last real (mask == 1) token of each row: (batch, dim).

    The index is taken from the mask rather than assuming a padding side, so left- and
    right-padded batches give the same vectors.
    """
    seq_len = mask.shape[1]
    positions = torch.arange(seq_len, device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), positions, torch.full_like(positions, -1)).amax(dim=1)
    if bool((last < 0).any()):
        raise ValueError("last_token_pool: a row of the attention mask has no real token")
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, last].float()


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention-mask weighted mean over tokens: (batch, dim).

    Same arithmetic as sentence-transformers' mean pooling (denominator clamped at 1e-9).
    """
    weights = mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.float() * weights).sum(dim=1)
    return summed / weights.sum(dim=1).clamp(min=1e-9)


POOLERS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "last": last_token_pool,
    "mean": mean_pool,
}


def pool_and_normalize(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool with the named pooler (``last`` or ``mean``) and L2-normalise: (batch, dim) float32."""
    if pooling not in POOLERS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {sorted(POOLERS)}")
    return F.normalize(POOLERS[pooling](hidden, mask), p=2, dim=-1)


def set_bidirectional(model: torch.nn.Module) -> None:
    """Let every token of a decoder attend to every other real token (KaLM-Embedding-V2's
    bidirectional attention for decoder students, pooled by :func:`mean_pool`).

    transformers builds a padding-only (bidirectional) mask instead of the causal one when
    the config says ``is_causal: false``; the flag is saved with the config, so an
    exported model is bidirectional wherever it is loaded. Changes ``model`` in place.
    """
    config = model.config
    for cfg in {id(c): c for c in (config, config.get_text_config())}.values():
        cfg.is_causal = False


def is_bidirectional(model: torch.nn.Module) -> bool:
    """True when :func:`set_bidirectional` was applied (or the config says so)."""
    return not getattr(model.config.get_text_config(), "is_causal", True)
