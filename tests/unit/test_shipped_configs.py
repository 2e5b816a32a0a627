"""Every config shipped in jobs/configs/ loads into its job's config class."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from uniembed.config import from_dict, load_yaml

CONFIGS = sorted((Path(__file__).parents[2] / "jobs" / "configs").glob("*.yaml"))
JOBS = sorted(
    p.stem for p in (Path(__file__).parents[2] / "jobs").glob("*.py") if p.stem != "__init__"
)


def _job_for(stem: str) -> str:
    matches = [job for job in JOBS if stem == job or stem.startswith(job + "_")]
    assert matches, f"{stem}.yaml names no job in jobs/ ({JOBS})"
    return max(matches, key=len)


def _config_class(job: str) -> type:
    module = importlib.import_module(f"jobs.{job}")
    classes = {
        v for k, v in vars(module).items() if k.endswith("Config") and dataclasses.is_dataclass(v)
    }
    assert len(classes) == 1, f"jobs/{job}.py should import exactly one config class: {classes}"
    return classes.pop()


def test_every_job_has_a_default_config() -> None:
    stems = {p.stem for p in CONFIGS}
    assert {job for job in JOBS} <= stems


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads(path: Path) -> None:
    data = load_yaml(path)
    first = path.read_text().splitlines()[0]
    assert first.startswith("#"), f"{path.name} should open with its launch command"
    if path.stem == "serve" or path.stem.startswith("serve_"):
        from uniembed.serving.config import load_serve_config

        (app,) = data["applications"]
        load_serve_config(app["args"])
        return
    from_dict(_config_class(_job_for(path.stem)), data)
