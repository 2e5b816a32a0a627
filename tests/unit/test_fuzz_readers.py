"""One bad-value fuzz for every reader (issue 25): the values of ``BAD_VALUES`` (and bytes
that are not UTF-8) in every field of every input format of every job, drawn by
hypothesis.

Invariant of the readers that quarantine (embed: items, mmeb_train, mmeb_eval, unime_v2
and the duplicate-id scan; mine: queries and pool, items and pairs): nothing raises,
every record comes out (counts add up), a record left as it was is processed, and a record
that is out is quarantined under its ``file:line`` naming the field; what is processed
is clean (valid Unicode, no NUL in a path). A value that is bad wherever it stands (a lone
surrogate, an object, a list for a string, NaN) must be quarantined; one that a field may
take (an empty or huge string, a NUL in a text) may be processed.

The readers that refuse bad input by design (tune and distill rows, the reranker's chats
built from them, evaluate data, which never drops a row because that would change the
number it reports) raise one error naming the ``file:line`` of a changed record and the
field, never a crash of another kind; on a file without a must-fail value they read every
record.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures.bad_inputs import BAD_VALUES, INVALID_UTF8, bad_line
from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.read import READ_SCHEMA, ReadOptions, iter_item_rows
from uniembed.data.training_rows import (
    DISTILL_SCHEMA,
    TUNE_SCHEMA,
    Quarantine,
    TrainingDataError,
    iter_text_chunks,
    iter_tune_chunks,
    read_texts,
    read_tune_rows,
)
from uniembed.embed.dedupe import _file_ids
from uniembed.evaluation.tasks import read_task
from uniembed.mining.inputs import POOL_SCHEMA, QUERY_SCHEMA, iter_pool_rows, iter_query_shards
from uniembed.reranker.data import plan_rows

# Which bad values each kind of field must refuse (the rest it may take).
_TEXTUAL_BAD = {"lone_surrogate", "object", "list", "nan", "inf", "neg_inf", "float", "bool"}
MUST_FAIL: dict[str, set[str]] = {
    "str": _TEXTUAL_BAD | {"huge_int", INVALID_UTF8},
    "path": _TEXTUAL_BAD | {"huge_int", "nul", INVALID_UTF8},
    "id": _TEXTUAL_BAD | {INVALID_UTF8},
    # an instruction is never cut: a huge one is refused, not sent whole to the model
    "instruction": _TEXTUAL_BAD | {"huge_int", "huge", INVALID_UTF8},
    "score": set(BAD_VALUES) - {"null", "float"} | {INVALID_UTF8},
    "list": set(BAD_VALUES) - {"null"} | {INVALID_UTF8},  # a list replaced whole
    "pair": set(BAD_VALUES) | {INVALID_UTF8},  # a hard negative that is not [text, image]
    "ignored": {INVALID_UTF8},  # a field no reader looks at: only unreadable bytes matter
}


@dataclass(frozen=True)
class Spot:
    """Where a bad value goes: a field, or an entry of the list it holds (``at``)."""

    field: str
    kind: str
    at: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        """The field as the readers name it: ``hard_negatives[0][1]``."""
        return self.field + "".join(f"[{i}]" for i in self.at)


def _spots(*spots: tuple) -> tuple[Spot, ...]:
    return (*(Spot(*s) for s in spots), Spot("zz_unknown", "ignored"))


ITEM = {"id": "r", "text": "a photo", "image_uri": "a.png", "instruction": "Find it."}
ITEM_SPOTS = _spots(("id", "id"), ("text", "str"), ("image_uri", "path"),
                    ("image", "path"), ("image_path", "path"),
                    ("instruction", "instruction"))  # fmt: skip
MMEB_TRAIN = {"qry": "q", "qry_image_path": "q.png", "pos_text": "p", "pos_image_path": "p.png",
              "neg_text": "n", "neg_image_path": "n.png"}  # fmt: skip
MMEB_TRAIN_SPOTS = _spots(("qry", "str"), ("qry_image_path", "path"), ("pos_text", "str"),
                          ("pos_image_path", "path"), ("neg_text", "str"),
                          ("neg_image_path", "path"), ("id", "id"))  # fmt: skip
UNIME_V2 = {"id": "u", "query_text": "q", "query_image": "q.png", "pos_text": "p",
            "pos_image": "p.png", "query_pos_scores": 0.9, "hard_negatives": [["n", "n.png"]],
            "hard_negatives_scores": [0.5]}  # fmt: skip
UNIME_V2_SPOTS = _spots(("id", "id"), ("query_text", "str"), ("query_image", "path"),
                        ("pos_text", "str"), ("pos_image", "path"), ("query_pos_scores", "score"),
                        ("hard_negatives", "list"), ("hard_negatives", "pair", (0,)),
                        ("hard_negatives", "str", (0, 0)), ("hard_negatives", "path", (0, 1)),
                        ("hard_negatives_scores", "list"),
                        ("hard_negatives_scores", "score", (0,)))  # fmt: skip
MMEB_EVAL = {"qry_text": "q", "qry_img_path": "q.png", "tgt_text": ["a", "b"],
             "tgt_img_path": ["a.png", "b.png"]}  # fmt: skip
MMEB_EVAL_SPOTS = _spots(("qry_text", "str"), ("qry_img_path", "path"), ("tgt_text", "list"),
                         ("tgt_text", "str", (1,)), ("tgt_img_path", "list"),
                         ("tgt_img_path", "path", (0,)))  # fmt: skip
QUERY = {**ITEM, "pos_id": "p"}
QUERY_SPOTS = (*ITEM_SPOTS, Spot("pos_id", "id"))
POOL = {**ITEM, "group": "g"}
POOL_SPOTS = (*ITEM_SPOTS, Spot("group", "id"))
PAIR = {"id": "c", "image": "c.png", "title": "a cat"}
PAIR_QUERY_SPOTS = _spots(("id", "id"), ("image", "path"))
PAIR_POOL_SPOTS = _spots(("id", "id"), ("title", "str"))
TEXTS = {"id": "t", "text": "some text"}
TEXTS_SPOTS = _spots(("id", "id"), ("text", "str"))
CAPTIONS = {"image": "i.png", "captions": ["a dog", "a cat"]}
CAPTIONS_SPOTS = _spots(("image", "path"), ("captions", "list"), ("captions", "str", (1,)))
COMPOSITIONAL = {"image": "i.png", "caption": "a dog", "negative_caption": "a cat",
                 "category": "swap"}  # fmt: skip
COMPOSITIONAL_SPOTS = _spots(("image", "path"), ("caption", "str"),
                             ("negative_caption", "str"), ("category", "str"))  # fmt: skip
BAD_NAMES = sorted(BAD_VALUES) + [INVALID_UTF8]


@dataclass
class Line:
    """One drawn record: unchanged (``spot is None``) or with one bad value."""

    spot: Spot | None
    bad: str | None

    @property
    def must_fail(self) -> bool:
        return self.spot is not None and self.bad in MUST_FAIL[self.spot.kind]


def lines(spots: tuple[Spot, ...], min_good: int = 0) -> st.SearchStrategy[list[Line]]:
    """1-8 records after ``min_good`` unchanged ones, each unchanged or with one bad value
    in one of ``spots``."""
    changed = st.builds(Line, st.sampled_from(spots), st.sampled_from(BAD_NAMES))
    record = st.one_of(st.just(Line(None, None)), changed)
    return st.lists(record, min_size=1, max_size=8).map(
        lambda drawn: [Line(None, None)] * min_good + drawn
    )


def _unique(template: dict, n: int) -> dict:
    """``template`` with its ids, images and texts made unique for record ``n``."""
    out = dict(template)
    for key in ("id", "image", "image_uri", "pos_id", "query_text", "qry_text"):
        if isinstance(out.get(key), str):
            stem, dot, ext = out[key].rpartition(".")
            out[key] = f"{stem}{n}.{ext}" if dot and ext == "png" else f"{out[key]}{n}"
    return out


def write(folder: Path, template: dict, drawn: list[Line], name: str = "in.jsonl") -> Path:
    """The drawn records as a JSONL file (line n is record n)."""
    path = folder / name
    out = []
    for n, line in enumerate(drawn, start=1):
        rec = _unique(template, n)
        if line.spot is None:
            out.append(bad_line(rec, None, None))
        else:
            value = INVALID_UTF8 if line.bad == INVALID_UTF8 else BAD_VALUES[line.bad]
            out.append(bad_line(rec, line.spot.field, value, line.spot.at))
    path.write_bytes(b"\n".join(out) + b"\n")
    return path


def _clean(row: dict[str, Any]) -> None:
    """A processed row holds valid Unicode everywhere and no NUL in a path."""
    for key, value in row.items():
        if isinstance(value, str):
            value.encode("utf-8")
            if key in (S.IMAGE_URI,):
                assert "\x00" not in value
    if row.get(S.IMAGE_URI):
        assert isinstance(row[S.IMAGE_URI], str)


def check_quarantined(path: Path, drawn: list[Line], rows: list[dict[str, Any]]) -> None:
    """The invariant of the quarantining readers over the rows they gave for ``drawn``."""
    by_line: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        source = row[S.SOURCE]
        assert source.startswith(f"{path}:"), source
        n = int(source[len(f"{path}:") :])
        by_line.setdefault(n, []).append(row)
        if row[S.ERROR] is not None:
            row[S.ERROR].encode("utf-8")  # the reason itself can be written
            assert row[S.ERROR].startswith(f"{path}:{n}: "), row[S.ERROR]
        else:
            _clean(row)
    assert sorted(by_line) == list(range(1, len(drawn) + 1)), "every record comes out once"
    for n, line in enumerate(drawn, start=1):
        errors = [r[S.ERROR] for r in by_line[n] if r[S.ERROR] is not None]
        if line.spot is None or line.spot.kind == "ignored" and line.bad != INVALID_UTF8:
            assert errors == [], (line, errors)
        elif line.must_fail:
            assert errors, (line, by_line[n])
            if line.bad == INVALID_UTF8:
                assert "not valid UTF-8" in errors[0]
            else:
                assert f"field '{line.spot.field}" in errors[0], (line, errors[0])
        # A record that is out is one quarantined row, never a mix of good and bad items.
        assert not errors or len(by_line[n]) == 1


def check_refused(
    path: Path, drawn: list[Line], error: Exception | None, read_all: bool = True
) -> None:
    """The invariant of the refusing readers: an error names a changed record's
    ``file:line`` (and its field, where the record could be read); no error only when no
    record holds a must-fail value."""
    if error is None:
        assert not any(line.must_fail for line in drawn), drawn
        return
    message = str(error)
    message.encode("utf-8")
    assert message.startswith(f"{path}:"), message
    n = int(message[len(f"{path}:") :].split(" ", 1)[0].split(":", 1)[0])
    line = drawn[n - 1]
    assert line.spot is not None, f"a good record was refused: {message}"
    if line.bad == INVALID_UTF8:
        assert "not valid UTF-8" in message


FUZZ = settings(
    max_examples=int(os.environ.get("UNIEMBED_FUZZ_EXAMPLES", "40")),
    deadline=None,
    database=None,  # nothing written into the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _folder() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="fuzz-")


EMBED_FORMATS = {
    "items": (ITEM, ITEM_SPOTS),
    "mmeb_train": (MMEB_TRAIN, MMEB_TRAIN_SPOTS),
    "unime_v2": (UNIME_V2, UNIME_V2_SPOTS),
    "mmeb_eval": (MMEB_EVAL, MMEB_EVAL_SPOTS),
}


@pytest.mark.parametrize("fmt", sorted(EMBED_FORMATS))
def test_embed_reader(fmt: str) -> None:
    template, spots = EMBED_FORMATS[fmt]

    @FUZZ
    @given(lines(spots))
    def run(drawn: list[Line]) -> None:
        with _folder() as d:
            path = write(Path(d), template, drawn)
            rows = list(iter_item_rows(str(path), fmt, ReadOptions(fmt=fmt, root=d)))
            pa.Table.from_pylist(rows, schema=READ_SCHEMA)  # what the read task writes
            check_quarantined(path, drawn, rows)
            if fmt == "items":  # the duplicate-id scan reads the same file first
                ids = _file_ids(str(path), storage.get_options())["id"].to_pylist()
                good = {r[S.ID] for r in rows if r[S.ERROR] is None}
                assert good <= set(ids) and len(ids) <= len(drawn)

    run()


MINE_INPUTS = {
    ("queries", "items"): (QUERY, QUERY_SPOTS),
    ("queries", "pairs"): (PAIR, PAIR_QUERY_SPOTS),
    ("pool", "items"): (POOL, POOL_SPOTS),
    ("pool", "pairs"): (PAIR, PAIR_POOL_SPOTS),
}


@pytest.mark.parametrize(("side", "fmt"), sorted(MINE_INPUTS))
def test_mine_reader(side: str, fmt: str) -> None:
    template, spots = MINE_INPUTS[(side, fmt)]

    @FUZZ
    @given(lines(spots), st.integers(1, 4))
    def run(drawn: list[Line], shard_size: int) -> None:
        with _folder() as d:
            path = write(Path(d), template, drawn)
            allowed = (d, ())
            if side == "queries":
                tables = iter_query_shards(str(path), fmt, shard_size, None, frozenset(), allowed)
                schema = QUERY_SCHEMA
            else:
                tables = iter_pool_rows(str(path), fmt, "group", allowed)
                schema = POOL_SCHEMA
            rows = [r for t in tables for r in t.cast(schema).to_pylist()]
            check_quarantined(path, drawn, rows)

    run()


TUNE_FORMATS = {
    "unime_v2": (UNIME_V2, UNIME_V2_SPOTS),
    "mmeb_train": (MMEB_TRAIN, MMEB_TRAIN_SPOTS),
}


def check_left_out(path: Path, drawn: list[Line], kept: list[str], quarantine: Quarantine) -> None:
    """The invariant of the train jobs' readers (quarantining): every record is kept
    (``kept``: sources) or quarantined, once; one with a must-fail value is quarantined
    under its ``file:line``, an unchanged one is kept; the counts add up."""
    left_out = {r[S.SOURCE]: r[S.REASON] for r in quarantine.rows}
    assert len(left_out) == len(quarantine), "a record quarantined twice"
    assert not set(kept) & set(left_out)
    assert len(kept) + len(left_out) == len(drawn)
    for n, line in enumerate(drawn, start=1):
        src = f"{path}:{n}"
        if line.spot is None or line.spot.kind == "ignored" and line.bad != INVALID_UTF8:
            assert src in kept, (line, left_out.get(src))
        elif line.must_fail:
            assert src in left_out, line
        if src in left_out:
            reason = left_out[src]
            reason.encode("utf-8")  # the reason itself can be written
            assert reason.startswith((f"{src}:", f"{src} (")), reason
            if line.bad == INVALID_UTF8:
                assert "not valid UTF-8" in reason


@pytest.mark.parametrize("fmt", sorted(TUNE_FORMATS))
def test_tune_and_reranker_rows(fmt: str) -> None:
    template, spots = TUNE_FORMATS[fmt]

    @FUZZ
    @given(lines(spots))
    def run(drawn: list[Line]) -> None:
        with _folder() as d:
            path = write(Path(d), template, drawn)
            quarantine = Quarantine()
            chunks = list(iter_tune_chunks(str(path), fmt, quarantine=quarantine))
            table = pa.concat_tables([TUNE_SCHEMA.empty_table(), *chunks])
            check_left_out(path, drawn, table[S.SOURCE].to_pylist(), quarantine)
            scores = table[S.POS_SCORE].to_pylist()
            assert all(math.isfinite(s) for s in scores)
            chats, counts = plan_rows(table.to_pylist())
            assert counts.rows == table.num_rows
            try:  # the raising reader (no quarantine) stops at the first bad record
                read_tune_rows(str(path), fmt)
                error: Exception | None = None
            except TrainingDataError as e:
                error = e
            check_refused(path, drawn, error)
            assert (error is None) == (len(quarantine) == 0)

    run()


def test_distill_texts() -> None:
    @FUZZ
    @given(lines(TEXTS_SPOTS))
    def run(drawn: list[Line]) -> None:
        with _folder() as d:
            path = write(Path(d), TEXTS, drawn)
            quarantine = Quarantine()
            chunks = list(iter_text_chunks(str(path), quarantine=quarantine))
            table = pa.concat_tables([DISTILL_SCHEMA.empty_table(), *chunks])
            check_left_out(path, drawn, table[S.SOURCE].to_pylist(), quarantine)
            try:
                read_texts(str(path))
                error: Exception | None = None
            except TrainingDataError as e:
                error = e
            check_refused(path, drawn, error)

    run()


EVAL_FORMATS = {
    "candidates": (MMEB_EVAL, MMEB_EVAL_SPOTS),
    "captions": (CAPTIONS, CAPTIONS_SPOTS),
    "compositional": (COMPOSITIONAL, COMPOSITIONAL_SPOTS),
}


@pytest.mark.parametrize("kind", sorted(EVAL_FORMATS))
def test_evaluate_data(kind: str) -> None:
    template, spots = EVAL_FORMATS[kind]

    @FUZZ
    @given(lines(spots, min_good=2))
    def run(drawn: list[Line]) -> None:
        with _folder() as d:
            path = write(Path(d), template, drawn)
            task = read_task(str(path))  # two good rows first: never refused
            assert task.kind == kind
            left_out = Quarantine()
            for reason in task.unreadable:
                left_out.add(ValueError(reason), reason.split(": ", 1)[0])
            kept = [r.source for r in task.rows]
            if kind == "captions":  # records naming the same image merge into one row
                out = {r["source"] for r in left_out.rows}
                kept = [f"{path}:{n}" for n in range(1, len(drawn) + 1) if f"{path}:{n}" not in out]
                assert 0 < len(task.rows) <= len(kept)
            check_left_out(path, drawn, kept, left_out)

    run()
