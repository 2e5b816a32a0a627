"""Stage 2 on Ray Train with 2 CPU workers against the local S3 server: a worker is killed
at step 3 and replaced, the run finishes; re-running the same name resumes; the exported
model loads."""

from __future__ import annotations

import json

import pytest

from fixtures.train_jobs import load_job, mined_rows
from uniembed import storage
from uniembed.models import EmbedInput, load_embedder
from uniembed.training.export import download_model
from uniembed.training.metrics import read_metrics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 32
GLOBAL_BATCH = 4


def _args(bucket: str, server, max_steps: int) -> list[str]:  # noqa: ANN001
    opts = server.options()
    return [
        "--input",
        f"{bucket}/mined",
        "--model",
        "tiny-text-lm",
        "--loss",
        "infonce",
        "--storage-path",
        f"{bucket}/runs",
        "--name",
        "r1",
        f"train.max_steps={max_steps}",
        f"train.batch_size={GLOBAL_BATCH}",
        "train.warmup_steps=1",
        "loss.num_negatives=2",
        "scaling.num_workers=2",
        "scaling.cpus_per_worker=0.5",
        "checkpoint.every_steps=2",
        "checkpoint.max_failures=2",
        "debug.fail_at_step=3",
        "debug.record_batches=true",
        f"storage.endpoint_url={opts.endpoint_url}",
        f"storage.access_key_id={opts.access_key_id}",
        f"storage.secret_access_key={opts.secret_access_key}",
        f"storage.region={opts.region}",
    ]


def _last_state(run: str) -> dict:
    states = [f for f in storage.list_files(run) if f.endswith("train_state.json")]
    return max(
        (json.loads(storage.read_text(f)) for f in states), key=lambda s: s["position"]["step"]
    )


def _check_trajectory(run: str, steps: int) -> None:
    state = _last_state(run)
    assert state["position"]["step"] == steps
    batches = state["extra"]["batches"]
    assert len(batches) == steps
    ids = [i for b in batches for i in b]
    assert all(len(b) == GLOBAL_BATCH for b in batches)
    assert len(ids) == len(set(ids)), f"a row was trained twice: {batches}"
    metrics = read_metrics(storage.join(run, "metrics.csv"))
    assert [int(r["step"]) for r in metrics] == list(range(1, steps + 1))
    assert all(r["loss"] > 0 and r["samples_per_s"] > 0 for r in metrics)


def test_killed_worker_is_replaced_and_rerun_resumes(ray_start_2_cpus, s3_server, s3_bucket):
    tune = load_job("tune")
    storage.write_parquet(f"{s3_bucket}/mined/part-0.parquet", mined_rows(ROWS))
    run = f"{s3_bucket}/runs/r1"

    assert tune.main(_args(s3_bucket, s3_server, max_steps=4)) == 0
    # The worker really died once at step 3 (the marker is written just before os._exit).
    assert storage.exists(f"{run}/.debug-failed-at-3")
    _check_trajectory(run, 4)

    # Same name, more steps: resumes from step 4 instead of starting over.
    assert tune.main(_args(s3_bucket, s3_server, max_steps=6)) == 0
    _check_trajectory(run, 6)

    folder = download_model(f"{run}/export")
    embedder = load_embedder(folder)
    vectors = embedder.embed([EmbedInput(text="what does word1 mean")])
    assert vectors.shape == (1, embedder.dim)
