"""The one record reader: ``file:N`` sources in every format, quarantine or raise."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from uniembed import storage
from uniembed.data.record_files import file_records, folder_records
from uniembed.data.records import RecordError

RECORDS = [{"id": "a"}, {"id": "b"}, {"id": "c"}]


def test_every_format_names_records_file_and_1_based_number(tmp_path: Path) -> None:
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in RECORDS))
    as_list = tmp_path / "r.json"
    as_list.write_text(json.dumps(RECORDS))
    parquet = tmp_path / "r.parquet"
    storage.write_parquet(str(parquet), pa.Table.from_pylist(RECORDS))
    for path in (jsonl, as_list, parquet):
        got = list(file_records(str(path)))
        assert got == [(r, f"{path}:{n}") for n, r in enumerate(RECORDS, start=1)]


def test_quarantine_yields_the_error_in_place_raise_raises_it(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id": "a"}\n\n{oops\n[1]\n{"id": "b"}\n')
    got = list(file_records(str(path)))
    assert [src for _, src in got] == [f"{path}:{n}" for n in (1, 3, 4, 5)]
    errors = [rec for rec, _ in got if isinstance(rec, RecordError)]
    assert [str(e).split(": ", 1)[1] for e in errors][1] == "not a JSON object"
    assert str(errors[0]).startswith(f"{path}:3: not valid JSON")
    with pytest.raises(RecordError, match=rf"{path}:3: not valid JSON"):
        list(file_records(str(path), on_error="raise"))


def test_folder_records_give_each_files_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text('{"id": "b"}\n')
    (tmp_path / "a.jsonl").write_text('{"id": "a"}\n')
    (tmp_path / "_SUCCESS.json").write_text("{}")  # markers are not records
    got = [(rec["id"], base) for rec, _, base in folder_records(str(tmp_path), "raise")]
    assert got == [("a", str(tmp_path)), ("b", str(tmp_path / "sub"))]
