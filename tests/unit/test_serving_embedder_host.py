"""The serve embedder (queue + ONNX Runtime minilm): a text gets the same vector alone, in
a request of many, and batched with other requests' texts; a bad input fails alone."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from PIL import Image

from uniembed.models import EmbedInput
from uniembed.models.onnx_embedder import load_onnx_embedder
from uniembed.serving.batching import EmbedOutput, ItemFailure
from uniembed.serving.config import DeploymentSection, EmbedderSection
from uniembed.serving.embedder_host import EmbedderHost

LONG = " ".join(["a longer text about serving embeddings"] * 12)
TEXTS = ["A man is eating food.", "a", "The new movie is so great!", "I love pasta.", LONG, "hi"]


@pytest.fixture
def host(minilm, tmp_path, monkeypatch) -> EmbedderHost:
    monkeypatch.setenv("UNIEMBED_CACHE", str(tmp_path))
    section = EmbedderSection(
        model="minilm",
        micro_batch_size=2,
        deployment=DeploymentSection(max_batch_size=4, batch_wait_timeout_s=0.01),
    )
    return EmbedderHost(load_onnx_embedder("minilm", threads=2), section)


def test_vectors_are_the_same_alone_in_a_request_and_across_requests(host, minilm) -> None:
    alone = np.stack([minilm.embed([EmbedInput(text=t)])[0] for t in TEXTS])

    async def main() -> tuple[list, list]:
        many = host.embed_many([EmbedInput(text=t) for t in TEXTS])
        singles = [host.embed_many([EmbedInput(text=t)]) for t in TEXTS]
        together = await asyncio.gather(many, *singles)
        return together[0], [single for (single,) in together[1:]]

    many, singles = asyncio.run(main())
    assert all(isinstance(o, EmbedOutput) for o in many)
    np.testing.assert_allclose(np.stack([o.vector for o in many]), alone, atol=1e-5)
    np.testing.assert_allclose(np.stack([o.vector for o in singles]), alone, atol=1e-5)
    assert host.info()["backend"] == "onnx"
    # 12 inputs in batches of at most 4, some of them shared by the two callers' inputs.
    assert sum(size * n for size, n in host.stats().items()) == 2 * len(TEXTS)
    assert max(host.stats()) <= 4


def test_an_input_the_model_cannot_take_fails_alone(host) -> None:
    image = Image.new("RGB", (8, 8))
    inputs = [EmbedInput(text="fine"), EmbedInput(text="x", image=image), EmbedInput(text="ok")]
    results = asyncio.run(host.embed_many(inputs))
    assert isinstance(results[0], EmbedOutput) and isinstance(results[2], EmbedOutput)
    assert isinstance(results[1], ItemFailure) and results[1].client_error
    assert "text only" in results[1].message
