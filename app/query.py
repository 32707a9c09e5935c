"""Reading logs back: GET /logs's filters as SQL, keyset cursors, and each row as JSON made by PostgreSQL.

Every filter becomes a parameter of one statement (no value is ever spliced into SQL text). Pages are
newest first and continue after the last row with `(created_at, id) < (…)`, which the primary key serves
as an ordered index scan, partition by partition: no gaps or repeats while rows keep arriving. PostgreSQL
writes each row's JSON itself, so a page goes out without a round trip through Python objects.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from app.errors import InvalidQuery
from app.models import ENVIRONMENTS, EPOCH_UNITS, LEVELS, in_range, normalize_level, parse_created_at
from app.search import phrase

# A Unix time in a query string: decimal digits and an optional fraction, the unit read from the magnitude
# of the whole part. Twenty digits at most keep it below 1e20 (nanoseconds up to the year 5138). No sign,
# exponent, spaces or underscores, which float() would take: the document states exactly this text.
UNIX_TIME = re.compile(r"([0-9]{1,20})(?:\.([0-9]+))?")
# How since/until are documented wherever a time is a query parameter (GET /logs, /logs/facets, /stats/…).
# Both forms are text: a query string has no numbers, and a checker reads `type: number` as not this text.
MOMENT_SCHEMA = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": f"^{UNIX_TIME.pattern}$"},
    ]
}
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_TRACE_LOGS = 10_000
META_PREFIX = "meta."
SINGLE = ("since", "until", "min_level", "trace_id", "user_id", "session_id", "q", "limit", "cursor")
REPEATABLE = ("service", "level", "environment")
# `not.<name>=v` excludes logs whose field is v (any of them when repeated); the SQL type of each field.
NOT_PREFIX = "not."
NEGATABLE = {
    "service": "text",
    "level": "log_level",
    "environment": "log_environment",
    "trace_id": "text",
    "user_id": "text",
    "session_id": "text",
}
LONGEST = {"trace_id": 32, "user_id": 255, "session_id": 100}

# One log as GET /logs and /traces answer it: every column but the soft-delete flag.
DOCUMENT = """jsonb_build_object(
    'id', id, 'created_at', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'level', level, 'log_type', log_type, 'service', service, 'environment', environment,
    'service_version', service_version, 'trace_id', trace_id, 'user_id', user_id, 'session_id', session_id,
    'error_type', error_type, 'message', message, 'stack_trace', stack_trace, 'path', path, 'method', method,
    'action_type', action_type, 'function_name', function_name, 'file_path', file_path,
    'duration_ms', duration_ms, 'metadata', metadata)::text"""


@dataclass(frozen=True)
class Condition:
    """One filter of GET /logs in no SQL dialect. `postgres()` below renders it for PostgreSQL and
    app/storage/cold.py for the archive (DuckDB, and pyarrow for the kinds on typed columns), so each
    filter's meaning is decided once, here.

    kind      column                      value
    since     created_at                  a datetime (>=)
    until     created_at                  a datetime (<)
    any       a NEGATABLE column          its values as stored (any matches; negated: none does)
    at_least  level                       a level (this one or more severe)
    equals    trace_id/user_id/session_id the value
    contains  message                     text, matched case-insensitively anywhere
    phrase    message                     [word, …]: consecutive whole words (app/search/phrase.py)
    meta      metadata                    (path, value): the value at that path of the metadata
    before    (created_at, id)            the keyset cursor's (created_at, id)
    within    created_at                  [(low, high), …]: in one of these closed ranges (the search
                                          index's candidates, app/search/lookup.py; PostgreSQL only)
    line      message                     LogQL's line filter (op, needles): |= != (case-sensitive
                                          substrings, any of the needles), |~ !~ (unanchored regexes)
    label     a LogQL label (LABELS)      (op, value): = != exact, =~ !~ anchored regex; a missing label
                                          is the empty string, as in Loki

    A negated condition keeps the logs where it is not true, those without the field included.
    """

    kind: str
    column: str
    value: Any
    negated: bool = False


@dataclass
class Query:
    """A parsed GET /logs: its conditions (all must hold), the page size and where to start."""

    conditions: list[Condition] = field(default_factory=list)
    limit: int | None = DEFAULT_LIMIT

    def add(self, kind: str, column: str, value: Any, negated: bool = False) -> None:
        self.conditions.append(Condition(kind, column, value, negated))

    @property
    def where(self) -> list[str]:
        return postgres(self.conditions)[0]

    @property
    def args(self) -> list[Any]:
        return postgres(self.conditions)[1]

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """The earliest and latest created_at a match may have (None: unbounded), for choosing days."""
        since = [c.value for c in self.conditions if c.kind == "since"]
        until = [c.value for c in self.conditions if c.kind == "until"]
        until += [c.value[0] for c in self.conditions if c.kind == "before"]
        return (max(since) if since else None), (min(until) if until else None)

    def page_sql(self) -> str:
        limit = f" LIMIT {self.limit + 1}" if self.limit is not None else ""
        return (
            f"SELECT {DOCUMENT} AS doc, created_at, id FROM logs WHERE {' AND '.join(self.where)}"
            f" ORDER BY created_at DESC, id DESC{limit}"
        )


# LogQL's labels of a stored log (app/logql/labels.py) as PostgreSQL and DuckDB expressions; any other name is
# a top-level metadata key.
LABELS = {
    "service_name": ("service", "service"),
    "level": ("lower(level::text)", "lower(level)"),
    "detected_level": ("lower(level::text)", "lower(level)"),
    "environment": ("environment::text", "environment"),
    **{
        name: (name, name)
        for name in ("trace_id", "user_id", "session_id", "path", "error_type", "service_version")
    },
    "method": ("method::text", "method"),
    "log_type": ("log_type::text", "log_type"),
    # As a label, 12.500 reads 12.5 (trailing zeros of the DECIMAL dropped).
    "duration_ms": ("trim_scale(duration_ms)::text", "rtrim(rtrim(duration_ms::VARCHAR, '0'), '.')"),
}
NOT_NULL_LABELS = frozenset({"service_name", "level", "detected_level", "environment"})
# The labels every log has, a log pushed through Loki included (app/formats/loki.py adds its service_name).
EVERY_LOG_LABELS = frozenset({"service_name", "detected_level"})


def label_sql(name: str, param: Callable[[Any], str]) -> str:
    """A LogQL label of a row as PostgreSQL text (`param` adds a parameter and returns its placeholder).

    A log pushed through Loki's push API has the labels and structured metadata it was pushed with
    (loki_labels, loki_metadata: app/formats/loki.py), detected_level aside; every other log has LABELS'."""
    known = LABELS.get(name)
    if known is not None:
        ours = known[0] if name in NOT_NULL_LABELS else f"coalesce({known[0]}, '')"
    else:
        ours = f"coalesce(metadata->>{param(name)}, '')"
    fallback = "lower(level::text)" if name == "detected_level" else "''"
    key = param(name)
    pushed = f"coalesce(loki_labels->>{key}, loki_metadata->>{key}, {fallback})"
    return f"(CASE WHEN loki_labels IS NULL THEN {ours} ELSE {pushed} END)"


