"""Alert rules: what POST /alerts takes, how a rule is checked, and the rules' rows in PostgreSQL.

A rule's query is GET /logs's filters as a JSON object (`{"service": "checkout", "level": ["ERROR"],
"meta.region": "eu-west-1"}`). It is turned into GET /logs's query string form and handed to
`app.query.parse`, which decides what a filter means and which are valid: an alert counts exactly what
GET /logs with the same filters would list. The time range is the rule's window, so since/until (and the
paging parameters) are not filters a rule takes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app import query
from app.alerts import notify
from app.errors import InvalidQuery, InvalidRule
from app.models import ENVIRONMENTS, LEVELS

# Parameters of GET /logs that are not filters of a rule: the window is the time range, and a count has
# no pages.
NOT_FILTERS = ("since", "until", "limit", "cursor")
MAX_WINDOW = 31 * 86_400
# Filters whose value may be a number or a boolean (metadata values, exclusions); the others take strings.
SCALARS = ("meta.", "not.meta.")
MAX_NOTIFY = 10
Scalar = str | int | float | bool

_TEXT = {"type": "string"}
# The canonical names, as GET /logs documents its level and environment: "" or "bogus" is a 422 naming the
# filter; the server also takes any case (and WARNING, CRITICAL), as GET /logs does.
_LEVEL = {"enum": list(LEVELS), "description": "Case-insensitive, as GET /logs."}
_SCALAR = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
_ENVIRONMENT = {"enum": list(ENVIRONMENTS), "description": "Case-insensitive, as GET /logs."}


_URL = {
    "type": "string",
    "minLength": 1,
    "maxLength": notify.MAX_URL,
    "pattern": r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s\x00-\x1f\x7f]*$",
}


def _whole(value: Any) -> Any:
    """27807571.0 as 27807571: JSON (and the document's `integer`) does not tell them apart; 1.5 stays a 422."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Whole = Annotated[int, BeforeValidator(_whole)]


def _one_or_many(item: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [item, {"type": "array", "items": item, "minItems": 1}]}


# A metadata path as app.query.meta_path reads it: non-empty keys between dots, `\.` a dot inside a key.
_KEY = r"(?:[^.\\]|\\[\s\S]?)+"
_META_PATH = rf"{_KEY}(?:\.{_KEY})*"


# The rule's query as the OpenAPI document states it: GET /logs's filters, `meta.<key>` for metadata.
QUERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "service": _one_or_many(_TEXT),
        "level": _one_or_many(_LEVEL),
        "environment": _one_or_many(_ENVIRONMENT),
        "min_level": _LEVEL,
        "q": _TEXT,
        "trace_id": {"type": "string", "maxLength": 32},
        "user_id": {"type": "string", "maxLength": 255},
        "session_id": {"type": "string", "maxLength": 100},
        "not.service": _one_or_many(_TEXT),
        "not.level": _one_or_many(_LEVEL),
        "not.environment": _one_or_many(_ENVIRONMENT),
        "not.trace_id": _one_or_many({"type": "string", "maxLength": 32}),
        "not.user_id": _one_or_many({"type": "string", "maxLength": 255}),
        "not.session_id": _one_or_many({"type": "string", "maxLength": 100}),
    },
    "patternProperties": {
        rf"^meta\.{_META_PATH}$": _one_or_many(_SCALAR),
        rf"^not\.meta\.{_META_PATH}$": _one_or_many(_SCALAR),
    },
    "additionalProperties": False,
    "description": "GET /logs's filters, with the same names and meaning: service, level, environment "
    "(one value or a list: any of them), min_level, q, trace_id, user_id, session_id, and `meta.<key>` "
    "(a string, number or boolean, or a list of them), and the `not.<filter>` exclusions where GET /logs has "
    "them (`not.meta.<key>` too). No filter: "
    "every log counts.",
}


