"""POST /logs: a batch of logs, validated and committed all or nothing (or, with ?partial=true, the valid
entries), answered only after the commit.

FastAPI documents the route; `IngestRoute` serves it straight from the middleware stack with the same
endpoint, because skipping FastAPI's router, exception middleware and endpoint wrappers is measurable when
the request itself is small (batches of 10: see results/REPORT.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Receive, Scope, Send

from app.asgi import error_response, route_path
from app.config import Settings
from app.errors import BadRequest, IngestError
from app.formats import shippers
from app.intake import idempotency, rows
from app.intake.decode import check_content_type
from app.intake.intake import Intake
from app.models import IngestResult, batch_adapter
from app.routes.errors import responses

PATH = "/logs"
Endpoint = Callable[[Request], Awaitable[Response]]


def router(settings: Settings, intake: Intake) -> tuple[APIRouter, Endpoint]:
    """The documented route, and its endpoint for IngestRoute."""
    api = APIRouter()
    window = settings.created_at_window

    @api.post(
        PATH,
        response_model=IngestResult,
        responses=responses(400, 401, 408, 413, 415, 422, 429, 503),
        summary="Store a batch of logs",
    )
    async def post_logs(request: Request) -> Response:
        """Validate 1 to MAX_BATCH_SIZE logs and store them all, or none. 200 means committed.

        With an `Idempotency-Key` header a retry of a committed batch stores nothing and gets the first
        answer again, with `Idempotent-Replayed: true`.
        """
        # The raw body is read and validated here rather than by a FastAPI body parameter: headers are
        # checked before the body is read, and app/intake/rows.py validates straight from the decoded bytes.
        key = idempotency.key_from(request.headers.get(idempotency.HEADER))
        ndjson = check_content_type(request.headers.get("content-type"))
        # Most senders add no query string: then there is none to parse.
        query = request.query_params if request.scope["query_string"] else _NO_QUERY
        partial = _flag(query.get("partial"))
        defaults = shippers.defaults(query)
        async with intake.decoded_body(request) as received:
            # A JSON array, NDJSON, or query defaults: made the native body first (app/formats/shippers.py).
            decoded = shippers.native(received, ndjson, defaults)
            if partial:
                batch, rejected = rows.parse_partial(decoded, settings.max_batch_size, window=window)
                answer = orjson.dumps(
                    {
                        "saved": len(batch),
                        "status": "partial" if rejected else "success",
                        "rejected": rejected,
                    }
                )
            else:
                # Rows built while they are written, when the body's shape allows (app/intake/writer.py stream).
                batch = rows.prepare(decoded, settings.max_batch_size, window=window)
                answer = b'{"saved":%d,"status":"success"}' % len(batch)
            # The body after defaults: what is stored.
            claim = idempotency.claim(key, PATH, decoded, f"partial={partial}")
            return await intake.store(request, batch, answer, claim=claim)

    return api, post_logs


_NO_QUERY: dict[str, str] = {}


def _flag(value: str | None) -> bool:
    if value is None or value.lower() in ("false", "0"):
        return False
    if value.lower() in ("true", "1"):
        return True
    raise BadRequest(f"partial must be true or false, not {value!r}")


class IngestRoute:
    """Serves POST /logs ahead of FastAPI's router; every other request goes on to FastAPI."""

    def __init__(self, app: ASGIApp, endpoint: Endpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or route_path(scope) != PATH:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await self.endpoint(request)
        except IngestError as exc:
            response = error_response(exc)
        await response(scope, receive, send)


def document(app: FastAPI, settings: Settings) -> None:
    """Describe POST /logs's body in OpenAPI from the same schema the route validates with."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        body = batch_adapter(settings.max_batch_size).json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(body.pop("$defs", {}))
        components["LogBatch"] = body
        # The shippers' shape too (app/formats/shippers.py): a top-level array of the same entries.
        entries = {**body["properties"]["logs"], "title": "Entries"}
        media = {
            "schema": {"anyOf": [{"$ref": "#/components/schemas/LogBatch"}, entries]},
            "example": {"logs": [_EXAMPLE]},
        }
        operation = schema["paths"][PATH]["post"]
        operation["requestBody"] = {
            "required": True,
            "description": '`{"logs": [...]}` or a JSON array of entries; or NDJSON (application/x-ndjson, '
            "one entry a line). In an array or NDJSON, `msg`/`log`, `timestamp`/`@timestamp`/`time`/`date` and "
            "`severity` stand for message, created_at and level. Content-Encoding may be gzip, deflate or "
            "zstd; the decompressed size is capped.",
            "content": {"application/json": media},
        }
        operation.setdefault("parameters", []).extend(_PARAMETERS)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_EXAMPLE = {"level": "ERROR", "service": "checkout", "message": "card declined", "environment": "production",
            "trace_id": "5b8efff798038103d269b633813fc60c", "metadata": {"order_id": 1042}}  # fmt: skip

# Read by the endpoint itself (not by FastAPI, which IngestRoute bypasses), so documented here.
_PARAMETERS = [
    {
        "name": "partial",
        "in": "query",
        "required": False,
        "description": "true: store the valid entries and list the rejected ones (200, status `partial`) "
        "instead of refusing the whole batch; 422 only when no entry is valid.",
        "schema": {"type": "boolean", "default": False},
    },
    *shippers.PARAMETERS,
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "1-255 printable ASCII characters. A retry with the same key and body stores "
        "nothing and gets the first answer; the same key with another body is a 422.",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": idempotency.MAX_LENGTH,
            "pattern": "^[ -~]+$",
        },
    },
]