def duckdb_label(name: str, param: Callable[[Any], str]) -> str:
    """`label_sql` for DuckDB over archived rows (JSON columns as text, read by JSON pointer)."""
    pointer = "/" + name.replace("~", "~0").replace("/", "~1")
    if name in LABELS:
        ours = f"coalesce({LABELS[name][1]}, '')"
    else:
        ours = f"coalesce(json_extract_string(metadata, {param(pointer)}), '')"
    fallback = "lower(level)" if name == "detected_level" else "''"
    pushed = (
        f"coalesce(json_extract_string(loki_labels, {param(pointer)}),"
        f" json_extract_string(loki_metadata, {param(pointer)}), {fallback})"
    )
    return f"(CASE WHEN loki_labels IS NULL THEN {ours} ELSE {pushed} END)"


def line_sql(op: str, needles: tuple[str, ...], param: Callable[[Any], str]) -> str:
    """LogQL's line filter: the line is the message, or the line a log was pushed to Loki with (loki_line)."""
    if op == "|=":
        return (
            "(" + " OR ".join(f"strpos(coalesce(loki_line, message), {param(n)}) > 0" for n in needles) + ")"
        )
    if op == "!=":
        return (
            "(" + " AND ".join(f"strpos(coalesce(loki_line, message), {param(n)}) = 0" for n in needles) + ")"
        )
    regex = "~" if op == "|~" else "!~"
    joined = " OR " if op == "|~" else " AND "
    return "(" + joined.join(f"coalesce(loki_line, message) {regex} {param(n)}" for n in needles) + ")"


