"""A resumed mine run keeps judged shards only when they come from the same settings."""

from __future__ import annotations

import dataclasses

import pytest

from uniembed.mining.config import MineConfig
from uniembed.mining.resume import check_resume


def _cfg(out: str, **kw: object) -> MineConfig:
    return MineConfig(queries="q.jsonl", pool="p.jsonl", output=out, **kw)


def test_a_resume_with_another_judge_is_refused_naming_the_key(tmp_path) -> None:  # noqa: ANN001
    cfg = _cfg(str(tmp_path))
    check_resume(str(tmp_path), cfg)
    check_resume(str(tmp_path), cfg)  # same settings: fine
    other = dataclasses.replace(cfg, judge=dataclasses.replace(cfg.judge))
    other.judge.model = dataclasses.replace(cfg.judge.model, name="smollm2-135m-judge")
    with pytest.raises(
        ValueError,
        match=r"judge\.model\.name: 'smollm2-135m' -> 'smollm2-135m-judge'.*resume=false",
    ):
        check_resume(str(tmp_path), other)
    # without resume the new settings are recorded (the run replaces the output)
    check_resume(str(tmp_path), dataclasses.replace(other, resume=False))
    check_resume(str(tmp_path), other)


def test_settings_that_do_not_shape_the_shards_may_change(tmp_path) -> None:  # noqa: ANN001
    cfg = _cfg(str(tmp_path))
    check_resume(str(tmp_path), cfg)
    check_resume(str(tmp_path), dataclasses.replace(cfg, fail_after_shards=2))


def test_shards_of_an_unrecorded_run_are_not_resumed(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "judged").mkdir()
    (tmp_path / "judged" / "shard-000000.parquet").write_bytes(b"x")
    with pytest.raises(ValueError, match="not recorded"):
        check_resume(str(tmp_path), _cfg(str(tmp_path)))
