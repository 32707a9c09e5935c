"""GET /logs/facets: the most frequent values of service, level, environment and metadata paths among the
logs GET /logs would answer for the same filters and time range, with their counts (the web view's facets).

Two sources, each bounded whatever the table's size:
  * service and level, when every filter is on service or level, are exact and read from the /stats summary
    (`log_counts`, per hour): the whole hours of the range from it, the partial hours at its edges (at most
    two hours of rows) from `logs`, in one snapshot.
  * everything else is counted over a sample: the newest SAMPLE matching logs, which the primary key gives
    as an ordered index scan. `sampled` says how many logs that was; each facet says whether it is exact.
Every statement runs under QUERY_TIMEOUT (a 422 that says to narrow the range, as GET /logs).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request

from app import query
from app.config import Settings
from app.database import Database
from app.errors import InvalidQuery
from app.intake.writer import database_errors
from app.models import Facet, Facets, FacetValue
from app.routes.errors import responses
from app.routes.query import filters, narrow_on_timeout, parameters
from app.search import lookup

SAMPLE = 5_000
TOP_VALUES = 10
TOP_KEYS = 8
META_VALUES = 5
META_DEPTH = 4
MAX_VALUE = 200  # longer strings (a payload, a stack) are counted as a path, not as a value to filter by
DEFAULT_RANGE = timedelta(hours=24)
# Filters that log_counts can answer exactly: it has service and level, per hour.
SUMMARY_FILTERS = frozenset({"since", "until", "service", "level", "min_level", "not.service", "not.level"})
HOUR = timedelta(hours=1)


def router(settings: Settings, database: Database) -> APIRouter:
    api = APIRouter()

    @api.get(
        "/logs/facets",
        response_model=Facets,
        responses=responses(401, 403, 422, 503),
        summary="The most frequent values among the matching logs",
        openapi_extra={"parameters": _parameters()},
    )
    async def get_facets(request: Request) -> Facets:
        """GET /logs's filters (without `limit` and `cursor`); the range defaults to the 24 hours before
        `until` (default: now). service and level are exact over the range when every filter is on service
        or level (read from the /stats summary); the other facets, and all of them otherwise, count the
        newest 5,000 matching logs. Metadata paths are written as GET /logs's `meta.` filter takes them."""
        params = filters(request)
        if unknown := [name for name in ("limit", "cursor") if name in params]:
            raise InvalidQuery(
                [
                    {"field": f"query.{name}", "message": "not a facet filter", "type": "invalid_filter"}
                    for name in unknown
                ]
            )
        since, until = _range(params)
        params = {**params, "since": [since.isoformat()], "until": [until.isoformat()]}
        parsed = query.parse(params, export=True)
        exact = set(params) <= SUMMARY_FILTERS
        with database_errors(), narrow_on_timeout(settings.query_timeout):
            async with database.snapshot(settings.query_timeout) as conn:
                # The search index's candidates in the same snapshot, when it has some (app/search/lookup.py).
                sampled = (await lookup.narrow(conn, parsed) if settings.search_index else None) or parsed
                sample = await conn.fetch(
                    f"SELECT service, level::text AS level, environment::text AS environment,"
                    f" metadata::text AS metadata FROM logs WHERE {' AND '.join(sampled.where)}"
                    f" ORDER BY created_at DESC, id DESC LIMIT {SAMPLE}",
                    *sampled.args,
                )
                summed = await _summed(conn, params, parsed, since, until) if exact else None
        # Counting parses every sampled log's metadata: on a thread, so that the worker's other requests
        # are not held up behind it.
        counted = await asyncio.to_thread(_facets, sample, summed)
        return Facets(since=since.isoformat(), until=until.isoformat(), sampled=len(sample), facets=counted)

    return api


def _range(params: dict[str, list[str]]) -> tuple[datetime, datetime]:
    """since/until as asked, or the DEFAULT_RANGE before until (now by default), within datetime's range."""
    parsed: dict[str, datetime] = {}
    errors = []
    for name in ("since", "until"):
        values = params.get(name, [])
        try:
            if len(values) > 1:
                raise ValueError("may be given once")
            if values:
                parsed[name] = _utc(query.moment(values[0]))
        except ValueError as exc:
            errors.append({"field": f"query.{name}", "message": str(exc), "type": "invalid_filter"})
    if errors:
        raise InvalidQuery(errors)
    until = parsed.get("until") or datetime.now(UTC)
    if "since" in parsed:
        return parsed["since"], until
    try:
        return until - DEFAULT_RANGE, until
    except OverflowError:  # until within a day of the year 1
        return datetime.min.replace(tzinfo=UTC), until


def _utc(moment: datetime) -> datetime:
    # In UTC, whose whole hours log_counts counts; an offset that leaves datetime's range is clamped to its
    # end (no log is stored there: created_at stays within days of the time received).
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=UTC)


