"""An empty or all-bad input must not replace a good output: the rule, its message, and
the one-line refusal of a mine input without one valid row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.output_guard import (
    check_not_empty,
    claim_output,
    first_reasons,
    has_output,
    refuses_empty,
)
from uniembed.errors import EmptyOutputError, NoValidRowsError
from uniembed.mining.pipeline import require_valid_rows

PUBLISHED = ("embeddings", "quarantine")


@pytest.mark.parametrize(
    ("rows_out", "existing", "allow_empty", "refused"),
    [
        (0, True, False, True),
        (0, True, True, False),
        (0, False, False, False),
        (1, True, False, False),
    ],
)
def test_only_an_empty_run_over_an_existing_output_is_refused(
    rows_out: int, existing: bool, allow_empty: bool, refused: bool
) -> None:
    assert refuses_empty(rows_out, existing, allow_empty) is refused


def _finished_output(folder: Path) -> Path:
    (folder / "embeddings").mkdir(parents=True)
    (folder / "embeddings" / "part-a.parquet").write_bytes(b"old rows")
    (folder / "_SUCCESS.json").write_text(json.dumps({"rows_out": 20}))
    return folder


def test_the_refusal_names_the_input_the_reasons_and_allow_empty(tmp_path: Path) -> None:
    out = _finished_output(tmp_path / "out")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    reasons = ["bin.jsonl:1: invalid JSON", "bin.jsonl:2: invalid UTF-8", "x", "not shown"]
    with pytest.raises(EmptyOutputError) as info:
        check_not_empty("embed", "bin.jsonl", str(out), (7, 0), PUBLISHED, False, reasons)
    msg = str(info.value)
    assert "input bin.jsonl: 7 rows read, all quarantined" in msg
    assert "bin.jsonl:1: invalid JSON; bin.jsonl:2: invalid UTF-8; x)" in msg
    assert "not shown" not in msg and "--allow-empty" in msg and str(out) in msg
    with pytest.raises(EmptyOutputError, match="input empty.jsonl: no rows read"):
        check_not_empty("embed", "empty.jsonl", str(out), (0, 0), PUBLISHED, False)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    check_not_empty("embed", "empty.jsonl", str(out), (0, 0), PUBLISHED, True)  # allowed
    check_not_empty("embed", "good.jsonl", str(out), (5, 5), PUBLISHED, False)  # not empty


def test_an_empty_run_into_a_new_or_claimed_only_folder_passes(tmp_path: Path) -> None:
    out = tmp_path / "new"
    assert not has_output(str(out), PUBLISHED)
    check_not_empty("embed", "empty.jsonl", str(out), (0, 0), PUBLISHED, False)
    claim_output(str(out), "embed")
    (out / "_staging-1").mkdir()
    (out / "_staging-1" / "x").write_text("staged")
    assert not has_output(str(out), PUBLISHED)
    (out / "quarantine").mkdir()
    (out / "quarantine" / "part-a.parquet").write_bytes(b"q")
    assert has_output(str(out), PUBLISHED)


def test_a_claimed_folder_is_not_rewritten(tmp_path: Path) -> None:
    out = tmp_path / "out"
    claim_output(str(out), "embed")
    owner = out / "_OWNER.json"
    owner.write_text('{"job": "embed"}  \n')  # the same owner, other bytes
    claim_output(str(out), "embed")
    assert owner.read_text() == '{"job": "embed"}  \n'
    claim_output(str(out), "mine")
    assert json.loads(owner.read_text()) == {"job": "mine"}


def test_first_reasons_reads_the_quarantine_shards(tmp_path: Path) -> None:
    import pyarrow as pa

    q = tmp_path / "quarantine"
    assert first_reasons(str(q)) == []
    rows = [
        {S.ID: f"r{i}", S.STAGE: "read", S.REASON: f"bad {i}", S.SOURCE: "f:1"} for i in range(5)
    ]
    storage.write_parquet(
        str(q / "part-1.parquet"), pa.Table.from_pylist(rows, S.QUARANTINE_SCHEMA)
    )
    assert first_reasons(str(q)) == ["bad 0", "bad 1", "bad 2"]


def test_a_mine_input_without_a_valid_row_is_one_line() -> None:
    require_valid_rows("pool", "pool.jsonl", 7, 1, [])
    with pytest.raises(NoValidRowsError) as info:
        require_valid_rows("pool", "pool.jsonl", 7, 0, ["pool.jsonl:1: invalid JSON", "b"])
    with pytest.raises(NoValidRowsError, match=r"reasons: 0; 1; 2\); fix the queries file$"):
        require_valid_rows("queries", "q.jsonl", 9, 0, [str(i) for i in range(9)])
    msg = str(info.value)
    assert msg == (
        "pool pool.jsonl: none of its 7 rows is valid (first reasons: pool.jsonl:1: invalid "
        "JSON; b); fix the pool file"
    )
    with pytest.raises(NoValidRowsError, match="queries q.jsonl: no rows"):
        require_valid_rows("queries", "q.jsonl", 0, 0, [])


def test_an_evaluate_run_that_scored_nothing_keeps_the_earlier_report(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from uniembed.evaluation.config import EvalConfig
    from uniembed.evaluation.runner import _check_scored

    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    cfg = EvalConfig(data=["eval.jsonl"], output=str(out))
    nothing = SimpleNamespace(tasks={"t": SimpleNamespace(n_queries=0, n_excluded=3)})
    with pytest.raises(EmptyOutputError, match="input eval.jsonl: 3 rows read, all quarantined"):
        _check_scored(cfg, str(out), nothing, ["a.png: cannot decode image"])  # type: ignore[arg-type]
    _check_scored(
        EvalConfig(data=["eval.jsonl"], output=str(out), allow_empty=True), str(out), nothing, []
    )  # type: ignore[arg-type]
    some = SimpleNamespace(tasks={"t": SimpleNamespace(n_queries=1, n_excluded=2)})
    _check_scored(cfg, str(out), some, [])  # type: ignore[arg-type]
