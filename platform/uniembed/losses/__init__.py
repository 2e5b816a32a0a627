"""Training losses. Each takes tensors (embeddings, scores, logits), never a model.

``LOSSES`` is the one place where a config's loss name becomes a class; nothing else in
the code base switches on a loss name. Each stage-2 loss declares how the trainer calls it
(``on_batch``) and what it needs (``encodes_negatives``, ``needs_scores``,
``min_negatives``; see :mod:`uniembed.losses.batch`), so a new loss touches this folder only.
"""

from __future__ import annotations

from uniembed.losses.batch import PairBatch, PairLoss
from uniembed.losses.contrastive import UniMEHardNegativeLoss
from uniembed.losses.distill import DistillLoss
from uniembed.losses.infonce import InfoNCELoss
from uniembed.losses.kalm import KaLMLoss
from uniembed.losses.rerank import IGNORE_INDEX, RerankGroupLoss, RerankLMLoss
from uniembed.losses.rzen import RzenEmbedLoss
from uniembed.losses.soft_label import SoftLabelLoss

#: Contrastive-stage losses selectable by name in a training config.
LOSSES: dict[str, type[PairLoss]] = {
    "unime": UniMEHardNegativeLoss,
    "soft_label": SoftLabelLoss,
    "infonce": InfoNCELoss,
    "rzen": RzenEmbedLoss,
    "kalm": KaLMLoss,
}

__all__ = [
    "IGNORE_INDEX",
    "LOSSES",
    "DistillLoss",
    "InfoNCELoss",
    "KaLMLoss",
    "PairBatch",
    "PairLoss",
    "RerankGroupLoss",
    "RerankLMLoss",
    "RzenEmbedLoss",
    "SoftLabelLoss",
    "UniMEHardNegativeLoss",
]
