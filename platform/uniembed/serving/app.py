"""The Serve application: a FastAPI ingress composed with the model deployments by handles.

    HTTP -> Ingress (FastAPI: auth, limits, validation, image decoding)
              -> Embedder (batched)   -> Reranker (batched)   -> Retriever (batched)

``serve run jobs/configs/serve.yaml`` calls :func:`build_app` with the file's ``args``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application

from uniembed.serving.auth import load_api_key
from uniembed.serving.backend import HandleBackend
from uniembed.serving.config import ServeConfig, load_serve_config
from uniembed.serving.deployments import (
    EmbedderDeployment,
    RerankerDeployment,
    RetrieverDeployment,
)
from uniembed.serving.http_app import create_http_app


@serve.deployment(name="Ingress")
@serve.ingress()
class Ingress:
    """The HTTP entry point; builds its FastAPI app once the handles are known."""

    def __init__(
        self, cfg: ServeConfig, embedder: Any, reranker: Any | None, retriever: Any | None
    ) -> None:
        # Read the key now, so that a missing secret file fails the deployment at start-up.
        self.api_key = load_api_key(cfg.auth)
        self.cfg = cfg
        batching = cfg.embedder.deployment
        self.backend = HandleBackend(
            embedder, reranker, retriever,
            max_batch_size=batching.max_batch_size,
            batch_wait_timeout_s=batching.batch_wait_timeout_s,
        )  # fmt: skip

    async def __serve_build_asgi_app__(self) -> FastAPI:
        return await create_http_app(self.backend, self.cfg, self.api_key)


def build_app(args: dict[str, Any] | ServeConfig | None = None) -> Application:
    """The application for ``serve run`` / ``serve deploy`` / ``serve.run``.

    Args:
        args: the ``args`` mapping of a Serve config file (see ``jobs/configs/serve.yaml``)
            or a :class:`ServeConfig`; validated here, so a typo fails before any replica
            starts.
    """
    cfg = load_serve_config(args)
    # Fail in the driver, before replicas start, when a secret file is configured but absent.
    load_api_key(cfg.auth)
    embedder = EmbedderDeployment.options(**cfg.embedder.deployment.options()).bind(cfg)
    reranker = None
    if cfg.reranker.enabled:
        reranker = RerankerDeployment.options(**cfg.reranker.deployment.options()).bind(cfg)
    retriever = None
    if cfg.retriever.enabled:
        retriever = RetrieverDeployment.options(**cfg.retriever.deployment.options()).bind(
            cfg, embedder
        )
    return Ingress.options(**cfg.ingress.options()).bind(cfg, embedder, reranker, retriever)
