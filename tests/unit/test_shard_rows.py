"""A worker's rows held as Arrow: batches come out as the dicts the steps take, in the
order asked for, from a table of many chunks (the staged blocks)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from uniembed.training.shard_rows import ArrowRows


def test_take_gives_dicts_in_the_order_asked_across_chunks() -> None:
    rows = [{"id": f"r{i}", "neg_texts": [f"n{i}"], "score": i / 10} for i in range(10)]
    table = pa.concat_tables([pa.Table.from_pylist(rows[:4]), pa.Table.from_pylist(rows[4:])])
    assert table.column("id").num_chunks == 2
    shard = ArrowRows(table)
    assert len(shard) == 10 and shard.columns == ["id", "neg_texts", "score"]
    assert shard.take([7, 0, 5, 3, 4]) == [rows[7], rows[0], rows[5], rows[3], rows[4]]
    assert shard.take([]) == []
    with pytest.raises(IndexError):
        shard.take([10])
    assert shard.column("id") == [r["id"] for r in rows]
    assert len(ArrowRows.from_pylist([])) == 0
