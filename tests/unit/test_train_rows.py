"""Reading training rows: the three stage-2 formats, stage-1 texts, and bad rows named."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.training_rows import (
    TrainingDataError,
    attach_teacher_embeddings,
    iter_distill_chunks,
    read_texts,
    read_tune_rows,
)


def _mined(neg_scores: list[float] | None = None, pos_text: str | None = "a feline") -> dict:
    return {
        S.QUERY_ID: "q1",
        S.QUERY_TEXT: "cat",
        S.QUERY_IMAGE: "img/cat.png",
        S.POS_TEXT: pos_text,
        S.POS_SCORE: 0.8,
        S.NEG_IDS: ["d2", "d3"],
        S.NEG_TEXTS: ["a dog", "a car"],
        S.NEG_IMAGES: [None, None],
        S.NEG_SCORES: neg_scores if neg_scores is not None else [0.3, 0.1],
    }


def _write_mined(path, rows) -> str:  # noqa: ANN001
    storage.write_parquet(str(path), pa.Table.from_pylist(rows, schema=S.MINED_SCHEMA))
    return str(path)


def test_mined_parquet_rows_keep_scores_and_resolve_images(tmp_path) -> None:
    uri = _write_mined(tmp_path / "m.parquet", [_mined()])
    (row,) = read_tune_rows(uri, "mined").to_pylist()
    assert row[S.NEG_SCORES] == pytest.approx([0.3, 0.1])
    assert row[S.QUERY_IMAGE] == str(tmp_path / "img" / "cat.png")
    assert row[S.SOURCE] == f"{uri}:1"


def test_row_without_positive_names_file_and_row(tmp_path) -> None:
    uri = _write_mined(tmp_path / "m.parquet", [_mined(), _mined(pos_text=None)])
    with pytest.raises(TrainingDataError, match=r"m\.parquet:2 \(query q1\): no positive"):
        read_tune_rows(uri, "mined")


def test_score_count_must_match_negatives(tmp_path) -> None:
    uri = _write_mined(tmp_path / "m.parquet", [_mined(neg_scores=[0.3])])
    with pytest.raises(TrainingDataError, match=r"m\.parquet:1.*1 scores for 2 negatives"):
        read_tune_rows(uri, "mined")


def test_nan_judge_score_names_the_row(tmp_path) -> None:
    uri = _write_mined(tmp_path / "m.parquet", [_mined(), _mined(neg_scores=[0.3, float("nan")])])
    with pytest.raises(TrainingDataError, match=r"m\.parquet:2 \(query q1\): neg_scores\[1\]"):
        read_tune_rows(uri, "mined")


def test_unime_v2_json_and_soft_label_needs_scores(tmp_path) -> None:
    rec = {
        "query_text": "<|image_1|>\nwhat is shown",
        "query_image": "a.png",
        "pos_text": "a cat",
        "pos_image": "",
        "query_pos_scores": 0.9,
        "hard_negatives": [["a dog", ""], ["", "b.png"]],
        "hard_negatives_scores": [0.4, 0.2],
    }
    path = tmp_path / "v2.json"
    path.write_text(json.dumps([rec]))
    (row,) = read_tune_rows(str(path), "unime_v2", need_scores=True).to_pylist()
    assert row[S.QUERY_TEXT] == "what is shown"
    assert row[S.NEG_IMAGES] == [None, str(tmp_path / "b.png")]
    assert row[S.POS_SCORE] == pytest.approx(0.9)
    bad = dict(rec, hard_negatives_scores=[0.4])
    path.write_text(json.dumps([rec, bad]))
    with pytest.raises(TrainingDataError, match=r"v2\.json:2.*1 scores for 2 negatives"):
        read_tune_rows(str(path), "unime_v2")


def test_mmeb_train_rows_without_scores(tmp_path) -> None:
    path = tmp_path / "mmeb.jsonl"
    rows = [
        {"qry": "q one", "qry_image_path": "", "pos_text": "p one", "pos_image_path": ""},
        {"qry": "q two", "pos_text": "p two", "neg_text": "n two", "neg_image_path": ""},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    table = read_tune_rows(str(path), "mmeb_train")
    assert table.column(S.NEG_TEXTS).to_pylist() == [[], ["n two"]]
    with pytest.raises(TrainingDataError, match=r"mmeb\.jsonl:2.*no judge scores"):
        read_tune_rows(str(path), "mmeb_train", need_scores=True)


def test_texts_and_teacher_embeddings_by_id(tmp_path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "a", "text": "one"}\n{"id": "b", "text": "two"}\n')
    emb = pa.table({S.ID: ["b", "a"], S.EMBEDDING: [[0.0, 1.0], [1.0, 0.0]]})
    storage.write_parquet(str(tmp_path / "emb" / "part.parquet"), emb)
    table = attach_teacher_embeddings(read_texts(str(path)), str(tmp_path / "emb"))
    assert table.column(S.EMBEDDING).to_pylist() == [[1.0, 0.0], [0.0, 1.0]]
    path.write_text('{"id": "a", "text": "one"}\n{"id": "c", "text": "three"}\n')
    with pytest.raises(TrainingDataError, match=r"t\.jsonl:2: id 'c' has no teacher embedding"):
        attach_teacher_embeddings(read_texts(str(path)), str(tmp_path / "emb"))
    path.write_text('{"id": "a", "text": ""}\n')
    with pytest.raises(TrainingDataError, match=r"t\.jsonl:1: field 'text'"):
        read_texts(str(path))


def test_teacher_embeddings_chunk_by_chunk(tmp_path) -> None:
    """The distill rows read in chunks: an id without an embedding in the second chunk is
    named by file:line; sizes that differ between chunks are still refused."""
    path = tmp_path / "t.jsonl"
    path.write_text("".join(f'{{"id": "t{i}", "text": "text {i}"}}\n' for i in range(1, 6)))
    vectors = {f"t{i}": [float(i), 0.0] for i in range(1, 5)}
    emb = pa.table({S.ID: list(vectors), S.EMBEDDING: list(vectors.values())})
    storage.write_parquet(str(tmp_path / "emb" / "part.parquet"), emb)
    chunks = iter_distill_chunks(str(path), str(tmp_path / "emb"), chunk_rows=2)
    assert next(chunks).column(S.EMBEDDING).to_pylist() == [[1.0, 0.0], [2.0, 0.0]]
    assert next(chunks).num_rows == 2
    with pytest.raises(TrainingDataError, match=r"t\.jsonl:5: id 't5' has no teacher embedding"):
        next(chunks)
    vectors["t5"] = [5.0, 0.0, 0.0]
    emb = pa.table({S.ID: list(vectors), S.EMBEDDING: list(vectors.values())})
    storage.write_parquet(str(tmp_path / "emb" / "part.parquet"), emb)
    with pytest.raises(TrainingDataError, match=r"teacher embeddings of different sizes \[2, 3\]"):
        list(iter_distill_chunks(str(path), str(tmp_path / "emb"), chunk_rows=2))


def test_a_whole_mine_output_reads_as_its_rows(tmp_path) -> None:
    """``--input outputs/mine`` (the folder the mine job printed) reads ``mined/``, as
    ``--input outputs/mine/mined`` does; the manifest and reports beside it are not rows."""
    out = tmp_path / "mine"
    _write_mined(out / "mined" / "shard-000000.parquet", [_mined()])
    storage.write_text(str(out / "_SUCCESS.json"), json.dumps({"rows_written": 1}))
    storage.write_text(str(out / "report.json"), "{}")
    whole = read_tune_rows(str(out), "mined")
    inner = read_tune_rows(str(out / "mined"), "mined")
    assert whole.num_rows == 1 and whole.drop_columns([S.SOURCE]).equals(
        inner.drop_columns([S.SOURCE])
    )