async def _summed(
    conn: Any, params: dict[str, list[str]], parsed: query.Query, since: datetime, until: datetime
) -> Counter[tuple[str, str]]:
    """(service, level) -> logs in [since, until): whole hours from log_counts, the edges from logs."""
    first = _hour(since, up=True)
    last = _hour(until, up=False)
    rows_sql = (
        f"SELECT service, level::text AS level, count(*) AS n FROM logs WHERE {' AND '.join(parsed.where)}"
        " AND created_at >= ${} AND created_at < ${} GROUP BY 1, 2"
    )
    n = len(parsed.args)
    edges = (
        [(since, until)]
        if first is None or last is None or first >= last
        else [(since, first), (last, until)]
    )
    counted: Counter[tuple[str, str]] = Counter()
    for start, end in edges:
        if start < end:
            for r in await conn.fetch(rows_sql.format(n + 1, n + 2), *parsed.args, start, end):
                counted[r["service"], r["level"]] += r["n"]
    if first is not None and last is not None and first < last:
        # The same service/level clauses as on logs: log_counts has both columns, under the same names.
        summary = query.parse({k: v for k, v in params.items() if k not in ("since", "until")})
        where = [clause for clause in summary.where if clause != "NOT deleted"]
        n = len(summary.args)
        for r in await conn.fetch(
            f"SELECT service, level::text AS level, sum(n) AS n FROM log_counts WHERE hour >= ${n + 1}"
            f" AND hour < ${n + 2} {''.join(' AND ' + c for c in where)} GROUP BY 1, 2",
            *summary.args,
            first,
            last,
        ):
            counted[r["service"], r["level"]] += int(r["n"])
    return counted


def _hour(moment: datetime, *, up: bool) -> datetime | None:
    """The whole hour at or after (up) or at or before `moment`; None past datetime's range."""
    floor = moment.replace(minute=0, second=0, microsecond=0)
    if not up or floor == moment:
        return floor
    try:
        return floor + HOUR
    except OverflowError:
        return None


def _facets(sample: list[Any], summed: Counter[tuple[str, str]] | None) -> list[Facet]:
    counters: dict[str, Counter[str]] = {name: Counter() for name in ("service", "level", "environment")}
    present: Counter[str] = Counter()
    meta: dict[str, Counter[str]] = {}
    for row in sample:
        for name, counter in counters.items():
            counter[row[name]] += 1
        if row["metadata"]:
            document = orjson.loads(row["metadata"])
            if isinstance(document, dict):
                for path, value in _paths(document, "", 0):
                    present[path] += 1
                    if value is not None:
                        meta.setdefault(path, Counter())[value] += 1
    facets = []
    for name, counter in counters.items():
        exact = summed is not None and name != "environment"
        if exact:
            assert summed is not None
            counter = Counter()
            for (service, level), n in summed.items():
                counter[service if name == "service" else level] += n
        facets.append(_facet(name, exact, +counter, TOP_VALUES))
    for path, seen in present.most_common(TOP_KEYS):
        facet = _facet(query.META_PREFIX + path, False, meta.get(path, Counter()), META_VALUES)
        facets.append(facet.model_copy(update={"count": seen}))
    return facets


def _facet(field: str, exact: bool, counter: Counter[str], top: int) -> Facet:
    values = sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:top]
    return Facet(
        field=field,
        exact=exact,
        count=sum(counter.values()),
        values=[FacetValue(value=value, count=n) for value, n in values],
    )


def _paths(document: dict[str, Any], prefix: str, depth: int) -> list[tuple[str, str | None]]:
    """Each leaf of nested metadata as (`meta.` path, value as the filter takes it, or None when it is a
    list, null or a long string, which are not offered as filters)."""
    found: list[tuple[str, str | None]] = []
    for key, value in document.items():
        path = prefix + key.replace("\\", "\\\\").replace(".", "\\.")
        if isinstance(value, dict) and depth < META_DEPTH:
            found += _paths(value, path + ".", depth + 1)
        elif isinstance(value, str):
            found.append((path, value if len(value) <= MAX_VALUE and _filters_as_text(value) else None))
        elif isinstance(value, (bool, int, float)):
            found.append((path, orjson.dumps(value).decode()))
        else:
            found.append((path, None))
    return found


def _filters_as_text(value: str) -> bool:
    """Whether `meta.<path>=value` matches this string: the filter reads "500" and "true" as a number and
    a boolean, so such strings are counted as a path, not offered as a value."""
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return True
    return not isinstance(parsed, (bool, int, float))


def _parameters() -> list[dict[str, Any]]:
    moment_defaults = {"since": "Default: 24 hours before until.", "until": "Default: now."}
    documented = []
    for param in parameters():
        if param["name"] in ("limit", "cursor"):
            continue
        if param["name"] in moment_defaults:
            param = {**param, "description": param["description"] + " " + moment_defaults[param["name"]]}
        documented.append(param)
    return documented
