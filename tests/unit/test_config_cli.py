"""The command line: overrides anywhere, and --help with the effective defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from uniembed.config import parse_config


@dataclass
class _Train:
    lr: float = 1e-4
    mode: Literal["fast", "slow"] = "fast"


@dataclass
class _Job:
    input: str = ""
    name: str = field(default="a", metadata={"help": "a name", "choices": ("a", "b")})
    train: _Train = field(default_factory=_Train)


def test_overrides_before_between_and_after_named_flags() -> None:
    argv = ["train.lr=0.5", "--input", "x", "train.mode=slow", "--name", "b", "input=y"]
    cfg = parse_config(
        _Job, argv, prog="job", description="", flags={"input": "input", "name": "name"}
    )
    # Dotted overrides win over named flags wherever they stand.
    assert (cfg.input, cfg.name, cfg.train.lr, cfg.train.mode) == ("y", "b", 0.5, "slow")


def test_help_prints_the_config_values_and_the_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "job.yaml"
    config.write_text("train: {lr: 0.003}\n")
    with pytest.raises(SystemExit):
        parse_config(_Job, ["--help"], prog="job", description="", default_config=config)
    out = capsys.readouterr().out
    assert "train.lr = 0.003  [job.yaml]" in out
    assert "train.mode = 'fast'  one of: fast, slow" in out
    assert "name = 'a'  one of: a, b  a name" in out
    with pytest.raises(SystemExit):
        parse_config(
            _Job, ["--help", "--config", str(tmp_path / "none.yaml")], prog="job", description=""
        )
    assert "could not be read" in capsys.readouterr().out
