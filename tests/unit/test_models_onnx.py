"""The ONNX Runtime forward pass of a text encoder: the same vectors as torch's, alone and in
a batch, exported once into the model cache; models it does not apply to are refused."""

from __future__ import annotations

import numpy as np
import pytest

from uniembed.models import EmbedInput
from uniembed.models.onnx_embedder import (
    MODEL_FILE,
    export_encoder,
    load_onnx_embedder,
    onnx_unsupported_reason,
)
from uniembed.serving.config import EmbedderSection
from uniembed.serving.embedder_host import load_served_embedder

TEXTS = [
    "A man is eating food.",
    "The girl is carrying a baby.",
    "a",
    "Ünïcödé tèxt wörks töö — ☃",
    " ".join(["the quick brown fox jumps over the lazy dog"] * 40),  # cut at 256 tokens
]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIEMBED_CACHE", str(tmp_path))
    return tmp_path


def test_onnx_vectors_equal_torch_alone_and_in_a_batch(minilm, cache) -> None:
    onnx = load_onnx_embedder("minilm", threads=2)
    inputs = [EmbedInput(text=t) for t in TEXTS]
    batch = onnx.embed(inputs)
    np.testing.assert_allclose(batch, minilm.embed(inputs), atol=1e-5)
    for i, inp in enumerate(inputs):
        np.testing.assert_allclose(onnx.embed([inp])[0], batch[i], atol=1e-5)
    assert batch.dtype == np.float32 and batch.shape == (len(TEXTS), minilm.dim)


def test_the_export_is_cached_and_reused(minilm, cache) -> None:
    load_onnx_embedder("minilm", threads=1)
    (folder,) = (cache / "models").glob("onnx-*")
    stamp = (folder / MODEL_FILE).stat().st_mtime_ns
    again = load_onnx_embedder("minilm", threads=1)
    assert again.model is None  # a cached export loads no torch model
    assert (folder / MODEL_FILE).stat().st_mtime_ns == stamp
    assert list((cache / "models").glob("onnx-*")) == [folder]
    assert again.embed([EmbedInput(text="x")]).shape == (1, minilm.dim)


def test_decoders_and_mllms_stay_on_torch(tiny_text_lm, tiny_qwen2_vl) -> None:
    assert "decoder" in (onnx_unsupported_reason(tiny_text_lm.family, "cpu") or "")
    assert "mllm" in (onnx_unsupported_reason(tiny_qwen2_vl.family, "cpu") or "")
    with pytest.raises(ValueError, match="not a text encoder"):
        load_onnx_embedder("tiny-text-lm", threads=1)


def test_the_export_leaves_the_torch_model_in_eval_mode(minilm, tmp_path) -> None:
    export_encoder(minilm, tmp_path)  # the exporter switches its module to training
    assert (tmp_path / MODEL_FILE).stat().st_size > 1_000_000
    assert not minilm.model.training


def test_served_backend_auto_picks_onnx_for_encoders_only(cache) -> None:
    auto = load_served_embedder(EmbedderSection(model="minilm", device="cpu", cpu_threads=1))
    assert auto.backend == "onnx"
    torch_only = EmbedderSection(model="minilm", device="cpu", cpu_threads=1, backend="torch")
    assert load_served_embedder(torch_only).backend == "torch"
    lm = load_served_embedder(EmbedderSection(model="tiny-text-lm", device="cpu", cpu_threads=1))
    assert lm.backend == "torch"  # auto: a decoder stays on torch
    forced = EmbedderSection(model="tiny-text-lm", device="cpu", cpu_threads=1, backend="onnx")
    with pytest.raises(ValueError, match="embedder.backend: onnx does not apply"):
        load_served_embedder(forced)
