"""The config switches of the seed relatives' recipes reach the loss, sampler and pooling."""

from __future__ import annotations

import pytest

from uniembed.config import ConfigError, from_dict
from uniembed.losses import KaLMLoss, RzenEmbedLoss
from uniembed.training.loop import build_loss
from uniembed.training.train_config import TuneConfig


def _cfg(**sections: object) -> TuneConfig:
    return from_dict(TuneConfig, {"input": "rows.jsonl", **sections})


def test_unset_switches_keep_the_loss_defaults_and_set_ones_reach_it() -> None:
    loss = build_loss(_cfg(loss={"name": "rzen"}))
    assert isinstance(loss, RzenEmbedLoss)
    assert loss.get_config_dict()["learn_temperature"] is True
    loss = build_loss(_cfg(loss={"name": "rzen", "hardness_alpha": 0, "learn_temperature": False}))
    assert loss.hardness_alpha == 0.0 and not loss.tau.learnable
    loss = build_loss(_cfg(loss={"name": "kalm", "focal_gamma": 2, "mix_negatives": 0}))
    assert isinstance(loss, KaLMLoss) and loss.focal_gamma == 2.0 and loss.mix_negatives == 0


def test_a_switch_of_another_loss_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="loss.focal_gamma is not a setting of loss rzen"):
        _cfg(loss={"name": "rzen", "focal_gamma": 1.0})


def test_sampler_and_pooling_sections() -> None:
    cfg = _cfg(sampler={"name": "task_homogeneous"}, pooling={"mode": "mean"})
    assert cfg.sampler.task_field == "query_instruction"
    with pytest.raises(ConfigError, match="sampler.name"):
        _cfg(sampler={"name": "by_length"})
    with pytest.raises(ConfigError, match="pooling.mode=mean"):
        _cfg(pooling={"attention": "bidirectional"})