def label_match_sql(expr: str, op: str, value: str, param: Callable[[Any], str]) -> str:
    if op == "=":
        return f"{expr} = {param(value)}"
    if op == "!=":
        return f"{expr} <> {param(value)}"
    return f"{expr} {'~' if op == '=~' else '!~'} {param(f'^(?:{value})$')}"


def postgres(conditions: list[Condition]) -> tuple[list[str], list[Any]]:
    """The conditions as PostgreSQL WHERE clauses (soft-deleted rows left out) and their parameters."""
    where, args = ["NOT deleted"], []

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    for c in conditions:
        if c.kind == "since":
            clause = f"created_at >= {param(c.value)}"
        elif c.kind == "until":
            clause = f"created_at < {param(c.value)}"
        elif c.kind == "any":
            clause = f"{c.column} = ANY({param(c.value)}::{NEGATABLE[c.column]}[])"
        elif c.kind == "at_least":
            clause = f"level >= {param(c.value)}::log_level"
        elif c.kind == "equals":
            clause = f"{c.column} = {param(c.value)}"
        elif c.kind == "contains":
            escaped = c.value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clause = f"message ILIKE {param(f'%{escaped}%')}"
        elif c.kind == "phrase":
            clause = f"message ~ {param(phrase.postgres(c.value))}"
        elif c.kind == "meta":
            # Containment keeps the GIN-friendly `@>` form at any depth.
            clause = f"metadata @> {param(json.dumps(meta_document(*c.value)))}::jsonb"
        elif c.kind == "before":
            clause = f"(created_at, id) < ({param(c.value[0])}, {param(c.value[1])})"
        elif c.kind == "within":
            ranges = [f"created_at BETWEEN {param(low)} AND {param(high)}" for low, high in c.value]
            clause = f"({' OR '.join(ranges)})" if ranges else "FALSE"
        elif c.kind == "line":
            clause = line_sql(*c.value, param)
        elif c.kind == "label":
            name, op, value = c.value
            clause = label_match_sql(label_sql(name, param), op, value, param)
        else:
            raise ValueError(f"unknown condition {c.kind}")
        # IS NOT TRUE: a log without the field (a NULL trace_id, no metadata) is not excluded.
        where.append(f"({clause}) IS NOT TRUE" if c.negated else clause)
    return where, args


