"""The Elasticsearch bulk API, for the agents people already run: `POST|PUT /_bulk` and `/{index}/_bulk`.

rsyslog's omelasticsearch, Filebeat, Logstash, Fluent Bit's `es` output and Vector's `elasticsearch` sink send
NDJSON action/source pairs (app/formats/bulk.py maps them to our schema) and read the answer per item, as
Elasticsearch gives it: `{"took", "errors", "items": [{"create": {"_index", "_id", "status": 201, …}}]}`.
Each document is its own item: an invalid one is that item's 400 while the valid ones are stored; `delete`
and `update` are 400 (append-only); a document whose `_id` was stored within IDEMPOTENCY_TTL (or came
earlier in the same request) is 409 `version_conflict_engine_exception`, not a second row: the ids are
claimed in the COPY's transaction (app/intake/documents.py), so an agent's retry stores nothing twice.
The whole request gets 400 (lines that cannot be paired), 413, 429 and 503 like POST /logs, through the same
intake: limits, API keys, metrics and the commit rule (answered only once committed; nothing stored on 503).

Agents that probe before they send get the same API under a prefix of our own, `/elasticsearch`, where
`GET /elasticsearch/` answers a version document (Filebeat, Logstash and Vector read it) and
`GET /elasticsearch/_cluster/health` answers green (Vector's healthcheck); our own `GET /` stays ours.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from app import __version__
from app.config import Settings
from app.errors import InvalidLogs
from app.formats import bulk
from app.intake import rows
from app.intake.documents import Documents
from app.intake.intake import Intake
from app.routes.errors import responses

PREFIX = "/elasticsearch"
# Filebeat sends up to 1600 events a request by default, Logstash 125 per worker; more than POST /logs takes.
MAX_DOCUMENTS = 10_000
# Elastic's own clients check that the server says it is Elasticsearch.
PRODUCT = {"X-Elastic-Product": "Elasticsearch"}
# Documents read and turned into rows at a time: few enough that a request's documents, entries and
# validated structs are not all alive at once (fewer collections, each walking less), enough that each
# validation call's own cost stays small beside its documents.
CHUNK = 250


def router(settings: Settings, intake: Intake) -> APIRouter:
    api = APIRouter()
    window = settings.created_at_window
    limit = max(settings.max_batch_size, MAX_DOCUMENTS)

    async def post_bulk(request: Request, index: str | None) -> Response:
        started = time.monotonic()
        service = request.query_params.get("service") or None
        async with intake.decoded_body(request) as decoded:
            # Decoded JSON holds U+0000 only where the text escapes it; ?service= may hold it anyway.
            nul = b"\\u0000" in decoded or (service is not None and "\x00" in service)
            # One time received for every chunk: the created_at window and the default created_at are the
            # request's, as if its documents were validated at once.
            received = datetime.now(UTC)
            listed: list[bulk.Item] = []
            # The items not stored and why (400); an item absent from it is stored (201), or a 409 `answer` adds.
            refusals: dict[int, tuple[int, dict[str, Any] | None]] = {}
            written: list[int] = []
            batch: list[rows.Row] = []
            given_ids = False
            # A chunk's documents become rows before the next chunk's are read (bulk.chunks says why).
            for chunk in bulk.chunks(decoded, index, service, limit, CHUNK):
                documents: list[int] = []
                entries: list[dict[str, Any]] = []
                for item in chunk:
                    position = len(listed)
                    listed.append(item)
                    if item.error is not None:
                        refusals[position] = (400, bulk.error(*item.error, item))
                    elif item.entry is not None:
                        documents.append(position)
                        entries.append(item.entry)
                        # Let go once validated: not held (and walked by the collector) while rows are written.
                        item.entry = None
                        given_ids = given_ids or item.given_id
                built, refused = _validated(entries, limit, window, nul, received)
                del entries
                for number, reason in refused.items():
                    refusals[documents[number]] = (
                        400,
                        bulk.error("document_parsing_exception", reason, listed[documents[number]]),
                    )
                written += [position for number, position in enumerate(documents) if number not in refused]
                batch += built
            # The rows whose ids were taken (by number among the rows), as the last answer was given.
            conflicts: list[frozenset[int]] = [frozenset()]

            def answer(taken: frozenset[int]) -> bytes:
                # Called again when a group is retried one request at a time: each answer from the refusals.
                conflicts[0] = taken
                statuses = dict(refusals)
                for number in taken:
                    item = listed[written[number]]
                    statuses[written[number]] = (
                        409,
                        bulk.error("version_conflict_engine_exception", _conflict(item), item),
                    )
                return bulk.answer(listed, _took(started), statuses)

            if not batch:
                return Response(answer(frozenset()), media_type="application/json", headers=PRODUCT)
            if given_ids:
                ids = [(listed[p].index, listed[p].id) if listed[p].given_id else None for p in written]
                response = await intake.store(request, batch, b"", claim=None, ids=Documents(ids, answer))
            else:
                # No id to claim: the answer is known now, and sent, as always, only once committed.
                response = await intake.store(request, batch, answer(frozenset()), claim=None)
            # What was written: the duplicates (409) were not.
            request.state.saved = len(written) - len(conflicts[0])
            response.headers.update(PRODUCT)
            return response

    bulk_doc = {
        "responses": {
            200: {
                "description": "Committed. One item per action, in order: 201 stored, 400 refused (invalid "
                "document, delete, update), 409 `_id` already stored; `errors` is true when any item failed.",
                "content": {"application/json": {"schema": _BULK_RESPONSE}},
            },
            **responses(400, 401, 408, 413, 415, 429, 503),
        },
        "openapi_extra": {"requestBody": _REQUEST_BODY, "parameters": [_SERVICE]},
        "summary": "Elasticsearch bulk (NDJSON action/source pairs)",
        "tags": ["elasticsearch"],
    }

    async def bulk_without_index(request: Request) -> Response:
        return await post_bulk(request, None)

    async def bulk_with_index(request: Request, index: str) -> Response:
        """`index` is each document's `_index` unless its action names one."""
        return await post_bulk(request, index)

    for prefix in (PREFIX, ""):
        for method in ("POST", "PUT"):
            name = f"{prefix.strip('/') or 'root'}_{method.lower()}"
            api.add_api_route(
                f"{prefix}/_bulk", bulk_without_index, methods=[method], name=f"bulk_{name}", **bulk_doc
            )
            api.add_api_route(
                f"{prefix}/{{index}}/_bulk", bulk_with_index, methods=[method], name=f"index_bulk_{name}",
                **bulk_doc,
            )  # fmt: skip

    version = {
        "name": "log-save-server",
        "cluster_name": "log-save-server",
        "cluster_uuid": "log-save-server",
        "version": {
            "number": settings.elasticsearch_version,
            "build_flavor": "default",
            "lucene_version": "9.7.0",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0",
        },
        "tagline": "You Know, for Search",
        "log_save_server": __version__,
    }

    @api.get(
        f"{PREFIX}/",
        summary="Elasticsearch version, for agents that read it before they send",
        responses={200: {"content": {"application/json": {"schema": _VERSION}}}, **responses(401)},
    )
    async def elasticsearch_version() -> Response:
        return Response(orjson.dumps(version), media_type="application/json", headers=PRODUCT)

    # HEAD (a liveness probe of Elastic's clients) and, for Filebeat's `path: /elasticsearch`, without the
    # trailing slash: the same answer, not listed again in the document.
    for path, methods in ((f"{PREFIX}/", ["HEAD"]), (PREFIX, ["GET", "HEAD"])):
        api.add_api_route(path, elasticsearch_version, methods=methods, include_in_schema=False)

    @api.get(
        f"{PREFIX}/_cluster/health",
        summary="Elasticsearch cluster health, for Vector's healthcheck",
        responses={200: {"content": {"application/json": {"schema": _HEALTH}}}, **responses(401)},
    )
    async def elasticsearch_health() -> Response:
        health = {"cluster_name": "log-save-server", "status": "green", "timed_out": False}
        return Response(orjson.dumps(health), media_type="application/json", headers=PRODUCT)

    return api


