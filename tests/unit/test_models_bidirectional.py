"""Bidirectional-attention mean pooling for decoder students (KaLM-Embedding-V2)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from uniembed.models import EmbedInput, load_embedder
from uniembed.models.pooling import is_bidirectional, mean_pool, set_bidirectional


def test_mean_pool_hand_computed_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 4.0]]


def _first_token_state(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    t = torch.tensor([ids])
    with torch.no_grad():
        return model(input_ids=t, attention_mask=torch.ones_like(t)).last_hidden_state[0, 0]


def test_bidirectional_decoder_sees_later_tokens_and_survives_save(tmp_path: Path) -> None:
    emb = load_embedder("tiny-text-lm")
    model = emb.model
    short, long = [5, 6], [5, 6, 7, 8]
    # Causal: the first token cannot see what follows it.
    assert torch.allclose(_first_token_state(model, short), _first_token_state(model, long))
    set_bidirectional(model)
    assert is_bidirectional(model)
    assert not torch.allclose(
        _first_token_state(model, short), _first_token_state(model, long), atol=1e-4
    )
    # Right padding still changes nothing: padded positions are masked, not attended.
    emb.settings = dataclasses.replace(emb.settings, pooling="mean")
    texts = [EmbedInput(text="a cat"), EmbedInput(text="a red square on a white background")]
    batch = emb.embed(texts)
    alone = emb.embed(texts[:1])
    assert batch[0] == pytest.approx(alone[0], abs=1e-5)
    # The flag travels with the weights' config.
    model.save_pretrained(str(tmp_path))
    from transformers import AutoModel

    again = AutoModel.from_pretrained(str(tmp_path))
    assert is_bidirectional(again)
    assert torch.allclose(_first_token_state(again, long), _first_token_state(model, long))
