"""The jobs submitted with ``ray job submit`` to a real, self-started Ray cluster.

The head (``ray start --head`` on 127.0.0.1, 2 CPUs, its own token) is started without any
AWS variables and without the project on its import path: the code reaches the driver and
the workers only as the uploaded ``--working-dir`` (with ``PYTHONPATH=platform``) and the
S3 endpoint and keys only through the job's ``runtime_env`` env_vars, the way the manifests'
image and Secret provide them on KubeRay. Outputs are checked in the local S3 server.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from fixtures.local_ray import LocalRayCluster, free_port
from uniembed import storage
from uniembed.data.demo import demo_path

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# The bad-configuration jobs must fail within this, measured by Ray from the job's start to
# its end (upload and runtime-env set-up come before and are not the job's doing).
FAIL_FAST_S = 60
# A submission that has not ended within this (upload and set-up included) is hanging.
SUBMIT_GUARD_S = 240


def _job_seconds(cluster: LocalRayCluster, res: object) -> float:
    info = cluster.job_info(res.submission_id)
    return (info["end_time"] - info["start_time"]) / 1000


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_"))}
    # The venv stands in for the image: Ray and the pinned libraries, but not our code.
    env.pop("PYTHONPATH", None)
    head = LocalRayCluster(num_cpus=2, env=env)
    with head:
        yield head


def _runtime_env(s3: object | None, endpoint: str | None = None) -> dict[str, object]:
    """The shipped ``cluster/runtime_env.yaml``, plus offline flags and, for jobs that
    touch storage, the S3 endpoint and keys (the cluster itself has none)."""
    env = yaml.safe_load((REPO / "cluster" / "runtime_env.yaml").read_text())
    env["env_vars"].update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if s3 is not None:
        env["env_vars"].update(
            AWS_ENDPOINT_URL=endpoint or s3.endpoint_url,
            AWS_ACCESS_KEY_ID=s3.access_key_id,
            AWS_SECRET_ACCESS_KEY=s3.secret_access_key,
            AWS_REGION=s3.region,
        )
    return env


def _submit(cluster: LocalRayCluster, argv: list[str], runtime_env: dict, timeout_s: float):
    return cluster.submit(
        ["python", *argv], working_dir=REPO, runtime_env=runtime_env, timeout_s=timeout_s
    )


def _upload_corpus(bucket: str, n_text: int = 24, n_image: int = 6) -> str:
    """A slice of the demo embed corpus (text and image rows) and its images, into S3."""
    src = Path(demo_path("embed_corpus.jsonl"))
    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    text = [r for r in rows if not r.get("image_uri")][:n_text]
    image = [r for r in rows if r.get("image_uri")][:n_image]
    assert len(image) == n_image, "the demo corpus has fewer image rows than the test needs"
    base = storage.join(bucket, "corpus")
    for r in image:
        data = (src.parent / r["image_uri"]).read_bytes()
        storage.write_bytes(storage.join(base, r["image_uri"]), data)
    body = "".join(json.dumps(r) + "\n" for r in text + image)
    storage.write_text(storage.join(base, "corpus.jsonl"), body)
    return storage.join(base, "corpus.jsonl")


def test_job_imports_the_uploaded_code(cluster: LocalRayCluster) -> None:
    """The driver finds ``uniembed`` in the uploaded working dir, not in this checkout."""
    probe = "import uniembed.storage as s; print('MODULE', s.__file__)"
    res = _submit(cluster, ["-c", probe], _runtime_env(None), timeout_s=120)
    assert res.succeeded, res.output[-3000:]
    line = next(ln for ln in res.output.splitlines() if ln.startswith("MODULE"))
    assert "working_dir_files" in line and str(REPO) not in line, line


@pytest.mark.slow
def test_embed_job_writes_embeddings_to_s3(
    cluster: LocalRayCluster, s3_server: object, s3_bucket: str
) -> None:
    corpus = _upload_corpus(s3_bucket)
    out = storage.join(s3_bucket, "embed")
    argv = ["jobs/embed.py", "--config", "jobs/configs/embed.yaml", "--input", corpus]
    argv += ["--output", out, "model.device=auto", "index.kind=flat"]
    res = _submit(cluster, argv, _runtime_env(s3_server), timeout_s=600)
    assert res.succeeded, res.output[-4000:]
    assert "embedded 30/30 rows (0 quarantined; 0 truncated)" in res.output, res.output[-2000:]
    manifest = json.loads(storage.read_text(storage.join(out, "_SUCCESS.json")))
    assert (manifest["rows_in"], manifest["rows_out"], manifest["dim"]) == (30, 30, 64)
    assert storage.exists(storage.join(out, "index.faiss"))
    from uniembed.embed.pipeline import read_embeddings
    from uniembed.models import EmbedInput, load_embedder

    ids, matrix = read_embeddings(out)
    assert len(set(ids)) == 30 and matrix.shape == (30, 64)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    # The cluster's vector equals the model's own for the same input, built here.
    first = json.loads(storage.read_text(corpus).splitlines()[0])
    ref = load_embedder("tiny-qwen2-vl").embed(
        [EmbedInput(text=first["text"], instruction=first.get("instruction"))]
    )[0]
    np.testing.assert_allclose(matrix[ids.index(first["id"])], ref, atol=1e-5)


def test_a_relative_output_fails_fast_naming_the_key_and_the_fix(
    cluster: LocalRayCluster, s3_server: object, s3_bucket: str
) -> None:
    """Without a storage root, a relative output would be written into Ray's temporary copy
    of the working dir and vanish with the cluster: the job refuses it at once."""
    argv = ["jobs/embed.py", "--config", "jobs/configs/embed.yaml", "--output", "outputs/embed"]
    res = _submit(cluster, argv, _runtime_env(s3_server), timeout_s=SUBMIT_GUARD_S)
    assert not res.succeeded, res.output[-3000:]
    assert "output='outputs/embed' is a relative path in a job started by `ray job submit`" in (
        res.output
    ), res.output[-3000:]
    assert "output=s3://bucket/prefix/outputs/embed" in res.output
    assert "UNIEMBED_STORAGE_ROOT" in res.output
    assert _job_seconds(cluster, res) < FAIL_FAST_S


@pytest.mark.slow
def test_a_relative_output_lands_under_the_storage_root(
    cluster: LocalRayCluster, s3_server: object, s3_bucket: str
) -> None:
    """With UNIEMBED_STORAGE_ROOT (what the manifests set) the relative output goes under
    it, and the job's last line names the absolute URI it wrote."""
    corpus = _upload_corpus(s3_bucket, n_text=8, n_image=1)
    root = storage.join(s3_bucket, "root")
    env = _runtime_env(s3_server)
    env["env_vars"]["UNIEMBED_STORAGE_ROOT"] = root
    argv = ["jobs/embed.py", "--config", "jobs/configs/embed.yaml", "--input", corpus]
    argv += ["--output", "outputs/embed", "index.kind=none"]
    res = _submit(cluster, argv, env, timeout_s=600)
    assert res.succeeded, res.output[-4000:]
    expected = storage.join(root, "outputs", "embed")
    match = re.search(r"^embedded .*; output (\S+)$", res.output, re.M)
    assert match and match.group(1) == expected, res.output[-2000:]
    assert json.loads(storage.read_text(storage.join(expected, "_SUCCESS.json")))["rows_out"] == 9


