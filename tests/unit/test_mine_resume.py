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
    with pytest.raises(ValueError, match="not recorded") as info:
        check_resume(str(tmp_path), _cfg(str(tmp_path)))
    from uniembed.cli import find_user_error

    assert find_user_error(info.value) is info.value  # one line and exit 2, no traceback


def test_a_judge_retrained_under_the_same_name_is_refused(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from uniembed.models import adapters

    root = tmp_path / "models"
    judge = root / "my-judge"
    judge.mkdir(parents=True)
    (judge / "adapter_config.json").write_text("{}")
    (judge / "adapter_model.safetensors").write_bytes(b"weights v1")
    monkeypatch.setattr(adapters, "ADAPTERS_ROOT", root)
    out = tmp_path / "out"
    cfg = _cfg(
        str(out),
        judge=dataclasses.replace(MineConfig.__dataclass_fields__["judge"].default_factory()),
    )
    cfg.judge.model = dataclasses.replace(cfg.judge.model, name="my-judge")
    check_resume(str(out), cfg)
    (judge / "adapter_model.safetensors").write_bytes(b"weights v2")
    with pytest.raises(
        ValueError, match=r"judge\.model\.revision: '[0-9a-f]{12}' -> '[0-9a-f]{12}'"
    ):
        check_resume(str(out), cfg)
