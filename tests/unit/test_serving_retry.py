"""A call to the reranker or the retriever whose replica was lost goes again (scoring and
searching are idempotent); any other failure is final."""

from __future__ import annotations

import asyncio

import pytest
import ray.exceptions

from uniembed.serving.backend import retry_lost_replica


class _Replicas:
    """Answers calls in turn from ``outcomes``: an exception is raised, a value returned."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self) -> object:
        outcome = self.outcomes[self.calls]
        self.calls += 1
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


@pytest.mark.parametrize(
    "lost",
    [
        ray.exceptions.ActorDiedError(),  # Ray's actor transport
        ray.exceptions.ActorUnavailableError("Actor is unavailable.", b"\0" * 16),  # gRPC
    ],
    ids=["died", "unavailable"],
)
def test_a_call_whose_replica_was_lost_goes_again(lost: Exception) -> None:
    replicas = _Replicas(lost, "scores")
    assert asyncio.run(retry_lost_replica(replicas, backoff_s=0)) == "scores"
    assert replicas.calls == 2


def test_other_failures_are_not_retried() -> None:
    replicas = _Replicas(ValueError("documents[1]: bad"), "never")
    with pytest.raises(ValueError, match="bad"):
        asyncio.run(retry_lost_replica(replicas, backoff_s=0))
    assert replicas.calls == 1


def test_the_retries_end() -> None:
    replicas = _Replicas(*[ray.exceptions.ActorDiedError() for _ in range(3)])
    with pytest.raises(ray.exceptions.ActorDiedError):
        asyncio.run(retry_lost_replica(replicas, attempts=3, backoff_s=0))
    assert replicas.calls == 3