def _validated(
    entries: list[dict[str, Any]],
    limit: int,
    window: Any,
    nul: bool = True,
    received: datetime | None = None,
) -> tuple[list[rows.Row], dict[int, str]]:
    """The valid entries' rows, and why each other entry (by its number among `entries`) was refused; `nul`:
    whether a string may hold U+0000 (stored as U+FFFD); `received`: the time the request was received."""
    if not entries:
        return [], {}
    try:
        batch, rejected = rows.parse_values(entries, limit, received, window, nul)
    except InvalidLogs as exc:  # not one entry valid
        if not all(_number(e["field"]) is not None for e in exc.errors):
            raise  # a problem of the batch, not of an entry
        batch, rejected = [], [{"index": _number(e["field"]), **e} for e in exc.errors]
    refused: dict[int, str] = {}
    for problem in rejected:
        field = problem["field"].partition(".")[2].partition(".")[2] or problem["field"]
        reason = f"{field}: {problem['message']}"
        number = problem["index"]
        refused[number] = f"{refused[number]}; {reason}" if number in refused else reason
    return batch, refused


def _number(field: str) -> int | None:
    """The entry an error names (`logs.3.level` -> 3)."""
    parts = field.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def _conflict(item: bulk.Item) -> str:
    return f"[{item.id}]: version conflict, document already exists (current version [1])"


def _took(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


_ITEM = {
    "type": "object",
    "required": ["_index", "_id", "status"],
    "properties": {
        "_index": {"type": "string"},
        "_id": {"type": "string"},
        "status": {"type": "integer", "enum": [201, 400, 409]},
        "result": {"type": "string", "enum": ["created"]},
        "error": {
            "type": "object",
            "required": ["type", "reason"],
            "properties": {"type": {"type": "string"}, "reason": {"type": "string"}},
        },
    },
}
_BULK_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["took", "errors", "items"],
    "properties": {
        "took": {"type": "integer", "minimum": 0, "description": "Milliseconds the request took."},
        "errors": {"type": "boolean"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "properties": {action: _ITEM for action in bulk.ACTIONS},
                "additionalProperties": False,
            },
        },
    },
}
_EXAMPLE = (
    '{"create":{"_index":"checkout","_id":"a1"}}\n'
    '{"@timestamp":"2026-11-30T12:00:00Z","log.level":"error","message":"payment declined"}\n'
)
_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "NDJSON: an action line (`index`, `create`, `delete` or `update`, with optional `_index` "
    "and `_id`), then for all but delete a source line; Content-Encoding may be gzip, deflate or zstd. "
    'Sources are read ECS first (README, "Send logs from rsyslog / Filebeat / …").',
    "content": {
        "application/x-ndjson": {"schema": {"type": "string"}, "example": _EXAMPLE},
        "application/json": {"schema": {"type": "string"}, "example": _EXAMPLE},
    },
}
_SERVICE = {
    "name": "service",
    "in": "query",
    "required": False,
    "description": "Service of the documents that name none (else the index's name).",
    "schema": {"type": "string"},
}
_VERSION: dict[str, Any] = {
    "type": "object",
    "required": ["version", "tagline"],
    "properties": {
        "version": {
            "type": "object",
            "required": ["number"],
            "properties": {"number": {"type": "string"}},
        },
        "tagline": {"type": "string"},
    },
}
_HEALTH: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["green"]}},
}
