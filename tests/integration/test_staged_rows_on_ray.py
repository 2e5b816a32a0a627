"""Training rows staged by a Ray task (the train jobs' driver path): the Dataset holds the
rows in the seeded order (``ordered_rows``); a bad row is quarantined under its file:line
(the jobs), or, without a quarantine folder, stops staging with the reader's own error."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from fixtures.mined_rows import mined_row, write_mined
from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.staged_rows import ordered_rows, stage_rows
from uniembed.data.training_rows import TrainingDataError, iter_tune_chunks

pytestmark = pytest.mark.integration


def test_staged_rows_keep_the_seeded_order(tmp_path: Path, ray_start_2_cpus: None) -> None:
    uri = write_mined(tmp_path / "m.parquet", [mined_row(i) for i in range(1, 41)])
    read = partial(iter_tune_chunks, uri, "mined", False, 8)
    staged = stage_rows(read, seed=5)
    assert staged.num_rows == 40 and len(staged.chunks) == 5
    ids = [r[S.QUERY_ID] for r in staged.dataset().take_all()]
    # ordered_rows is the same on every read (tests/unit/test_staged_rows.py)
    assert ids == ordered_rows(read(), seed=5).column(S.QUERY_ID).to_pylist()


def test_bad_row_in_second_chunk_stops_staging(tmp_path: Path, ray_start_2_cpus: None) -> None:
    rows = [mined_row(i) for i in range(1, 21)]
    rows[11] = mined_row(12, pos_text=None)
    uri = write_mined(tmp_path / "m.parquet", rows)
    read = partial(iter_tune_chunks, uri, "mined", False, 8)
    with pytest.raises(TrainingDataError, match=r"m\.parquet:12 \(query q12\): no positive") as e:
        stage_rows(read, seed=0)
    assert type(e.value) is TrainingDataError  # the reader's error itself, not Ray's wrapper


def test_bad_rows_are_quarantined_once_and_a_clean_rerun_removes_them(
    tmp_path: Path, ray_start_2_cpus: None
) -> None:
    rows = [mined_row(i) for i in range(1, 21)]
    rows[11] = mined_row(12, pos_text=None)
    rows[16] = mined_row(17, pos_text=None)
    uri = write_mined(tmp_path / "m.parquet", rows)
    read = partial(iter_tune_chunks, uri, "mined", False, 8)
    folder = str(tmp_path / "run" / "quarantine")
    staged = stage_rows(read, seed=0, quarantine_dir=folder)
    assert staged.num_rows == 18 and staged.quarantined == 2  # the counts add up
    kept = {r[S.QUERY_ID] for r in staged.dataset().take_all()}
    assert kept == {f"q{i}" for i in range(1, 21)} - {"q12", "q17"}
    left_out = storage.read_parquet(folder).to_pylist()
    assert [r[S.SOURCE] for r in left_out] == [f"{uri}:12", f"{uri}:17"]
    assert left_out[0][S.REASON].startswith(f"{uri}:12 (query q12): no positive")
    assert staged.reasons[0] == left_out[0][S.REASON]
    write_mined(tmp_path / "m.parquet", [mined_row(i) for i in range(1, 21)])  # the input fixed
    assert stage_rows(read, seed=0, quarantine_dir=folder).quarantined == 0
    assert not storage.list_files(folder)  # no stale quarantine from the earlier run