@pytest.mark.slow
def test_unreachable_storage_fails_fast_naming_the_endpoint(
    cluster: LocalRayCluster, s3_server: object, s3_bucket: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    argv = ["jobs/embed.py", "--config", "jobs/configs/embed.yaml"]
    argv += ["--output", storage.join(s3_bucket, "never")]
    res = _submit(cluster, argv, _runtime_env(s3_server, endpoint=dead), timeout_s=SUBMIT_GUARD_S)
    assert not res.succeeded, res.output[-3000:]
    assert f"S3 endpoint {dead}" in res.output, res.output[-3000:]
    assert _job_seconds(cluster, res) < FAIL_FAST_S


@pytest.mark.slow
def test_gpu_config_on_a_cpu_cluster_fails_fast_saying_so(
    cluster: LocalRayCluster, s3_server: object, s3_bucket: str
) -> None:
    argv = ["jobs/embed.py", "--config", "jobs/configs/embed.yaml", "model.device=cuda"]
    argv += ["--output", storage.join(s3_bucket, "never")]
    res = _submit(cluster, argv, _runtime_env(s3_server), timeout_s=SUBMIT_GUARD_S)
    assert not res.succeeded, res.output[-3000:]
    assert "model.device is cuda but the Ray cluster has no GPUs" in res.output, res.output[-3000:]
    assert _job_seconds(cluster, res) < FAIL_FAST_S


def _upload_mmeb_train(bucket: str, n: int = 8) -> str:
    """MMEB-train rows (query sentence -> its WordNet definition) in S3."""
    corpus = {}
    for line in Path(demo_path("wordnet/corpus.jsonl")).read_text().splitlines():
        rec = json.loads(line)
        corpus[rec["id"]] = rec["text"]
    rows = []
    other = sorted(corpus)
    for i, line in enumerate(Path(demo_path("wordnet/queries.jsonl")).read_text().splitlines()[:n]):
        q = json.loads(line)
        neg = next(d for d in other[i * 7 :] if d != q["pos_id"])  # one stored negative each
        rows.append({"qry": q["text"], "qry_image_path": "", "pos_text": corpus[q["pos_id"]]})
        rows[-1].update(pos_image_path="", neg_text=corpus[neg], neg_image_path="")
    uri = storage.join(bucket, "mmeb_train", "train.jsonl")
    storage.write_text(uri, "".join(json.dumps(r) + "\n" for r in rows))
    return uri


def test_tune_job_checkpoints_to_s3(
    cluster: LocalRayCluster, s3_server: object, s3_bucket: str
) -> None:
    if not (REPO / "jobs" / "tune.py").exists():
        pytest.skip("jobs/tune.py is absent")
    data = _upload_mmeb_train(s3_bucket)
    ckpt = storage.join(s3_bucket, "train")
    argv = ["jobs/tune.py", "--config", "jobs/configs/tune_demo.yaml", "--input", data]
    argv += ["format=mmeb_train", "loss.name=unime", "loss.num_negatives=1"]
    argv += ["train.max_steps=2", "train.batch_size=4", "checkpoint.every_steps=1"]
    argv += [f"checkpoint.storage_path={ckpt}", "checkpoint.name=submit-test"]
    res = _submit(cluster, argv, _runtime_env(s3_server), timeout_s=600)
    assert res.succeeded, res.output[-4000:]
    assert "trained 2 steps on 8 rows" in res.output, res.output[-2000:]
    files = storage.list_files(storage.join(ckpt, "submit-test"))
    assert any("/checkpoint_" in f for f in files), files[:20]
    assert any(f.endswith("export/config.json") for f in files), files[:20]


def _upload_pairs(bucket: str, n: int = 12) -> str:
    """The first ``n`` openclipart image-title pairs and their images, into S3."""
    src = Path(demo_path("openclipart/pairs.jsonl"))
    rows = [json.loads(line) for line in src.read_text().splitlines()[:n]]
    base = storage.join(bucket, "pairs")
    for r in rows:
        storage.write_bytes(storage.join(base, r["image"]), (src.parent / r["image"]).read_bytes())
    storage.write_text(
        storage.join(base, "pairs.jsonl"), "".join(json.dumps(r) + "\n" for r in rows)
    )
    return storage.join(base, "pairs.jsonl")


def test_mine_job_writes_scored_rows_to_s3(
    cluster: LocalRayCluster, s3_server: object, s3_bucket: str
) -> None:
    if not (REPO / "jobs" / "mine.py").exists():
        pytest.skip("jobs/mine.py is absent: no mine job to submit yet")
    queries = _upload_pairs(s3_bucket)
    out = storage.join(s3_bucket, "mined")
    argv = ["jobs/mine.py", "--config", "jobs/configs/mine_openclipart.yaml"]
    argv += ["--queries", queries, "--output", out, "retrieval.k=6", "selection.num_negatives=3"]
    res = _submit(cluster, argv, _runtime_env(s3_server), timeout_s=900)
    assert res.succeeded, res.output[-4000:]
    # Queries whose retrieval leaves no usable candidate are reported, not written.
    match = re.search(rf"mined (\d+)/12 queries into {re.escape(out)}", res.output)
    assert match, res.output[-2000:]
    written = int(match.group(1))
    assert written >= 1
    assert json.loads(storage.read_text(storage.join(out, "_SUCCESS.json")))
    from uniembed.data import schema as S

    table = storage.read_parquet(storage.join(out, "mined"))
    assert table.num_rows == written
    for row in table.to_pylist():
        assert 0 < len(row[S.NEG_TEXTS]) <= 3
