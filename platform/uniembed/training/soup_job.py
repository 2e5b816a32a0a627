"""``jobs/soup.py``: one model folder from several exports of the same model.

``method: mean`` is a model soup (uniform or ``weights``); ``method: delta`` is CoDiEmb's
delta-guided fusion around ``base`` (the model the exports were tuned from). The result is
an export folder like a train run's (weights, tokenizer, ``uniembed.json`` and the
sentence-transformers files of the first input), so every job and sentence-transformers
load it unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from uniembed import storage
from uniembed.config import require
from uniembed.models.pooling_config import PoolingConfig
from uniembed.models.registry import quiet_transformers, resolve_model
from uniembed.models.remote import download_model
from uniembed.sections import StorageSection
from uniembed.training.export import export_model
from uniembed.training.soup import average_state_dicts, delta_fusion

SOUP_FILE = "soup.json"


@dataclass
class SoupConfig:
    """``jobs/soup.py``: average or fuse exported checkpoints of one model."""

    inputs: list[str] = field(
        default_factory=list, metadata={"help": "export folders (local or s3://), >= 2"}
    )
    output: str = field(default="", metadata={"help": "the folder to write (local or s3://)"})
    method: Literal["mean", "delta"] = field(
        default="mean", metadata={"help": "mean: model soup; delta: delta-guided fusion"}
    )
    weights: list[float] | None = field(
        default=None, metadata={"help": "mean: one weight per input, summing to 1"}
    )
    base: str | None = field(
        default=None, metadata={"help": "delta: the model the inputs were tuned from"}
    )
    power: float = field(default=1.0, metadata={"help": "delta: |delta|^power weighting"})
    storage: StorageSection = field(default_factory=StorageSection)

    def __post_init__(self) -> None:
        require(len(self.inputs) >= 2, "inputs: give at least two export folders (--inputs)")
        require(bool(self.output), "output: the folder to write must be given (--output)")
        require(
            self.method != "delta" or bool(self.base),
            "base: method delta needs the model the inputs were tuned from (--base)",
        )
        require(
            self.weights is None or len(self.weights) == len(self.inputs),
            f"weights: {len(self.weights or [])} weights for {len(self.inputs)} inputs",
        )
        require(self.power > 0, "power must be > 0")


def _load(folder: str) -> nn.Module:
    from transformers import AutoModel

    with quiet_transformers():
        return AutoModel.from_pretrained(folder).eval()


def run_soup(cfg: SoupConfig) -> str:
    """Write the soup (or fusion) of ``cfg.inputs`` to ``cfg.output``; returns its URI."""
    storage.configure(cfg.storage)
    folders = [download_model(uri) for uri in cfg.inputs]
    models = [_load(f) for f in folders]
    states = [m.state_dict() for m in models]
    if cfg.method == "mean":
        merged = average_state_dicts(states, cfg.weights)
    else:
        assert cfg.base is not None
        base = _load(download_model(resolve_model(cfg.base)))
        merged = delta_fusion(base.state_dict(), states, cfg.power)
    target = models[0]
    target.load_state_dict(merged)
    export_model(target, folders[0], cfg.output, PoolingConfig())
    manifest = {"method": cfg.method, "inputs": cfg.inputs, "weights": cfg.weights}
    if cfg.method == "delta":
        manifest.update(base=cfg.base, power=cfg.power)
    storage.write_text(storage.join(cfg.output, SOUP_FILE), json.dumps(manifest, indent=2))
    return cfg.output
