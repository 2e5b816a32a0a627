"""Training losses. Each takes tensors (embeddings, scores, logits), never a model.

``LOSSES`` is the one place where a config's loss name becomes a class; nothing else in
the code base switches on a loss name.
"""

from __future__ import annotations

from torch import nn

from uniembed.losses.contrastive import UniMEHardNegativeLoss
from uniembed.losses.distill import DistillLoss
from uniembed.losses.infonce import InfoNCELoss
from uniembed.losses.rerank import IGNORE_INDEX, RerankLMLoss
from uniembed.losses.soft_label import SoftLabelLoss

#: Contrastive-stage losses selectable by name in a training config.
LOSSES: dict[str, type[nn.Module]] = {
    "unime": UniMEHardNegativeLoss,
    "soft_label": SoftLabelLoss,
    "infonce": InfoNCELoss,
}

__all__ = [
    "IGNORE_INDEX",
    "LOSSES",
    "DistillLoss",
    "InfoNCELoss",
    "RerankLMLoss",
    "SoftLabelLoss",
    "UniMEHardNegativeLoss",
]
