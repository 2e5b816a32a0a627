"""Embedders against manual forward passes, padding invariance, errors and the registry."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from uniembed.models import (
    EmbedInput,
    PoolingConfig,
    UnknownModelError,
    build_tiny_llava,
    build_tiny_qwen2_vl,
    load_embedder,
    registry_names,
    resolve_model,
    save_pooling_config,
)
from uniembed.models.cache import cached_folder

TEXTS = [
    EmbedInput(text="a cat"),
    EmbedInput(text="a dog runs in the park with a red ball and a small cat", instruction="Find:"),
    EmbedInput(text="the mat"),
]


def manual_mllm(embedder, inp: EmbedInput, pooling: str) -> np.ndarray:
    """One unpadded sequence through the processor and model, pooled by hand."""
    (prompt,) = embedder.prompts([inp])
    images = [inp.image] if inp.image is not None else None
    batch = embedder.processor(text=[prompt], images=images, return_tensors="pt")
    with torch.no_grad():
        hidden = embedder.model(**batch).last_hidden_state[0]
    vec = hidden[-1] if pooling == "last" else hidden.mean(dim=0)
    return F.normalize(vec, dim=0).numpy()


def manual_text(embedder, inp: EmbedInput, pooling: str, special_tokens: bool) -> np.ndarray:
    (prompt,) = embedder.prompts([inp])
    batch = embedder.tokenizer(prompt, add_special_tokens=special_tokens, return_tensors="pt")
    with torch.no_grad():
        hidden = embedder.model(**batch).last_hidden_state[0]
    vec = hidden[-1] if pooling == "last" else hidden.mean(dim=0)
    return F.normalize(vec, dim=0).numpy()


@pytest.mark.parametrize("fixture", ["tiny_qwen2_vl", "tiny_llava"])
def test_mllm_last_token_pooling_equals_manual_forward(request, fixture, mixed_inputs) -> None:
    embedder = request.getfixturevalue(fixture)
    batch = embedder.embed(mixed_inputs)
    assert batch.shape == (len(mixed_inputs), embedder.dim) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    for i, inp in enumerate(mixed_inputs):
        np.testing.assert_allclose(batch[i], manual_mllm(embedder, inp, "last"), atol=1e-5)
        np.testing.assert_allclose(batch[i], embedder.embed([inp])[0], atol=1e-5)
    # Different inputs give different vectors (the pooling does not read padding).
    assert np.abs(batch[0] - batch[3]).max() > 1e-3


@pytest.mark.parametrize("name", ["tiny-qwen2-vl", "tiny-llava"])
def test_mllm_mean_pooling_equals_manual_forward(name, mixed_inputs) -> None:
    embedder = load_embedder(name, pooling="mean")
    batch = embedder.embed(mixed_inputs)
    for i, inp in enumerate(mixed_inputs):
        np.testing.assert_allclose(batch[i], manual_mllm(embedder, inp, "mean"), atol=1e-5)


def test_text_lm_last_token_pooling_equals_manual_forward(tiny_text_lm) -> None:
    batch = tiny_text_lm.embed(TEXTS)
    for i, inp in enumerate(TEXTS):
        expected = manual_text(tiny_text_lm, inp, "last", special_tokens=False)
        np.testing.assert_allclose(batch[i], expected, atol=1e-5)
        np.testing.assert_allclose(batch[i], tiny_text_lm.embed([inp])[0], atol=1e-5)


def test_encoder_mean_pooling_equals_manual_forward(minilm) -> None:
    batch = minilm.embed(TEXTS)
    assert batch.shape == (3, 384)
    for i, inp in enumerate(TEXTS):
        expected = manual_text(minilm, inp, "mean", special_tokens=True)
        np.testing.assert_allclose(batch[i], expected, atol=1e-5)


@pytest.mark.parametrize("fixture", ["tiny_qwen2_vl", "tiny_llava", "tiny_text_lm", "minilm"])
def test_token_length_matches_the_encoded_sequence(request, fixture, mixed_inputs) -> None:
    embedder = request.getfixturevalue(fixture)
    inputs = mixed_inputs if embedder.supports_images else TEXTS
    for inp in inputs:
        encoded = embedder.encode([inp])["input_ids"]
        assert embedder.token_length(inp) == encoded.shape[1]


def test_image_to_text_model_raises_naming_the_model(minilm, tiny_text_lm) -> None:
    image = EmbedInput(image=Image.new("RGB", (8, 8)))
    with pytest.raises(ValueError, match="input 1 has an image but model minilm"):
        minilm.embed([EmbedInput(text="ok"), image])
    with pytest.raises(ValueError, match="model tiny-text-lm"):
        tiny_text_lm.token_length(image)


def test_inputs_without_text_or_image_raise(tiny_qwen2_vl) -> None:
    with pytest.raises(ValueError, match="tiny-qwen2-vl: input 0 has neither text nor image"):
        tiny_qwen2_vl.embed([EmbedInput(text="", instruction="Find:")])
    with pytest.raises(ValueError, match="not a decoded PIL image"):
        tiny_qwen2_vl.embed([EmbedInput(image=b"\x89PNG")])  # type: ignore[arg-type]


def test_unknown_model_names_it_and_lists_the_registry() -> None:
    with pytest.raises(UnknownModelError, match="no-such-model") as info:
        load_embedder("no-such-model")
    for name in registry_names():
        assert name in str(info.value)
    assert {"tiny-qwen2-vl", "tiny-llava", "minilm", "smollm2-135m"} <= set(registry_names())
    with pytest.raises(ValueError, match="dtype 'fp8'"):
        load_embedder("tiny-llava", dtype="fp8")


def test_tiny_builds_are_deterministic(tmp_path) -> None:
    for build in (build_tiny_qwen2_vl, build_tiny_llava):
        a, b = tmp_path / f"{build.__name__}_a", tmp_path / f"{build.__name__}_b"
        build(a)
        build(b)
        for file in ("model.safetensors", "tokenizer.json", "config.json"):
            assert (a / file).read_bytes() == (b / file).read_bytes(), file
    # ... and a different seed gives different weights.
    build_tiny_llava(tmp_path / "other", seed=7)
    other = (tmp_path / "other" / "model.safetensors").read_bytes()
    assert other != (tmp_path / "build_tiny_llava_a" / "model.safetensors").read_bytes()


def test_tiny_folders_are_normal_processor_folders() -> None:
    import json

    from transformers import AutoProcessor, LlavaProcessor

    qwen = Path(resolve_model("tiny-qwen2-vl"))
    config = json.loads((qwen / "processor_config.json").read_text())
    assert config["processor_class"] == "Qwen2VLProcessor"
    llava = AutoProcessor.from_pretrained(resolve_model("tiny-llava"))
    assert type(llava) is LlavaProcessor and llava.patch_size == 16


def test_uniembed_json_in_a_folder_overrides_the_family_defaults(tmp_path) -> None:
    folder = tmp_path / "exported"
    shutil.copytree(resolve_model("tiny-text-lm"), folder)
    save_pooling_config(folder, PoolingConfig(pooling="mean", text_template="{text}"))
    embedder = load_embedder(str(folder))
    assert embedder.prompts([EmbedInput(text="a cat")])[0] == (
        "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n"
    )
    vec = embedder.embed([TEXTS[1]])[0]
    np.testing.assert_allclose(vec, manual_text(embedder, TEXTS[1], "mean", False), atol=1e-5)
    # The pooling argument wins over the file.
    assert load_embedder(str(folder), pooling="last").settings.pooling == "last"


def test_cached_folder_survives_concurrent_builders(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("UNIEMBED_CACHE", str(tmp_path))
    calls: list[int] = []

    def build(folder: Path) -> None:
        calls.append(1)
        (folder / "weights.bin").write_bytes(b"x" * 1000)
        time.sleep(0.2)  # both builders are inside build at once

    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(cached_folder("k", build))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 2 and results[0] == results[1] == tmp_path / "models" / "k"
    assert (results[0] / "weights.bin").read_bytes() == b"x" * 1000
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["k"]  # no temp left
    assert cached_folder("k", build) == results[0] and len(calls) == 2  # reused, not rebuilt
