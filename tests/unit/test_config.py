from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from uniembed.config import ConfigError, from_dict, parse_config, require
from uniembed.sections import ActorPoolSection, ModelSection


@dataclass
class Inner:
    lr: float = 1e-4
    layers: list[int] = field(default_factory=lambda: [1, 2])

    def __post_init__(self) -> None:
        require(self.lr > 0, "inner.lr must be > 0")


@dataclass
class Outer:
    name: str = "x"
    steps: int = 10
    flag: bool = False
    tag: str | None = None
    inner: Inner = field(default_factory=Inner)


def test_from_dict_coerces_nested_types() -> None:
    cfg = from_dict(Outer, {"steps": "5", "flag": "true", "inner": {"lr": "0.5"}})
    assert cfg.steps == 5 and cfg.flag is True and cfg.inner.lr == 0.5


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"inner\.lrr"):
        from_dict(Outer, {"inner": {"lrr": 1}})


def test_wrong_type_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"inner\.layers\[1\].*integer"):
        from_dict(Outer, {"inner": {"layers": [1, "two"]}})
    with pytest.raises(ConfigError, match="steps: expected an integer"):
        from_dict(Outer, {"steps": 1.5})


def test_validation_in_post_init() -> None:
    with pytest.raises(ConfigError, match="inner.lr must be > 0"):
        from_dict(Outer, {"inner": {"lr": -1}})


def test_precedence_yaml_then_flags_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: from-yaml\nsteps: 3\ninner:\n  lr: 0.1\n")
    cfg = parse_config(
        Outer,
        ["--config", str(path), "--name", "from-flag", "inner.lr=0.2", "--set", "tag=null"],
        prog="t",
        description="t",
        flags={"name": "name"},
    )
    assert (cfg.name, cfg.steps, cfg.inner.lr, cfg.tag) == ("from-flag", 3, 0.2, None)


def test_help_lists_keys(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(Outer, ["--help"], prog="t", description="t")
    out = capsys.readouterr().out
    assert "inner.lr = 0.0001" in out and "steps = 10" in out


def test_sections_validate() -> None:
    with pytest.raises(ConfigError, match="micro_batch_size"):
        ActorPoolSection(micro_batch_size=0)
    with pytest.raises(ConfigError, match="dtype"):
        ModelSection(dtype="int3")
