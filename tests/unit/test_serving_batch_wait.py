"""The embeddings batch waits for company only after a batch of more than one input."""

from __future__ import annotations

import numpy as np

from uniembed.models import EmbedInput
from uniembed.serving.config import DeploymentSection, EmbedderSection
from uniembed.serving.embedder_host import EmbedderHost


class _Echo:
    """A stand-in model: a 2-d vector per input (its text's length, 1)."""

    dim = 2
    supports_images = False
    name = "echo"

    def embed(self, inputs: list[EmbedInput]) -> np.ndarray:
        return np.array([[len(inp.text or ""), 1.0] for inp in inputs], dtype=np.float32)


def _host(adaptive: bool) -> EmbedderHost:
    section = EmbedderSection(
        model="minilm",
        adaptive_wait=adaptive,
        deployment=DeploymentSection(max_batch_size=8, batch_wait_timeout_s=0.5),
    )
    return EmbedderHost(_Echo(), section)  # type: ignore[arg-type]


def test_a_lone_request_never_waits_and_a_crowd_waits_for_its_batch() -> None:
    # The policy the batch handler applies after each batch (@serve.batch itself runs
    # only inside a replica: the serve integration tests cover it there).
    host = _host(adaptive=True)
    assert host.batch_wait_now_s == 0.0
    host._adapt_wait(1)
    assert host.batch_wait_now_s == 0.0  # a batch of one: the next one starts at once
    host._adapt_wait(4)
    assert host.batch_wait_now_s == 0.5  # a crowd: the next batch may wait to fill
    host._adapt_wait(1)
    assert host.batch_wait_now_s == 0.0


def test_without_adaptive_wait_the_configured_wait_always_applies() -> None:
    host = _host(adaptive=False)
    assert host.batch_wait_now_s == 0.5
