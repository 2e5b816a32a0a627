"""LoRA/DoRA targets per family: every projection of the language model, nothing else."""

from __future__ import annotations

import copy

import pytest
from torch import nn

from uniembed.training.lora import (
    in_top_layers,
    language_model_prefix,
    layer_index,
    prepare_trainable,
    target_modules,
)
from uniembed.training.train_config import LoraSection

FAMILIES = ["tiny_qwen2_vl", "tiny_llava", "tiny_text_lm", "minilm"]


def _lm_linears(model: nn.Module) -> set[str]:
    prefix = language_model_prefix(model)
    return {
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and n.startswith(prefix) and ".pooler." not in f".{n}"
    }


@pytest.mark.parametrize("fixture", FAMILIES)
def test_every_language_model_projection_is_targeted(fixture: str, request) -> None:
    model = request.getfixturevalue(fixture).model
    targets = set(target_modules(model))
    assert targets == _lm_linears(model)
    leaves = {t.rsplit(".", 1)[-1] for t in targets}
    if fixture == "minilm":
        assert leaves == {"query", "key", "value", "dense"}
    else:
        # attention q/k/v/o and the MLP gate/up/down: no MLP projection missed
        assert leaves == {
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        }
    assert not any(
        t.startswith(("visual", "vision_tower", "multi_modal_projector")) for t in targets
    )


@pytest.mark.parametrize("fixture", ["tiny_qwen2_vl", "tiny_llava"])
def test_dora_trains_only_adapters_and_freezes_vision(fixture: str, request) -> None:
    model = copy.deepcopy(request.getfixturevalue(fixture).model)
    peft_model = prepare_trainable(model, LoraSection())
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("lora_magnitude_vector" in n for n in trainable)  # DoRA is on by default
    assert all("language_model" in n for n in trainable)
    cfg = next(iter(peft_model.peft_config.values()))
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout, cfg.use_dora) == (16, 64, 0.1, True)


def test_full_fine_tuning_trains_the_language_model_only(tiny_qwen2_vl) -> None:
    model = prepare_trainable(copy.deepcopy(tiny_qwen2_vl.model), LoraSection(enabled=False))
    for name, p in model.named_parameters():
        assert p.requires_grad == name.startswith("language_model."), name


def test_unknown_projection_is_an_error_naming_it() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_proj = nn.Linear(4, 4)
            self.fused_mlp = nn.Linear(4, 8)

    with pytest.raises(ValueError, match="fused_mlp"):
        target_modules(Block())


def test_layer_index_and_top_layers() -> None:
    assert layer_index("model.layers.7.mlp.up_proj") == 7
    assert layer_index("encoder.layer.11.attention.self.query") == 11
    assert layer_index("lm_head") is None
    names = [f"model.layers.{i}.self_attn.q_proj" for i in range(30)] + ["model.norm"]
    assert in_top_layers(names, 8) == names[22:30]
    assert in_top_layers(names, 0) == names
    with pytest.raises(ValueError, match="no layer index"):
        in_top_layers(["lm_head"], 2)


def test_top_layers_adapts_only_the_last_layers(tiny_qwen2_vl) -> None:
    model = copy.deepcopy(tiny_qwen2_vl.model)
    peft_model = prepare_trainable(model, LoraSection(top_layers=1))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    last = max(layer_index(n) for n in trainable)
    assert trainable and all(layer_index(n) == last for n in trainable)
    full = prepare_trainable(
        copy.deepcopy(tiny_qwen2_vl.model), LoraSection(enabled=False, top_layers=1)
    )
    trained = [n for n, p in full.named_parameters() if p.requires_grad]
    assert trained and {layer_index(n) for n in trained} == {last}
