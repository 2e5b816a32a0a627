"""The Serve application: a FastAPI ingress that holds the embedder, composed with the
reranker and retriever deployments by handles.

    HTTP -> Ingress (FastAPI: auth, limits, validation, image decoding; the embedder,
                     batched in-process)
              -> Reranker (batched)   -> Retriever (batched; index loaded in the background)

An embeddings request never leaves the replica that parsed it. ``serve run
jobs/configs/serve.yaml`` calls :func:`build_app` with the file's ``args``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ray import serve
from ray.serve import Application

from uniembed.serving.auth import load_api_key
from uniembed.serving.config import ServeConfig, load_serve_config
from uniembed.serving.deployments import RerankerDeployment, RetrieverDeployment

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger("ray.serve")

# torch, transformers and FastAPI are imported by the replicas that use them, never at
# module level: Serve imports this module in a build task before any replica starts, and
# on 2 cores that import took 5 s of the start-up.


@serve.deployment(name="Ingress")
@serve.ingress()
class Ingress:
    """The HTTP entry point and the embedder; builds its FastAPI app once loaded."""

    def __init__(self, cfg: ServeConfig, reranker: Any | None, retriever: Any | None) -> None:
        started = time.perf_counter()
        from uniembed import storage
        from uniembed.serving.backend import ServeBackend
        from uniembed.serving.embedder_host import EmbedderHost, load_served_embedder

        imported = time.perf_counter()

        # Read the key now, so that a missing secret file fails the deployment at start-up.
        self.api_key = load_api_key(cfg.auth)
        self.cfg = cfg
        storage.configure(cfg.storage)
        self.embedder = EmbedderHost(load_served_embedder(cfg.embedder), cfg.embedder)
        self.backend = ServeBackend(self.embedder, reranker, retriever)
        logger.info(
            "embedder %s loaded (%s backend): imports %.1f s, model %.1f s",
            cfg.embedder.name, self.embedder.info()["backend"],
            imported - started, time.perf_counter() - imported,
        )  # fmt: skip

    def stats(self) -> dict[int, int]:
        """How many forward batches of each size (in inputs) this replica has run."""
        return self.embedder.stats()

    async def __serve_build_asgi_app__(self) -> FastAPI:
        from uniembed.serving.http_app import create_http_app

        return await create_http_app(self.backend, self.cfg, self.api_key)


def build_app(args: dict[str, Any] | ServeConfig | None = None) -> Application:
    """The application for ``serve run`` / ``serve deploy`` / ``serve.run``.

    Args:
        args: the ``args`` mapping of a Serve config file (see ``jobs/configs/serve.yaml``)
            or a :class:`ServeConfig`; validated here, so a typo fails before any replica
            starts.

    The ingress replica holds the embedder, so it takes ``embedder.deployment``'s
    resources, batching and autoscaling, plus ``ingress.num_cpus`` for the HTTP work.
    """
    cfg = load_serve_config(args)
    # Fail in the driver, before replicas start, when a secret file is configured but absent.
    load_api_key(cfg.auth)
    reranker = None
    if cfg.reranker.enabled:
        reranker = RerankerDeployment.options(**cfg.reranker.deployment.options()).bind(cfg)
    retriever = None
    if cfg.retriever.enabled:
        retriever = RetrieverDeployment.options(**cfg.retriever.deployment.options()).bind(cfg)
    return Ingress.options(**cfg.ingress_options()).bind(cfg, reranker, retriever)
