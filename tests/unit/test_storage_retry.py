"""The S3 retry rules of ``uniembed.storage``: what is waited out, what fails at once, and
the one message at the deadline (the outage itself is in tests/integration)."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow.fs as pafs
import pytest

from uniembed import storage
from uniembed.runtime import actor_resources
from uniembed.sections import ActorPoolSection

DOWN = (
    "When initiating multiple part upload for key 'x' in bucket 'b': AWS Error "
    "NETWORK_CONNECTION during CreateMultipartUpload operation: curlCode: 7, Could not "
    "connect to server"
)
REFUSED = "When reading information for key 'x' in bucket 'b': AWS Error ACCESS_DENIED"


@pytest.fixture(autouse=True)
def _options() -> Iterator[None]:
    before = storage.get_options()
    storage.configure(
        storage.S3Options(
            endpoint_url="http://127.0.0.1:1",
            access_key_id="AKID",
            secret_access_key="s3cr3t-value",
            retry_deadline_s=1.0,
        )
    )
    yield
    storage.configure(before)


def _failing(messages: list[str]):  # noqa: ANN202
    calls: list[int] = []

    def op() -> str:
        calls.append(1)
        if len(calls) <= len(messages):
            try:
                raise OSError(messages[len(calls) - 1])
            except OSError as exc:
                raise storage.StorageError(f"cannot write s3://b/x: {exc}") from exc
        return "ok"

    return op, calls


def test_an_endpoint_that_comes_back_is_waited_for() -> None:
    op, calls = _failing([DOWN])
    assert storage.retrying("write", "s3://b/x", op) == "ok"
    assert len(calls) == 2


def test_an_endpoint_that_stays_down_fails_once_at_the_deadline() -> None:
    op, calls = _failing([DOWN] * 100)
    with pytest.raises(storage.StorageError, match=r"did not answer.*retry_deadline_s=1"):
        storage.retrying("write", "s3://b/x", op)
    assert 1 < len(calls) < 10


def test_refused_credentials_fail_at_once_without_the_secret() -> None:
    op, calls = _failing([REFUSED])
    with pytest.raises(storage.StorageError) as err:
        storage.retrying("read", "s3://b/x", op)
    assert len(calls) == 1
    msg = str(err.value)
    assert "refused the credentials" in msg and "'AKID'" in msg and "bucket 'b'" in msg
    assert "http://127.0.0.1:1" in msg and "s3cr3t" not in msg
    assert "s3cr3t" not in repr(storage.get_options())


def test_other_errors_and_local_paths_are_not_retried(tmp_path) -> None:  # noqa: ANN001
    op, calls = _failing(["AWS Error NO_SUCH_KEY"])
    with pytest.raises(storage.StorageError, match="NO_SUCH_KEY"):
        storage.retrying("read", "s3://b/x", op)
    assert len(calls) == 1
    op, calls = _failing([DOWN])
    with pytest.raises(storage.StorageError):
        storage.retrying("write", str(tmp_path / "x"), op)
    assert len(calls) == 1


def test_deadline_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIEMBED_S3_RETRY_DEADLINE_S", "7.5")
    assert storage.S3Options.from_env().retry_deadline_s == 7.5
    assert storage.worker_env_vars()["UNIEMBED_S3_RETRY_DEADLINE_S"] == "1.0"


def test_actor_pool_custom_resources() -> None:
    pool = ActorPoolSection(resources={"judge_slot": 1})
    assert actor_resources(pool, "cpu") == {"num_cpus": 0.5, "resources": {"judge_slot": 1}}
    assert "resources" not in actor_resources(ActorPoolSection(), "cpu")


def test_the_train_filesystem_retries_span_the_deadline() -> None:
    """Ray Train writes through the filesystem itself: its SDK retries must outlast an
    outage of about the deadline (measured: 8 attempts ~28 s, each one after ~17 s)."""
    assert storage._sdk_attempts(0) == storage._sdk_attempts(28) == 8
    assert storage._sdk_attempts(120) == 14
    fs, path = storage.patient_filesystem_for("/tmp/x")
    assert path == "/tmp/x" and isinstance(fs, pafs.LocalFileSystem)


def test_the_train_filesystem_keeps_its_retries_when_pickled() -> None:
    """pyarrow's S3FileSystem forgets its retry strategy when pickled (Ray Train pickles
    it to its controller and workers); ours is rebuilt with the same attempts."""
    import pickle

    before = storage.get_options()
    storage.configure(storage.S3Options(endpoint_url="http://127.0.0.1:9", retry_deadline_s=120))
    try:
        fs, path = storage.patient_filesystem_for("s3://bucket/runs")
    finally:
        storage.configure(before)
    copy = pickle.loads(pickle.dumps(fs))
    assert path == "bucket/runs" and copy.type_name == "py::patient-s3"
    assert copy.handler.build.attempts == 14
    assert copy.handler.build.options.endpoint_url == "http://127.0.0.1:9"
