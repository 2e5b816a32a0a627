"""all-MiniLM-L6-v2 through load_embedder equals sentence-transformers on the same folder."""

from __future__ import annotations

import numpy as np

from uniembed.models import EmbedInput
from uniembed.models.packaged import minilm_folder

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The cat sits outside.",
    "The new movie is awesome.",
    "The new movie is so great!",
    "I love pasta.",
    "Do you like pizza?",
    "A red square on a white background.",
    "Embeddings map sentences to vectors.",
    "Paris is the capital of France.",
    "a",
    "Ünïcödé tèxt wörks töö — ☃",
    # Longer than the model's 256-token limit: both sides must truncate the same way.
    " ".join(["the quick brown fox jumps over the lazy dog"] * 40),
]


def test_minilm_matches_sentence_transformers(minilm) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_folder()), device="cpu").encode(
        SENTENCES, normalize_embeddings=True, batch_size=8, convert_to_numpy=True
    )
    ours = np.concatenate(
        [
            minilm.embed([EmbedInput(text=s) for s in SENTENCES[i : i + 8]])
            for i in range(0, len(SENTENCES), 8)
        ]
    )
    assert ours.shape == reference.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
