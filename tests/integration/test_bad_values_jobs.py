"""The bad-value table end to end (issue 25): every job that reads records (embed, mine's
queries and pool, tune, train_reranker, evaluate) runs on a real Ray cluster with small
models over an input holding every value of ``BAD_VALUES`` (and bytes that are not UTF-8)
in every field; the embed input also holds a folder link loop and image links that lead
out of the input folder. Each exits 0; every good row is processed, every row that must
fail is quarantined (evaluate: excluded and named) once under its file:line naming the
field, and the counts add up.

The readers alone are fuzzed over many more drawings in tests/unit/test_fuzz_readers.py.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from fixtures.bad_inputs import BAD_VALUES, INVALID_UTF8, bad_line
from uniembed import storage
from uniembed.data import schema as S
from uniembed.embed.pipeline import read_embeddings

# About 6 minutes in all on 2 cores (a Ray cluster per job, small models): out of the default run,
# whose readers' fuzz (tests/unit/test_fuzz_readers.py) covers the same table.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAD_NAMES = sorted(BAD_VALUES) + [INVALID_UTF8]
_TEXTUAL_BAD = {"lone_surrogate", "object", "list", "nan", "inf", "neg_inf", "float", "bool"}
# field -> the bad values it must refuse (the others it may take, or the embed worker may
# refuse later: an image path that names no file).
ITEM_FIELDS = {
    "id": _TEXTUAL_BAD | {"empty", "null", INVALID_UTF8},
    "text": _TEXTUAL_BAD | {"huge_int", INVALID_UTF8},
    "instruction": _TEXTUAL_BAD | {"huge_int", "huge", INVALID_UTF8},
    "image_uri": _TEXTUAL_BAD | {"huge_int", "nul", INVALID_UTF8},
    "image_path": _TEXTUAL_BAD | {"huge_int", "nul", INVALID_UTF8},
    "image": _TEXTUAL_BAD | {"huge_int", "nul", INVALID_UTF8},
    "zz_unknown": {INVALID_UTF8},
}


def _table_input(folder: Path) -> tuple[Path, dict[int, tuple[str, str] | None]]:
    """Good records between records with one bad value each; {line: (field, bad) or None}."""
    lines: list[bytes] = []
    where: dict[int, tuple[str, str] | None] = {}
    n = 0
    for field, must in ITEM_FIELDS.items():
        for bad in BAD_NAMES:
            n += 1
            rec = {"id": f"r{n}", "text": f"record {n}", "instruction": "Find it."}
            value = INVALID_UTF8 if bad == INVALID_UTF8 else BAD_VALUES[bad]
            lines.append(bad_line(rec, field, value))
            where[len(lines)] = (field, bad) if bad in must else None
            if bad == "huge" and field not in ("text", "zz_unknown", "instruction"):
                where[len(lines)] = (field, "may")  # a huge id is taken, a huge path not found
            if field == "text" and bad in ("empty", "null"):
                where[len(lines)] = (field, "no content")  # the worker's reason
        lines.append(json.dumps({"id": f"g-{field}", "text": "a good record"}).encode())
        where[len(lines)] = ("good", "")
    path = folder / "bad_values.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, where


def test_embed_job_over_the_bad_value_table(ray_start_2_cpus: None, tmp_path: Path) -> None:
    from jobs.embed import main

    folder = tmp_path / "in"
    folder.mkdir()
    path, where = _table_input(folder)
    (tmp_path / "x.png").write_bytes(b"outside")
    (folder / "link.png").symlink_to("../x.png")
    (folder / "again").symlink_to(".")  # a loop: listed once, never followed
    with path.open("ab") as f:
        f.write(json.dumps({"id": "escape", "image_uri": "link.png"}).encode() + b"\n")
    where[len(where) + 1] = ("image_uri", "link")
    out = tmp_path / "out"
    flags = ["--input", str(folder), "--output", str(out), "--model", "tiny-qwen2-vl"]
    assert main([*flags, "compute.micro_batch_size=8", "model.max_length=64"]) == 0
    manifest = json.loads((out / "_SUCCESS.json").read_text())
    ids, _ = read_embeddings(str(out))
    q = storage.read_parquet(str(out / "quarantine")).to_pylist()
    by_source = Counter(r[S.SOURCE] for r in q)
    assert all(c == 1 for c in by_source.values()), by_source
    reasons = {r[S.SOURCE]: r[S.REASON] for r in q}
    assert manifest["rows_in"] == len(where) == len(ids) + len(q)  # each line read once
    assert manifest["rows_out"] == len(ids) and manifest["rows_quarantined"] == len(q)
    for line, spot in where.items():
        src = f"{path}:{line}"
        if spot is None or spot[0] == "good":
            assert src not in reasons, (line, spot, reasons.get(src))
        elif spot[1] == "no content":
            assert "has neither text nor image" in reasons[src]
        elif spot[1] != "may":
            field, bad = spot
            assert reasons[src].startswith(f"{src}: "), reasons[src]
            wanted = "not valid UTF-8" if bad == INVALID_UTF8 else f"field '{field}'"
            assert wanted in reasons[src], (spot, reasons[src])
    assert "a link to" in reasons[f"{path}:{len(where)}"]
    assert {f"g-{field}" for field in ITEM_FIELDS} <= set(ids)


# The train jobs' text-only UniME-V2 row and where its values go; must-fail sets as the
# readers' fuzz (tests/unit/test_fuzz_readers.py) has them.
UNIME_V2_TEXT = {"id": "u", "query_text": "a cat", "pos_text": "a small feline",
                 "hard_negatives": [["a dog", None]], "hard_negatives_scores": [0.5]}  # fmt: skip
_SCORE_BAD = set(BAD_VALUES) - {"null", "float"} | {INVALID_UTF8}
TUNE_SPOTS: dict[tuple[str, tuple[int, ...]], set[str]] = {
    ("id", ()): _TEXTUAL_BAD | {INVALID_UTF8},
    ("query_text", ()): _TEXTUAL_BAD | {"huge_int", INVALID_UTF8},
    ("pos_text", ()): _TEXTUAL_BAD | {"huge_int", INVALID_UTF8},
    ("hard_negatives", ()): set(BAD_VALUES) - {"null"} | {INVALID_UTF8},
    ("hard_negatives", (0, 0)): _TEXTUAL_BAD | {"huge_int", INVALID_UTF8},
    ("hard_negatives_scores", (0,)): _SCORE_BAD | {"null"},  # a negative's score is needed
}


def _tune_table(folder: Path) -> tuple[Path, dict[int, bool | None]]:
    """Good rows between rows with one bad value each; {line: must fail (None: good)}."""
    lines: list[bytes] = []
    where: dict[int, bool | None] = {}
    n = 0
    for (field, at), must in TUNE_SPOTS.items():
        for bad in BAD_NAMES:
            n += 1
            rec = {**UNIME_V2_TEXT, "id": f"u{n}", "query_text": f"a cat {n}"}
            value = INVALID_UTF8 if bad == INVALID_UTF8 else BAD_VALUES[bad]
            lines.append(bad_line(rec, field, value, at))
            where[len(lines)] = bad in must
        good = {**UNIME_V2_TEXT, "id": f"g-{field}-{len(at)}", "query_text": f"a cow {n}"}
        lines.append(json.dumps(good).encode())
        where[len(lines)] = None
    path = folder / "rows.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, where


# each train job over the UniME-V2 table: the model and the settings of one short step
TRAIN_JOBS = {
    "tune": ("minilm", ["train.batch_size=8", "loss.num_negatives=1"]),
    "train_reranker": ("tiny-text-lm", ["train.batch_size=4", "data.list_size=1"]),
}


@pytest.mark.parametrize("job", sorted(TRAIN_JOBS))
def test_train_job_over_the_bad_value_table(
    job: str, ray_start_2_cpus: None, tmp_path: Path
) -> None:
    import importlib

    main = importlib.import_module(f"jobs.{job}").main
    model, settings = TRAIN_JOBS[job]
    path, where = _tune_table(tmp_path)
    flags = ["--input", str(path), "--format", "unime_v2", "--model", model]
    flags += ["--storage-path", str(tmp_path / "runs"), "--name", "bad"]
    assert main([*flags, "train.max_steps=1", *settings]) == 0
    run = tmp_path / "runs" / "bad"
    manifest = json.loads((run / "_SUCCESS.json").read_text())
    q = storage.read_parquet(str(run / "quarantine")).to_pylist()
    reasons = {r[S.SOURCE]: r[S.REASON] for r in q}
    assert len(reasons) == len(q)  # each row quarantined once
    assert manifest["rows"] + manifest["quarantined"] == len(where)  # the counts add up
    assert manifest["quarantined"] == len(q)
    for line, must in where.items():
        src = f"{path}:{line}"
        if must is None:
            assert src not in reasons, reasons[src]
        elif must:
            assert src in reasons, line
        if src in reasons:
            assert reasons[src].startswith((f"{src}:", f"{src} (")), reasons[src]


# The evaluate job's MMEB rows (text-only here: the images would be files): each spot and
# the bad values it must refuse, as the readers' fuzz has them.
EVAL_ROW = {"qry_text": "term", "tgt_text": ["meaning", "other", "more"]}
EVAL_SPOTS: dict[tuple[str, tuple[int, ...]], set[str]] = {
    ("qry_text", ()): _TEXTUAL_BAD | {"huge_int", INVALID_UTF8},
    ("tgt_text", ()): set(BAD_VALUES) - {"null"} | {INVALID_UTF8},
    ("tgt_text", (1,)): _TEXTUAL_BAD | {"huge_int", INVALID_UTF8},
    ("zz_unknown", ()): {INVALID_UTF8},
}


def test_evaluate_job_over_the_bad_value_table(ray_start_2_cpus: None, tmp_path: Path) -> None:
    """Every bad value in every field of an MMEB task file: the job exits 0, every good row
    is scored, every must-fail row is left out of the task and named (file:line and
    field) in its excluded rows, and the counts add up."""
    from jobs.evaluate import main

    lines: list[bytes] = []
    must: dict[int, tuple[str, str] | None] = {}
    for (field, at), refused in EVAL_SPOTS.items():
        for bad in BAD_NAMES:
            n = len(lines) + 1
            rec = {"qry_text": f"term {n}", "tgt_text": [f"meaning {n}", "other", "more"]}
            value = INVALID_UTF8 if bad == INVALID_UTF8 else BAD_VALUES[bad]
            lines.append(bad_line(rec, field, value, at))
            must[n] = (field, bad) if bad in refused else None
    good = [len(lines) + 1 + i for i in range(4)]
    lines += [json.dumps({**EVAL_ROW, "qry_text": f"word {i}"}).encode() for i in range(4)]
    data = tmp_path / "Task.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "eval"
    assert main(["--model", "minilm", "--data", str(data), "--output", str(out)]) == 0
    task = json.loads((out / "metrics.json").read_text())["tasks"]["Task"]
    rows = [json.loads(x) for x in (out / "excluded.jsonl").read_text().splitlines()]
    excluded = {r["source"]: r["reason"] for r in rows}
    assert task["n_queries"] + task["n_excluded"] == len(lines)
    assert len(excluded) == len(rows) == task["n_excluded"]  # each once, named
    assert len(task["excluded"]) == min(20, len(rows))  # metrics.json: the first 20
    for n, spot in must.items():
        if spot is None:
            continue
        reason = excluded.get(f"{data}:{n}")
        assert reason is not None, (n, spot)
        field, bad = spot
        wanted = "not valid UTF-8" if bad == INVALID_UTF8 else f"field '{field}"
        assert wanted in reason, (spot, reason)
    assert not any(f"{data}:{n}" in excluded for n in good)
    assert f"{task['n_excluded']} of {len(lines)} excluded" in (out / "report.md").read_text()


# The mine job's query and pool items: every item field, plus the positive's id and the
# pool's group; an id-like field must refuse what an id refuses.
_ID_BAD = _TEXTUAL_BAD | {"empty", "null", INVALID_UTF8}
QUERY_FIELDS = {**ITEM_FIELDS, "pos_id": _TEXTUAL_BAD | {INVALID_UTF8}}
POOL_FIELDS = {**ITEM_FIELDS, "group": _TEXTUAL_BAD | {INVALID_UTF8}}


def _mine_table(
    path: Path, fields: dict[str, set[str]], good: list[dict[str, str]]
) -> dict[int, tuple[str, str] | None]:
    """``good`` records between records with one bad value each, written to ``path``;
    {line: (field, bad) for a must-fail value, ("good", "") for a good record, None for a
    bad value the reader may take or a later stage may refuse}."""
    lines: list[bytes] = []
    where: dict[int, tuple[str, str] | None] = {}
    for field, must in fields.items():
        for bad in BAD_NAMES:
            n = len(lines) + 1
            rec = {**good[n % len(good)], "id": f"{path.stem}-{n}", "text": f"filler {n}"}
            value = INVALID_UTF8 if bad == INVALID_UTF8 else BAD_VALUES[bad]
            lines.append(bad_line(rec, field, value))
            where[len(lines)] = (field, bad) if bad in must else None
    for rec in good:
        lines.append(json.dumps(rec).encode())
        where[len(lines)] = ("good", "")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return where


def _quarantined(out: Path) -> dict[str, list[str]]:
    """source -> the reasons of every row the mine job set aside while reading and
    embedding (pool and queries; not the selection's queries without negatives)."""
    reasons: dict[str, list[str]] = {}
    for f in sorted(out.rglob("*.parquet")):
        if "quarantine" not in f.parts or f.name.endswith(".select.parquet"):
            continue
        for r in storage.read_parquet(str(f)).to_pylist():
            reasons.setdefault(r[S.SOURCE], []).append(r[S.REASON])
    return reasons


def _check_table(path: Path, where: dict, reasons: dict[str, list[str]]) -> None:
    for line, spot in where.items():
        src = f"{path}:{line}"
        if spot is not None and spot[0] == "good":
            assert src not in reasons, (line, reasons.get(src))
        elif spot is not None:
            field, bad = spot
            assert len(reasons.get(src, [])) == 1, (line, spot, reasons.get(src))
            reason = reasons[src][0]
            assert reason.startswith(f"{src}: "), reason
            wanted = "not valid UTF-8" if bad == INVALID_UTF8 else f"field '{field}'"
            assert wanted in reason, (spot, reason)


def test_mine_job_over_the_bad_value_table(ray_start_2_cpus: None, tmp_path: Path) -> None:
    """Queries and pool each hold every bad value in every field (items format, judge-free
    on the smoke config): the job exits 0, every good query is mined, every must-fail
    record of either file is quarantined once under its file:line naming the field, and
    the pool's and the queries' counts add up."""
    from jobs.mine import main

    root = Path(__file__).parents[2]
    pool_good = [{"id": f"def-{i}", "text": f"the meaning of word {i}", "group": f"g{i}"}
                 for i in range(24)]  # fmt: skip
    query_good = [{"id": f"word-{i}", "text": f"word {i}", "pos_id": f"def-{i}"}
                  for i in range(12)]  # fmt: skip
    pool, queries = tmp_path / "pool.jsonl", tmp_path / "queries.jsonl"
    pool_where = _mine_table(pool, POOL_FIELDS, pool_good)
    query_where = _mine_table(queries, QUERY_FIELDS, query_good)
    out = tmp_path / "out"
    argv = ["--config", str(root / "jobs" / "configs" / "mine_smoke.yaml"),
            "--queries", str(queries), "--pool", str(pool), "--output", str(out),
            "group_field=group", "max_queries=null", "selection.mode=similarity",
            "retrieval.k=6", "selection.num_negatives=2", "retrieval.easy_margin=null"]  # fmt: skip
    assert main(argv) == 0
    reasons = _quarantined(out)
    _check_table(pool, pool_where, reasons)
    _check_table(queries, query_where, reasons)
    # every record of either file comes out once: kept, or quarantined once, under the
    # file:line of the user's file (the embed stage reads staged items: not their names)
    assert all(len(v) == 1 for v in reasons.values()), reasons
    assert all(s.startswith((f"{pool}:", f"{queries}:")) for s in reasons), sorted(reasons)
    pool_items = json.loads((out / "pool" / "embeddings" / "_SUCCESS.json").read_text())
    pool_out = sum(1 for s in reasons if s.startswith(f"{pool}:"))
    assert pool_items["rows_out"] + pool_out == len(pool_where)
    mined = storage.read_parquet(str(out / "mined")).to_pylist()
    judged = storage.read_parquet(str(out / "judged"))
    query_out = sum(1 for s in reasons if s.startswith(f"{queries}:"))
    assert len(judged) + query_out == len(query_where)
    assert {r["id"] for r in query_good} <= {r[S.QUERY_ID] for r in mined}
