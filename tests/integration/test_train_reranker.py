"""The reranker job on Ray Train (2 CPU workers) against the local S3 server: chats from
mined rows (short and negative-free rows included), checkpoints, resume by name, and an
export that ``JudgeScorer.load`` reads for pairwise and listwise reranking."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures.train_jobs import load_job, mined_rows
from uniembed import storage
from uniembed.reranker.listwise import ListwiseReranker
from uniembed.reranker.scorer import JudgeInput, JudgeScorer
from uniembed.training.export import download_model
from uniembed.training.metrics import read_metrics

pytestmark = pytest.mark.integration

ROWS = 12


def _args(bucket: str, server, max_steps: int) -> list[str]:  # noqa: ANN001
    opts = server.options()
    return [
        "--input",
        f"{bucket}/mined",
        "--model",
        "tiny-text-lm",
        "--storage-path",
        f"{bucket}/runs",
        "--name",
        "rr",
        f"train.max_steps={max_steps}",
        "train.batch_size=4",
        "train.warmup_steps=1",
        "train.lr=1e-3",
        "data.chats_per_forward=4",
        "scaling.num_workers=2",
        "scaling.cpus_per_worker=0.5",
        "checkpoint.every_steps=2",
        "debug.record_batches=true",
        f"storage.endpoint_url={opts.endpoint_url}",
        f"storage.access_key_id={opts.access_key_id}",
        f"storage.secret_access_key={opts.secret_access_key}",
        f"storage.region={opts.region}",
    ]


def test_reranker_trains_resumes_and_exports_a_judge(ray_start_2_cpus, s3_server, s3_bucket):
    job = load_job("train_reranker")
    # 6 negatives each, except row 0 (2 negatives) and row 1 (none)
    rows = mined_rows(ROWS, negatives=6, per_row={0: 2, 1: 0})
    storage.write_parquet(f"{s3_bucket}/mined/part-0.parquet", rows)
    run = f"{s3_bucket}/runs/rr"

    assert job.main(_args(s3_bucket, s3_server, max_steps=3)) == 0
    plan = json.loads(storage.read_text(f"{run}/rerank_data.json"))
    assert plan["rows"] == ROWS and plan["short_list"] == ["q0"] and plan["no_negatives"] == ["q1"]
    assert plan["chats"] == {"pairwise_pos": 12, "pairwise_neg": 11, "listwise": 11}
    states = [f for f in storage.list_files(run) if f.endswith("train_state.json")]
    assert states, "no checkpoint reached object storage"

    # Same name, more steps: resumes after step 3 instead of starting over.
    assert job.main(_args(s3_bucket, s3_server, max_steps=5)) == 0
    metrics = read_metrics(f"{run}/metrics.csv")
    assert [int(r["step"]) for r in metrics] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in metrics)
    last = max(
        (
            json.loads(storage.read_text(f))
            for f in storage.list_files(run)
            if f.endswith("train_state.json")
        ),
        key=lambda s: s["position"]["step"],
    )
    batches = last["extra"]["batches"]
    assert len(batches) == 5 and all(len(b) == 4 for b in batches)
    ids = [i for b in batches[:3] for i in b]
    assert len(ids) == len(set(ids)), "epoch 0 repeated a row across the resume"

    folder = download_model(f"{run}/export")
    scorer = JudgeScorer.load(folder)
    base = JudgeScorer.load("tiny-text-lm")
    query = JudgeInput("what does word3 mean")
    cands = [JudgeInput("the meaning of word3"), JudgeInput("the meaning of word7")]
    trained, untrained = scorer.score(query, cands), base.score(query, cands)
    assert trained.shape == (2,) and np.all((trained > 0) & (trained < 1))
    assert not np.allclose(trained, untrained), "the export holds the base weights"
    np.testing.assert_allclose(trained, scorer.score_pairs([(query, c) for c in cands]), atol=1e-5)
    answer = ListwiseReranker(scorer).choose(query, cands)
    assert answer.ok or answer.error  # parsed, or reported as unparseable
