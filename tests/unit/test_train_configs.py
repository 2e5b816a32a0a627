"""Every shipped train config loads, and the train configs validate their values."""

from __future__ import annotations

from pathlib import Path

import pytest

from uniembed.config import ConfigError, parse_config
from uniembed.training.train_config import DistillConfig, LoraSection, TuneConfig

CONFIGS = Path(__file__).resolve().parents[2] / "jobs" / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("tune*.yaml")), ids=lambda p: p.name)
def test_tune_configs_load(path: Path) -> None:
    assert path.read_text().startswith("# ")  # headed by its launch command
    cfg = parse_config(TuneConfig, ["--config", str(path)], prog="t", description="")
    assert cfg.loss.name in ("unime", "soft_label", "infonce")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("distill*.yaml")), ids=lambda p: p.name)
def test_distill_configs_load(path: Path) -> None:
    assert path.read_text().startswith("# ")
    cfg = parse_config(DistillConfig, ["--config", str(path)], prog="d", description="")
    assert "Summarize the above sentences in one word." in cfg.prompt.text_template


def test_recipe_defaults() -> None:
    assert LoraSection() == LoraSection(enabled=True, r=16, alpha=64, dropout=0.1, dora=True)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["train.batch_size=5", "scaling.num_workers=2"], "divisible"),
        (["loss.name=triplet"], "loss.name"),
        (["checkpoint.name=a/b"], "plain name"),
        (["loss.name=unime", "loss.num_negatives=0"], "num_negatives"),
    ],
)
def test_bad_values_are_named(overrides: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(TuneConfig, ["input=x", *overrides], prog="t", description="")


def test_teacher_needs_exactly_one_source() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        parse_config(
            DistillConfig, ["input=x", "teacher.embeddings=e.parquet"], prog="d", description=""
        )
