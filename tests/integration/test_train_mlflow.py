"""A train run logs to MLflow: read back through MLflow's client API.

The distill job on one Ray Train worker (tiny text LM, minilm teacher, 3 steps) with the
default tracking store, ``<storage_path>/<name>/mlruns``: its params, per-step loss, lr and
samples/s, the export's small files as artifacts, the export URI as a tag.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.train_jobs import load_job
from uniembed.training.tracking import EXPERIMENT, RunTracker

pytestmark = pytest.mark.integration


def test_a_train_run_is_in_mlflow(
    ray_start_2_cpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    texts = tmp_path / "texts.jsonl"
    rows = [
        {"id": f"t{i}", "text": f"sentence {i} about the colour {i * 13 % 7}"} for i in range(16)
    ]
    texts.write_text("\n".join(json.dumps(x) for x in rows))
    args = ["--input", str(texts), "--model", "tiny-text-lm", "--teacher", "minilm"]
    args += ["--storage-path", "runs", "--name", "m1", "train.max_steps=3", "train.batch_size=8"]
    assert load_job("distill").main(args) == 0

    run_dir = tmp_path / "runs" / "m1"
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's opt-in for file stores
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").as_uri())
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "m1" and run.info.status == "FINISHED"
    assert run.data.params["train.max_steps"] == "3"
    assert run.data.params["model.name"] == "tiny-text-lm"
    assert not any("secret" in k for k in run.data.params)
    loss = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in loss] == [1, 2, 3] and all(m.value > 0 for m in loss)
    for name in ("lr", "samples_per_s", "sim_gap"):
        assert len(client.get_metric_history(run.info.run_id, name)) == 3, name
    assert run.data.tags["export"] == str(run_dir / "export")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "export")}
    assert {"export/config.json", "export/uniembed.json", "export/adapter"} <= artifacts


def test_mlflow_tracking_uri_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Cfg:
        class checkpoint:  # noqa: N801 - the config's section name
            name = "r"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    tracker = RunTracker(Cfg, str(tmp_path / "run"), rank=1)  # not rank 0: starts nothing
    assert tracker._tracking_uri() == "http://127.0.0.1:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracker._tracking_uri() == (tmp_path / "run" / "mlruns").as_uri()
