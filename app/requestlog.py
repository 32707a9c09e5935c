"""One JSON log line and the request metrics per request: method, path, status, duration, logs saved."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.asgi import route_path

log = logging.getLogger("app")


class RequestLog:
    def __init__(self, app: ASGIApp, routes: frozenset[str]) -> None:
        self.app = app
        # Metric labels only ever name the app's own routes: a scan of random paths adds no series.
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            # The matched route's template (/traces/{trace_id}) where FastAPI routed the request.
            matched = scope.get("route")
            path = route_path(scope)
            route = matched.path if matched is not None else path if path in self.routes else "other"
            state = scope.get("state", {})
            metrics.count_request(route, status, elapsed)
            if scope["method"] == "POST":
                reason = "replay" if state.get("replayed") else metrics.REASONS.get(status)
                if reason:
                    metrics.REJECTED.labels(reason=reason).inc()
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "saved": state.get("saved", 0),
                },
            )
