"""The mine job on a real multi-node Ray cluster loses a node, then its driver, and its
output is still exactly an uninterrupted run's.

Nodes: a head (2 CPUs) and worker nodes ``a`` and ``b`` (1 CPU each), each holding one
``judge_slot``; the judge pool asks for one slot per actor, so its two actors sit on ``a``
and ``b``. Mid-run ``a`` is removed (every process killed: the judge actor, whatever else
Ray put there, its object store) and ``c`` joins with a slot, as a replacement machine
would. The job must end by itself with the clean run's rows, negatives and scores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from fixtures.faults_report import record
from fixtures.multinode import MultiNodeCluster
from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.demo import demo_path
from uniembed.mining.pipeline import read_mined

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]

N_QUERIES, SHARD, K = 64, 4, 8
ROOT = Path(__file__).parents[2]


def is_timing(column: str) -> bool:
    """Seconds a stage took (``embed_s``, ``retrieve_s``, ``judge_s``): the only columns
    that may differ between runs."""
    return column.endswith("_s")


def write_inputs(folder: Path, n_queries: int = N_QUERIES) -> None:
    """WordNet queries and a pool of their positives plus 40 other definitions."""
    queries = [json.loads(x) for x in Path(demo_path("wordnet/queries.jsonl")).open()][:n_queries]
    corpus = [json.loads(x) for x in Path(demo_path("wordnet/corpus.jsonl")).open()]
    positives = {q["pos_id"] for q in queries}
    pool = [c for c in corpus if c["id"] in positives]
    pool += [c for c in corpus if c["id"] not in positives][:40]
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("queries.jsonl", queries), ("pool.jsonl", pool)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def mine_args(inputs: Path, out: Path) -> list[str]:
    """A judge-mode mine over ``inputs`` with two judge actors, one per ``judge_slot``."""
    return [
        "--queries",
        str(inputs / "queries.jsonl"),
        "--pool",
        str(inputs / "pool.jsonl"),
        "--output",
        str(out),
        "--embedder",
        "minilm",
        "--judge",
        "tiny-text-lm",
        f"shard_size={SHARD}",
        f"retrieval.k={K}",
        "selection.num_negatives=2",
        "selection.beta=0.0",  # the random judge's scores lie close together
        "sanity.on_fail=continue",  # a random judge: its scores are kept and compared
        f"sanity.calibration_queries={SHARD}",
        "judge.compute.num_actors=2",
        "judge.compute.cpus_per_actor=0.5",
        "judge.compute.micro_batch_size=1",
        "judge.compute.rows_per_call=1",
        "judge.compute.resources={judge_slot: 1}",
    ]


def start_driver(cluster: MultiNodeCluster, args: list[str], log: Path) -> subprocess.Popen:
    """The mine job as its own driver process joined to ``cluster`` (``RAY_ADDRESS``)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT / "tests"), str(ROOT)]),
        "RAY_ADDRESS": cluster.address,
        "RAY_TMPDIR": cluster.temp_root,
    }
    return subprocess.Popen(
        [sys.executable, str(ROOT / "jobs" / "mine.py"), *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def judged_count(out: Path) -> int:
    """Judged shards written so far."""
    return len(list((out / "judged").glob("*.parquet")))


def wait_for_shards(proc: subprocess.Popen, out: Path, n: int, timeout_s: float = 900) -> int:
    """Wait until ``n`` judged shards exist (the driver still running); returns how many."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        have = judged_count(out)
        if have >= n:
            return have
        if proc.poll() is not None:
            raise AssertionError(f"the job ended (code {proc.returncode}) before {n} shards")
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} judged shards after {timeout_s:g} s")


def wait_for_judges(
    cluster: MultiNodeCluster, proc: subprocess.Popen, out: Path, timeout_s: float = 900
) -> None:
    """Wait until the main pass's judge actors are up, one on node ``a`` and one on ``b``
    (those of the calibration pass, seen before its shard was written, do not count)."""
    deadline = time.monotonic() + timeout_s
    calibration: set[str] = set()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the job ended (code {proc.returncode}) before the judges ran")
        calibrated = judged_count(out) >= 1
        placed = cluster.actors_on("JudgeWorker")
        if not calibrated:
            calibration.update(i for ids in placed.values() for i in ids)
            continue
        fresh = {n: [i for i in ids if i not in calibration] for n, ids in placed.items()}
        if len(fresh.get("a", [])) == 1 and len(fresh.get("b", [])) == 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"no judge actors on nodes a and b after {timeout_s:g} s")


def finish(proc: subprocess.Popen, log: Path, timeout_s: float = 1200) -> str:
    """Wait for the driver; fail with its log unless it exited 0."""
    code = proc.wait(timeout=timeout_s)
    text = log.read_text(errors="replace")
    assert code == 0, f"mine exited {code}:\n{text[-6000:]}"
    return text


def table(out: Path, folder: str) -> pa.Table:
    """Every row of ``folder`` (judged or mined) without the timing columns, by query."""
    t = storage.read_parquet(str(out / folder))
    t = t.drop_columns([c for c in t.column_names if is_timing(c)])
    key = S.QUERY_ID if S.QUERY_ID in t.column_names else S.ID
    return t.sort_by(key)


def differences(out: Path, clean: Path) -> list[str]:
    """What differs from the clean run: rows lost, duplicated or added, negatives, scores
    beyond 1e-6 (empty: the same output)."""
    found: list[str] = []
    for folder in ("judged", "mined"):
        got, want = table(out, folder), table(clean, folder)
        key = S.QUERY_ID if S.QUERY_ID in got.column_names else S.ID
        ids = got[key].to_pylist()
        if len(ids) != len(set(ids)):
            found.append(f"{folder}: duplicated rows")
        if ids != want[key].to_pylist():
            found.append(f"{folder}: {len(set(want[key].to_pylist()) - set(ids))} rows lost")
            continue
        for col in got.column_names:
            a, b = got[col].to_pylist(), want[col].to_pylist()
            if a == b:
                continue
            flat_a, flat_b = _floats(a), _floats(b)
            if flat_a is None or flat_b is None or len(flat_a) != len(flat_b):
                found.append(f"{folder}.{col} differs")
            elif max(abs(x - y) for x, y in zip(flat_a, flat_b, strict=True)) > 1e-6:
                found.append(f"{folder}.{col} differs by more than 1e-6")
    return found


def lost_rows(out: Path, clean: Path) -> int:
    """Clean-run query rows missing from ``out``'s judged shards."""
    want = set(table(clean, "judged")[S.ID].to_pylist())
    have = set(table(out, "judged")[S.ID].to_pylist()) if (out / "judged").exists() else set()
    return len(want - have)


def first_shard_after(out: Path, t: float) -> float | None:
    """Seconds from ``t`` until the first judged shard written after it."""
    times = [p.stat().st_mtime for p in (out / "judged").glob("*.parquet")]
    later = [x - t for x in times if x > t]
    return min(later) if later else None


def _floats(values: list) -> list[float] | None:
    """``values`` (numbers or lists of numbers, None kept as NaN-free 0) flattened."""
    out: list[float] = []
    for v in values:
        items = v if isinstance(v, list) else [v]
        for x in items:
            if x is None:
                out.append(0.0)
            elif isinstance(x, (int, float)):
                out.append(float(x))
            else:
                return None
    return out


@pytest.fixture
def mine_cluster(multinode_cluster: MultiNodeCluster) -> MultiNodeCluster:
    """Head plus nodes ``a`` and ``b``, one judge slot each."""
    multinode_cluster.add_node("a", resources={"judge_slot": 1})
    multinode_cluster.add_node("b", resources={"judge_slot": 1})
    return multinode_cluster


def test_mine_survives_losing_a_judge_node_and_its_driver(
    mine_cluster: MultiNodeCluster, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    write_inputs(inputs)
    clean, faulted, killed = tmp_path / "clean", tmp_path / "node", tmp_path / "driver"
    log = tmp_path / "clean.log"
    n_shards = -(-N_QUERIES // SHARD)

    finish(start_driver(mine_cluster, mine_args(inputs, clean), log), log)
    assert judged_count(clean) == n_shards
    assert read_mined(str(clean)).num_rows > 0  # selection has rows to compare

    # 1. a judge node disappears mid-run; a replacement joins; the job ends by itself
    log = tmp_path / "node.log"  # one log per driver, kept for a look after the test
    proc = start_driver(mine_cluster, mine_args(inputs, faulted), log)
    wait_for_judges(mine_cluster, proc, faulted)
    lost_at = mine_cluster.remove_node("a")
    written_at_loss = judged_count(faulted)
    mine_cluster.add_node("c", resources={"judge_slot": 1})
    text = finish(proc, log)
    diffs = differences(faulted, clean)
    record(
        "mine: lose a judge node mid-run",
        recovered=True,
        recover_s=first_shard_after(faulted, lost_at),
        lost=lost_rows(faulted, clean),
        unit="rows",
        equal=not diffs,
    )
    assert written_at_loss < n_shards, "the node was lost after the run had finished"
    assert judged_count(faulted) == n_shards
    assert not diffs, diffs
    assert "mined" in text.splitlines()[-1]

    # 2. the driver is killed mid-run (its job and actors go with it); the rerun resumes
    log = tmp_path / "killed.log"
    proc = start_driver(mine_cluster, mine_args(inputs, killed), log)
    wait_for_shards(proc, killed, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    kept = {p.name: p.stat().st_mtime_ns for p in (killed / "judged").glob("*.parquet")}
    assert 0 < len(kept) < n_shards and not (killed / "_SUCCESS.json").exists()
    rerun = time.time()
    log = tmp_path / "rerun.log"
    finish(start_driver(mine_cluster, mine_args(inputs, killed), log), log)
    diffs = differences(killed, clean)
    record(
        "mine: kill the driver, rerun",
        recovered=True,
        recover_s=time.time() - rerun,
        lost=lost_rows(killed, clean),
        unit="rows",
        equal=not diffs,
        kept_shards=len(kept),
    )
    after = {p.name: p.stat().st_mtime_ns for p in (killed / "judged").glob("*.parquet")}
    assert all(after[n] == t for n, t in kept.items())  # finished shards were kept
    assert not diffs, diffs
