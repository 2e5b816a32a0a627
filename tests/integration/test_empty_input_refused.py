"""An empty or all-bad input on a real Ray cluster: the embed job keeps the previous output
and exits 2 naming the input (unless --allow-empty); the mine job ends an all-bad pool or
query file with one line naming the count and the first reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.bad_inputs import NON_UTF8_LINE
from uniembed.cli import EXIT_USER_ERROR, run_job

pytestmark = pytest.mark.integration

# Seven lines no reader can use: what a binary file given as input looks like.
BINARY = b"\n".join(
    [b"\x89PNG\x1a\x00\x00", b"\xff\xfe\x00\x01", NON_UTF8_LINE, b"{oops", b"\x00" * 9,
     b"[1, 2]", b"\xc3\x28"]
)  # fmt: skip


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _error_line(capsys: pytest.CaptureFixture[str], job: str) -> str:
    """The one error line of ``job`` on stderr (Ray's own lines aside), no traceback of it."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"{job}: error: ")]
    shown = ("EmptyOutputError", "NoValidRowsError", "FileNotFoundError")
    assert len(lines) == 1 and not any(name in err for name in shown), err
    return lines[0]


def test_an_empty_or_binary_input_keeps_the_previous_embed_output(
    ray_start_2_cpus: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jobs.embed import main

    monkeypatch.setenv("UNIEMBED_LOG_DIR", str(tmp_path / "logs"))
    good, empty, binary = tmp_path / "good.jsonl", tmp_path / "empty.jsonl", tmp_path / "bin"
    good.write_text(
        "".join(json.dumps({"id": f"r{i}", "text": f"row {i}"}) + "\n" for i in range(5))
    )
    empty.write_bytes(b"")
    binary.write_bytes(BINARY)
    out = tmp_path / "out"

    def run(inp: Path, *extra: str) -> int:
        argv = ["--input", str(inp), "--output", str(out), "--model", "minilm", *extra]
        return run_job(main, "embed", [*argv, "compute.num_actors=1"])

    assert run(good) == 0
    capsys.readouterr()
    before = _snapshot(out)
    assert json.loads(before["_SUCCESS.json"])["rows_out"] == 5

    assert run(empty) == EXIT_USER_ERROR
    line = _error_line(capsys, "embed")
    assert f"input {empty}: no rows read" in line and "--allow-empty" in line
    assert _snapshot(out) == before

    assert run(binary) == EXIT_USER_ERROR
    line = _error_line(capsys, "embed")
    assert f"input {binary}: 7 rows read, all quarantined (first reasons: {binary}:1" in line
    assert _snapshot(out) == before

    assert run(binary, "--allow-empty") == 0  # asked for: the output is replaced
    manifest = json.loads((out / "_SUCCESS.json").read_text())
    assert (manifest["rows_in"], manifest["rows_out"], manifest["rows_quarantined"]) == (7, 0, 7)


def _mine(queries: Path, pool: Path, out: Path) -> int:
    from jobs.mine import main

    root = Path(__file__).parents[2]
    argv = [
        "--config",
        str(root / "jobs" / "configs" / "mine_smoke.yaml"),
        "--queries",
        str(queries),
        "--pool",
        str(pool),
        "--output",
        str(out),
        "group_field=null",
        "max_queries=null",
        "selection.mode=similarity",
        "shard_size=4",
        "retrieval.k=4",
        "selection.num_negatives=2",
    ]
    return run_job(main, "mine", argv)


def test_an_all_bad_mine_pool_is_one_line(
    ray_start_2_cpus: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UNIEMBED_LOG_DIR", str(tmp_path / "logs"))
    queries, pool = tmp_path / "q.jsonl", tmp_path / "pool.bin"
    rows = [{"id": f"q{i}", "text": f"query {i}", "pos_id": f"t{i}"} for i in range(4)]
    queries.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool.write_bytes(BINARY)
    assert _mine(queries, pool, tmp_path / "out") == EXIT_USER_ERROR
    line = _error_line(capsys, "mine")
    assert line.startswith(f"mine: error: pool {pool}: none of its 7 rows is valid (first reasons:")
    assert f"{pool}:1" in line and "FileNotFoundError" not in line


@pytest.mark.slow  # the pool is embedded before the queries are read
def test_an_all_bad_query_file_is_one_line(
    ray_start_2_cpus: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UNIEMBED_LOG_DIR", str(tmp_path / "logs"))
    queries, pool = tmp_path / "q.bin", tmp_path / "pool.jsonl"
    pool.write_text(
        "".join(json.dumps({"id": f"t{i}", "text": f"title {i}"}) + "\n" for i in range(6))
    )
    queries.write_bytes(BINARY + b"\n\xff")
    assert _mine(queries, pool, tmp_path / "out") == EXIT_USER_ERROR
    line = _error_line(capsys, "mine")
    assert line.startswith(f"mine: error: queries {queries}: none of its 8 rows is valid")