def parse(params: Mapping[str, list[str]], *, export: bool = False) -> Query:
    """GET /logs's query string -> a Query; 422 naming every bad or unknown filter."""
    query = Query(limit=None if export else DEFAULT_LIMIT)
    errors: list[dict[str, str]] = []

    def bad(name: str, message: str) -> None:
        errors.append({"field": f"query.{name}", "message": message, "type": "invalid_filter"})

    for name, values in params.items():
        negated = name.startswith(NOT_PREFIX)
        field_name = name[len(NOT_PREFIX) :] if negated else name
        if field_name.startswith(META_PREFIX) and len(field_name) > len(META_PREFIX):
            try:
                path = meta_path(field_name[len(META_PREFIX) :])
            except ValueError as exc:
                bad(name, str(exc))
                continue
            for value in values:
                query.add("meta", "metadata", (path, _meta_value(value)), negated)
        elif negated and field_name in NEGATABLE:
            if (checked := _checked(field_name, values, partial(bad, name))) is not None:
                query.add("any", field_name, checked, negated=True)
        elif negated or (name not in SINGLE and name not in REPEATABLE):
            bad(name, "unknown filter")
        elif name in SINGLE and len(values) > 1:
            bad(name, "may be given once")
    if errors:
        raise InvalidQuery(errors)

    def one(name: str) -> str | None:
        values = params.get(name)
        return values[0] if values else None

    for name in ("since", "until"):
        if (value := one(name)) is not None:
            try:
                query.add(name, "created_at", moment(value))
            except ValueError as exc:
                bad(name, str(exc))
    for name in REPEATABLE:
        values = params.get(name)
        if values and (checked := _checked(name, values, partial(bad, name))) is not None:
            query.add("any", name, checked)
    if (min_level := one("min_level")) is not None:
        if normalize_level(min_level) not in LEVELS:
            bad("min_level", f"unknown level {min_level!r}: use {', '.join(LEVELS)}")
        else:
            query.add("at_least", "level", normalize_level(min_level))
    for name in ("trace_id", "user_id", "session_id"):
        if (value := one(name)) is not None and _checked(name, [value], partial(bad, name)) is not None:
            query.add("equals", name, value)
    if (text := one("q")) is not None:
        if (words := phrase.parse(text)) is None:
            query.add("contains", "message", text)
        elif words:
            query.add("phrase", "message", words)
        else:
            bad("q", "a quoted phrase needs a word (letters, digits or _) between its quotes")
    if (limit := one("limit")) is not None:
        if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= MAX_LIMIT:
            bad("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
        else:
            query.limit = int(limit)
    if (cursor := one("cursor")) is not None:
        try:
            created_at, last_id = decode_cursor(cursor)
        except ValueError:
            bad("cursor", "not a cursor this server made: pass next_cursor from the previous page")
        else:
            query.add("before", "created_at", (created_at, last_id))
    if errors:
        raise InvalidQuery(errors)
    return query


def _checked(name: str, values: list[str], bad: Callable[[str], None]) -> list[str] | None:
    """The values of a `NEGATABLE` field as stored (levels upper-case, environments lower-case), or None
    after reporting the ones it cannot hold."""
    if name == "level":
        canonical = [normalize_level(level) for level in values]
        if unknown := [level for level, c in zip(values, canonical, strict=True) if c not in LEVELS]:
            bad(f"unknown level(s) {unknown}: use {', '.join(LEVELS)}")
            return None
        return canonical
    if name == "environment":
        lowered = [value.strip().lower() for value in values]
        if unknown := [value for value in lowered if value not in ENVIRONMENTS]:
            bad(f"unknown environment(s) {unknown}: use {', '.join(ENVIRONMENTS)}")
            return None
        return lowered
    if (longest := LONGEST.get(name)) is not None and any(len(value) > longest for value in values):
        bad(f"at most {longest} characters, as stored")
        return None
    return values


def meta_path(key: str) -> list[str]:
    """`meta.`'s key as a path into nested metadata: `http.status` -> ["http", "status"]. A key that
    itself holds a dot writes it as `\\.` (`a\\.b` is the one key "a.b"), a backslash as `\\\\`."""
    path: list[str] = []
    part: list[str] = []
    chars = iter(key.replace("\x00", "\ufffd"))
    for char in chars:
        if char == "\\":
            part.append(next(chars, "\\"))
        elif char == ".":
            path.append("".join(part))
            part = []
        else:
            part.append(char)
    path.append("".join(part))
    if "" in path:
        raise ValueError("a metadata path has no empty keys: write meta.a.b (a dot in a key as \\.)")
    return path


def meta_document(path: list[str], value: Any) -> dict[str, Any]:
    """The JSON object a log's metadata contains when it has `value` at `path`: {"http": {"status": 500}}."""
    document: Any = value
    for key in reversed(path):
        document = {key: document}
    return document


def moment(value: str) -> datetime:
    """A time as GET /logs's since/until take it: RFC 3339 with an offset, or Unix time by magnitude."""
    match = UNIX_TIME.fullmatch(value)
    if match is None:
        try:
            float(value)
        except ValueError:
            return parse_created_at(value)  # RFC 3339, or the error naming both forms
        raise ValueError(
            "a Unix time is decimal digits with an optional fraction (no sign, exponent or spaces), "
            "below 1e20: seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude"
        )
    # The whole part exactly, as in a JSON body: 99999999999999999999 is a time (below 1e20), its float is
    # not. The unit is read from it alone, so a fraction never rounds a time into the next unit's range
    # (float("99999999999.99999999") is 1e11: milliseconds).
    whole, fraction = int(match[1]), match[2]
    start = parse_created_at(whole)
    if not fraction:
        return start
    per_second = next(per_second for bound, per_second in EPOCH_UNITS if whole < bound)
    return start + timedelta(seconds=float("0." + fraction) / per_second)


def _meta_value(value: str) -> Any:
    """`meta.status=500` matches the number 500 and `meta.ok=true` the boolean; anything else is a string."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    if isinstance(parsed, bool) or (isinstance(parsed, (int, float)) and math.isfinite(parsed)):
        return parsed
    return value


def encode_cursor(created_at: datetime, last_id: int) -> str:
    raw = json.dumps([created_at.isoformat(), last_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        created_at, last_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = datetime.fromisoformat(created_at)
        # The id is a bigint: a larger one would be refused by the driver, not by this check.
        if moment.tzinfo is None or type(last_id) is not int or not -(2**63) <= last_id < 2**63:
            raise ValueError("bad cursor")
        return in_range(moment), last_id
    except (binascii.Error, TypeError, ValueError) as exc:
        raise ValueError("bad cursor") from exc
