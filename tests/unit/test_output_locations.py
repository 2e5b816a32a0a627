"""Relative outputs on a cluster: an error naming the key, or a path under storage.root."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from uniembed.data.locations import (
    STORAGE_ROOT_ENV,
    OutputLocationError,
    place,
    submission_id,
)
from uniembed.training.train_config import TuneConfig

SUBMITTED = json.dumps({"runtime_env": {}, "metadata": {"job_submission_id": "raysubmit_x1"}})


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process looks like the entrypoint of `ray job submit`."""
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", SUBMITTED)
    monkeypatch.delenv(STORAGE_ROOT_ENV, raising=False)


def _tune(**checkpoint: str) -> TuneConfig:
    cfg = TuneConfig(input="outputs/mine")
    return dataclasses.replace(cfg, checkpoint=dataclasses.replace(cfg.checkpoint, **checkpoint))


def test_submission_id_is_read_from_the_job_supervisors_variable(submitted: None) -> None:
    assert submission_id() == "raysubmit_x1"


def test_a_relative_output_in_a_submitted_job_names_the_key_and_the_fix(submitted: None) -> None:
    with pytest.raises(OutputLocationError) as e:
        place(_tune(storage_path="outputs/train"), ("checkpoint.storage_path",), ("input",))
    msg = str(e.value)
    assert "checkpoint.storage_path='outputs/train'" in msg
    assert "raysubmit_x1" in msg
    assert "checkpoint.storage_path=s3://bucket/prefix/outputs/train" in msg
    assert STORAGE_ROOT_ENV in msg and "storage.root" in msg


def test_absolute_and_s3_outputs_pass_in_a_submitted_job(submitted: None) -> None:
    for path in ("/shared/train", "s3://bucket/train"):
        cfg = place(_tune(storage_path=path), ("checkpoint.storage_path",))
        assert cfg.checkpoint.storage_path == path


def test_relative_paths_resolve_under_the_storage_root(
    submitted: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORAGE_ROOT_ENV, str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    (tmp_path / "outputs" / "mine").mkdir(parents=True)  # an earlier job's output
    cfg = place(_tune(storage_path="outputs/train"), ("checkpoint.storage_path",), ("input",))
    assert cfg.checkpoint.storage_path == f"{tmp_path}/outputs/train"
    assert cfg.input == f"{tmp_path}/outputs/mine"
    # A registry name is not under the root: it stays a name.
    assert place(cfg, (), ("model.name",)).model.name == "tiny-qwen2-vl"


def test_the_config_key_wins_over_the_variable(
    submitted: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORAGE_ROOT_ENV, "/elsewhere")
    cfg = _tune(storage_path="outputs/train")
    cfg = dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, root=str(tmp_path)))
    out = place(cfg, ("checkpoint.storage_path",))
    assert out.checkpoint.storage_path == f"{tmp_path}/outputs/train"


def test_a_relative_root_is_refused(submitted: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORAGE_ROOT_ENV, "shared")
    with pytest.raises(OutputLocationError, match="storage.root 'shared' is relative"):
        place(_tune(), ("checkpoint.storage_path",))


def test_outside_a_submitted_job_relative_outputs_become_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    monkeypatch.delenv(STORAGE_ROOT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = place(_tune(storage_path="outputs/train"), ("checkpoint.storage_path",), ("input",))
    assert cfg.checkpoint.storage_path == f"{tmp_path}/outputs/train"
    assert cfg.input == "outputs/mine"  # no root: inputs are read where they are
