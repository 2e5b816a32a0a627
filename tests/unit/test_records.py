from __future__ import annotations

import io

import pytest
from PIL import Image

from uniembed.data import schema as S
from uniembed.data.images import ImageError, decode_image, resolve_uri
from uniembed.data.records import (
    convert_records,
    items_from_item_record,
    items_from_mmeb_eval,
    items_from_mmeb_train,
    items_from_unime_v2,
    strip_image_placeholders,
)


def _png(size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_item_record_resolves_relative_image_paths() -> None:
    (row,) = items_from_item_record(
        {"id": 7, "text": "t", "image": "img/a.png"}, "f.jsonl:1", "/data/set"
    )
    assert row[S.ID] == "7" and row[S.IMAGE_URI] == "/data/set/img/a.png"
    (row,) = items_from_item_record({"id": "x", "image_uri": "b.png"}, "s", "s3://bkt/set")
    assert row[S.IMAGE_URI] == "s3://bkt/set/b.png"


def test_item_record_without_id_names_field() -> None:
    rows = list(convert_records(iter([({"text": "t"}, "f.jsonl:3")]), "items", None))
    assert rows[0][S.ERROR] == "f.jsonl:3: field 'id': missing required field"


def test_mmeb_train_and_eval() -> None:
    train = items_from_mmeb_train(
        {"qry": "<|image_1|>\nWhat is it?", "qry_image_path": "q.jpg", "pos_text": "a dog"},
        "t.jsonl:1",
        "/d",
    )
    assert [r[S.ID] for r in train] == ["t.jsonl:1#qry", "t.jsonl:1#pos"]
    assert train[0][S.TEXT] == "What is it?" and train[0][S.IMAGE_URI] == "/d/q.jpg"
    ev = items_from_mmeb_eval(
        {"qry_text": "q", "qry_img_path": "", "tgt_text": ["a", "b"], "tgt_img_path": ["", ""]},
        "e.jsonl:2",
        None,
    )
    assert [r[S.ID] for r in ev] == ["e.jsonl:2#qry", "e.jsonl:2#tgt0", "e.jsonl:2#tgt1"]


@pytest.mark.parametrize(
    ("rec", "match"),
    [
        (
            {"qry_text": "q", "tgt_text": ["a", "b"], "tgt_img_path": [""]},
            "tgt_img_path.*1 entries",
        ),
        ({"qry_text": "q", "tgt_text": []}, "empty candidate list"),
        ({"tgt_text": ["a"]}, "qry_text.*missing"),
    ],
)
def test_mmeb_eval_bad_rows_name_the_field(rec: dict, match: str) -> None:
    rows = list(convert_records(iter([(rec, "e.jsonl:9")]), "mmeb_eval", None))
    assert len(rows) == 1
    assert rows[0][S.ERROR].startswith("e.jsonl:9: field")
    import re

    assert re.search(match, rows[0][S.ERROR])


def test_unime_v2_scores_must_match_negatives() -> None:
    good = {
        "query_text": "q",
        "pos_text": "p",
        "hard_negatives": [["n1", ""], ["n2", "x.png"]],
        "hard_negatives_scores": [0.2, 0.1],
    }
    rows = items_from_unime_v2(good, "u.json:1", "/d")
    assert [r[S.ID] for r in rows][-1] == "u.json:1#neg1" and rows[-1][S.IMAGE_URI] == "/d/x.png"
    bad = dict(good, hard_negatives_scores=[0.2])
    out = list(convert_records(iter([(bad, "u.json:1")]), "unime_v2", None))
    assert "hard_negatives_scores" in out[0][S.ERROR]


def test_placeholders_stripped() -> None:
    assert strip_image_placeholders("<|image_1|>\nRepresent it") == "Represent it"
    assert strip_image_placeholders("<image>") is None


def test_decode_image_errors_name_record() -> None:
    data = _png()
    assert decode_image(data).size == (8, 8)
    with pytest.raises(ImageError, match="record r1: cannot decode"):
        decode_image(data[: len(data) // 2], record="r1")
    with pytest.raises(ImageError, match="record r2: image from bytes is empty"):
        decode_image(b"", record="r2")
    with pytest.raises(ImageError, match="over the limit"):
        decode_image(_png((100, 100)), record="r3", max_pixels=50)


def test_resolve_uri_keeps_absolute() -> None:
    assert resolve_uri("/abs/x.png", "/base") == "/abs/x.png"
    assert resolve_uri("s3://b/x.png", "/base") == "s3://b/x.png"
