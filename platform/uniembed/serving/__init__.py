"""Serving: the embedder, the reranker and a FAISS index behind HTTP on Ray Serve.

``serve run jobs/configs/serve.yaml`` (import path ``uniembed.serving:build_app``).
Importing this package does not import Ray; :func:`build_app` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from uniembed.serving.config import (
    AuthSection,
    DeploymentSection,
    EmbedderSection,
    LimitsSection,
    RerankerSection,
    RetrieverSection,
    ServeConfig,
    load_serve_config,
)

if TYPE_CHECKING:
    from ray.serve import Application


def build_app(args: dict[str, Any] | ServeConfig | None = None) -> Application:
    """The Serve application (see :func:`uniembed.serving.app.build_app`)."""
    from uniembed.serving.app import build_app as _build

    return _build(args)


__all__ = [
    "AuthSection",
    "DeploymentSection",
    "EmbedderSection",
    "LimitsSection",
    "RerankerSection",
    "RetrieverSection",
    "ServeConfig",
    "build_app",
    "load_serve_config",
]
