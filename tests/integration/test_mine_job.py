"""The mine job end to end on a real local Ray cluster: images through retrieval, the judge
and the export (tiny-qwen2-vl as embedder and judge), bad input, S3, resume after a kill."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.demo import demo_path
from uniembed.data.images import load_image
from uniembed.mining.pipeline import read_mined

pytestmark = pytest.mark.integration

PAIRS = [json.loads(line) for line in Path(demo_path("openclipart/pairs.jsonl")).open()][:10]
K = 5
BAD_QUERIES = {
    "q-nopos": "is not in the pool",  # positive absent from the pool
    "q-badpool": "is not in the pool",  # positive's image unreadable: pool item quarantined
    "q-badimg": "cannot decode image",  # query image truncated
    "q-empty": "neither text nor image",  # empty text, no image
    "q-escape": "outside the input folder",  # an image path that climbs out of the inputs
}
POOL_IMAGE_TEXT = "a picture with its title"  # a pool item with an image: embedded, not refused


def _write_inputs(folder: Path) -> None:
    """10 image queries whose positives are titles, four bad queries, one bad pool item."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    src = Path(demo_path("openclipart/pairs.jsonl")).parent
    for p in PAIRS:
        shutil.copy(src / p["image"], folder / p["image"])
    data = (src / PAIRS[0]["image"]).read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 3])
    queries = [
        {"id": f"q{i}", "image_uri": p["image"], "pos_id": f"t{i}"} for i, p in enumerate(PAIRS)
    ]
    queries.insert(3, {"id": "q-nopos", "image_uri": PAIRS[3]["image"], "pos_id": "t-absent"})
    queries.insert(6, {"id": "q-badimg", "image_uri": "truncated.png", "pos_id": "t1"})
    queries.append({"id": "q-empty", "text": "", "pos_id": "t2"})
    queries.append({"id": "q-badpool", "text": "a picture", "pos_id": "t-bad"})
    shutil.copy(src / PAIRS[4]["image"], folder.parent / "escape.png")  # exists, not allowed
    queries.append({"id": "q-escape", "image_uri": "../escape.png", "pos_id": "t4"})
    pool = [{"id": f"t{i}", "text": p["title"]} for i, p in enumerate(PAIRS)]
    pool.append({"id": "t-bad", "text": "broken", "image_uri": "truncated.png"})
    pool.append({"id": "t-img", "text": POOL_IMAGE_TEXT, "image_uri": PAIRS[0]["image"]})
    for name, rows in (("queries.jsonl", queries), ("pool.jsonl", pool)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def _args(inputs: str, out: str, *extra: str) -> list[str]:
    return [
        "--config",
        str(Path(__file__).parents[2] / "jobs" / "configs" / "mine_openclipart.yaml"),
        "--queries",
        storage.join(inputs, "queries.jsonl"),
        "--pool",
        storage.join(inputs, "pool.jsonl"),
        "--output",
        out,
        "queries_format=items",
        "shard_size=4",
        f"retrieval.k={K}",
        "selection.num_negatives=3",
        "selection.beta=0.0",
        "selection.max_fn_share=1.0",  # the paper's rule: no negative above the positive
        *extra,
    ]


@pytest.fixture(scope="module")
def local_console(
    ray_start_2_cpus: None, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, str]:
    """One uninterrupted local run, as its own driver process on the test cluster (a user's
    console: what the driver and the workers it forwards print, warnings and Ray's own log
    lines included); a progress line per judge call. (inputs folder, output folder, console)."""
    inputs = tmp_path_factory.mktemp("mine_in")
    _write_inputs(inputs)
    out = tmp_path_factory.mktemp("mine") / "out"
    run = _run_driver(_args(str(inputs), str(out)), {"UNIEMBED_PROGRESS_INTERVAL_S": "0"})
    console = run.stdout + run.stderr
    assert run.returncode == 0, console[-4000:]
    return inputs, out, console


@pytest.fixture(scope="module")
def local_run(local_console: tuple[Path, Path, str]) -> tuple[Path, Path]:
    """One uninterrupted local run: (inputs folder, output folder)."""
    return local_console[0], local_console[1]


def _check_output(out: str, inputs: str) -> None:
    report = json.loads(storage.read_text(storage.join(out, "report.json")))
    assert report["queries"] == 15
    # 5 queries and 1 pool item: the job's total counts every row it set aside.
    assert sum(report["quarantined"].values()) == 6
    assert report["pool_quarantined"] == report["quarantined"]["pool"] == 1
    assert report["pool_items"] == len(PAIRS) + 1  # the titles and the pool item with an image
    assert report["judged_pairs"] == 10 * (K + 1)  # every candidate and every positive
    assert 0.0 <= report["auc"] <= 1.0
    assert report["rows_written"] + report["rows_without_negatives"] == 10
    assert report["rows_written"] >= 1
    assert storage.read_bytes(storage.join(out, "judge_scores.png"))[:4] == b"\x89PNG"
    assert "Counts per stage" in storage.read_text(storage.join(out, "report.md"))

    q = storage.read_parquet(storage.join(out, "quarantine")).to_pylist()
    reasons = {r[S.ID]: r[S.REASON] for r in q if r[S.STAGE] != "select"}
    assert set(reasons) == set(BAD_QUERIES)
    for qid, why in BAD_QUERIES.items():
        assert why in reasons[qid], reasons[qid]

    mined = read_mined(out)
    assert mined.schema.equals(S.MINED_SCHEMA)
    titles = {f"t{i}": p["title"] for i, p in enumerate(PAIRS)} | {"t-img": POOL_IMAGE_TEXT}
    for row in mined.to_pylist():
        assert row[S.EMBEDDER] == row[S.JUDGE] == "tiny-qwen2-vl"
        assert (row[S.TOP_K], row[S.BETA]) == (K, 0.0)
        assert row[S.QUERY_IMAGE].startswith(inputs) and row[S.QUERY_IMAGE].endswith(".png")
        assert row[S.POS_TEXT] == titles[row[S.POS_ID]]
        assert row[S.POS_ID] not in row[S.NEG_IDS]
        # 1-based retrieval ranks over the pool; the positive takes a rank too
        assert len(row[S.NEG_IDS]) == 3 and all(1 <= r <= K + 1 for r in row[S.NEG_RANKS])
        assert [titles[n] for n in row[S.NEG_IDS]] == row[S.NEG_TEXTS]
        # false negatives (s > s_pos - beta) never become negatives
        assert all(s <= row[S.POS_SCORE] + 1e-7 for s in row[S.NEG_SCORES])
        assert row[S.FILLED] == (row[S.N_FILLED] > 0)

    export = [
        r
        for f in storage.list_files(storage.join(out, "export"), suffix=".json")
        for r in json.loads(storage.read_text(f))
    ]
    assert len(export) == len(mined)
    first, row = export[0], mined.to_pylist()[0]
    assert first[S.QUERY_POS_SCORES] == pytest.approx(row[S.POS_SCORE])
    assert first[S.HARD_NEGATIVES] == [list(x) for x in zip(row[S.NEG_TEXTS], row[S.NEG_IMAGES])]
    assert first[S.HARD_NEGATIVES_SCORES] == pytest.approx(row[S.NEG_SCORES])


def test_mine_job_local(local_run: tuple[Path, Path]) -> None:
    inputs, out = local_run
    _check_output(str(out), str(inputs))
    # The pipeline's scores are the judge's own, one pair at a time.
    from uniembed.reranker.scorer import JudgeInput, JudgeScorer

    judge = JudgeScorer.load("tiny-qwen2-vl")
    row = read_mined(str(out)).to_pylist()[0]
    query = JudgeInput(text=None, image=load_image(None, row[S.QUERY_IMAGE]))
    # every negative with its own image, if it has one (the pool's t-img does)
    negatives = [
        JudgeInput(text=text, image=load_image(None, image) if image else None)
        for text, image in zip(row[S.NEG_TEXTS], row[S.NEG_IMAGES], strict=True)
    ]
    ref = judge.score_pairs(
        [(query, JudgeInput(text=row[S.POS_TEXT]))] + [(query, n) for n in negatives]
    )
    np.testing.assert_allclose(ref, [row[S.POS_SCORE], *row[S.NEG_SCORES]], atol=1e-4)


# One line per judge call (UNIEMBED_PROGRESS_INTERVAL_S=0), and one when a pass ends.
JUDGED = re.compile(r"^\[mine/judge\] ([\d,]+)(?:/~?[\d,]+)? pairs judged", re.M)
CLOSING = re.compile(r"^\[mine/judge\] ([\d,]+) pairs judged in ", re.M)


def test_the_judge_progress_line_moves_per_call(local_console: tuple[Path, Path, str]) -> None:
    console = local_console[2]
    judged = [int(n.replace(",", "")) for n in JUDGED.findall(console)]
    rises = [b > a for a, b in zip(judged, judged[1:], strict=False)]
    assert sum(rises) >= 1, console[-4000:]  # two lines at least, the count moving
    # The passes' closing lines add up to every judged pair of the report.
    assert sum(int(n.replace(",", "")) for n in CLOSING.findall(console)) == 10 * (K + 1)
    assert "mine/judge: " not in console  # no block-level "rows in, 0 out" line for it


# What a successful run must not print: warnings (FutureWarning, RayDeprecationWarning ...),
# error-level lines (Ray's C++ log format, Python's ERROR), an unnamed dataset.
NOISE = re.compile(
    r"[A-Za-z]Warning\b|\[\d{4}-\d\d-\d\d [\d:,]+ E \d+ \d+\]|\bERROR\b|\bdataset_\d"
)


def test_a_successful_run_prints_no_warning_and_no_error_line(
    local_console: tuple[Path, Path, str],
) -> None:
    noise = [line for line in local_console[2].splitlines() if NOISE.search(line)]
    assert not noise, "\n".join(noise)


def _run_driver(
    args: list[str], extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the job as its own driver process on the test cluster. When a driver exits, Ray
    kills its actors; an in-process failure would leave the failed run's actor pool holding
    CPUs, and on 2 CPUs the rerun's writer could never be scheduled."""
    import ray

    root = Path(__file__).parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root / "platform"), str(root / "tests"), str(root)]),
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        **(extra_env or {}),
    }
    return subprocess.run(
        [sys.executable, str(root / "jobs" / "mine.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


@pytest.mark.slow  # the resume rules are unit-tested (test_mine_resume.py)
def test_mine_job_resumes_after_kill(local_run: tuple[Path, Path], tmp_path: Path) -> None:
    from jobs.mine import main

    inputs, full = local_run
    out = tmp_path / "out"
    killed = _run_driver(_args(str(inputs), str(out), "fail_after_shards=2"))
    assert killed.returncode != 0
    assert "fail_after_shards=2" in killed.stdout + killed.stderr
    judged = sorted((out / "judged").glob("*.parquet"))
    assert len(judged) == 2 and not (out / "_SUCCESS.json").exists()
    before = {p.name: p.stat().st_mtime_ns for p in judged}
    assert main(_args(str(inputs), str(out))) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (out / "judged").glob("*.parquet")}
    assert len(after) == 4
    assert all(after[n] == t for n, t in before.items())  # finished shards were skipped
    assert read_mined(str(out)).equals(read_mined(str(full)))
    for f in sorted((full / "export").glob("*.json")):
        assert (out / "export" / f.name).read_text() == f.read_text()
    assert (out / "report.json").exists()


@pytest.mark.slow
def test_mine_rerun_without_resume_keeps_the_output_until_it_succeeds(
    local_run: tuple[Path, Path], tmp_path: Path
) -> None:
    from jobs.mine import main

    inputs, full = local_run
    out = tmp_path / "out"
    shutil.copytree(full, out)
    before = read_mined(str(out))
    killed = _run_driver(_args(str(inputs), str(out), "resume=false", "fail_after_shards=1"))
    assert killed.returncode != 0
    assert (out / "_SUCCESS.json").exists() and read_mined(str(out)).equals(before)
    assert main(_args(str(inputs), str(out), "resume=false")) == 0
    assert read_mined(str(out)).equals(before)  # the new run replaced it: same rows
    assert not [p.name for p in out.iterdir() if p.name.startswith("_staging-")]


@pytest.mark.slow
def test_mine_job_s3(local_run: tuple[Path, Path], s3_bucket: str) -> None:
    from jobs.mine import main

    inputs, full = local_run
    for f in sorted(inputs.rglob("*")):
        if f.is_file():
            storage.write_bytes(
                storage.join(s3_bucket, "in", str(f.relative_to(inputs))), f.read_bytes()
            )
    out = storage.join(s3_bucket, "out")
    assert main(_args(storage.join(s3_bucket, "in"), out)) == 0
    _check_output(out, storage.join(s3_bucket, "in"))
    local = read_mined(str(full))
    remote = read_mined(out)
    for col in (S.QUERY_ID, S.NEG_IDS, S.NEG_RANKS, S.FILLED):
        assert remote[col].equals(local[col])
    np.testing.assert_allclose(
        remote[S.POS_SCORE].to_numpy(), local[S.POS_SCORE].to_numpy(), atol=1e-5
    )


@pytest.mark.slow
def test_mine_default_config_runs(
    ray_start_2_cpus: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python jobs/mine.py`` with no arguments: WordNet, minilm + the shipped trained judge
    (only the output folder is redirected); the judge passes its sanity check and decides."""
    from jobs.mine import main

    monkeypatch.chdir(Path(__file__).parents[2])
    out = tmp_path / "out"
    assert main([f"output={out}"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["embedder"] == "minilm" and report["judge"] == "smollm2-135m-judge"
    assert report["sanity"]["action"] == "judge" and report["score_source"] == "judge"
    assert report["rows_written"] > 0 and report["auc"] >= report["auc_floor"]
    assert report["true_fn_retrieved"] > 0  # the demo's identical definitions are found
