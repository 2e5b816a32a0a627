"""Object-store faults against a real S3 server (a private radosgw whose gateway the tests
stop and start): an outage is waited out with back-off, or ends in one clear error after
the configured deadline; no partial object is ever visible; wrong credentials fail at once
naming the endpoint and the bucket, never the secret."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fixtures.faults_report import record
from fixtures.s3_outage import OutageServer
from uniembed import storage
from uniembed.embed.pipeline import read_embeddings

pytestmark = pytest.mark.integration

OUTAGE_S = 20.0
PAYLOAD = np.random.default_rng(0).bytes(12 * 1024 * 1024)  # two multipart parts and more


@pytest.fixture
def outage_storage(s3_outage_server: OutageServer) -> Iterator[OutageServer]:
    """``storage`` pointed at the private server for one test, restored after."""
    before = storage.get_options()
    storage.configure(s3_outage_server.options(retry_deadline_s=90))
    try:
        yield s3_outage_server
    finally:
        storage.configure(before)


@pytest.mark.slow
def test_a_write_waits_out_an_outage(outage_storage: OutageServer) -> None:
    bucket = outage_storage.bucket()
    uri = storage.join(bucket, "big.bin")
    restore = outage_storage.outage(OUTAGE_S)
    storage.write_bytes(uri, PAYLOAD)
    done = time.time()
    restore.join()
    down, up = outage_storage.outages[-1]
    same = storage.read_bytes(uri) == PAYLOAD
    record(
        "s3: 20 s outage during a 12 MiB write",
        recovered=same,
        recover_s=done - up,
        lost=0 if same else 1,
        unit="objects",
        equal=same,
        outcome="waited out",
    )
    assert up - down >= OUTAGE_S  # the write began inside the outage and outlived it
    assert same


def test_an_outage_past_the_deadline_fails_once_and_leaves_nothing(
    outage_storage: OutageServer,
) -> None:
    bucket = outage_storage.bucket()
    uri = storage.join(bucket, "big.bin")
    storage.configure(outage_storage.options(retry_deadline_s=3))
    outage_storage.gateway_stop()
    try:
        with pytest.raises(storage.StorageError) as err:
            storage.write_bytes(uri, PAYLOAD)
    finally:
        outage_storage.gateway_start()
    msg = str(err.value)
    assert "did not answer" in msg and "retry_deadline_s=3" in msg
    assert uri in msg and outage_storage.options().endpoint_url in msg
    assert outage_storage.keys(bucket) == []  # no partial object
    client = outage_storage.server.client()  # type: ignore[union-attr]
    assert not client.list_multipart_uploads(Bucket=bucket[5:]).get("Uploads")
    storage.write_bytes(uri, PAYLOAD)  # the rerun completes
    same = storage.read_bytes(uri) == PAYLOAD
    record(
        "s3: outage past retry_deadline_s=3",
        recovered=same,
        recover_s=None,
        lost=0 if same else 1,
        unit="objects",
        equal=same,
        outcome="one clear error; rerun ok",
    )
    assert same


def test_wrong_credentials_fail_fast_naming_endpoint_and_bucket(
    outage_storage: OutageServer, tmp_path: Path
) -> None:
    from jobs.embed import main

    bucket = outage_storage.bucket()
    secret = "not-the-secret-0123456789abcdef"
    storage.configure(outage_storage.options(secret_access_key=secret))
    with pytest.raises(storage.StorageError) as err:
        storage.write_bytes(storage.join(bucket, "x.bin"), b"x")
    for text in (str(err.value), repr(err.value)):
        assert "refused the credentials" in text and bucket[5:] in text
        assert outage_storage.options().endpoint_url in text and secret not in text

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "a", "text": "a cat"}\n')
    storage.configure(None)
    opts = outage_storage.options()
    with pytest.raises(Exception) as job_err:
        main(
            [
                "--input",
                str(corpus),
                "--output",
                storage.join(bucket, "out"),
                "--model",
                "minilm",
                f"storage.endpoint_url={opts.endpoint_url}",
                f"storage.access_key_id={opts.access_key_id}",
                f"storage.secret_access_key={secret}",
            ]
        )
    text = f"{job_err.value!s} {job_err.value!r}"
    clear = "refused the credentials" in text and bucket[5:] in text and secret not in text
    record(
        "s3: wrong credentials (embed job)",
        recovered=clear,
        recover_s=None,
        lost=len(outage_storage.keys(bucket)),
        unit="objects",
        equal=None,
        outcome="fails at once, names endpoint+bucket",
    )
    assert "refused the credentials" in text and bucket[5:] in text
    assert str(opts.endpoint_url) in text and secret not in text
    assert outage_storage.keys(bucket) == []


def _embed_args(corpus: Path, out: str, opts: storage.S3Options) -> list[str]:
    return [
        "--input",
        str(corpus),
        "--output",
        out,
        "--model",
        "minilm",
        "compute.micro_batch_size=8",
        "compute.rows_per_call=8",
        "index.kind=flat",
        f"storage.endpoint_url={opts.endpoint_url}",
        f"storage.access_key_id={opts.access_key_id}",
        f"storage.secret_access_key={opts.secret_access_key}",
        "storage.retry_deadline_s=90",
    ]


@pytest.mark.slow
def test_embed_job_rides_out_an_outage_mid_write(
    ray_start_2_cpus: None, outage_storage: OutageServer, tmp_path: Path
) -> None:
    from jobs.embed import main

    corpus = tmp_path / "corpus.jsonl"
    rows = (f'{{"id": "r{i}", "text": "row {i} of words"}}\n' for i in range(400))
    corpus.write_text("".join(rows))
    bucket = outage_storage.bucket()
    opts = outage_storage.options()
    clean, faulted = storage.join(bucket, "clean"), storage.join(bucket, "faulted")
    assert main(_embed_args(corpus, clean, opts)) == 0

    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["code"] = main(_embed_args(corpus, faulted, opts))
        except BaseException as exc:  # reported below
            result["error"] = exc
        result["end"] = time.time()

    job = threading.Thread(target=run)
    job.start()
    # the outage starts once the job writes its first embedding shard into its staging folder
    deadline = time.monotonic() + 600
    while not any("/embeddings/" in k for k in outage_storage.keys(bucket) if "faulted/" in k):
        assert job.is_alive() and time.monotonic() < deadline, result
        time.sleep(0.1)
    restore = outage_storage.outage(OUTAGE_S)
    job.join(timeout=900)
    restore.join()
    assert result.get("code") == 0, result.get("error")
    down, up = outage_storage.outages[-1]
    ids_clean, m_clean = read_embeddings(clean)
    ids, m = read_embeddings(faulted)
    order = np.argsort(ids)
    same = sorted(ids) == sorted(ids_clean) and bool(
        np.allclose(m[order], m_clean[np.argsort(ids_clean)], atol=1e-6)
    )
    record(
        "s3: 20 s outage during the embed job's writes",
        recovered=True,
        recover_s=float(result["end"]) - up,  # type: ignore[arg-type]
        lost=400 - len(set(ids)),
        unit="rows",
        equal=same,
        outcome="waited out",
    )
    assert float(result["end"]) > down  # type: ignore[arg-type]
    assert sorted(ids) == sorted(ids_clean) and len(set(ids)) == 400
    np.testing.assert_allclose(m[order], m_clean[np.argsort(ids_clean)], atol=1e-6)
    # nothing half-written: every staged folder is gone once the run has published
    assert not [k for k in outage_storage.keys(bucket) if "_staging-" in k]
