"""Symbolic links in an input folder (issue 25, items 2 and 3): image paths are judged
where they really point, folder links are followed only when asked, a loop never, and
every real record file is read once."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.images import path_allowed, under_prefixes
from uniembed.data.read import ReadOptions, iter_item_rows
from uniembed.data.record_files import folder_records, input_files, input_root
from uniembed.evaluation.tasks import task_files
from uniembed.mining.inputs import iter_pool_rows


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """``in/`` with one record file, beside a file outside it."""
    (tmp_path / "x.png").write_bytes(b"outside the input folder")
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "inside.png").write_bytes(b"inside")
    return inp


def test_a_link_inside_the_folder_cannot_lead_an_image_path_out(folder: Path) -> None:
    (folder / "link.png").symlink_to("../x.png")
    (folder / "host.png").symlink_to("/etc/hostname")
    (folder / "ok.png").symlink_to("inside.png")  # a link that stays inside is fine
    (folder / "sub").symlink_to(folder.parent)  # a folder link on the way out
    rows = [
        {"id": "link", "image_uri": "link.png"},
        {"id": "host", "image_uri": "host.png"},
        {"id": "via", "image_uri": "sub/x.png"},
        {"id": "ok", "image_uri": "ok.png"},
        {"id": "plain", "image_uri": "inside.png"},
    ]
    f = _write(folder / "a.jsonl", rows)
    options = ReadOptions(root=input_root(str(folder)))
    got = {r[S.ID]: r[S.ERROR] for r in iter_item_rows(str(f), "items", options)}
    assert got["ok"] is None and got["plain"] is None
    for rid, target in (("link", "x.png"), ("host", "/etc/hostname"), ("via", "x.png")):
        assert "field 'image_uri'" in got[rid] and "outside the input folder" in got[rid]
        assert (
            f"a link to {target if target.startswith('/') else folder.parent / target}"
            in (got[rid])
        )
    # An allowed prefix is judged the same way: where it really points.
    assert path_allowed(str(folder / "link.png"), str(folder), [str(folder.parent)])
    assert not path_allowed(str(folder / "host.png"), str(folder), [str(folder.parent)])


def test_the_mine_pool_refuses_the_same_links(folder: Path) -> None:
    (folder / "link.png").symlink_to("../x.png")
    f = _write(
        folder / "pool.jsonl", [{"id": "p", "image_uri": "link.png"}, {"id": "q", "text": "t"}]
    )
    rows = [
        r for t in iter_pool_rows(str(f), "items", None, (str(folder), ())) for r in t.to_pylist()
    ]
    assert (
        rows[0][S.ERROR].startswith(f"{f}:1: field 'image_uri'") and "a link to" in rows[0][S.ERROR]
    )
    assert rows[1][S.ERROR] is None


def test_a_folder_loop_is_named_and_each_file_read_once(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(folder / "a.jsonl", [{"id": f"r{i}", "text": "t"} for i in range(13)])
    (folder / "again").symlink_to(".")
    (folder / "deep").mkdir()
    (folder / "deep" / "up").symlink_to("..")
    with caplog.at_level(logging.WARNING):
        assert input_files(str(folder)) == [str(folder / "a.jsonl")]
    assert "again" in caplog.text and "symlink loop" in caplog.text
    assert f"{folder}/deep/up -> {folder}: a symlink loop" in caplog.text
    # Asked to follow folder links, a loop is still not followed.
    assert input_files(str(folder), follow_symlinks=True) == [str(folder / "a.jsonl")]
    assert len(list(folder_records(str(folder)))) == 13


def test_folder_links_are_followed_only_when_asked(folder: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    _write(other / "b.jsonl", [{"id": "b", "text": "t"}])
    _write(folder / "a.jsonl", [{"id": "a", "text": "t"}])
    (folder / "more").symlink_to(other)
    (folder / "more2").symlink_to(other)  # the same folder twice: listed once
    (folder / "copy.jsonl").symlink_to("a.jsonl")  # a second name of a.jsonl: read once
    (folder / "far.jsonl").symlink_to(other / "b.jsonl")  # a file link leading out
    assert input_files(str(folder)) == [str(folder / "a.jsonl")]
    listing = storage.list_input_files(str(folder))
    why = {Path(s.path).name: s.why for s in listing.skipped}
    assert "follow_symlinks=true" in why["more"] and "outside the input folder" in why["far.jsonl"]
    assert why["copy.jsonl"] == f"the same file as {folder / 'a.jsonl'}, read once"
    followed = input_files(str(folder), follow_symlinks=True)
    assert followed == [str(folder / "a.jsonl"), str(folder / "far.jsonl")]
    skipped = storage.list_input_files(str(folder), follow_symlinks=True).skipped
    # more2 leads to a folder already listed; more/b.jsonl is the file far.jsonl names.
    assert {Path(s.path).name for s in skipped} == {"more2", "copy.jsonl", "b.jsonl"}


def test_evaluate_lists_data_folders_without_following_links(folder: Path) -> None:
    _write(folder / "t.jsonl", [{"image": "inside.png", "captions": ["a"]}])
    (folder / "again").symlink_to(".")
    assert task_files([str(folder)]) == [str(folder / "t.jsonl")]


def test_under_prefixes_judges_where_a_uri_really_points(folder: Path) -> None:
    (folder / "link.png").symlink_to("../x.png")
    allowed = [f"file://{folder}/", "s3://bucket/images/"]
    assert under_prefixes(f"file://{folder}/inside.png", allowed)
    assert under_prefixes(str(folder / "inside.png"), allowed)
    assert not under_prefixes(f"file://{folder}/link.png", allowed)
    assert not under_prefixes(f"file://{folder}/../x.png", allowed)
    assert under_prefixes("s3://bucket/images/a.png", allowed)
    assert not under_prefixes("s3://bucket/images/../secret.png", allowed)
    assert not under_prefixes(f"file://{folder}/a\x00.png", allowed)
