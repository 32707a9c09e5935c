"""Small helpers shared by the ASGI middlewares: where a request goes, and how an error is answered."""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse
from starlette.types import Scope

from app.errors import IngestError

log = logging.getLogger("app")


def route_path(scope: Scope) -> str:
    """The request's path inside the app, without the root path a proxy (or API Gateway stage) adds."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def error_response(exc: IngestError) -> JSONResponse:
    if exc.status >= 500:
        log.warning("%s", exc.message, extra={"error": exc.code})
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
