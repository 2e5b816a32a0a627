"""Nothing lost, nothing clobbered: the jobs' outputs and inputs checked without Ray.

Every check here runs before a job starts Ray (or inside one Ray Data task), so the jobs'
entry points and the writers are called directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data import shards
from uniembed.data.output_guard import ForeignFilesError, foreign_files
from uniembed.embed.dedupe import later_duplicates
from uniembed.mining.report import MineReport
from uniembed.mining.report_stage import add_quarantine


def _embed(argv: list[str]) -> int:
    from jobs.embed import main

    return main([*argv, "--model", "tiny-qwen2-vl"])


def _finished_output(out: Path) -> None:
    """A previous embed run's output, as the job leaves it."""
    (out / "embeddings").mkdir(parents=True)
    (out / "embeddings" / "part-old.parquet").write_bytes(b"old")
    (out / "_SUCCESS.json").write_text('{"rows_out": 1}')


def test_same_ids_in_two_batches_write_two_shards(tmp_path: Path) -> None:
    out, q = str(tmp_path / "e"), str(tmp_path / "q")
    writer = shards.shard_writer(out, q, lambda t: t.select([S.ID]), lambda t: {}, None, "run1")
    batch = pa.table(
        {S.ID: ["a", "b"], S.ERROR: pa.nulls(2, pa.string()), S.SOURCE: ["f:1", "f:2"]}
    )
    writer(batch)
    writer(batch)
    assert shards.count_rows(out) == (2, 4)
    assert all("part-run1-" in f for f in storage.list_files(out))


def test_missing_input_leaves_the_previous_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _finished_output(out)
    with pytest.raises(FileNotFoundError, match="nowhere.jsonl"):
        _embed(["--input", str(tmp_path / "nowhere.jsonl"), "--output", str(out)])
    assert (out / "_SUCCESS.json").exists() and (out / "embeddings" / "part-old.parquet").exists()


def test_foreign_files_are_refused_and_named(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "text": "x"}\n')
    out = tmp_path / "out"
    _finished_output(out)
    (out / "embeddings" / "keep.txt").write_text("mine")
    with pytest.raises(ForeignFilesError, match=r"embeddings/keep\.txt.*--overwrite"):
        _embed(["--input", str(corpus), "--output", str(out)])
    assert (out / "embeddings" / "keep.txt").read_text() == "mine"
    # A folder that is not a job's output at all is refused whole.
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.md").write_text("x")
    with pytest.raises(ForeignFilesError, match=r"notes\.md"):
        _embed(["--input", str(corpus), "--output", str(tmp_path / "home")])


def test_foreign_files_rule() -> None:
    layout = ["embeddings/part-*.parquet", "_SUCCESS.json"]
    files = ["embeddings/part-1.parquet", "embeddings/keep.txt", "_SUCCESS.json"]
    assert foreign_files(files, layout, claimed=True) == ["embeddings/keep.txt"]
    assert foreign_files(files, layout, claimed=False) == sorted(files)


def test_later_duplicates_point_at_the_first() -> None:
    rows = [("a", "f:1"), ("b", "f:2"), ("a", "g:1"), ("a", "g:2")]
    assert later_duplicates(rows) == {"g:1": ("a", "f:1"), "g:2": ("a", "f:1")}


def test_dedupe_policy_is_validated() -> None:
    from uniembed.embed.config import EmbedConfig

    with pytest.raises(ValueError, match="dedupe 'drop'"):
        EmbedConfig(input="a", output="b", dedupe="drop")


def _mine_output(out: Path) -> None:
    for sub in ("judged", "mined", "export"):
        (out / sub).mkdir(parents=True)
        (out / sub / "x.parquet").write_bytes(b"x")
    (out / "_OWNER.json").write_text('{"job": "mine"}')


def test_mine_missing_queries_deletes_nothing(tmp_path: Path) -> None:
    from uniembed.mining.config import MineConfig
    from uniembed.mining.pipeline import prepare_output

    out = tmp_path / "mine"
    _mine_output(out)
    cfg = MineConfig(queries=str(tmp_path / "typo.jsonl"), pool=str(tmp_path), output=str(out))
    cfg.resume = False
    with pytest.raises(FileNotFoundError, match="typo.jsonl"):
        prepare_output(cfg)
    assert all((out / sub / "x.parquet").exists() for sub in ("judged", "mined", "export"))


def test_mine_refuses_a_users_report(tmp_path: Path) -> None:
    from uniembed.mining.config import MineConfig
    from uniembed.mining.pipeline import prepare_output

    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "q"}\n')
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("my notes")
    cfg = MineConfig(queries=str(queries), pool=str(queries), output=str(out))
    with pytest.raises(ForeignFilesError, match=r"report\.md"):
        prepare_output(cfg)
    assert (out / "report.md").read_text() == "my notes"


def test_mine_quarantine_count_includes_the_pool(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    shards.write_manifest(str(out / "pool" / "items"), {"quarantined": 3, "rows": 10})
    report = MineReport(embedder="e", judge="j", k=5, beta=1.0)
    add_quarantine(report, str(out))
    assert sum(report.quarantined.values()) == 3
    assert json.loads((out / "pool" / "items" / "_SUCCESS.json").read_text())["quarantined"] == 3


def test_a_train_run_folder_stands_for_its_export(tmp_path: Path) -> None:
    """``--model <run folder>`` (evaluate, serve, a mine judge) finds ``export/`` through the
    run's ``_SUCCESS.json``; the export folder itself and registry names stay as given."""
    from uniembed.data.job_outputs import model_location, write_run_manifest
    from uniembed.models.registry import resolve_model

    run = tmp_path / "train" / "tune-demo"
    (run / "export").mkdir(parents=True)
    assert model_location(str(run)) == str(run)  # unfinished: no manifest yet
    write_run_manifest(str(run), "tune", {"steps": 2}, str(run / "export"))
    manifest = json.loads((run / "_SUCCESS.json").read_text())
    assert manifest["export"] == "export" and manifest["job"] == "tune"
    assert resolve_model(str(run)) == str(run / "export")
    assert resolve_model(str(run / "export")) == str(run / "export")
    assert model_location("minilm") == "minilm"
