"""RzenEmbed: hardness-weighted InfoNCE with a learnable temperature and false-negative
mitigation, over in-batch and mined negatives."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from uniembed.losses._candidates import candidates
from uniembed.losses.batch import PairBatch, with_mined_negatives
from uniembed.losses.false_negatives import false_negative_mask
from uniembed.losses.hardness import hardness_bias
from uniembed.losses.temperature import Temperature


class RzenEmbedLoss(nn.Module):
    r"""InfoNCE whose negatives are weighted by their hardness.

    Inputs (as :class:`InfoNCELoss`): ``query (n, d)``, ``positive (n, d)``, optional mined
    ``negatives (n, k, d)`` and ``negatives_mask (n, k)``.

    Row ``i`` has candidates ``c``: its positive (column 0), the other rows' positives and
    its mined negatives, with cosine similarities ``s_ic``. Then::

        drop  = false_negative_mask(s, margin, dup_eps)       (losses/false_negatives.py)
        z_i0  = s_i0 / tau
        z_ic  = s_ic / tau + alpha * sg(s_ic)                 (losses/hardness.py), c > 0
        loss  = mean_i -log softmax(z_i over kept candidates)[0]

    ``tau`` is learnable when ``learn_temperature`` (losses/temperature.py). Each part has
    its switch: ``hardness_alpha=0``, ``learn_temperature=False``, ``fn_filter=False``.

    References:
        "RzenEmbed: Towards Comprehensive Multimodal Retrieval" (2025); Lan et al., "LLaVE:
        Large Language and Vision Embedding Models with Hardness-Weighted Contrastive
        Learning" (2025).
    """

    encodes_negatives: ClassVar[bool] = True
    needs_scores: ClassVar[bool] = False
    min_negatives: ClassVar[int] = 0

    def __init__(
        self,
        temperature: float = 0.02,
        hardness_alpha: float = 5.0,
        learn_temperature: bool = True,
        fn_filter: bool = True,
        margin: float = 0.1,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.tau = Temperature(temperature, learnable=learn_temperature)
        self.initial_temperature = float(temperature)
        self.hardness_alpha = float(hardness_alpha)
        self.fn_filter = bool(fn_filter)
        self.margin = float(margin)
        self.normalize = bool(normalize)

    def forward(
        self,
        query: Tensor,
        positive: Tensor,
        negatives: Tensor | None = None,
        negatives_mask: Tensor | None = None,
    ) -> Tensor:
        """Return the scalar mean loss; shapes as in the class docstring."""
        cand = candidates(query, positive, negatives, negatives_mask, self.normalize)
        if cand.sim.shape[0] == 0:
            return query.sum() * 0.0
        keep = cand.valid
        if self.fn_filter:
            keep = keep & ~false_negative_mask(cand.sim, cand.vectors, self.margin)
        logits = cand.sim / self.tau() + hardness_bias(cand.sim, self.hardness_alpha)
        logits = logits.masked_fill(~keep, float("-inf"))  # column 0 is always kept
        return -torch.log_softmax(logits, dim=1)[:, 0].mean()

    def on_batch(self, batch: PairBatch) -> Tensor:
        """The loss of a gathered stage-2 batch, with its mined negatives when it has any."""
        return with_mined_negatives(self, batch)

    def stats(self) -> dict[str, float]:
        """Figures for the metrics row: the current temperature."""
        return {"temperature": self.tau.value()}

    def get_config_dict(self) -> dict[str, Any]:
        """Hyperparameters, for logging and for rebuilding the loss."""
        return {
            "temperature": self.initial_temperature,
            "hardness_alpha": self.hardness_alpha,
            "learn_temperature": self.tau.learnable,
            "fn_filter": self.fn_filter,
            "margin": self.margin,
            "normalize": self.normalize,
        }
