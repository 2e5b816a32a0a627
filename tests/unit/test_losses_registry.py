"""The one name -> class mapping of the contrastive losses."""

from __future__ import annotations

import uniembed.losses as losses
from uniembed.losses import LOSSES, InfoNCELoss, SoftLabelLoss, UniMEHardNegativeLoss


def test_registry_maps_names_to_classes_that_rebuild_from_their_config() -> None:
    assert LOSSES == {
        "unime": UniMEHardNegativeLoss,
        "soft_label": SoftLabelLoss,
        "infonce": InfoNCELoss,
    }
    for cls in LOSSES.values():
        cfg = cls().get_config_dict()
        assert cls(**cfg).get_config_dict() == cfg


def test_public_names_are_exported() -> None:
    for name in losses.__all__:
        assert hasattr(losses, name), name
