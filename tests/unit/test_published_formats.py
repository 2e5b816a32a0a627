"""A published record (UniME-V2, MMEB-train) is parsed once: the item view (embed, mine)
and the training-row view (tune) agree on every text, image and score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uniembed.data import schema as S
from uniembed.data.records import RecordError, items_from_mmeb_train, items_from_unime_v2
from uniembed.data.training_rows import TrainingDataError, read_tune_rows

UNIME_V2 = {
    "query_text": "<|image_1|>\nwhat is shown",
    "query_image": "q.png",
    "pos_text": "a cat",
    "pos_image": "",
    "query_pos_scores": [0.9],  # some releases store the single score in a list
    "hard_negatives": [["a dog", ""], ["", "n.png"]],
    "hard_negatives_scores": [0.4, 0.2],
}
MMEB_TRAIN = {
    "qry": "<|image_1|>\nfind it",
    "qry_image_path": "q.png",
    "pos_text": "a cat",
    "pos_image_path": "",
    "neg_text": "a dog",
    "neg_image_path": "n.png",
}


def _views(tmp_path: Path, fmt: str, rec: dict) -> tuple[list[dict], dict]:
    path = tmp_path / f"{fmt}.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    convert = items_from_unime_v2 if fmt == "unime_v2" else items_from_mmeb_train
    items = convert(rec, f"{path}:1", str(tmp_path))
    (row,) = read_tune_rows(str(path), fmt).to_pylist()
    return items, row


@pytest.mark.parametrize(("fmt", "rec"), [("unime_v2", UNIME_V2), ("mmeb_train", MMEB_TRAIN)])
def test_item_and_training_views_agree(tmp_path: Path, fmt: str, rec: dict) -> None:
    items, row = _views(tmp_path, fmt, rec)
    query, pos, *negs = items
    assert row[S.SOURCE] == query[S.SOURCE] == f"{tmp_path / fmt}.jsonl:1"
    assert (row[S.QUERY_TEXT], row[S.QUERY_IMAGE]) == (query[S.TEXT], query[S.IMAGE_URI])
    assert (row[S.POS_TEXT], row[S.POS_IMAGE]) == (pos[S.TEXT], pos[S.IMAGE_URI])
    assert row[S.NEG_TEXTS] == [n[S.TEXT] for n in negs]
    assert row[S.NEG_IMAGES] == [n[S.IMAGE_URI] for n in negs]
    assert query[S.TEXT] in ("what is shown", "find it")  # placeholders stripped in both
    assert row[S.QUERY_IMAGE] == str(tmp_path / "q.png")
    assert negs and negs[-1][S.IMAGE_URI] == str(tmp_path / "n.png")


def test_list_valued_positive_score_in_both_views(tmp_path: Path) -> None:
    items, row = _views(tmp_path, "unime_v2", UNIME_V2)
    assert row[S.POS_SCORE] == pytest.approx(0.9)
    assert row[S.NEG_SCORES] == pytest.approx([0.4, 0.2])
    assert [i[S.ID].rsplit("#", 1)[1] for i in items] == ["qry", "pos", "neg0", "neg1"]


def test_a_bad_record_is_the_same_error_in_both_views(tmp_path: Path) -> None:
    bad = dict(UNIME_V2, hard_negatives=[["a dog", ""], "n.png"])
    with pytest.raises(RecordError, match=r"field 'hard_negatives\[1\]': expected"):
        _views(tmp_path, "unime_v2", bad)
    (tmp_path / "unime_v2.jsonl").write_text(json.dumps(bad))
    with pytest.raises(TrainingDataError, match=r"jsonl:1: field 'hard_negatives\[1\]'"):
        read_tune_rows(str(tmp_path / "unime_v2.jsonl"), "unime_v2")
