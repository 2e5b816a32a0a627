"""Candidates packed into one sequence behind their query's prefix (the judge's fast path).

Instead of copying the prefix KV cache to a batch of padded candidate rows
(``judge_cache.expand_cache``), the candidates of a query are laid end to end in a single
row after the prefix::

    [prefix tokens][candidate 0 tokens][candidate 1 tokens]...

with an attention mask in which the prefix is causal, each candidate sees the whole prefix
and itself causally, and no candidate sees another. Each candidate's positions restart
where the prefix ends, so every candidate token computes exactly what it would after the
prefix alone. The prefix is computed once, nothing is padded and no cache is copied: on
CPU with a short text prefix this runs at the speed of a bare forward of the same tokens
(``benchmarks/judge_throughput.py``). When a query has more candidates than fit in one
forward, the later chunks run on the prefix's KV cache (batch 1, so no copy either).

The mask is a custom 4-D mask (transformers passes it to the attention as is), so this
path is only for attention implementations that read one (``sdpa``, ``eager``) and for
models whose every layer attends to the full sequence (no sliding window).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

MASKABLE_ATTENTION = ("sdpa", "eager")


def packed_rows(batch_values: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """Concatenate the first ``lengths[i]`` entries of each right-padded row into one row.

    Args:
        batch_values: (b, s) token-aligned values (ids, token types) or (..., b, s)
            positions (M-RoPE has a leading axis of 3).

    Returns:
        (1, sum(lengths)) or (..., 1, sum(lengths)).
    """
    parts = [batch_values[..., i, :n] for i, n in enumerate(lengths)]
    return torch.cat(parts, dim=-1).unsqueeze(-2)


def candidate_lengths(suffix_mask: torch.Tensor) -> list[int]:
    """Real tokens per row of a right-padded (b, s) mask; ValueError for an empty row."""
    lengths = suffix_mask.long().sum(dim=1).tolist()
    if any(n < 1 for n in lengths):
        raise ValueError("a sequence in the batch has no tokens")
    return lengths


def allowed_attention(
    prefix_len: int, lengths: Sequence[int], *, with_prefix: bool
) -> torch.Tensor:
    """Which keys each query token may attend to: (q, prefix_len + sum(lengths)) bool.

    Keys are the prefix followed by the packed candidates. The query rows are all tokens
    (``with_prefix``: the prefix is computed in the same forward) or only the candidates'
    (the prefix comes from the KV cache).
    """
    n = len(lengths)
    seg = torch.cat(
        [
            torch.full((prefix_len,), -1, dtype=torch.long),
            torch.repeat_interleave(torch.arange(n), torch.tensor(lengths, dtype=torch.long)),
        ]
    )
    idx = torch.arange(seg.numel())
    causal = idx.unsqueeze(0) <= idx.unsqueeze(1)
    same_or_prefix = (seg.unsqueeze(1) == seg.unsqueeze(0)) | (seg.unsqueeze(0) == -1)
    allowed = causal & same_or_prefix
    return allowed if with_prefix else allowed[prefix_len:]


def attention_mask_4d(
    allowed: torch.Tensor, implementation: str, dtype: torch.dtype
) -> torch.Tensor:
    """``allowed`` (q, k) as the (1, 1, q, k) mask the attention implementation reads:
    boolean for sdpa, additive (0 / dtype min) for eager."""
    if implementation == "sdpa":
        return allowed[None, None]
    if implementation == "eager":
        bias = torch.zeros(allowed.shape, dtype=dtype)
        return bias.masked_fill(~allowed, torch.finfo(dtype).min)[None, None]
    raise ValueError(
        f"attention {implementation!r} takes no custom mask; use one of {MASKABLE_ATTENTION}"
    )


def last_tokens(first: int, lengths: Sequence[int]) -> torch.Tensor:
    """(n,) index of each candidate's last token in a forward whose candidates start at
    ``first`` (the prefix length when the prefix is in the same forward, else 0)."""
    ends = torch.cumsum(torch.tensor(lengths, dtype=torch.long), dim=0)
    return ends - 1 + first


def attention_implementation(model: torch.nn.Module) -> str:
    """The attention implementation of ``model``'s language decoder ("sdpa", "eager", ...)."""
    get_decoder = getattr(model, "get_decoder", None)
    decoder = get_decoder() if callable(get_decoder) else model
    config = getattr(decoder, "config", model.config)
    return str(getattr(config, "_attn_implementation", None) or "eager")
