"""KaLM-Embedding-V2: InfoNCE with focal-style reweighting and online hard-negative mixing."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from uniembed.losses._candidates import candidates
from uniembed.losses._checks import check_positive
from uniembed.losses.batch import PairBatch, with_mined_negatives
from uniembed.losses.focal import focal_terms
from uniembed.losses.negative_mixing import mix_hard_negatives


class KaLMLoss(nn.Module):
    r"""InfoNCE over in-batch, mined and synthesised negatives, hard rows weighted up.

    Inputs (as :class:`InfoNCELoss`): ``query (n, d)``, ``positive (n, d)``, optional mined
    ``negatives (n, k, d)`` and ``negatives_mask (n, k)``.

    Row ``i`` scores its positive (column 0), the other rows' positives, its mined
    negatives and ``mix_negatives`` synthetic ones (``losses/negative_mixing.py``), all by
    cosine over ``tau``::

        log p_i = log softmax(s_i / tau)[0]
        loss    = mean_i -(1 - p_i)^gamma * log p_i            (losses/focal.py)

    Switches: ``focal_gamma=0`` (no reweighting), ``mix_negatives=0`` (no mixing).

    References:
        Zhao et al., "KaLM-Embedding-V2: Superior Training Techniques and Data Inspire A
        Versatile Embedding Model" (2025); Kalantidis et al., "Hard Negative Mixing for
        Contrastive Learning" (MoCHi, 2020).
    """

    encodes_negatives: ClassVar[bool] = True
    needs_scores: ClassVar[bool] = False
    min_negatives: ClassVar[int] = 0

    def __init__(
        self,
        temperature: float = 0.02,
        focal_gamma: float = 1.0,
        mix_negatives: int = 2,
        mix_lambda: float = 0.5,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        if focal_gamma < 0:
            raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma}")
        if mix_negatives < 0:
            raise ValueError(f"mix_negatives must be >= 0, got {mix_negatives}")
        self.temperature = float(temperature)
        self.focal_gamma = float(focal_gamma)
        self.mix_negatives = int(mix_negatives)
        self.mix_lambda = float(mix_lambda)
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
        sim, keep = cand.sim, cand.valid
        if self.mix_negatives:
            mixed, ok = mix_hard_negatives(
                sim, cand.vectors, keep, self.mix_negatives, self.mix_lambda
            )
            sim = torch.cat([sim, torch.einsum("nd,nmd->nm", cand.query, mixed)], dim=1)
            keep = torch.cat([keep, ok], dim=1)
        logits = (sim / self.temperature).masked_fill(~keep, float("-inf"))
        log_p = torch.log_softmax(logits, dim=1)[:, 0]
        return focal_terms(log_p, self.focal_gamma).mean()

    def on_batch(self, batch: PairBatch) -> Tensor:
        """The loss of a gathered stage-2 batch, with its mined negatives when it has any."""
        return with_mined_negatives(self, batch)

    def get_config_dict(self) -> dict[str, Any]:
        """Hyperparameters, for logging and for rebuilding the loss."""
        return {
            "temperature": self.temperature,
            "focal_gamma": self.focal_gamma,
            "mix_negatives": self.mix_negatives,
            "mix_lambda": self.mix_lambda,
            "normalize": self.normalize,
        }
