"""Mine job rows without Ray: query/pool records, shards, selection into MINED_SCHEMA rows,
the UniME-V2 export, and the shard writer's buffering and failure knob."""

from __future__ import annotations

import dataclasses
import json

import pyarrow as pa
import pytest

from uniembed.config import ConfigError
from uniembed.data import schema as S
from uniembed.data.records import items_from_unime_v2
from uniembed.data.schema import CAND_SCORES
from uniembed.mining.columns import judge_fields
from uniembed.mining.config import MineConfig, SelectionSection
from uniembed.mining.export import unime_v2_json, unime_v2_record
from uniembed.mining.inputs import iter_query_shards, pool_row, query_row
from uniembed.mining.judge_stage import query_text
from uniembed.mining.selection_stage import SelectOptions, select_table
from uniembed.mining.shards import ShardBuffer, finished_shards, judged_schema


def test_query_rows_items_and_pairs() -> None:
    q = query_row({"id": "q1", "text": "bank: x", "pos_id": "d1"}, "f:1", "/data", "items")
    assert (q[S.ID], q[S.TEXT], q[S.POS_ID]) == ("q1", "bank: x", "d1")
    p = query_row({"id": "c1", "image": "images/c1.png", "title": "Cat"}, "f:1", "/d", "pairs")
    assert p[S.IMAGE_URI] == "/d/images/c1.png" and p[S.POS_ID] == "c1#title"
    pool = pool_row(
        {"id": "c1", "image": "images/c1.png", "title": "Cat"}, "f", "/d", "pairs", None
    )
    assert (pool[S.ID], pool[S.TEXT]) == ("c1#title", "Cat")
    grouped = pool_row({"id": "d1", "text": "a", "g": 7}, "f", "/d", "items", "g")
    assert grouped["group"] == "7"


