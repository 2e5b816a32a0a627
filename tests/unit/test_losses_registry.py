"""The one name -> class mapping of the contrastive losses."""

from __future__ import annotations

import uniembed.losses as losses
from uniembed.losses import (
    LOSSES,
    InfoNCELoss,
    KaLMLoss,
    RzenEmbedLoss,
    SoftLabelLoss,
    UniMEHardNegativeLoss,
)


def test_registry_maps_names_to_classes_that_rebuild_from_their_config() -> None:
    assert LOSSES == {
        "unime": UniMEHardNegativeLoss,
        "soft_label": SoftLabelLoss,
        "infonce": InfoNCELoss,
        "rzen": RzenEmbedLoss,
        "kalm": KaLMLoss,
    }
    for cls in LOSSES.values():
        cfg = cls().get_config_dict()
        assert cls(**cfg).get_config_dict() == cfg


def test_public_names_are_exported() -> None:
    for name in losses.__all__:
        assert hasattr(losses, name), name


def test_every_loss_declares_how_the_trainer_calls_it() -> None:
    import torch

    from uniembed.losses import PairBatch

    n, k, d = 3, 2, 4
    batch = PairBatch(
        torch.randn(n, d),
        torch.randn(n, d),
        torch.randn(n, k, d),
        torch.ones(n, k, dtype=torch.bool),
        torch.rand(n, 1 + k),
    )
    for cls in LOSSES.values():
        assert isinstance(cls.encodes_negatives, bool)
        assert isinstance(cls.needs_scores, bool)
        assert cls.min_negatives >= 0
        kwargs = {"num_negatives": 1} if "num_negatives" in cls().get_config_dict() else {}
        assert torch.isfinite(cls(**kwargs).on_batch(batch))
