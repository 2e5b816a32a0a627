"""Serving artifacts from S3: the loaders the deployments call at start-up, on a real S3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from uniembed import storage
from uniembed.index import IdMap, build_index, save_index
from uniembed.models import EmbedInput, load_embedder, resolve_model
from uniembed.serving.artifacts import ArtifactError, resolve_model_source
from uniembed.serving.config import RetrieverSection
from uniembed.serving.retrieval import load_search_index

pytestmark = pytest.mark.integration


def test_model_index_and_documents_load_from_s3(
    s3_bucket: str, tiny_qwen2_vl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    monkeypatch.setenv("UNIEMBED_CACHE", str(tmp_path / "cache"))
    folder = Path(resolve_model("tiny-qwen2-vl"))
    model_uri = f"{s3_bucket}/models/tiny-qwen2-vl"
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            storage.write_bytes(storage.join(model_uri, str(f.relative_to(folder))), f.read_bytes())
    local = resolve_model_source(model_uri, "embedder.model")
    assert Path(local).is_dir() and resolve_model_source(model_uri, "embedder.model") == local
    texts = ["a red apple", "a dark night sky", "a cat on a mat"]
    inputs = [EmbedInput(text=t) for t in texts]
    from_s3 = load_embedder(local).embed(inputs)
    np.testing.assert_allclose(from_s3, tiny_qwen2_vl.embed(inputs), atol=1e-6)

    ids = ["t0", "t1", "t2"]
    index_uri = f"{s3_bucket}/embed/index.faiss"
    save_index(build_index(from_s3), index_uri, IdMap.from_ids(ids))
    docs_uri = f"{s3_bucket}/docs/items.jsonl"
    storage.write_text(docs_uri, "".join(json.dumps({"id": i, "text": t}) + "\n"
                                         for i, t in zip(ids, texts)))  # fmt: skip
    index = load_search_index(RetrieverSection(index=index_uri, documents=docs_uri), dim=64)
    (hits,) = index.search_many(from_s3[2:3], [2])
    assert hits[0].id == "t2" and hits[0].text == "a cat on a mat" and hits[0].score > 0.999

    with pytest.raises(ArtifactError, match="makes 32-d"):
        load_search_index(RetrieverSection(index=index_uri), dim=32)
    with pytest.raises(ArtifactError, match="retriever.index: .*does not exist"):
        load_search_index(RetrieverSection(index=f"{s3_bucket}/none/index.faiss"), dim=64)
    with pytest.raises(ArtifactError, match="embedder.model: model .* does not exist"):
        resolve_model_source(f"{s3_bucket}/models/absent", "embedder.model")