class RuleIn(BaseModel):
    """POST /alerts's body."""

    model_config = ConfigDict(strict=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    query: dict[str, Any] = Field(default_factory=dict, json_schema_extra=QUERY_SCHEMA)
    threshold: Whole = Field(ge=1, le=2**31 - 1, description="Fire when at least this many logs match.")
    window_seconds: Whole = Field(
        ge=1, le=MAX_WINDOW, description="Count the logs of the last this many seconds."
    )
    notify: list[str] = Field(
        min_length=1,
        max_length=MAX_NOTIFY,
        # What app/alerts/notify.py's check_url needs of any URL, stated; which schemes and parts a service
        # needs beyond that is apprise's to say (a 422 naming `notify.<i>`).
        json_schema_extra={"items": _URL, "uniqueItems": True},
        description="Where to send notifications: http(s) URLs get a JSON POST; any other scheme apprise "
        "knows (slack://, discord://, msteams://, mailto://, json://, …) gets a text.",
    )
    renotify_seconds: Whole = Field(
        3600, ge=0, le=MAX_WINDOW, description="While firing, notify again after this many seconds; 0: never."
    )


class Rule(RuleIn):
    """A rule as GET /alerts answers it: what was posted, its id, and its state."""

    model_config = ConfigDict(strict=False, extra="forbid")

    id: int
    created_at: datetime
    state: Literal["ok", "firing"]
    last_count: int | None = Field(description="Logs counted at the last evaluation (null: not yet).")
    last_evaluated_at: datetime | None
    last_notified_at: datetime | None
    logs_url: str = Field(description="The web view of the logs this rule counts now (its last window).")


class Rules(BaseModel):
    alerts: list[Rule]


def params(filters: dict[str, Any]) -> dict[str, list[str]]:
    """A rule's query -> GET /logs's query string form ({name: [values]}), as `query.parse` takes it."""
    out: dict[str, list[str]] = {}
    for name, value in filters.items():
        values = value if isinstance(value, list) else [value]
        out[name] = [_text(v) for v in values]
    return out


def check(rule: RuleIn) -> RuleIn:
    """The rule as it will be stored (U+0000 made U+FFFD, as in stored logs), or a 422 naming every bad
    field: a filter GET /logs would refuse, a value of the wrong kind, a notify URL nothing can deliver to."""
    errors: list[dict[str, str]] = []
    filters = {_clean(name): _clean(value) for name, value in rule.query.items()}
    for name, value in filters.items():
        values = value if isinstance(value, list) else [value]
        if name in NOT_FILTERS:
            errors.append(_error(f"query.{name}", "not a filter of a rule: its window is the time range"))
        elif not values or not all(isinstance(v, Scalar) for v in values):
            errors.append(_error(f"query.{name}", "must be a string, number or boolean, or a list of them"))
        elif not name.startswith(SCALARS) and not all(isinstance(v, str) for v in values):
            errors.append(_error(f"query.{name}", "must be a string (or a list of strings)"))
    if not errors:
        try:
            query.parse(params(filters), export=True)
        except InvalidQuery as exc:
            errors += exc.errors
    for i, url in enumerate(rule.notify):
        if problem := notify.check_url(url):
            errors.append(_error(f"notify.{i}", problem))
    if len(set(rule.notify)) != len(rule.notify):
        errors.append(_error("notify", "each URL once"))
    if errors:
        raise InvalidRule(errors)
    return rule.model_copy(update={"name": _clean(rule.name), "query": filters})


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message, "type": "invalid_rule"}


def _clean(value: Any) -> Any:
    # PostgreSQL text and jsonb cannot hold U+0000; GET /logs's filters and stored logs have U+FFFD instead.
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _text(value: Scalar) -> str:
    # `meta.status: 500` is GET /logs's `meta.status=500`: a number there, the number here.
    return value if isinstance(value, str) else json.dumps(value)


COLUMNS = (
    "id, name, query, threshold, window_seconds, notify, renotify_seconds, created_at, state, last_count,"
    " last_evaluated_at, last_notified_at"
)


async def create(conn: asyncpg.Connection, rule: RuleIn) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO alert_rules (name, query, threshold, window_seconds, notify, renotify_seconds)"
        f" VALUES ($1, $2::jsonb, $3, $4, $5, $6) RETURNING {COLUMNS}",
        rule.name,
        json.dumps(rule.query),
        rule.threshold,
        rule.window_seconds,
        rule.notify,
        rule.renotify_seconds,
    )


async def every(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {COLUMNS} FROM alert_rules ORDER BY id")


async def one(conn: asyncpg.Connection, rule_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {COLUMNS} FROM alert_rules WHERE id = $1", rule_id)


async def delete(conn: asyncpg.Connection, rule_id: int) -> bool:
    return await conn.fetchval("DELETE FROM alert_rules WHERE id = $1 RETURNING true", rule_id) is not None


def filters_of(record: asyncpg.Record) -> dict[str, Any]:
    return json.loads(record["query"])
