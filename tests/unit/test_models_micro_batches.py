"""Length-sorted micro-batches with per-input failure isolation (embed worker and serve)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from uniembed.models import EmbedInput
from uniembed.models.micro_batches import Embedded, embed_micro_batches, plan_micro_batches


def test_micro_batches_sorted_by_length() -> None:
    lengths = [5, 1, 9, 2, 8]
    assert plan_micro_batches(lengths, 2, sort=True) == [[1, 3], [0, 4], [2]]
    assert plan_micro_batches(lengths, 2, sort=False) == [[0, 1], [2, 3], [4]]


def test_one_bad_input_fails_alone_and_padding_is_per_micro_batch(tiny_text_lm) -> None:  # noqa: ANN001
    inputs = [
        EmbedInput(text="a much longer sentence about a dog and a cat"),
        EmbedInput(text="a cat"),
        EmbedInput(image=Image.new("RGB", (8, 8))),  # a text-only model cannot take it
        EmbedInput(text="a dog"),
    ]
    out = embed_micro_batches(tiny_text_lm, inputs, micro_batch_size=2)
    assert isinstance(out[2], ValueError) and "embeds text only" in str(out[2])
    good = [r for r in out if isinstance(r, Embedded)]
    assert len(good) == 3
    lengths = [tiny_text_lm.token_length(inputs[i]) for i in (0, 1, 3)]
    assert [r.tokens for r in good] == lengths
    # the two short ones share a micro-batch; the long one is padded to itself only
    assert good[0].padded_tokens == lengths[0]
    assert good[1].padded_tokens == good[2].padded_tokens == max(lengths[1:])
    for inp, r in zip([inputs[i] for i in (0, 1, 3)], good, strict=True):
        np.testing.assert_allclose(r.vector, tiny_text_lm.embed([inp])[0], atol=1e-5)
