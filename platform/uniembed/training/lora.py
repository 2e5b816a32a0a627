"""LoRA / DoRA on the language model, or full fine-tuning of it; the rest stays frozen.

The target modules are found by walking the model, not by a fixed name list handed to peft:
every ``nn.Linear`` of the language model must match a known projection name, otherwise we
fail instead of silently leaving a projection untrained (a fused ``gate_up_proj`` or a new
MLP name would otherwise be skipped by a hard-coded list). The vision tower and the
projector of an MLLM are never trained in these stages (DESIGN §1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from torch import nn

from uniembed.training.train_config import LoraSection

# Attention and MLP projections of Llama/Qwen/Mistral-style decoders (plus Phi-3's fused
# ones), and of BERT-style encoders.
DECODER_PROJECTIONS = frozenset(
    {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    | {"qkv_proj", "gate_up_proj"}
)
ENCODER_PROJECTIONS = frozenset({"query", "key", "value", "dense"})
# Heads that the embedding path never runs (BERT's pooler): not trained.
UNUSED_PREFIXES = ("pooler.",)


def language_model_prefix(model: nn.Module) -> str:
    """``"language_model."`` for MLLMs (Qwen2-VL, LLaVA: ``AutoModel`` layout), ``""`` for
    text-only models, whose whole body is the language model."""
    return "language_model." if hasattr(model, "language_model") else ""


def _lm_linears(model: nn.Module) -> Iterator[tuple[str, nn.Linear]]:
    prefix = language_model_prefix(model)
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or not name.startswith(prefix):
            continue
        if name[len(prefix) :].startswith(UNUSED_PREFIXES):
            continue
        yield name, module


def target_modules(model: nn.Module) -> list[str]:
    """Full names of every projection of the language model that LoRA adapts.

    Raises ValueError naming the module when a linear layer of the language model has a
    name no rule covers.
    """
    known = DECODER_PROJECTIONS | ENCODER_PROJECTIONS
    out = []
    for name, _ in _lm_linears(model):
        leaf = name.rsplit(".", 1)[-1]
        if leaf not in known:
            raise ValueError(
                f"{type(model).__name__}: linear layer {name!r} of the language model matches "
                f"no LoRA target rule (known: {sorted(known)}); add its name to "
                "uniembed.training.lora"
            )
        out.append(name)
    if not out:
        raise ValueError(f"{type(model).__name__}: no linear layer found in the language model")
    return out


_LAYER_INDEX = re.compile(r"\.(?:layers|layer|h|blocks)\.(\d+)\.")


def layer_index(name: str) -> int | None:
    """The transformer layer a parameter or module name belongs to, or None (embeddings,
    final norm, heads): ``"model.layers.7.mlp.up_proj" -> 7``."""
    m = _LAYER_INDEX.search("." + name + ".")
    return int(m.group(1)) if m else None


def in_top_layers(names: Iterable[str], top: int) -> list[str]:
    """The ``names`` inside the last ``top`` layers (all of them for ``top == 0``).

    Example: names in layers 0..29 with ``top=8`` keep those of layers 22..29.
    Raises ValueError when no name carries a layer index.
    """
    names = list(names)
    if top == 0:
        return names
    indices = [i for i in map(layer_index, names) if i is not None]
    if not indices:
        raise ValueError("lora.top_layers: no layer index found in the module names")
    first = max(indices) + 1 - top
    return [n for n in names if (layer_index(n) or -1) >= first]


def body_of(model: nn.Module, body: str) -> nn.Module:
    """``model.<body>`` (the ``AutoModel`` body under an LM head), or ``model`` for ``""``."""
    if not body:
        return model
    inner = getattr(model, body, None)
    if not isinstance(inner, nn.Module):
        raise ValueError(f"{type(model).__name__}: no {body!r} body under the LM head")
    return inner


def prepare_trainable(model: nn.Module, lora: LoraSection, body: str = "") -> nn.Module:
    """Return the model to train: peft-wrapped with LoRA/DoRA on :func:`target_modules`, or
    (``lora.enabled=False``) the model itself with only its language model trainable.

    The vision tower and the projector are frozen in both cases. ``body`` names the
    attribute holding the ``AutoModel`` body when ``model`` carries an LM head on top of it
    (the reranker: ``"model"``); the adapted projections are then the body's, so they sit
    exactly where the embedder's do, and the LM head stays frozen.
    """
    inner = body_of(model, body)
    outer = f"{body}." if body else ""
    for p in model.parameters():
        p.requires_grad_(False)
    if not lora.enabled:
        prefix = outer + language_model_prefix(inner)
        names = [
            name
            for name, _ in model.named_parameters()
            if name.startswith(prefix) and not name[len(prefix) :].startswith(UNUSED_PREFIXES)
        ]
        trainable = set(in_top_layers(names, lora.top_layers))
        for name, p in model.named_parameters():
            p.requires_grad_(name in trainable)
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        use_dora=lora.dora,
        target_modules=in_top_layers(
            [outer + name for name in target_modules(inner)], lora.top_layers
        ),
        bias="none",
    )
    return get_peft_model(model, config)


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters that get gradients, by name (adapter weights under LoRA)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}
