"""POST /loki/api/v1/push (Loki's push API) and GET /loki/ready, for the agents that speak Loki: Promtail,
Grafana Alloy, Fluent Bit's `loki` output, Vector's `loki` sink, Docker's Loki driver, python-logging-loki.

Lines are mapped to our columns (app/formats/loki.py), validated like POST /logs, and stored through the
shared intake: the same durability, Idempotency-Key, limits, API keys and metrics. Loki's agents send no
batch id, and Promtail, Alloy and Fluent Bit resend the very same body when an answer is lost, so a push without
an Idempotency-Key is keyed by its decoded body (as Loki itself drops a line whose stream, timestamp and text
it already has): a redelivered batch is stored once within IDEMPOTENCY_TTL. The answer is Loki's:
204 and no body once committed (python-logging-loki takes any other 2xx for an error). Lines that fail
validation are refused as Loki refuses them: the others are stored and the answer is 400 naming the
refused ones (agents do not retry a 400). A body that cannot be read is 400/413/415 with nothing stored.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from app.config import Settings
from app.database import Database
from app.errors import BadRequest, InvalidLogs
from app.formats import loki
from app.intake import idempotency, rows
from app.intake.intake import Intake
from app.intake.writer import database_errors
from app.models import ErrorBody
from app.routes.errors import responses

PATH = "/loki/api/v1/push"
READY = "/loki/ready"
# Promtail batches up to 1 MiB of lines by default, which may be many more than POST /logs's batch.
MAX_LINES = 100_000


def router(settings: Settings, intake: Intake, database: Database) -> APIRouter:
    api = APIRouter()
    window = settings.created_at_window
    limit = max(settings.max_batch_size, MAX_LINES)

    @api.post(
        PATH,
        status_code=204,
        response_class=Response,
        responses={
            204: {"description": "Every line stored (committed)."},
            400: {
                "model": ErrorBody,
                "description": "The body cannot be read (bad JSON, snappy or protobuf, label text, timestamp), "
                "or some lines were refused: the others are stored and the message names the refused ones.",
            },
            **responses(401, 408, 413, 415),
            422: {"model": ErrorBody, "description": "An Idempotency-Key reused with another body."},
            **responses(429, 503),
        },
        openapi_extra={"requestBody": _REQUEST_BODY},
        summary="Loki push (PushRequest, protobuf+snappy or JSON)",
    )
    async def push(request: Request) -> Response:
        key = idempotency.key_from(request.headers.get(idempotency.HEADER))
        kind = loki.media_type(request.headers.get("content-type"))
        async with intake.decoded_body(request) as decoded, intake.budget.hold() as held:
            if kind == loki.PROTOBUF:
                # The expanded protobuf counts against the worker's body budget like a gunzipped body.
                held.take(loki.snappy_length(decoded, settings.max_body_bytes))
            logs, kept = loki.body(loki.streams(decoded, kind, settings.max_body_bytes), limit)
            if logs is None:
                return Response(status_code=204)
            held.take(len(logs))
            try:
                batch, rejected = rows.parse_partial(logs, limit, window=window)
            except InvalidLogs as exc:
                raise BadRequest(f"no log line could be stored: {exc.message}") from None
            refusals = {item["index"] for item in rejected}
            # Each stored row with what the Loki query API gives back (rows.LOKI_COLUMNS), in the same order.
            batch = [
                (*row, *extra)
                for row, extra in zip(
                    batch, (k for i, k in enumerate(kept) if i not in refusals), strict=True
                )
            ]
            answer = b""
            if rejected:
                refused = len(refusals)
                named = "; ".join(f"{e['field']}: {e['message']}" for e in rejected[:5])
                answer = orjson.dumps({
                    "error": "bad_request",
                    "message": f"{refused} of {refused + len(batch)} log line(s) refused ({named}); "
                    f"the other {len(batch)} were stored",
                })  # fmt: skip
            claim = idempotency.claim(key, PATH, decoded, kind) if key else body_claim(decoded, kind)
            stored = await intake.store(request, batch, answer, claim=claim)
        # Intake answers 200 with the answer's bytes; Loki's agents want 204, or 400 for refused lines.
        headers = {k: v for k, v in stored.headers.items() if k.lower() == "idempotent-replayed"}
        if stored.body:
            return Response(stored.body, status_code=400, media_type="application/json", headers=headers)
        return Response(status_code=204, headers=headers)

    @api.get(
        READY,
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "ready"}, **responses(503)},
        summary="Readiness for Loki agents (Promtail, Alloy)",
    )
    async def ready() -> Response:
        """Loki's `/ready` beside the push path: `ready` when PostgreSQL answers, else 503."""
        with database_errors():
            pool = await database.pool()
            await pool.fetchval("SELECT 1", timeout=settings.db_acquire_timeout)
        return Response("ready\n", media_type="text/plain")

    return api


_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "A Loki PushRequest: protobuf (Loki's push.proto) compressed with snappy's block format, "
    "as Promtail, Alloy and Docker's driver send it; or JSON, which Content-Encoding gzip/deflate/zstd may "
    "compress. Labels service/service_name/app/application/job/container give the service, "
    "level/severity/detected_level the level, env/environment the environment; the rest and structured "
    "metadata go into metadata. A line that is a JSON object is read like a POST /logs entry. The labels, "
    "structured metadata and line as pushed are kept too: the Loki query API gives them back as Loki does.",
    "content": {
        loki.PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
        loki.JSON: {
            "schema": {
                "type": "object",
                "required": ["streams"],
                "properties": {
                    "streams": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["values"],
                            "properties": {
                                "stream": {"type": "object", "additionalProperties": {"type": "string"}},
                                "values": {
                                    "type": "array",
                                    "items": {
                                        "type": "array",
                                        "minItems": 2,
                                        "maxItems": 3,
                                        "prefixItems": [
                                            # Unix nanoseconds up to 20 digits (below 1e20: the year 5138), what
                                            # app/formats/loki.py takes; a longer one is a 400.
                                            {"type": "string", "pattern": "^[0-9]{1,20}$"},
                                            {"type": "string"},
                                            {"type": "object", "additionalProperties": {"type": "string"}},
                                        ],
                                    },
                                },
                            },
                        },
                    }
                },
            }
        },
    },
}


def body_claim(decoded: bytes, kind: str) -> idempotency.Claim:
    """The claim of a push that brought no key: its decoded body's fingerprint is the key too."""
    fingerprint = idempotency.fingerprint(PATH, decoded, kind)
    return idempotency.Claim("loki-body:" + fingerprint.hex(), fingerprint)
