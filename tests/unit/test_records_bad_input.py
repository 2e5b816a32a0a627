"""Bad records are per-record outcomes (quarantined with file:line and reason, or cut and
counted), never a failed read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.bad_inputs import NON_UTF8_LINE, SURROGATE_LINE, png_header
from uniembed.data import schema as S
from uniembed.data.images import ImageError, decode_image
from uniembed.data.read import ReadOptions, iter_item_rows, read_table
from uniembed.models import EmbedInput


def test_bad_bytes_and_lone_surrogates_cost_one_record(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    good = json.dumps({"id": "a", "text": "fine"}).encode()
    path.write_bytes(
        b"\n".join([good, NON_UTF8_LINE, SURROGATE_LINE, good.replace(b'"a"', b'"z"')])
    )
    rows = read_table(str(path)).to_pylist()
    assert [r[S.ID] for r in rows if r[S.ERROR] is None] == ["a", "z"]
    errors = {r[S.SOURCE]: r[S.ERROR] for r in rows if r[S.ERROR]}
    assert "not valid UTF-8: byte 0xe9" in errors[f"{path}:2"]
    assert "field 'text'" in errors[f"{path}:3"] and "U+D800" in errors[f"{path}:3"]


def test_decompression_bomb_is_an_image_error() -> None:
    with pytest.raises(ImageError) as info:
        decode_image(png_header(20000, 20000), record="r", source="bomb.png")
    assert str(info.value) == (  # one whole sentence, ending in what was done
        "record r: image from bomb.png has 400000000 pixels, over the limit of 64000000 "
        "pixels (a decompression bomb: refused, not decoded)"
    )


def test_image_paths_stay_in_the_input_folder(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "c.jsonl"
    rows = [
        {"id": "in", "image_uri": "a.png"},
        {"id": "up", "image_uri": "../outside.png"},
        {"id": "abs", "image_uri": "/etc/hostname"},
        {"id": "ok", "image_uri": str(tmp_path / "shared" / "b.png")},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    opts = ReadOptions(root=str(folder), image_prefixes=(str(tmp_path / "shared"),))
    out = {r[S.ID]: r[S.ERROR] for r in iter_item_rows(str(path), "items", opts)}
    assert out["in"] is None and out["ok"] is None
    assert "field 'image_uri'" in out["up"] and "outside the input folder" in out["up"]
    assert "/etc/hostname" in out["abs"]


def test_long_text_is_cut_to_the_models_limit(tiny_qwen2_vl) -> None:  # noqa: ANN001
    text = "word " * 20_000  # 100 KB
    inp = EmbedInput(text=text)
    cut = tiny_qwen2_vl.fit(inp)
    assert cut is not inp and text.startswith(cut.text)
    assert tiny_qwen2_vl.token_length(inp) <= tiny_qwen2_vl.max_text_tokens + 64
    short = EmbedInput(text="a cat")
    assert tiny_qwen2_vl.fit(short) is short
