"""POST/GET /alerts and GET/DELETE /alerts/{id}: managing alert rules (app/alerts/). With API keys on, an
ingest key may not use them (app/auth.py): rules say where notifications go."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Path, Response

from app.alerts import link, rules
from app.config import Settings
from app.database import Database
from app.errors import NotFound
from app.intake.writer import database_errors
from app.models import ErrorBody
from app.routes.errors import RESPONSES

_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: RESPONSES[401],
    403: {"model": ErrorBody, "description": "An ingest-only API key: managing rules needs an API_KEYS key."},
    503: RESPONSES[503],
}
_NOT_FOUND = {404: {"model": ErrorBody, "description": "No rule with this id."}}
_NOT_JSON = {400: {"model": ErrorBody, "description": "The body is not JSON."}}
_INVALID = {
    422: {"model": ErrorBody, "description": "An invalid rule, each bad field named (`query.level`)."}
}
RuleId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def router(settings: Settings, database: Database) -> APIRouter:
    api = APIRouter(tags=["alerts"])

    @contextlib.asynccontextmanager
    async def connection() -> AsyncIterator[asyncpg.Connection]:
        pool = await database.pool()
        async with pool.acquire(timeout=settings.db_acquire_timeout) as conn:
            yield conn

    @api.post(
        "/alerts",
        status_code=201,
        response_model=rules.Rule,
        responses={**_RESPONSES, **_NOT_JSON, **_INVALID},
        summary="Create an alert rule",
    )
    async def create(rule: rules.RuleIn) -> rules.Rule:
        """The rule's `query` counts what GET /logs with the same filters lists, over the last
        `window_seconds`; at `threshold` or more the rule fires. Evaluated every ALERT_INTERVAL seconds."""
        checked = rules.check(rule)
        with database_errors():
            async with connection() as conn:
                return _answer(await rules.create(conn, checked), settings)

    @api.get("/alerts", response_model=rules.Rules, responses=_RESPONSES, summary="Every alert rule")
    async def every() -> rules.Rules:
        with database_errors():
            async with connection() as conn:
                return rules.Rules(alerts=[_answer(r, settings) for r in await rules.every(conn)])

    @api.get(
        "/alerts/{rule_id}",
        response_model=rules.Rule,
        responses={**_RESPONSES, **_NOT_FOUND, **_INVALID},
        summary="One alert rule",
    )
    async def one(rule_id: RuleId) -> rules.Rule:
        with database_errors():
            async with connection() as conn:
                record = await rules.one(conn, rule_id)
        if record is None:
            raise NotFound(f"no alert rule {rule_id}")
        return _answer(record, settings)

    @api.delete(
        "/alerts/{rule_id}",
        status_code=204,
        response_class=Response,
        responses={**_RESPONSES, **_NOT_FOUND, **_INVALID},
        summary="Delete an alert rule",
    )
    async def delete(rule_id: RuleId) -> Response:
        with database_errors():
            async with connection() as conn:
                deleted = await rules.delete(conn, rule_id)
        if not deleted:
            raise NotFound(f"no alert rule {rule_id}")
        return Response(status_code=204)

    return api


def _answer(record: asyncpg.Record, settings: Settings) -> rules.Rule:
    filters = json.loads(record["query"])
    since = datetime.now(UTC) - timedelta(seconds=record["window_seconds"])
    return rules.Rule(
        **{**dict(record), "query": filters, "notify": list(record["notify"])},
        logs_url=link.ui(filters, since, None, settings.public_url),
    )
