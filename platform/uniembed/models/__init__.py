"""Embedder models: one interface, three families (MLLMs, text LMs, encoders)."""

from __future__ import annotations

from uniembed.models.embedder import Embedder
from uniembed.models.families import FAMILIES, MODEL_TYPES, Family, family_for_config
from uniembed.models.inputs import EmbedInput
from uniembed.models.pooling import last_token_pool, mean_pool, pool_and_normalize
from uniembed.models.pooling_config import (
    POOLING_CONFIG_FILE,
    PoolingConfig,
    load_pooling_config,
    save_pooling_config,
)
from uniembed.models.registry import (
    UnknownModelError,
    load_embedder,
    registry_names,
    resolve_model,
)
from uniembed.models.tiny import build_tiny_llava, build_tiny_qwen2_vl, build_tiny_text_lm
from uniembed.models.transformer_embedder import TransformerEmbedder

__all__ = [
    "FAMILIES",
    "MODEL_TYPES",
    "POOLING_CONFIG_FILE",
    "EmbedInput",
    "Embedder",
    "Family",
    "PoolingConfig",
    "TransformerEmbedder",
    "UnknownModelError",
    "build_tiny_llava",
    "build_tiny_qwen2_vl",
    "build_tiny_text_lm",
    "family_for_config",
    "last_token_pool",
    "load_embedder",
    "load_pooling_config",
    "mean_pool",
    "pool_and_normalize",
    "registry_names",
    "resolve_model",
    "save_pooling_config",
]
