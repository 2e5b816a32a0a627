"""Named regressions of issue 25 item 4 (the fuzz in test_fuzz_readers.py covers the rest):
a lone surrogate in an ``id`` or anywhere in a mine pool row costs that row, quarantined
with its file:line and field, never the job."""

from __future__ import annotations

from pathlib import Path

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.read import read_table
from uniembed.embed.dedupe import _file_ids, later_duplicates
from uniembed.mining.inputs import iter_pool_rows, iter_query_shards


def test_a_lone_surrogate_id_is_quarantined_not_a_failed_dedupe(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a\\ud800", "text": "t"}\n{"id": "ok", "text": "t"}\n{"id": 2.5}\n')
    ids = _file_ids(str(path), storage.get_options())  # was UnicodeEncodeError
    assert ids["id"].to_pylist() == ["ok"]
    assert later_duplicates(zip(ids["id"].to_pylist(), ids["source"].to_pylist())) == {}
    rows = {r[S.SOURCE]: r for r in read_table(str(path)).to_pylist()}
    assert rows[f"{path}:2"][S.ERROR] is None
    bad = rows[f"{path}:1"]
    assert bad[S.ERROR] == (
        f"{path}:1: field 'id': not valid Unicode: lone surrogate U+D800 at character 1"
    )
    assert bad[S.ID] == f"{path}:1"  # the row goes by its source, which can be written
    assert "field 'id': expected a string or an integer, got float" in rows[f"{path}:3"][S.ERROR]


def test_a_lone_surrogate_anywhere_in_a_mine_row_costs_that_row(tmp_path: Path) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        '{"id": "p1", "text": "fine", "group": "g"}\n'
        '{"id": "p2", "text": "fine", "group": "g\\udc00"}\n'
        '{"id": "p3\\ud800", "text": "fine"}\n'
        '{"id": "p4", "text": "fine", "instruction": "\\ud83d"}\n'
    )
    rows = [r for t in iter_pool_rows(str(pool), "items", "group") for r in t.to_pylist()]
    assert [r[S.ERROR] is None for r in rows] == [True, False, False, False]
    assert [r[S.ERROR].split(": ")[1] for r in rows[1:]] == [
        "field 'group'",
        "field 'id'",
        "field 'instruction'",
    ]
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "q1", "text": "t", "pos_id": "p1\\ud800"}\n')
    (row,) = [
        r
        for t in iter_query_shards(str(queries), "items", 4, None, frozenset())
        for r in t.to_pylist()
    ]
    assert row[S.ERROR].startswith(f"{queries}:1: field 'pos_id': not valid Unicode")
