"""POST /v1/logs: OTLP/HTTP logs (protobuf or JSON), from any OpenTelemetry SDK or the Collector.

Records are mapped to our columns (app/formats/otlp.py), validated like POST /logs, and stored through the same
intake: the same durability, Idempotency-Key, limits, API keys and metrics. Records that fail validation are
counted in `partial_success` while the others are stored; the answer is in the request's encoding. Errors
are 400 (undecodable, or not one record valid), 413, 415, and 429/503 with Retry-After when busy or when
PostgreSQL is away: the official exporters retry exactly 429, 502, 503 and 504.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from app.config import Settings
from app.errors import BadRequest, InvalidLogs
from app.formats import otlp
from app.intake import idempotency, rows
from app.intake.intake import Intake
from app.routes.errors import responses

PATH = "/v1/logs"
# The Collector batches up to 8192 records by default; a request may carry more than POST /logs allows.
MAX_RECORDS = 10_000


def router(settings: Settings, intake: Intake) -> APIRouter:
    api = APIRouter()
    window = settings.created_at_window
    limit = max(settings.max_batch_size, MAX_RECORDS)

    @api.post(
        PATH,
        responses={
            200: {
                "description": "ExportLogsServiceResponse, in the request's encoding",
                "content": {otlp.PROTOBUF: {"schema": {"type": "string", "format": "binary"}}, otlp.JSON: {}},
            },
            **responses(400, 401, 408, 413, 415, 429, 503),
        },
        openapi_extra={"requestBody": _REQUEST_BODY},
        summary="OTLP/HTTP logs (ExportLogsServiceRequest)",
    )
    async def post_otlp(request: Request) -> Response:
        key = idempotency.key_from(request.headers.get(idempotency.HEADER))
        kind = otlp.media_type(request.headers.get("content-type"))
        async with intake.decoded_body(request) as decoded:
            documents = otlp.entries(otlp.scopes(decoded, kind))
            if not documents:
                return Response(otlp.response(kind, 0, ""), media_type=kind)
            try:
                batch, rejected = rows.parse_values(documents, limit, window=window)
            except InvalidLogs as exc:
                # Not one record valid: the exporter must not retry this request.
                raise BadRequest(f"no log record could be stored: {exc.message}") from None
            refused = len({item["index"] for item in rejected})
            message = "; ".join(f"{e['field']}: {e['message']}" for e in rejected[:5])
            answer = otlp.response(
                kind, refused, f"{refused} log record(s) refused: {message}" if refused else ""
            )
            claim = idempotency.claim(key, PATH, decoded, kind)
            return await intake.store(request, batch, answer, claim=claim, media_type=kind)

    return api


_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "An OTLP ExportLogsServiceRequest (opentelemetry-proto), as protobuf or OTLP/JSON; "
    "Content-Encoding may be gzip or deflate.",
    "content": {
        otlp.PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
        otlp.JSON: {
            "schema": {"$ref": "#/components/schemas/OtlpLogsRequest"},
            "example": {
                "resourceLogs": [
                    {
                        "resource": {
                            "attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]
                        },
                        "scopeLogs": [
                            {
                                "logRecords": [
                                    {
                                        "timeUnixNano": "1795800000000000000",
                                        "severityNumber": 17,
                                        "body": {"stringValue": "card declined"},
                                        "attributes": [{"key": "order_id", "value": {"intValue": "1042"}}],
                                    }
                                ]
                            }
                        ],
                    }
                ]
            },
        },
    },
}


def document(app: FastAPI) -> None:
    """OTLP/JSON's messages refer to each other (an AnyValue holds AnyValues): they go into the OpenAPI
    document's components, which the request body above refers to."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("schemas", {}).update(otlp.JSON_SCHEMAS)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
