"""The mine job's judge sanity check on a real Ray cluster, one run per ``sanity.on_fail``
mode, with a judge that returns random scores (a random-weight LM): it must never decide
the output silently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.demo import demo_path
from uniembed.mining.pipeline import EXIT_JUDGE_FAILED, read_mined

pytestmark = pytest.mark.integration

N_QUERIES, SHARD, K = 16, 8, 6
FLOOR = 0.95  # no random judge reaches it


def _write_inputs(folder: Path) -> None:
    """16 WordNet queries and a pool of their positives plus 30 other definitions."""
    queries = [json.loads(x) for x in Path(demo_path("wordnet/queries.jsonl")).open()][:N_QUERIES]
    corpus = [json.loads(x) for x in Path(demo_path("wordnet/corpus.jsonl")).open()]
    positives = {q["pos_id"] for q in queries}
    pool = [c for c in corpus if c["id"] in positives] + [
        c for c in corpus if c["id"] not in positives
    ][:30]
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("queries.jsonl", queries), ("pool.jsonl", pool)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def _args(inputs: Path, out: Path, on_fail: str, *extra: str) -> list[str]:
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
        "max_queries=null",
        f"shard_size={SHARD}",
        f"retrieval.k={K}",
        "retrieval.easy_margin=null",
        "selection.num_negatives=3",
        "selection.max_fn_share=1.0",  # the paper's rule: no negative above s_pos - beta
        f"sanity.auc_floor={FLOOR}",
        f"sanity.calibration_queries={SHARD}",
        f"sanity.on_fail={on_fail}",
        *extra,
    ]


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from jobs.mine import main

    capsys.readouterr()
    code = main(args)
    return code, capsys.readouterr().out.strip().splitlines()[-1]


def _judged(out: Path) -> list[dict]:
    return storage.read_parquet(str(out / "judged")).to_pylist()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sanity_in")
    _write_inputs(folder)
    return folder


@pytest.fixture(scope="module")
def fallback_run(
    ray_start_2_cpus: None, inputs: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, int, str]:
    out = tmp_path_factory.mktemp("sanity") / "fallback"
    from jobs.mine import main

    code = main(_args(inputs, out, "fallback"))
    return out, code, ""


def _reuse_pool(src: Path, out: Path) -> None:
    """Start a run from another run's staged and embedded pool (what a resume reuses): the
    copy is a mine output (its owner marker comes along), holding stages 1 and 2 only."""
    shutil.copytree(src / "pool", out / "pool")
    shutil.copy(src / "_OWNER.json", out / "_OWNER.json")


def test_fallback_lets_the_embedder_decide(
    fallback_run: tuple[Path, int, str], inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, code, _ = fallback_run
    assert code == 0
    verdict = json.loads((out / "sanity.json").read_text())
    assert verdict["action"] == "fallback" and verdict["auc"] < FLOOR and verdict["rows"] > 0
    report = json.loads((out / "report.json").read_text())
    assert report["score_source"] == "embedder" and "FAILED" in report["warning"]
    # only the calibration shard was judged: the judge scored nothing after failing
    judged = _judged(out)
    scored = [r for r in judged if r[S.POS_SCORE] is not None]
    assert len(scored) == SHARD and len(judged) == N_QUERIES
    assert report["judged_pairs"] == SHARD * (K + 1)
    mined = read_mined(str(out)).to_pylist()
    assert len(mined) == report["rows_written"] > 0
    sims = {r[S.ID]: r for r in judged}
    for row in mined:
        assert row[S.SCORE_SOURCE] == S.SCORE_EMBEDDER and row[S.JUDGE] is None
        src = sims[row[S.QUERY_ID]]
        assert row[S.POS_SCORE] == pytest.approx(src["pos_sim"])
        by_id = dict(zip(src["cand_ids"], src["cand_sims"], strict=True))
        assert row[S.NEG_SCORES] == pytest.approx([by_id[n] for n in row[S.NEG_IDS]])
        # the false-negative rule ran on similarities: no negative above s_pos - beta
        assert all(s <= row[S.POS_SCORE] - 0.01 + 1e-6 for s in row[S.NEG_SCORES])
    assert "FAILED its sanity check" in (out / "report.md").read_text()
    # a rerun resumes with the recorded verdict and writes the same rows
    code, line = _run(_args(inputs, out, "fallback"), capsys)
    assert code == 0 and "FAILED its sanity check" in line and "fell back" in line
    assert read_mined(str(out)).to_pylist() == mined


def test_stop_ends_before_selection(
    fallback_run: tuple[Path, int, str],
    inputs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "stop"
    _reuse_pool(fallback_run[0], out)
    code, line = _run(_args(inputs, out, "stop"), capsys)
    assert code == EXIT_JUDGE_FAILED
    assert "stopped before selection" in line
    assert not (out / "mined").exists() and not (out / "_SUCCESS.json").exists()
    assert len(_judged(out)) == SHARD  # the rest was never judged
    assert "FAILED" in json.loads((out / "report.json").read_text())["warning"]


def test_continue_uses_the_judge_anyway_and_the_upper_filter(
    fallback_run: tuple[Path, int, str],
    inputs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "continue"
    _reuse_pool(fallback_run[0], out)
    # δ at the median similarity of the fallback run's candidates (same embedder, same
    # retrieval): about half of them are above it
    sims = sorted(s for r in _judged(fallback_run[0]) for s in r["cand_sims"])
    delta = sims[len(sims) // 2]
    above = sum(s > delta for s in sims)
    code, line = _run(_args(inputs, out, "continue", f"retrieval.max_sim={delta}"), capsys)
    assert code == 0 and "used anyway" in line
    judged = _judged(out)
    assert len(judged) == N_QUERIES and all(r[S.POS_SCORE] is not None for r in judged)
    for row in read_mined(str(out)).to_pylist():
        assert row[S.SCORE_SOURCE] == S.SCORE_JUDGE and row[S.JUDGE] == "tiny-text-lm"
    # δ: no candidate above it reached the judge, and the report counts the dropped ones
    report = json.loads((out / "report.json").read_text())
    assert all(s <= delta for r in judged for s in r["cand_sims"])
    assert report["dropped_above_max"] == above > 0
    assert report["candidates_retrieved"] == N_QUERIES * K
