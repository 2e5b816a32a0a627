"""The train jobs' row order and chunked checks, without Ray: the order is fixed by the seed,
the same on every read, and a bad row after the first chunk still names file:line."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pyarrow as pa
import pytest

from fixtures.mined_rows import mined_row, write_mined
from uniembed.data import schema as S
from uniembed.data.staged_rows import count_rows, ordered_rows, shuffled_chunks
from uniembed.data.training_rows import ROWS_PER_CHUNK, TrainingDataError, iter_tune_chunks


def _ids(table: pa.Table) -> list[str]:
    return table.column(S.QUERY_ID).to_pylist()


def test_order_is_fixed_by_the_seed_and_the_same_on_every_read(tmp_path: Path) -> None:
    uri = write_mined(tmp_path / "m.parquet", [mined_row(i) for i in range(1, 51)])
    read = partial(iter_tune_chunks, uri, "mined", False, 8)  # 7 chunks, the last of 2 rows
    assert [c.num_rows for c in read()] == [8] * 6 + [2]
    first, second = ordered_rows(read(), seed=7), ordered_rows(read(), seed=7)
    assert _ids(first) == _ids(second)
    assert first.to_pylist() == second.to_pylist()
    assert sorted(_ids(first)) == sorted(f"q{i}" for i in range(1, 51))
    assert _ids(first) != [f"q{i}" for i in range(1, 51)]
    assert _ids(ordered_rows(read(), seed=8)) != _ids(first)
    # Each row keeps its own source: the error of a later step still names its line.
    assert all(r[S.SOURCE] == f"{uri}:{r[S.QUERY_ID][1:]}" for r in first.to_pylist())


def test_bad_row_in_the_second_chunk_names_file_and_line(tmp_path: Path) -> None:
    n = ROWS_PER_CHUNK + 3
    rows = [mined_row(i) for i in range(1, n + 1)]
    rows[ROWS_PER_CHUNK + 1] = mined_row(ROWS_PER_CHUNK + 2, pos_text=None)
    uri = write_mined(tmp_path / "m.parquet", rows)
    seen = []
    line = ROWS_PER_CHUNK + 2
    with pytest.raises(
        TrainingDataError, match=rf"m\.parquet:{line} \(query q{line}\): no positive"
    ):
        for chunk in shuffled_chunks(iter_tune_chunks(uri, "mined"), seed=0):
            seen.append(chunk.num_rows)
    assert seen == [ROWS_PER_CHUNK]  # the first chunk was checked and handed on


def test_count_rows_reads_only_until_enough(tmp_path: Path) -> None:
    rows = [mined_row(i) for i in range(1, 31)] + [mined_row(31, pos_text=None)]
    uri = write_mined(tmp_path / "m.parquet", rows)
    read = partial(iter_tune_chunks, uri, "mined", False, 8)
    assert count_rows(read, enough=10) == 16  # two chunks; the bad row 31 is not reached
    assert count_rows(read, enough=100) == 30  # the usable rows: the bad one is left out
