"""Training on a real multi-node Ray cluster (the tune job and the reranker job) loses a
worker's node after a checkpoint: Ray Train restarts the group from the last checkpoint in
S3 on the nodes left plus a replacement, and the run ends exactly like an uninterrupted one.

Nodes: a head (2 CPUs, no train slot) and ``a`` and ``b`` (1 CPU, one ``train_slot``
each); the two workers ask for a slot each, so one runs on ``a`` and one on ``b``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures.faults_report import record
from fixtures.multinode import MultiNodeCluster
from fixtures.s3 import S3Server
from fixtures.s3_outage import OutageServer
from fixtures.train_jobs import mined_rows
from uniembed import storage
from uniembed.training.metrics import read_metrics

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]

ROOT = Path(__file__).parents[2]
ROWS, GLOBAL_BATCH, STEPS, EVERY = 48, 4, 12, 2  # one epoch: every row exactly once
LOSE_AFTER = 4  # remove node a once the checkpoint of this step is in S3


# What each train job adds to the shared arguments: the tune job's loss, the reranker's chats.
JOB_ARGS = {
    "tune": ["--loss", "infonce", "loss.num_negatives=2"],
    "train_reranker": ["data.chats_per_forward=4"],
}


def tune_args(bucket: str, server: S3Server, name: str, job: str = "tune") -> list[str]:
    """Two workers, one train slot each, checkpoints every ``EVERY`` steps in S3."""
    return [
        *JOB_ARGS[job],
        "--input",
        f"{bucket}/mined",
        "--model",
        "tiny-text-lm",
        "--storage-path",
        f"{bucket}/runs",
        "--name",
        name,
        f"train.max_steps={STEPS}",
        f"train.batch_size={GLOBAL_BATCH}",
        "train.warmup_steps=1",
        "scaling.num_workers=2",
        "scaling.cpus_per_worker=0.5",
        "scaling.cpu_threads=1",
        "scaling.resources={train_slot: 1}",
        f"checkpoint.every_steps={EVERY}",
        "checkpoint.max_failures=2",
        "checkpoint.export=false",
        "debug.record_batches=true",
        "debug.step_delay_s=1.0",
        f"storage.endpoint_url={server.endpoint_url}",
        f"storage.access_key_id={server.access_key_id}",
        f"storage.secret_access_key={server.secret_access_key}",
        f"storage.region={server.region}",
    ]


def start_tune(
    cluster: MultiNodeCluster, args: list[str], log: Path, job: str = "tune"
) -> subprocess.Popen:
    """``jobs/<job>.py`` as its own driver joined to ``cluster``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT / "tests"), str(ROOT)]),
        "RAY_ADDRESS": cluster.address,
        "RAY_TMPDIR": cluster.temp_root,
    }
    return subprocess.Popen(
        [sys.executable, str(ROOT / "jobs" / f"{job}.py"), *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def states(run: str) -> list[dict]:
    """Every checkpointed train state of the run (unordered)."""
    files = [f for f in storage.list_files(run) if f.endswith("train_state.json")]
    return [json.loads(storage.read_text(f)) for f in files]


def last_step(run: str) -> int:
    """The step of the newest checkpoint in S3 (0: none yet)."""
    return max((s["position"]["step"] for s in states(run)), default=0)


def finish(proc: subprocess.Popen, log: Path, timeout_s: float = 1200) -> str:
    code = proc.wait(timeout=timeout_s)
    text = log.read_text(errors="replace")
    assert code == 0, f"the train job exited {code}:\n{text[-6000:]}"
    return text


def trajectory(run: str) -> tuple[list[list[str]], list[dict]]:
    """(row ids trained per step from the last checkpoint, metrics rows)."""
    state = max(states(run), key=lambda s: s["position"]["step"])
    return state["extra"]["batches"], read_metrics(storage.join(run, "metrics.csv"))


@pytest.mark.parametrize("job", sorted(JOB_ARGS))
def test_train_survives_losing_a_worker_node(
    multinode_cluster: MultiNodeCluster, s3_outage_server: OutageServer, tmp_path: Path, job: str
) -> None:
    # The private server: nobody else restarts it (and wipes it) during the run.
    s3_server = s3_outage_server.server
    assert s3_server is not None
    before = storage.get_options()
    storage.configure(s3_outage_server.options())
    try:
        _run_scenario(multinode_cluster, s3_server, s3_outage_server.bucket(), tmp_path, job)
    finally:
        storage.configure(before)


def _run_scenario(
    multinode_cluster: MultiNodeCluster,
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
    job: str,
) -> None:
    cluster = multinode_cluster
    cluster.add_node("a", resources={"train_slot": 1})
    cluster.add_node("b", resources={"train_slot": 1})
    storage.write_parquet(f"{s3_bucket}/mined/part-0.parquet", mined_rows(ROWS))
    log = tmp_path / "log.txt"

    finish(start_tune(cluster, tune_args(s3_bucket, s3_server, "clean", job), log, job), log)

    proc = start_tune(cluster, tune_args(s3_bucket, s3_server, "faulted", job), log, job)
    run = f"{s3_bucket}/runs/faulted"
    deadline = time.monotonic() + 900
    while last_step(run) < LOSE_AFTER:
        assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
        assert time.monotonic() < deadline
        time.sleep(0.3)
    removed = cluster.remove_node("a")
    lost_at = last_step(run)
    cluster.add_node("c", resources={"train_slot": 1})
    recover_s = None
    while proc.poll() is None and recover_s is None:
        if last_step(run) > lost_at:
            recover_s = time.time() - removed
        time.sleep(0.3)
    text = finish(proc, log)

    batches, metrics = trajectory(run)
    clean_batches, clean_metrics = trajectory(f"{s3_bucket}/runs/clean")
    ids = [i for b in batches for i in b]
    final, clean_final = float(metrics[-1]["loss"]), float(clean_metrics[-1]["loss"])
    record(
        f"train ({job}): lose a worker node after a checkpoint",
        recovered=len(batches) == STEPS,
        recover_s=recover_s,
        lost=ROWS - len(set(ids)) + (len(ids) - len(set(ids))),
        unit="rows (skipped+repeated)",
        equal=batches == clean_batches and abs(final - clean_final) <= 1e-5 * abs(clean_final),
        final_loss=final,
        clean_loss=clean_final,
        checkpoint_step=lost_at,
    )
    assert lost_at < STEPS, "the node was lost after the run had finished"
    assert "resumed at step" in text  # the new group started from a checkpoint
    assert len(batches) == STEPS  # the same number of optimizer steps
    assert len(ids) == len(set(ids)) == ROWS  # no row twice, none skipped
    assert batches == clean_batches  # by data position: the same rows at the same steps
    assert [int(r["step"]) for r in metrics] == list(range(1, STEPS + 1))
    assert final == pytest.approx(clean_final, rel=1e-5, abs=1e-6)


def test_checkpoint_uploads_ride_out_an_s3_outage(
    multinode_cluster: MultiNodeCluster, s3_outage_server: OutageServer, tmp_path: Path
) -> None:
    """The S3 endpoint goes away for 20 s right after a checkpoint: the next metrics write
    waits it out (storage.retry_deadline_s), a checkpoint upload that fails restarts the
    group from the last checkpoint (checkpoint.max_failures), and the run ends with every
    step and every row once."""
    server = s3_outage_server.server
    assert server is not None
    cluster = multinode_cluster
    cluster.add_node("a", resources={"train_slot": 2}, num_cpus=2)
    before = storage.get_options()
    storage.configure(s3_outage_server.options())
    try:
        bucket = s3_outage_server.bucket()
        storage.write_parquet(f"{bucket}/mined/part-0.parquet", mined_rows(ROWS))
        log = tmp_path / "outage.log"
        args = [*tune_args(bucket, server, "outage"), "checkpoint.max_failures=5"]
        proc = start_tune(cluster, args, log)
        run = f"{bucket}/runs/outage"
        deadline = time.monotonic() + 900
        while last_step(run) < EVERY:
            assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline
            time.sleep(0.3)
        restore = s3_outage_server.outage(20)
        restore.join()
        _, up = s3_outage_server.outages[-1]
        text = finish(proc, log)
        done = time.time()
        batches, metrics = trajectory(run)
        ids = [i for b in batches for i in b]
        record(
            "train: 20 s S3 outage during checkpoint uploads",
            recovered=len(batches) == STEPS,
            recover_s=done - up,
            lost=ROWS - len(set(ids)) + (len(ids) - len(set(ids))),
            unit="rows (skipped+repeated)",
            equal=len(ids) == len(set(ids)) == ROWS,
            outcome="group restarted from a checkpoint"
            if "FailurePolicy] RETRY" in text or "resumed at step" in text
            else "waited out",
        )
        assert len(batches) == STEPS
        assert len(ids) == len(set(ids)) == ROWS
        assert [int(r["step"]) for r in metrics] == list(range(1, STEPS + 1))
    finally:
        storage.configure(before)
