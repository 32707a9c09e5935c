"""POST /firehose: Amazon Data Firehose's HTTP endpoint delivery, so a Firehose stream (and the CloudWatch
Logs subscription filters feeding it) can send here as it sends to Datadog or New Relic.

Records are mapped by app/formats/firehose.py, validated like POST /logs and stored through the shared
intake, answered 200 `{"requestId", "timestamp"}` only once committed. Firehose repeats a request with the
same requestId until it gets a 200, so the requestId is the idempotency key, and it alone is the
fingerprint: a repeat is stored once and answered as the first was, even if its body differs (Firehose
stamps each attempt's body anew). Records that cannot be read, or entries that fail validation, are
counted (logsave_cloudwatch_rejected_total, source `firehose`) while the rest are stored; a request with
nothing storable is a 400. Every error carries `{"requestId", "timestamp", "errorMessage"}`: 429 and 503
(busy, PostgreSQL away) are worth Firehose's retries, 400/401/413 are not (they end in its S3 backup).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from app.config import Settings
from app.errors import BadRequest, IngestError
from app.formats import firehose, shippers
from app.intake import idempotency, subscription
from app.intake.intake import Intake

log = logging.getLogger(__name__)
PATH = firehose.PATH


class FirehoseAnswer(BaseModel):
    requestId: str  # Firehose's field names
    timestamp: int


class FirehoseError(FirehoseAnswer):
    errorMessage: str


def router(settings: Settings, intake: Intake) -> APIRouter:
    api = APIRouter()

    @api.post(
        PATH,
        response_model=FirehoseAnswer,
        responses={status: {"model": FirehoseError, "description": text} for status, text in _ERRORS.items()},
        openapi_extra={"requestBody": _REQUEST_BODY, "parameters": _PARAMETERS},
        summary="Amazon Data Firehose HTTP endpoint delivery",
        description=_DESCRIPTION,
    )
    async def post_firehose(request: Request) -> Response:
        request_id = request.headers.get(firehose.REQUEST_ID) or ""
        try:
            async with intake.decoded_body(request) as decoded:
                delivery = firehose.delivery(decoded, request_id or None)
                request_id = delivery.request_id
                # After the envelope: an error answer carries the body's requestId, as Firehose reads it.
                values, metadata = firehose.defaults(
                    request.query_params, request.headers.get(firehose.COMMON_ATTRIBUTES)
                )
                values.setdefault("service", _stream_name(request.headers.get(firehose.SOURCE_ARN)))
                created_at = delivery.timestamp / 1000 if delivery.timestamp else None
                mapped = firehose.entries(
                    delivery.records, values, metadata, created_at, settings.max_body_bytes
                )
                checked = subscription.Checked()
                checked.refuse(len(mapped.problems), mapped.problems)
                subscription.check(mapped.entries, settings, checked)
                if not checked.rows:
                    if checked.refused:
                        raise BadRequest(f"no record could be stored: {'; '.join(checked.reasons)}")
                    return Response(firehose.answer(request_id), media_type="application/json")
                key = idempotency_key(request_id)
                claim = idempotency.Claim(key, idempotency.fingerprint(PATH, key.encode()))
                response = await intake.store(request, checked.rows, firehose.answer(request_id), claim=claim)
        except IngestError as exc:
            return error_answer(request_id, exc)
        if checked.refused and not getattr(request.state, "replayed", False):
            subscription.count("firehose", "undecodable", len(mapped.problems))
            subscription.count("firehose", "invalid", checked.refused - len(mapped.problems))
            log.warning(
                "Firehose request %s: %d record(s) or line(s) not stored: %s",
                request_id, checked.refused, "; ".join(checked.reasons),
            )  # fmt: skip
        return response

    return api


def idempotency_key(request_id: str) -> str:
    """The requestId itself when it is plain (Firehose's are GUIDs), else its digest: a key is text."""
    if request_id.isascii() and request_id.isprintable() and len(request_id) <= 200:
        return "firehose:" + request_id
    return "firehose:sha256:" + hashlib.sha256(request_id.encode("utf-8", "surrogatepass")).hexdigest()


def error_answer(request_id: str, exc: IngestError) -> Response:
    """An error as Firehose reads it; also app/auth.py's answer to a missing or wrong access key."""
    # 422 (PostgreSQL refused the data, or a key that expired mid-request) is not retried better than 400.
    status = 400 if exc.status == 422 else exc.status
    return Response(
        firehose.answer(request_id, exc.message), status_code=status, media_type="application/json",
        headers=exc.headers,
    )  # fmt: skip


def _stream_name(arn: str | None) -> str:
    """The delivery stream's name from X-Amz-Firehose-Source-Arn: the service of logs that name none."""
    name = (arn or "").rpartition("/")[2].strip()
    return name[:100] or "firehose"


_DESCRIPTION = (
    "Set this URL as a Firehose stream's HTTP endpoint (e.g. `https://HOST/firehose?service=web`), with an "
    "ingest API key as its access key (sent as `X-Amz-Firehose-Access-Key`). Records: gzip'd CloudWatch Logs "
    "payloads (CONTROL_MESSAGE skipped), JSON objects / arrays / NDJSON read like POST /logs entries, or plain "
    'text lines. `X-Amz-Firehose-Common-Attributes` (`{"commonAttributes": {...}}`) may set service, level, '
    "environment, log_type and service_version defaults; other attributes go to metadata. Without a service, "
    "logs take the stream's name from `X-Amz-Firehose-Source-Arn`. A repeated requestId is stored once."
)
_ERRORS = {
    400: "Not Firehose's JSON, an unknown query parameter or one no log could take (a service_version over 50 "
    "characters), bad common attributes, or no record storable.",
    401: "API keys are configured and X-Amz-Firehose-Access-Key (or another key header) is missing or wrong.",
    408: "The body stalled or arrived too slowly.",
    413: "Body over MAX_BODY_BYTES, on the wire, decompressed, or once its gzip'd records are expanded.",
    415: "An unknown Content-Encoding.",
    429: "The server is busy (write queue or body memory full); Firehose retries. Nothing was stored.",
    503: "PostgreSQL unreachable; Firehose retries. Nothing was stored.",
}
_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "Firehose's request (protocol 1.0); Content-Encoding may be gzip.",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["requestId", "records"],
                "properties": {
                    "requestId": {"type": "string", "minLength": 1},
                    "timestamp": {
                        "type": "integer",
                        "minimum": 1,
                        "exclusiveMaximum": firehose.MAX_TIMESTAMP,
                        "description": "Unix milliseconds: the records' default time.",
                    },
                    "records": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["data"],
                            "properties": {"data": {"type": "string", "format": "byte"}},
                        },
                    },
                },
            }
        }
    },
}
_PARAMETERS = [
    {
        "name": "X-Amz-Firehose-Request-Id",
        "in": "header",
        "required": False,
        "description": "The same on every attempt of one request; the body's requestId wins.",
        "schema": {"type": "string"},
    },
    *shippers.PARAMETERS,
]
