"""The embeddings batch waits for company only after a batch of more than one input."""

from __future__ import annotations

from uniembed.serving.config import DeploymentSection, EmbedderSection
from uniembed.serving.embedder_host import EmbedderHost


class _Model:
    """A stand-in model: the host only reads these at construction."""

    dim = 2
    supports_images = False
    name = "stand-in"


def _host(adaptive: bool) -> EmbedderHost:
    section = EmbedderSection(
        model="minilm",
        adaptive_wait=adaptive,
        deployment=DeploymentSection(max_batch_size=8, batch_wait_timeout_s=0.5),
    )
    return EmbedderHost(_Model(), section)  # type: ignore[arg-type]


def test_a_lone_request_never_waits_and_a_crowd_waits_for_its_batch() -> None:
    # The policy the batch handler applies after each batch (@serve.batch itself runs
    # only inside a replica: the serve integration tests cover it there).
    host = _host(adaptive=True)
    assert host.next_batch_wait_s(0) == 0.0  # before any batch
    assert host.next_batch_wait_s(1) == 0.0  # a batch of one: the next one starts at once
    assert host.next_batch_wait_s(4) == 0.5  # a crowd: the next batch may wait to fill
    assert host.next_batch_wait_s(1) == 0.0


def test_without_adaptive_wait_the_configured_wait_always_applies() -> None:
    host = _host(adaptive=False)
    assert host.next_batch_wait_s(0) == 0.5
    assert host.next_batch_wait_s(1) == 0.5
