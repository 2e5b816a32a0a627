"""The storage layer against a real S3 server (Ceph radosgw from scripts/s3_server.sh)."""

from __future__ import annotations

import socket
import time

import pyarrow as pa
import pytest

from fixtures.s3 import S3Server
from uniembed import storage
from uniembed.storage import S3Options, StorageError

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bytes_text_parquet_round_trip(s3_bucket: str) -> None:
    blob = bytes(range(256)) * 4096  # 1 MiB, binary
    storage.write_bytes(storage.join(s3_bucket, "raw", "blob.bin"), blob)
    assert storage.read_bytes(f"{s3_bucket}/raw/blob.bin") == blob
    storage.write_text(f"{s3_bucket}/t/note.txt", "héllo ☃")
    assert storage.read_text(f"{s3_bucket}/t/note.txt") == "héllo ☃"
    table = pa.table({"id": ["a", "b", "c"], "emb": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]})
    storage.write_parquet(f"{s3_bucket}/t/table.parquet", table)
    assert storage.read_parquet(f"{s3_bucket}/t/table.parquet").equals(table)
    assert storage.read_parquet(f"{s3_bucket}/t/table.parquet", columns=["id"]).num_columns == 1
    storage.write_text(f"{s3_bucket}/t/note.txt", "overwritten")
    assert storage.read_text(f"{s3_bucket}/t/note.txt") == "overwritten"


def test_list_exists_delete(s3_bucket: str) -> None:
    for key in ["b/2.parquet", "a/1.parquet", "a/deep/x.json", "top.parquet"]:
        storage.write_bytes(f"{s3_bucket}/{key}", b"x")
    assert storage.list_files(s3_bucket) == [
        f"{s3_bucket}/{k}" for k in ["a/1.parquet", "a/deep/x.json", "b/2.parquet", "top.parquet"]
    ]
    assert storage.list_files(f"{s3_bucket}/a/", suffix=".json") == [f"{s3_bucket}/a/deep/x.json"]
    assert storage.list_files(f"{s3_bucket}/missing") == []
    assert storage.exists(f"{s3_bucket}/a/1.parquet") and storage.exists(f"{s3_bucket}/a")
    assert not storage.exists(f"{s3_bucket}/a/nope")
    storage.delete(f"{s3_bucket}/a")
    assert storage.list_files(s3_bucket) == [f"{s3_bucket}/b/2.parquet", f"{s3_bucket}/top.parquet"]
    storage.delete(f"{s3_bucket}/top.parquet")
    storage.delete(f"{s3_bucket}/never/was")
    assert storage.list_files(s3_bucket) == [f"{s3_bucket}/b/2.parquet"]
    storage.delete(s3_bucket)  # empties, keeps the bucket
    assert storage.list_files(s3_bucket) == []
    storage.check_reachable(s3_bucket)


def test_missing_object_error_names_uri_and_endpoint(s3_bucket: str, s3_server: S3Server):
    with pytest.raises(StorageError, match="nope.bin") as info:
        storage.read_bytes(f"{s3_bucket}/nope.bin")
    assert s3_server.endpoint_url in str(info.value)


def test_failed_write_publishes_nothing(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_midway(table: pa.Table, where: object, **kwargs: object) -> None:
        where.write(b"PAR1 partial")
        raise OSError("disk full while writing")

    old = pa.table({"a": [1, 2]})
    storage.write_parquet(f"{s3_bucket}/old.parquet", old)
    monkeypatch.setattr(storage.pq, "write_table", fail_midway)
    for key in ["new.parquet", "old.parquet"]:
        with pytest.raises(OSError, match="disk full"):
            storage.write_parquet(f"{s3_bucket}/{key}", pa.table({"a": [9]}))
    monkeypatch.undo()
    assert not storage.exists(f"{s3_bucket}/new.parquet")
    assert storage.read_parquet(f"{s3_bucket}/old.parquet").equals(old)


def test_check_reachable_dead_endpoint_fails_fast(s3_server: S3Server) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    storage.configure(s3_server.options().merged(S3Options(endpoint_url=dead)))
    try:
        start = time.monotonic()
        with pytest.raises(StorageError, match=f"{dead}.*bucket 'some-bucket'"):
            storage.check_reachable("s3://some-bucket/out", timeout_s=5)
        assert time.monotonic() - start < 8  # the contract: an answer within the timeout
    finally:
        storage.configure(s3_server.options())


def test_check_reachable_missing_bucket(s3_server: S3Server) -> None:
    with pytest.raises(StorageError, match="bucket 'uniembed-no-such-bucket' does not exist"):
        storage.check_reachable("s3://uniembed-no-such-bucket/prefix", timeout_s=5)


def test_check_reachable_wrong_secret(s3_bucket: str, s3_server: S3Server) -> None:
    storage.configure(s3_server.options().merged(S3Options(secret_access_key="wrong")))
    try:
        with pytest.raises(StorageError, match="bucket .* ACCESS_DENIED"):
            storage.check_reachable(s3_bucket, timeout_s=5)
    finally:
        storage.configure(s3_server.options())
    storage.check_reachable(s3_bucket, timeout_s=5)


def test_read_folder_written_by_ray_data(s3_bucket: str, ray_start_2_cpus: None) -> None:
    import ray

    fs, path = storage.filesystem_for(f"{s3_bucket}/ray-out")
    ds = ray.data.range(300, override_num_blocks=3).map_batches(
        lambda b: {"id": b["id"], "text": [f"row {i}" for i in b["id"]]}, batch_format="numpy"
    )
    # The pickled S3 filesystem rebuilds its client inside the Ray workers; they need the
    # checksum settings in their environment whatever ray.init was given.
    ds.write_parquet(
        path,
        filesystem=fs,
        ray_remote_args={"runtime_env": {"env_vars": storage.worker_env_vars()}},
    )
    files = storage.list_files(f"{s3_bucket}/ray-out", suffix=".parquet")
    assert len(files) >= 2
    table = storage.read_parquet(f"{s3_bucket}/ray-out")
    assert table.num_rows == 300
    assert sorted(table.column("id").to_pylist()) == list(range(300))
    assert set(table.column_names) == {"id", "text"}