def test_query_without_pos_id_is_an_error_row(tmp_path) -> None:  # noqa: ANN001
    f = tmp_path / "q.jsonl"
    rows = [{"id": f"q{i}", "text": "t", "pos_id": "d"} for i in range(5)]
    rows[2] = {"id": "q2", "text": "t"}
    f.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{bad json\n")
    shards = list(iter_query_shards(str(f), "items", 2, None, frozenset()))
    assert [len(t) for t in shards] == [2, 2, 2]
    table = pa.concat_tables(shards)
    assert table[S.ORDINAL].to_pylist() == list(range(6))
    assert (
        table[S.SHARD].to_pylist()
        == ["shard-000000"] * 2 + ["shard-000001"] * 2 + ["shard-000002"] * 2
    )
    errors = table[S.ERROR].to_pylist()
    assert "pos_id" in errors[2] and f"{f}:3" in errors[2]
    assert "not valid JSON" in errors[5]
    # skipping finished shards and the max_queries cap keep ordinals and shard names
    rest = pa.concat_tables(
        list(iter_query_shards(str(f), "items", 2, 5, frozenset({"shard-000000"})))
    )
    assert rest[S.ORDINAL].to_pylist() == [2, 3, 4]
    assert rest["shard_rows"].to_pylist() == [2, 2, 1]


def _judged_row(**kw: object) -> dict:
    row = {
        S.ID: "q1",
        S.TEXT: "bank: the river bank",
        S.IMAGE_URI: None,
        S.INSTRUCTION: "Find the definition.",
        S.SOURCE: "q.jsonl:1",
        S.POS_ID: "p",
        S.POS_TEXT: "sloping land",
        S.POS_IMAGE: None,
        S.POS_SCORE: 0.9,
        S.ORDINAL: 0,
        S.CAND_IDS: ["a", "b", "c", "d"],
        S.CAND_TEXTS: ["A", "B", "C", "D"],
        S.CAND_IMAGES: [None, None, None, "s3://x/d.png"],
        S.CAND_SIMS: [0.8, 0.7, 0.6, 0.5],
        S.CAND_RANKS: [1, 3, 4, 5],
        CAND_SCORES: [0.95, 0.3, 0.5, 0.1],
        S.CAND_TRUE_FN: [True, False, False, True],
        S.POS_SIM: 0.75,
    }
    row.update(kw)
    return row


OPTS = SelectOptions(  # the paper's false-negative rule (no cap): its hand-made cases
    selection=SelectionSection(mode="judge", num_negatives=3, beta=0.01, step=5, max_fn_share=1),
    score_source=S.SCORE_JUDGE,
    embedder="minilm",
    judge="j",
    k=50,
)


def test_select_table_judge_mode_hand_made() -> None:
    mined, bad, stats = select_table(pa.Table.from_pylist([_judged_row()]), OPTS)
    assert len(bad) == 0 and mined.schema.equals(S.MINED_SCHEMA)
    row = mined.to_pylist()[0]
    # a (0.95 > 0.89) is a false negative; the rest sorted: c .5, b .3, d .1
    assert row[S.NEG_IDS] == ["c", "b", "d"]
    assert row[S.NEG_TEXTS] == ["C", "B", "D"]
    assert row[S.NEG_IMAGES] == [None, None, "s3://x/d.png"]
    assert row[S.NEG_RANKS] == [4, 3, 5]
    assert row[S.NEG_SCORES] == pytest.approx([0.5, 0.3, 0.1])
    assert (row[S.EMBEDDER], row[S.JUDGE], row[S.TOP_K]) == ("minilm", "j", 50)
    assert row[S.BETA] == pytest.approx(0.01)
    assert not row[S.FILLED]
    assert stats["false_negatives_filtered"] == 1
    assert (stats["true_fn_judged"], stats["true_fn_caught"]) == (2, 1)


def test_select_table_judge_mode_falls_back_to_similarities() -> None:
    """A judge that failed its sanity check: the same UniME-V2 rule runs on the embedder's
    similarities, and the rows say so."""
    opts = dataclasses.replace(OPTS, score_source=S.SCORE_EMBEDDER)
    mined, _, stats = select_table(pa.Table.from_pylist([_judged_row()]), opts)
    row = mined.to_pylist()[0]
    # sims a .8 b .7 c .6 d .5, pos_sim .75, beta .01: a is above .74, the rest in order
    assert row[S.NEG_IDS] == ["b", "c", "d"]
    assert row[S.NEG_SCORES] == pytest.approx([0.7, 0.6, 0.5])
    assert row[S.POS_SCORE] == pytest.approx(0.75)
    assert row[S.SCORE_SOURCE] == S.SCORE_EMBEDDER and row[S.JUDGE] is None
    assert stats["false_negatives_filtered"] == 1


def test_select_table_fill_and_empty_rows() -> None:
    filled = _judged_row()
    filled[CAND_SCORES] = [0.95, 0.3, 0.92, 0.93]  # only b survives
    empty = _judged_row(**{S.ID: "q2"})
    empty[CAND_SCORES] = [0.95, 0.96, 0.97, 0.98]
    mined, bad, stats = select_table(pa.Table.from_pylist([filled, empty]), OPTS)
    row = mined.to_pylist()[0]
    assert row[S.NEG_IDS] == ["b", "b", "b"] and row[S.FILLED] and row[S.N_FILLED] == 2
    assert bad[S.ID].to_pylist() == ["q2"] and "no hard negative" in bad[S.REASON][0].as_py()
    assert stats["rows_without_negatives"] == 1 and stats["rows_filled"] == 1


def test_select_table_similarity_mode() -> None:
    opts = SelectOptions(
        selection=SelectionSection(
            mode="similarity", num_negatives=2, beta=0.01, step=5, absolute_margin=0.0
        ),
        score_source=S.SCORE_EMBEDDER,
        embedder="minilm",
        judge=None,
        k=50,
    )
    mined, _, _ = select_table(pa.Table.from_pylist([_judged_row()]), opts)
    row = mined.to_pylist()[0]
    # a (0.8 > pos_sim 0.75) is too close; top 2 of the rest by similarity
    assert row[S.NEG_IDS] == ["b", "c"] and row[S.JUDGE] is None
    # the scores are the embedder's, the positive's too (no placeholder 1.0)
    assert row[S.POS_SCORE] == pytest.approx(0.75) and row[S.SCORE_SOURCE] == S.SCORE_EMBEDDER


def test_unime_v2_export_layout_reads_back() -> None:
    mined, _, _ = select_table(pa.Table.from_pylist([_judged_row()]), OPTS)
    rec = unime_v2_record(mined.to_pylist()[0])
    assert rec == {
        "query_text": "Find the definition.\nbank: the river bank",
        "query_image": None,
        "pos_text": "sloping land",
        "pos_image": None,
        "query_pos_scores": pytest.approx(0.9),
        "hard_negatives": [["C", None], ["B", None], ["D", "s3://x/d.png"]],
        "hard_negatives_scores": pytest.approx([0.5, 0.3, 0.1]),
    }
    parsed = json.loads(unime_v2_json(mined.to_pylist()))
    items = items_from_unime_v2(parsed[0], "x.json:1", None)
    assert [i[S.TEXT] for i in items] == [
        "Find the definition.\nbank: the river bank",
        "sloping land",
        "C",
        "B",
        "D",
    ]
    assert unime_v2_json([]) == "[]\n"


def test_judge_query_text() -> None:
    assert query_text("x", "Do y.", True) == "Do y.\nx"
    assert query_text("x", "Do y.", False) == "x"
    assert query_text(None, None, True) is None


def _writer_rows(shard: str, ordinals: list[int], total: int, error: str | None = None) -> pa.Table:
    rows = [
        {
            S.ID: f"q{o}",
            S.SOURCE: f"q.jsonl:{o + 1}",
            S.ERROR: error,
            S.STAGE: "retrieve" if error else None,
            S.ORDINAL: o,
            S.SHARD: shard,
            "shard_rows": total,
            S.POS_SCORE: 0.5,
        }
        for o in ordinals
    ]
    schema = pa.schema(
        [
            (S.ID, pa.string()),
            (S.SOURCE, pa.string()),
            (S.ERROR, pa.string()),
            (S.STAGE, pa.string()),
            (S.ORDINAL, pa.int64()),
            (S.SHARD, pa.string()),
            ("shard_rows", pa.int64()),
            (S.POS_SCORE, pa.float32()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def test_shard_buffer_writes_whole_shards_only(tmp_path) -> None:  # noqa: ANN001
    from uniembed import storage

    w = ShardBuffer(str(tmp_path), storage.S3Options())
    assert len(w(_writer_rows("shard-000000", [1], 3))) == 0  # incomplete: nothing written
    assert finished_shards(str(tmp_path)) == frozenset()
    out = w(
        pa.concat_tables(
            [_writer_rows("shard-000000", [0], 3), _writer_rows("shard-000000", [2], 3, "boom")]
        )
    )
    assert out.to_pylist() == [{"shard": "shard-000000", "rows": 3, "ok": 2}]
    assert finished_shards(str(tmp_path)) == frozenset({"shard-000000"})
    judged = storage.read_parquet(str(tmp_path / "judged"))
    assert judged.schema.equals(judged_schema()) and judged[S.ORDINAL].to_pylist() == [0, 1]
    q = storage.read_parquet(str(tmp_path / "quarantine")).to_pylist()
    assert q == [{S.ID: "q2", S.STAGE: "retrieve", S.REASON: "boom", S.SOURCE: "q.jsonl:3"}]
    assert {f.name for f in judge_fields()} <= set(judged.column_names)


def test_shard_buffer_counts_a_recomputed_block_once(tmp_path) -> None:  # noqa: ANN001
    """A block delivered twice (its task retried after a node was lost) neither keeps the
    shard from completing nor duplicates rows; a late copy of a written shard is dropped."""
    from uniembed import storage

    w = ShardBuffer(str(tmp_path), storage.S3Options())
    assert len(w(_writer_rows("shard-000000", [0, 1], 3))) == 0
    assert len(w(_writer_rows("shard-000000", [1], 3))) == 0  # the retried copy of row 1
    out = w(_writer_rows("shard-000000", [1, 2], 3))
    assert out.to_pylist() == [{"shard": "shard-000000", "rows": 3, "ok": 3}]
    assert len(w(_writer_rows("shard-000000", [0, 1, 2], 3))) == 0  # already written
    judged = storage.read_parquet(str(tmp_path / "judged"))
    assert judged[S.ORDINAL].to_pylist() == [0, 1, 2]


def test_shard_buffer_failure_knob(tmp_path) -> None:  # noqa: ANN001
    from uniembed import storage

    w = ShardBuffer(str(tmp_path), storage.S3Options(), fail_after=1)
    w(_writer_rows("shard-000000", [0], 1))
    with pytest.raises(RuntimeError, match="fail_after_shards=1"):
        w(_writer_rows("shard-000001", [1], 1))
    assert finished_shards(str(tmp_path)) == frozenset({"shard-000000"})


def test_mine_config_validation() -> None:
    with pytest.raises(ConfigError, match="pool is required"):
        MineConfig(queries="q.jsonl", output="o")
    MineConfig(queries="p.jsonl", output="o", queries_format="pairs")
    with pytest.raises(ConfigError, match="shard_size"):
        MineConfig(queries="q", pool="p", output="o", shard_size=0)


@pytest.mark.parametrize("name", ["mine.yaml", "mine_openclipart.yaml", "mine_cluster.yaml"])
def test_shipped_configs_load(name: str) -> None:
    from pathlib import Path

    from uniembed.config import parse_config

    path = Path(__file__).parents[2] / "jobs" / "configs" / name
    cfg = parse_config(MineConfig, ["--config", str(path)], prog="mine", description="")
    assert cfg.selection.mode == "judge"
    if name == "mine_cluster.yaml":
        assert cfg.embedder.name == "Qwen/Qwen2-VL-2B-Instruct"
        assert cfg.judge.model.name == "Qwen/Qwen2.5-VL-7B-Instruct"
        assert cfg.retrieval.k == 50


def test_only_lost_nodes_and_workers_rerun_the_query_pass() -> None:
    import ray

    from uniembed.mining.pipeline import _lost_to_failure

    died = ray.exceptions.ActorDiedError()
    assert _lost_to_failure(died)
    try:  # wrapped the way Ray Data re-raises: the loss is the cause
        raise RuntimeError("Dataset execution failed") from died
    except RuntimeError as wrapped:
        assert _lost_to_failure(wrapped)
    assert not _lost_to_failure(RuntimeError("fail_after_shards=1: stopping"))
    assert not _lost_to_failure(ValueError("record q1: field 'text'"))
