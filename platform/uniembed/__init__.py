"""uniembed: Ray-native training, mining and serving of universal multimodal embeddings.

The public names are re-exported here lazily, so that ``import uniembed.storage`` in a Ray
worker does not pay for importing torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ConfigError": "uniembed.config",
    "parse_config": "uniembed.config",
    "S3Options": "uniembed.storage",
    "StorageError": "uniembed.storage",
    "EmbedInput": "uniembed.models",
    "Embedder": "uniembed.models",
    "UnknownModelError": "uniembed.models",
    "load_embedder": "uniembed.models",
    "registry_names": "uniembed.models",
    "EmbedConfig": "uniembed.embed.config",
    "run_embed": "uniembed.embed.pipeline",
    "embed_table": "uniembed.embed.pipeline",
    "read_embeddings": "uniembed.embed.pipeline",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'uniembed' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
