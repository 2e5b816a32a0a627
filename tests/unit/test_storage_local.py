"""The storage layer on local paths, plus the S3 option handling that needs no server."""

from __future__ import annotations

import os
import pickle
import socket
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from uniembed import storage
from uniembed.storage import S3Options, StorageError

AWS_VARS = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No AWS variables and no configured options; whatever was configured comes back."""
    for name in AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    saved = storage._configured
    storage.configure(None)
    yield monkeypatch
    storage.configure(saved)


def _fail_midway(table: pa.Table, where: object, **kwargs: object) -> None:
    """Stand-in for pq.write_table that writes real bytes, then fails like a full disk."""
    where.write(b"PAR1 partial bytes")
    raise OSError("disk full while writing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("form", ["plain", "file_uri"])
def test_round_trips(tmp_path: Path, form: str) -> None:
    base = str(tmp_path) if form == "plain" else f"file://{tmp_path}"
    storage.write_bytes(storage.join(base, "a", "b", "blob.bin"), b"\x00\x01binary")
    assert storage.read_bytes(storage.join(base, "a/b/blob.bin")) == b"\x00\x01binary"
    storage.write_text(storage.join(base, "note.txt"), "héllo\nworld")
    assert storage.read_text(storage.join(base, "note.txt")) == "héllo\nworld"
    table = pa.table({"id": ["x", "y"], "v": [1.5, 2.5]})
    storage.write_parquet(storage.join(base, "t.parquet"), table)
    assert storage.read_parquet(storage.join(base, "t.parquet")).equals(table)
    assert (tmp_path / "a" / "b" / "blob.bin").read_bytes() == b"\x00\x01binary"


def test_relative_paths_resolve_against_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    storage.write_text("rel/x.txt", "ok")
    assert (tmp_path / "rel" / "x.txt").read_text() == "ok"
    assert storage.local_path("rel/x.txt") == str(tmp_path / "rel" / "x.txt")
    assert storage.list_files("rel") == ["rel/x.txt"]


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage.pq, "write_table", _fail_midway)
    target = tmp_path / "out" / "t.parquet"
    with pytest.raises(StorageError, match="disk full"):
        storage.write_parquet(str(target), pa.table({"a": [1]}))
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []  # the temp file is gone too


def test_failed_write_keeps_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = str(tmp_path / "t.parquet")
    old = pa.table({"a": [1, 2, 3]})
    storage.write_parquet(target, old)
    monkeypatch.setattr(storage.pq, "write_table", _fail_midway)
    with pytest.raises(StorageError, match=r"t\.parquet"):
        storage.write_parquet(target, pa.table({"a": [9]}))
    monkeypatch.undo()
    assert storage.read_parquet(target).equals(old)
    assert sorted(os.listdir(tmp_path)) == ["t.parquet"]


def test_interrupt_during_write_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(table: pa.Table, where: object, **kwargs: object) -> None:
        where.write(b"half")
        raise KeyboardInterrupt

    storage.write_text(str(tmp_path / "x.parquet"), "old")
    monkeypatch.setattr(storage.pq, "write_table", interrupted)
    with pytest.raises(KeyboardInterrupt):
        storage.write_parquet(str(tmp_path / "x.parquet"), pa.table({"a": [1]}))
    assert os.listdir(tmp_path) == ["x.parquet"]
    assert (tmp_path / "x.parquet").read_text() == "old"


def test_s3_write_failure_sends_nothing(clean_env: pytest.MonkeyPatch) -> None:
    # The endpoint is dead: had the write opened an upload before the data was complete,
    # the error would be a connection error instead of the producer's own.
    storage.configure(S3Options(endpoint_url=f"http://127.0.0.1:{_free_port()}"))
    clean_env.setattr(storage.pq, "write_table", _fail_midway)
    with pytest.raises(OSError, match="disk full"):
        storage.write_parquet("s3://bucket/t.parquet", pa.table({"a": [1]}))


def test_list_files_recursive_sorted_same_form(tmp_path: Path) -> None:
    for rel in ["b/2.parquet", "a/1.parquet", "a/z.json", "c.parquet"]:
        storage.write_bytes(str(tmp_path / rel), b"x")
    (tmp_path / ".uniembed-tmp-123-d.parquet").write_bytes(b"in flight")
    got = storage.list_files(str(tmp_path), suffix=".parquet")
    assert got == [str(tmp_path / r) for r in ["a/1.parquet", "b/2.parquet", "c.parquet"]]
    uri = f"file://{tmp_path}/"
    assert storage.list_files(uri)[0] == f"file://{tmp_path}/a/1.parquet"
    assert len(storage.list_files(uri)) == 4
    assert storage.list_files(str(tmp_path / "c.parquet")) == [str(tmp_path / "c.parquet")]
    assert storage.list_files(str(tmp_path / "missing")) == []


def test_read_parquet_folder_in_name_order(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    for i in [2, 0, 1]:
        storage.write_parquet(str(folder / f"part-{i:03d}.parquet"), pa.table({"i": [i, i]}))
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / "_common_metadata.parquet").write_bytes(b"not a data file")
    nested = folder / "sub" / "part-100.parquet"
    nested.parent.mkdir()
    pq.write_table(pa.table({"i": [100]}), nested)
    table = storage.read_parquet(str(folder))
    assert table.column("i").to_pylist() == [0, 0, 1, 1, 2, 2, 100]
    assert storage.read_parquet(str(folder), columns=["i"]).num_columns == 1


def test_read_parquet_errors_name_the_uri(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(StorageError, match="empty: no parquet"):
        storage.read_parquet(str(tmp_path / "empty"))
    (tmp_path / "bad.parquet").write_bytes(b"garbage")
    with pytest.raises(StorageError, match="bad.parquet"):
        storage.read_parquet(str(tmp_path / "bad.parquet"))
    with pytest.raises(StorageError, match="nope.bin: not found"):
        storage.read_bytes(str(tmp_path / "nope.bin"))
    with pytest.raises(StorageError, match="write_parquet expects a pyarrow.Table"):
        storage.write_parquet(str(tmp_path / "x.parquet"), {"a": [1]})  # type: ignore[arg-type]


def test_delete_exists_makedirs(tmp_path: Path) -> None:
    tree = str(tmp_path / "tree")
    storage.makedirs(storage.join(tree, "deep", "er"))
    assert storage.exists(storage.join(tree, "deep", "er"))
    storage.write_text(storage.join(tree, "deep", "f.txt"), "x")
    storage.delete(storage.join(tree, "deep", "f.txt"))
    assert not storage.exists(storage.join(tree, "deep", "f.txt"))
    storage.delete(tree)
    assert not storage.exists(tree)
    storage.delete(tree)  # missing is fine
    assert os.listdir(tmp_path) == []


def test_uri_helpers() -> None:
    assert storage.join("s3://b", "x", "/y/") == "s3://b/x/y"
    assert storage.join("s3://b/", "x") == "s3://b/x"
    assert storage.join("/tmp/a", "b.txt") == "/tmp/a/b.txt"
    assert storage.is_remote("s3://b/k") and not storage.is_remote("file:///tmp/x")
    assert storage.local_path("file:///tmp/x/../y") == "/tmp/y"
    assert storage.local_path("s3://b/k") is None
    with pytest.raises(StorageError, match="gs://b/k: unsupported scheme"):
        storage.exists("gs://b/k")
    with pytest.raises(StorageError, match="needs a bucket"):
        storage.filesystem_for("s3://")
    with pytest.raises(StorageError, match="absolute path"):
        storage.filesystem_for("file://relative/x")


def test_check_reachable_local(tmp_path: Path) -> None:
    storage.check_reachable(str(tmp_path / "new" / "deeper" / "out"))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StorageError, match="is a file, not a folder"):
        storage.check_reachable(str(tmp_path / "afile" / "out"))


def test_options_from_env_and_precedence(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_ENDPOINT_URL", "http://generic:1")
    clean_env.setenv("AWS_ENDPOINT_URL_S3", "http://s3-specific:2")
    clean_env.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    clean_env.setenv("AWS_ACCESS_KEY_ID", "env-key")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    env = S3Options.from_env()
    assert env == S3Options("http://s3-specific:2", "eu-west-1", "env-key", "env-secret", None)
    clean_env.setenv("AWS_REGION", "us-west-2")
    assert S3Options.from_env().region == "us-west-2"
    storage.configure(S3Options(endpoint_url="http://explicit:3", access_key_id="k2"))
    got = storage.get_options()
    assert (got.endpoint_url, got.access_key_id, got.secret_access_key, got.region) == (
        "http://explicit:3",
        "k2",
        "env-secret",
        "us-west-2",
    )
    assert env.merged(None) == env and env.merged(None) is not env
    assert "env-secret" not in repr(env)
    assert pickle.loads(pickle.dumps(got)) == got


def test_s3_filesystem_built_from_options_and_cached(clean_env: pytest.MonkeyPatch) -> None:
    storage.configure(S3Options(endpoint_url="http://127.0.0.1:9", region="eu-west-1"))
    fs, path = storage.filesystem_for("s3://bk/a/b")
    assert path == "bk/a/b" and fs.region == "eu-west-1"
    (args,) = fs.__reduce__()[1]
    assert (args["scheme"], args["endpoint_override"]) == ("http", "127.0.0.1:9")
    assert storage.filesystem_for("s3://other")[0] is fs
    storage.configure(S3Options(endpoint_url="https://objects.example:443"))
    fs2, _ = storage.filesystem_for("s3://bk")
    assert fs2 is not fs and fs2.__reduce__()[1][0]["scheme"] == "https"
    assert os.environ["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"
    env = storage.worker_env_vars()
    assert env["AWS_ENDPOINT_URL"] == "https://objects.example:443"
    assert env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"
    storage.configure(S3Options(endpoint_url="ftp://x"))
    with pytest.raises(StorageError, match="ftp://x"):
        storage.filesystem_for("s3://bk")
    storage.configure(S3Options(endpoint_url="http://127.0.0.1:9", access_key_id="only-key"))
    with pytest.raises(StorageError, match="bad S3 settings for http://127.0.0.1:9"):
        storage.filesystem_for("s3://bk")
