"""Reading eval sets (kinds, errors naming file/line/field), dedupe and scoring, no Ray."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from uniembed.data import schema as S
from uniembed.data.records import RecordError
from uniembed.evaluation.dedupe import content_key, plan_items
from uniembed.evaluation.scoring import Embeddings, score_tasks
from uniembed.evaluation.tasks import read_task, read_tasks, task_files


def _write(path: Path, rows: list[object]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def _mmeb(q: str, cands: list[str], img: str = "") -> dict[str, object]:
    return {
        "qry_text": q,
        "qry_img_path": img,
        "tgt_text": cands,
        "tgt_img_path": [""] * len(cands),
    }


# --- reading -----------------------------------------------------------------------------


def test_reads_the_three_kinds(tmp_path: Path) -> None:
    mmeb = _write(
        tmp_path / "Set" / "ImageNet-1K.jsonl",
        [_mmeb("<|image_1|>\nWhat is it?", ["cat", "dog"], img="imgs/a.png")],
    )
    caps = _write(
        tmp_path / "Set" / "flickr.jsonl",
        [
            {"image": "a.png", "captions": ["a cat", "a small cat"]},
            {"image": "b.png", "caption": "a dog"},
            {"image": "a.png", "caption": "the cat"},  # merged into a.png's row
        ],
    )
    comp = _write(
        tmp_path / "sugar.jsonl",
        [
            {"image": "a.png", "caption": "a cat", "negative_caption": "a dog", "category": "obj"},
            {"image": "b.png", "caption": "red", "negative_caption": "blue"},
        ],
    )
    t = read_task(mmeb)
    assert (t.name, t.kind, len(t.rows), t.rows[0].refs) == (
        "ImageNet-1K",
        "candidates",
        1,
        (0, 1, 2),
    )
    assert t.rows[0].source == f"{mmeb}:1"
    assert t.items[0][S.TEXT] == "What is it?"  # MMEB's image placeholder is stripped
    assert t.items[0][S.IMAGE_URI] == str(tmp_path / "Set" / "imgs" / "a.png")
    c = read_task(caps)
    assert c.kind == "captions" and [len(r.refs) for r in c.rows] == [4, 2]
    assert [c.items[i][S.TEXT] for i in c.rows[0].refs[1:]] == ["a cat", "a small cat", "the cat"]
    p = read_task(comp)
    assert p.kind == "compositional" and [r.category for r in p.rows] == ["obj", "sugar"]
    # A folder expands to its JSONL files, sorted; names must be unique.
    assert [Path(f).name for f in task_files([str(tmp_path / "Set")])] == [
        "ImageNet-1K.jsonl",
        "flickr.jsonl",
    ]
    assert len(read_tasks([str(tmp_path / "Set"), comp])) == 3
    _write(tmp_path / "other" / "flickr.jsonl", [{"image": "x.png", "caption": "x"}])
    with pytest.raises(ValueError, match=r"task name 'flickr' comes from both"):
        task_files([str(tmp_path / "Set"), str(tmp_path / "other")])


@pytest.mark.parametrize(
    ("rows", "line", "field", "reason"),
    [
        # unequal candidate lists
        (
            [
                _mmeb("q", ["a", "b"]),
                {"qry_text": "q", "tgt_text": ["a", "b"], "tgt_img_path": [""]},
            ],
            2,
            "tgt_img_path",
            "has 1 entries but tgt_text has 2",
        ),
        ([_mmeb("q", ["a", "b"]), _mmeb("q", [])], 2, "tgt_text", "empty candidate list"),
        ([_mmeb("q", ["a", "b"]), {"qry_text": "q"}], 2, "tgt_text", "missing required field"),
        ([{"tgt_text": ["a", "b"]}], 1, "qry_text", "missing required field"),
        ([_mmeb("q", ["a"])], 1, "tgt_text", "at least one distractor"),
        ([_mmeb("q", ["a", "b", ""])], 1, r"tgt_text\[2\]", "neither text nor image"),
        ([_mmeb("q", ["a", "b"]), "{oops"], 2, None, "not valid JSON"),  # unreadable line
        ([{"image": "a.png", "captions": []}], 1, "captions", "empty caption list"),
        ([{"image": "a.png", "captions": ["x", 3]}], 1, r"captions\[1\]", "non-empty string"),
        ([{"caption": "x"}], 1, "image", "missing required field"),
        (
            [
                {"image": "a.png", "caption": "x", "negative_caption": "y"},
                {"image": "b.png", "caption": "x"},
            ],
            2,
            "negative_caption",
            "missing required field",
        ),
        ([{"foo": 1}], 1, "tgt_text", "cannot tell the task kind"),
    ],
)
def test_bad_rows_are_left_out_and_named_with_file_line_and_field(
    tmp_path: Path, rows: list[object], line: int, field: str | None, reason: str
) -> None:
    path = _write(tmp_path / "bad.jsonl", rows)
    where = rf"field '{field}': " if field is not None else ""
    named = rf"bad\.jsonl:{line}: {where}.*{reason}"
    if len(rows) == 1:  # nothing readable is left: the file is refused, naming the row
        with pytest.raises(RecordError, match=rf"no readable row in 1 \(.*{named}"):
            read_task(path)
        return
    task = read_task(path)  # the good row is read, the bad one left out and named
    assert len(task.rows) == len(rows) - 1 and len(task.unreadable) == 1
    assert re.search(named, task.unreadable[0]), task.unreadable


def test_missing_data_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        task_files([str(tmp_path / "nope.jsonl")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds no \.jsonl files"):
        task_files([str(tmp_path / "empty")])
    with pytest.raises(RecordError, match="no rows"):
        read_task(_write(tmp_path / "blank.jsonl", ["", "  "]))


# --- dedupe ------------------------------------------------------------------------------


def test_dedupe_counts_distinct_content_across_tasks(tmp_path: Path) -> None:
    a = _write(
        tmp_path / "a.jsonl",
        [_mmeb("q1", ["x", "y", "z"]), _mmeb("q2", ["y", "x", "z"]), _mmeb("x", ["q1", "w"])],
    )
    b = _write(tmp_path / "b.jsonl", [_mmeb("q1", ["x", "v"], img="i.png")])
    tasks = read_tasks([a, b])
    plan = plan_items(tasks)
    # references: 4 + 4 + 3 + 3 = 14; distinct: q1 q2 x y z w, q1+image, v = 8
    assert (plan.stats.n_total, plan.stats.n_unique) == (14, 8)
    assert plan.stats.rate == pytest.approx(1 - 8 / 14)
    assert plan.table.schema == S.ITEM_SCHEMA and plan.table.num_rows == 8
    ids_a = plan.ids[0]
    # "x" is one item whether it is a candidate (row 1) or a query (row 3).
    assert ids_a[1] == ids_a[tasks[0].rows[1].refs[2]] == ids_a[tasks[0].rows[2].refs[0]]
    # The query with an image differs from the text-only q1.
    assert plan.ids[1][0] != ids_a[0]
    off = plan_items(tasks, dedupe=False)
    assert (off.stats.n_total, off.stats.n_unique) == (14, 14)
    # Bytes are keyed by hash and win over the URI; instruction is part of the content.
    base = {S.TEXT: "t", S.IMAGE: b"png", S.IMAGE_URI: "a.png", S.INSTRUCTION: None}
    assert content_key(base) == content_key({**base, S.IMAGE_URI: "b.png"})
    assert content_key(base) != content_key({**base, S.IMAGE: b"gif"})
    assert content_key(base) != content_key({**base, S.INSTRUCTION: "Find it."})


# --- scoring -----------------------------------------------------------------------------


def _embed_by_text(tasks: list, plan, vectors: dict[str, list[float]]) -> Embeddings:
    """Embeddings that give each item the vector of its text (images: their file name)."""
    rows = plan.table.to_pylist()
    keys = [r[S.TEXT] or Path(r[S.IMAGE_URI]).name for r in rows]
    return Embeddings([r[S.ID] for r in rows], np.array([vectors[k] for k in keys]))


def test_identical_candidates_score_zero_and_failed_or_unreadable_rows_are_excluded(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path / "t.jsonl",
        [
            _mmeb("q", ["same", "same", "same"]),  # every candidate scores the same
            _mmeb("q", ["good", "bad"]),
            _mmeb("q", ["good", "bad"], img="gone.png"),  # its query image failed
            _mmeb("q", ["bad", "good"]),
            {"qry_text": "q", "tgt_text": "good"},  # unreadable: a string, not a list
        ],
    )
    tasks = read_tasks([path])
    plan = plan_items(tasks)
    vec = {"q": [1, 0], "same": [1, 1], "good": [1, 0.1], "bad": [0, 1], "q|gone.png": [1, 0]}
    rows = plan.table.to_pylist()
    keys = [r[S.TEXT] + (f"|{Path(r[S.IMAGE_URI]).name}" if r[S.IMAGE_URI] else "") for r in rows]
    emb = Embeddings([r[S.ID] for r in rows], np.array([vec[k] for k in keys], dtype=float))
    failed_id = next(r[S.ID] for r in rows if r[S.IMAGE_URI])
    res = score_tasks(tasks, plan, emb, {failed_id: "cannot read image gone.png"})["t"]
    assert res.n_queries == 3 and res.n_excluded == 2  # the unreadable row is counted
    assert res.excluded[1] == f"{path}:3: cannot read image gone.png"
    assert res.excluded[0].startswith(f"{path}:5: field 'tgt_text'"), res.excluded
    assert res.gold_ranks.tolist() == [3, 1, 2]  # ties count against the gold
    assert res.metrics["precision@1"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"task t: all 4 rows were excluded"):
        score_tasks(tasks, plan, emb, {plan.ids[0][0]: "gone", failed_id: "gone"})


def test_caption_and_compositional_scores(tmp_path: Path) -> None:
    caps = _write(
        tmp_path / "caps.jsonl",
        [
            {"image": "a.png", "captions": ["cat", "kitten"]},
            {"image": "b.png", "captions": ["dog"]},
            {"image": "c.png", "captions": ["bird"]},
        ],
    )
    comp = _write(
        tmp_path / "comp.jsonl",
        [
            {"image": "a.png", "caption": "cat", "negative_caption": "dog", "category": "obj"},
            {"image": "b.png", "caption": "dog", "negative_caption": "cat", "category": "obj"},
            {"image": "c.png", "caption": "bird", "negative_caption": "bird2", "category": "att"},
        ],
    )
    tasks = read_tasks([caps, comp])
    plan = plan_items(tasks)
    vectors = {
        "a.png": [1, 0, 0],
        "b.png": [0, 1, 0],
        "c.png": [0, 0, 1],
        "cat": [1, 0.2, 0],
        "kitten": [0, 1, 0.3],  # nearer b.png and c.png than a.png: rank 3
        "dog": [0.1, 1, 0],
        "bird": [0, 0.5, 1],
        "bird2": [0, 0.5, 1],  # same as the true caption: a tie, counted wrong
    }
    res = score_tasks(tasks, plan, _embed_by_text(tasks, plan, vectors), {})
    c = res["caps"]
    assert c.kind == "captions" and c.primary_metric == "text_to_image_R@1"
    assert c.n_queries == 4  # one query per caption
    assert c.metrics["text_to_image_R@1"] == pytest.approx(3 / 4)
    assert c.metrics["image_to_text_R@1"] == pytest.approx(1.0)
    assert c.gold_ranks.tolist() == [1, 3, 1, 1]
    p = res["comp"]
    assert p.kind == "compositional" and p.metrics["accuracy"] == pytest.approx(2 / 3)
    assert p.categories == {"obj": {"accuracy": 1.0, "n": 2}, "att": {"accuracy": 0.0, "n": 1}}
    assert p.gold_ranks.tolist() == [1, 1, 2]
