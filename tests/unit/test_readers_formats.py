"""Every reader of records takes JSONL, gzipped JSONL and Parquet alike."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.read import read_table
from uniembed.data.training_rows import TrainingDataError, read_texts, read_tune_rows
from uniembed.evaluation.tasks import read_task, task_files

REPO = Path(__file__).resolve().parents[2]


def _write_all(folder: Path, stem: str, records: list[dict]) -> list[Path]:
    """The same records as .jsonl, .jsonl.gz and .parquet files, in three subfolders."""
    text = "\n".join(json.dumps(r) for r in records) + "\n"
    out = []
    for kind in ("jsonl", "jsonl.gz", "parquet"):
        path = folder / kind.replace(".", "_") / f"{stem}.{kind}"
        path.parent.mkdir(parents=True)
        if kind == "jsonl":
            path.write_text(text)
        elif kind == "jsonl.gz":
            path.write_bytes(gzip.compress(text.encode()))
        else:
            storage.write_parquet(str(path), pa.Table.from_pylist(records))
        out.append(path)
    return out


def test_item_and_text_readers(tmp_path: Path) -> None:
    records = [{"id": f"t{i}", "text": f"text {i}"} for i in range(3)]
    for path in _write_all(tmp_path, "corpus", records):
        for uri in (str(path), str(path.parent)):  # the file, or its folder
            table = read_table(uri)
            assert table.column(S.TEXT).to_pylist() == ["text 0", "text 1", "text 2"]
            assert read_texts(uri).column(S.TEXT).to_pylist() == ["text 0", "text 1", "text 2"]


def test_training_rows_reader(tmp_path: Path) -> None:
    records = [
        {"query_id": f"q{i}", "query_text": f"q {i}", "pos_text": f"p {i}", "neg_texts": []}
        for i in range(2)
    ]
    for path in _write_all(tmp_path, "rows", records):
        rows = read_tune_rows(str(path.parent), "mined")
        assert rows.column(S.QUERY_TEXT).to_pylist() == ["q 0", "q 1"]
    broken = tmp_path / "broken" / "rows.jsonl.gz"
    broken.parent.mkdir()
    broken.write_bytes(b"not gzip")
    with pytest.raises(TrainingDataError, match="rows.jsonl.gz"):
        read_tune_rows(str(broken.parent), "mined")


def test_evaluation_tasks_reader(tmp_path: Path) -> None:
    lines = (REPO / "data" / "demo" / "wordnet" / "eval.jsonl").read_text().splitlines()[:4]
    records = [json.loads(line) for line in lines]
    tasks = []
    for path in _write_all(tmp_path, "wordnet_defs", records):
        (found,) = task_files([str(path.parent)])
        task = read_task(found)
        assert task.name == "wordnet_defs"
        tasks.append(task)
    assert len({len(t.rows) for t in tasks}) == 1 and len(tasks[0].rows) == 4
