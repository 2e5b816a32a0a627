"""The embed job end to end on a real local Ray cluster, locally and against S3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.demo import demo_path
from uniembed.data.images import load_image
from uniembed.embed.pipeline import read_embeddings
from uniembed.models import EmbedInput, UnknownModelError, load_embedder

pytestmark = pytest.mark.integration

IMAGES = sorted(Path(demo_path("openclipart/images")).glob("*.png"))[:3]


def _write_corpus(folder: Path) -> Path:
    """Mixed rows: text, image, image+text+instruction, and five kinds of bad record."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(IMAGES[0], folder / "a.png")
    shutil.copy(IMAGES[1], folder / "b.png")
    data = IMAGES[2].read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 3])
    rows = [
        {"id": "t1", "text": "a cat sits on the mat"},
        {"id": "t2", "text": "stocks fell sharply on monday after a long and dull weekend"},
        {"id": "i1", "image_uri": "a.png"},
        {"id": "m1", "text": "a red pin", "image": "b.png", "instruction": "Find the icon."},
        {"id": "bad-empty", "text": ""},
        {"id": "bad-trunc", "image_uri": "truncated.png"},
        {"id": "bad-missing", "image_uri": "nowhere.png"},
        {"text": "no id here"},
    ]
    lines = [json.dumps(r) for r in rows]
    lines.insert(3, "{not json")
    path = folder / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _check_output(out: str, corpus_dir: str) -> None:
    manifest = json.loads(storage.read_text(storage.join(out, "_SUCCESS.json")))
    assert (manifest["rows_in"], manifest["rows_out"], manifest["rows_quarantined"]) == (9, 4, 5)
    ids, matrix = read_embeddings(out)
    assert sorted(ids) == ["i1", "m1", "t1", "t2"]
    assert matrix.shape == (4, 64)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    q = storage.read_parquet(storage.join(out, "quarantine")).to_pylist()
    reasons = {r[S.ID]: r[S.REASON] for r in q}
    assert "neither text nor image" in reasons["bad-empty"]
    assert "cannot decode image" in reasons["bad-trunc"]
    assert "nowhere.png" in reasons["bad-missing"]
    assert any("field 'id'" in r for r in reasons.values())
    assert any("not valid JSON" in r for r in reasons.values())
    assert all(r[S.SOURCE] for r in q)
    # The pipeline's vectors equal the model's own, one input at a time.
    embedder = load_embedder("tiny-qwen2-vl")
    row = {i: matrix[k] for k, i in enumerate(ids)}
    image_b = load_image(None, storage.join(corpus_dir, "b.png"))
    ref = embedder.embed(
        [EmbedInput(text="a red pin", image=image_b, instruction="Find the icon.")]
    )[0]
    np.testing.assert_allclose(row["m1"], ref, atol=1e-5)
    ref_t = embedder.embed([EmbedInput(text="a cat sits on the mat")])[0]
    np.testing.assert_allclose(row["t1"], ref_t, atol=1e-5)


def test_embed_job_local(ray_start_2_cpus: None, tmp_path: Path) -> None:
    from jobs.embed import main

    corpus = _write_corpus(tmp_path / "in")
    out = tmp_path / "out"
    assert (
        main(
            [
                "--input",
                str(corpus),
                "--output",
                str(out),
                "--model",
                "tiny-qwen2-vl",
                "compute.micro_batch_size=2",
                "index.kind=flat",
            ]
        )
        == 0
    )
    _check_output(str(out), str(tmp_path / "in"))
    from uniembed.index import load_index

    index, idmap = load_index(str(out / "index.faiss"))
    assert index.ntotal == 4


def test_embed_job_s3(ray_start_2_cpus: None, tmp_path: Path, s3_bucket: str) -> None:
    from jobs.embed import main

    local = _write_corpus(tmp_path / "in").parent
    for f in local.iterdir():
        storage.write_bytes(storage.join(s3_bucket, "in", f.name), f.read_bytes())
    out = storage.join(s3_bucket, "out")
    assert (
        main(
            [
                "--input",
                storage.join(s3_bucket, "in", "corpus.jsonl"),
                "--output",
                out,
                "--model",
                "tiny-qwen2-vl",
                "index.kind=none",
            ]
        )
        == 0
    )
    _check_output(out, storage.join(s3_bucket, "in"))


def test_unknown_model_fails_fast(tmp_path: Path) -> None:
    from jobs.embed import main

    corpus = _write_corpus(tmp_path / "in")
    with pytest.raises(UnknownModelError, match="no-such-model"):
        main(["--input", str(corpus), "--output", str(tmp_path / "o"), "--model", "no-such-model"])


def test_unreachable_storage_fails_fast(tmp_path: Path) -> None:
    import time

    from jobs.embed import main

    corpus = _write_corpus(tmp_path / "in")
    before = storage.get_options()
    start = time.monotonic()
    try:
        with pytest.raises(storage.StorageError, match="127.0.0.1:9"):
            main(
                [
                    "--input",
                    str(corpus),
                    "--output",
                    "s3://nobucket/out",
                    "--model",
                    "tiny-qwen2-vl",
                    "storage.endpoint_url=http://127.0.0.1:9",
                ]
            )
    finally:
        storage.configure(before)  # the job set process-wide options; later tests need these
    assert time.monotonic() - start < 60
