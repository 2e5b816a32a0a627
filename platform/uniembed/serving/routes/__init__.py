"""The HTTP routes, one router per route group; ``http_app.create_http_app`` includes them.

A new route group is a module here with ``router(ctx: ServeContext) -> APIRouter`` and one
line in :data:`ROUTERS`.
"""

from __future__ import annotations

from uniembed.serving.routes import embeddings, rerank, search, service

#: Router factories, in the order their routes appear in the OpenAPI schema.
ROUTERS = (service.router, embeddings.router, rerank.router, search.router)

__all__ = ["ROUTERS"]
