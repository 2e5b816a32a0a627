"""Shared-prefix plumbing for the judge: the prefix KV cache, positions and last-token logits.

Positions are always passed explicitly for cached forwards. For plain decoders the suffix
continues at ``prefix_length``. Qwen2-VL style models use 3-D M-RoPE positions
(temporal, height, width); their layout (``get_rope_index``) places tokens left to right
with a running offset, text advancing all three axes by one and an image advancing them
by ``max(h, w) / merge``, and every position is that offset plus a term local to the
segment. Hence the positions of a suffix inside the full sequence are the suffix's own
``get_rope_index`` positions plus the prefix's next position (``max + 1``, the prefix
ends with a text token), whatever images the prefix or the suffix hold. The equality of
cached and full-sequence scores is pinned by the unit tests.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def rope_index_fn(model: Any) -> Any | None:
    """The model's M-RoPE layout function (``get_rope_index``), or None for 1-D RoPE."""
    inner = getattr(model, "model", None)
    return getattr(inner, "get_rope_index", None)


def positions(
    rope_index: Any | None,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    image_token_id: int | None,
    image_grid_thw: torch.Tensor | None,
    offset: int,
) -> torch.Tensor:
    """Position ids of a right-padded segment that starts at ``offset`` in its sequence.

    Args:
        input_ids: (b, s) segment tokens (image placeholders already expanded).
        attention_mask: (b, s), 1 for real tokens.
        image_grid_thw: (n_images, 3) grids of the segment's images in order, or None.

    Returns:
        (b, s) for 1-D RoPE, (3, b, s) for M-RoPE. Padding gets arbitrary positions (it is
        masked out of attention and never read).
    """
    if rope_index is None:
        local = torch.arange(input_ids.shape[1], device=input_ids.device)
        return (local + offset).unsqueeze(0).expand(input_ids.shape[0], -1)
    types = torch.zeros_like(input_ids, dtype=torch.int)
    if image_token_id is not None:
        types = (input_ids == image_token_id).int()
    local, _ = rope_index(
        input_ids,
        mm_token_type_ids=types,
        image_grid_thw=image_grid_thw,
        attention_mask=attention_mask,
    )
    return local + offset


def next_position(prefix_positions: torch.Tensor) -> int:
    """The position the token after the prefix takes: ``max + 1`` (1-D or M-RoPE)."""
    return int(prefix_positions.max().item()) + 1


def can_share(cache: Any) -> bool:
    """True when every layer of ``cache`` is a plain full-attention ``DynamicLayer``.

    Sliding-window and linear-attention layers keep a truncated or recurrent state that
    cannot be copied to a batch and extended like full keys/values; such models are
    scored one pair at a time.
    """
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def expand_cache(prefix: Any, batch: int, config: Any, length: int | None = None) -> DynamicCache:
    """A fresh ``DynamicCache`` holding ``prefix``'s keys/values (1, heads, p, dim) repeated
    to ``batch`` rows; ``prefix`` itself is left untouched for the next batch. ``length``
    keeps only the first tokens of ``prefix`` (default: all).

    The expanded tensors are views; ``DynamicLayer.update`` concatenates the suffix keys
    onto them, which materialises a new tensor per layer, so no batch writes into another.
    With ``batch`` 1 that concatenation is the only copy.
    """
    data = [
        (
            layer.keys[:, :, :length].expand(batch, -1, -1, -1),
            layer.values[:, :, :length].expand(batch, -1, -1, -1),
        )
        for layer in prefix.layers
    ]
    return DynamicCache(ddp_cache_data=data, config=config)


def last_token_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """(b, 1) column of each row's last real token in a right-padded (b, s) mask.

    Passed as ``logits_to_keep`` (a 2-D integer tensor holds per-row positions), so the
    model projects only that token onto the vocabulary.
    """
    last = attention_mask.long().sum(dim=1) - 1
    if bool((last < 0).any()):
        raise ValueError("a sequence in the batch has no tokens")
    return last.unsqueeze(1)
