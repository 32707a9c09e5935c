"""Loki's query API under /loki/api/v1/ (GET, and POST with a form body), so that Grafana's built-in Loki
data source reads our logs unchanged: LogQL (app/logql/) over PostgreSQL, label discovery, stats.

Every query runs in one read-only snapshot limited to QUERY_TIMEOUT (over it: a 422 saying to narrow it). A
bad query is a 400 with Loki's message; never a 5xx.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
import orjson
from fastapi import APIRouter, Request, Response

from app import __version__
from app.config import Settings
from app.database import Database
from app.errors import ArchiveUnreadable
from app.intake.writer import database_errors
from app.logql import answer, ast, params
from app.logql.engine import Engine
from app.logql.errors import QueryError
from app.logql.labels import STREAM, sanitize
from app.logql.parser import parse
from app.logql.pipeline import count_bytes, logfmt_pairs, number, seconds
from app.logql.plan import plan
from app.logql.store import PostgresSource, moment
from app.query import Condition, duckdb_label, label_sql, postgres
from app.routes.errors import responses
from app.routes.query import narrow_on_timeout
from app.storage import archive, cold

PREFIX = "/loki/api/v1"
Endpoint = Callable[..., Awaitable[Response]]
# The newest lines detected_fields looks at unless told (Grafana's default).
DETECTED_LINES = 1000
# The Loki version Grafana reads from status/buildinfo: 3.x turns on structured metadata, categorize-labels,
# detected fields and labels, and the volume endpoints.
LOKI_VERSION = "3.4.2"
_READ = responses(400, 401, 403, 422, 503)
_TIME = {"type": "string", "description": "Unix ns, Unix seconds (<= 10 digits or with a `.`), or RFC 3339."}


def _param(name: str, description: str, schema: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "schema": schema or {"type": "string"},
        "description": description,
        **more,
    }


# The query parameters the operations read themselves (from the query string, or a POST's form body).
_QUERY = _param("query", "A LogQL query.", required=True)
_LOG_QUERY = _param("query", "A log query (default: every log).")
_SELECTOR = _param("query", 'A stream selector narrowing the logs, like {service_name="api"}.')
_START = _param("start", "From (default: end - 1 h; for label calls end - 6 h).", _TIME)
_END = _param("end", "To (default: now).", _TIME)
# Empty is the default, as in Loki.
_COUNT = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "maxLength": 0}]}
_LIMIT = _param("limit", "Entries at most (default 100, at most 5000).", _COUNT)
_DIRECTION = _param(
    "direction", "Newest first (the default) or oldest first.", {"enum": ["backward", "forward"]}
)
_STEP = _param("step", "Seconds or a duration (`15s`) between points (default: range / 250, at least 1 s).")
_MATCH = _param("match[]", "Stream selectors.", {"type": "array", "items": {"type": "string"}}, style="form",
                explode=True)  # fmt: skip
_TARGETS = _param("targetLabels", "Comma-separated labels to group by (default: the selector's).")
_LINE_LIMIT = _param("line_limit", "Newest lines to look at (default 1000).", _COUNT)


async def _params(request: Request) -> dict[str, str]:
    """The query string, and for a POST its form body (Loki takes either), later names winning."""
    found = dict(request.query_params)
    if request.method == "POST":
        body = (await request.body()).decode("utf-8", "replace")
        found.update(parse_qsl(body, keep_blank_values=True))
    return {k: v.replace("\x00", "\ufffd") for k, v in found.items()}


def _json(document: Any) -> Response:
    return Response(orjson.dumps(document), media_type="application/json")


def _required_query(values: dict[str, str]) -> str:
    text = values.get("query")
    if not text:
        raise QueryError("query parameter is required: a LogQL query")
    return text


def router(settings: Settings, database: Database) -> APIRouter:
    api = APIRouter()

    def read(path: str, summary: str, *params: dict[str, Any]) -> Callable[[Endpoint], Endpoint]:
        """A read as Loki serves it: GET, and POST with the same parameters in a form body."""

        def add(endpoint: Endpoint) -> Endpoint:
            for method in ("GET", "POST"):
                api.add_api_route(
                    path, endpoint, methods=[method], responses=_READ, summary=summary,
                    operation_id=f"loki_{endpoint.__name__}_{method.lower()}",
                    openapi_extra={"parameters": list(params)},
                )  # fmt: skip
            return endpoint

        return add

    @contextlib.asynccontextmanager
    async def snapshot() -> AsyncIterator[asyncpg.Connection]:
        with database_errors(), narrow_on_timeout(settings.query_timeout), _bad_regex():
            async with database.snapshot(settings.query_timeout) as conn:
                yield conn

    # Days moved to Parquet (app/storage/archive.py) are read there (app/logql/store.py).
    reader = cold.Cold(settings.archive_url) if settings.archive_url and archive.available() else None

    def engine(conn: asyncpg.Connection) -> Engine:
        source = PostgresSource(
            conn, archived=bool(settings.archive_url), reader=reader, search=settings.search_index
        )
        return Engine(source, settings.logql_max_rows, settings.logql_max_series)

    async def run(expr: ast.Expr, window: params.Range, instant: bool, categorize: bool) -> dict[str, Any]:
        if isinstance(expr, ast.LogQuery):
            end = window.end if not instant else window.end + 1
            start = window.start if not instant else window.end - params.HOUR_NS
            async with snapshot() as conn:
                found = await engine(conn).logs(expr, start, end, window.limit, window.forward)
            return answer.streams(found, categorize)
        steps = window.steps()
        if isinstance(expr, (ast.Literal,)) or _needs_no_rows(expr):
            result = await Engine(_NoRows(), 0, settings.logql_max_series).evaluate(expr, steps)
        else:
            async with snapshot() as conn:
                result = await engine(conn).evaluate(expr, steps)
        if isinstance(result, float):
            return (
                answer.scalar(result, window.end)
                if instant
                else answer.matrix({(): dict.fromkeys(steps, result)})
            )
        if instant:
            order = (
                expr.op if isinstance(expr, ast.VectorAggregation) and expr.op.startswith("sort") else None
            )
            return answer.vector(result, window.end, order)
        return answer.matrix(result)

    @read(
        f"{PREFIX}/query_range", "LogQL over a range (Loki)", _QUERY, _START, _END, _LIMIT, _DIRECTION, _STEP
    )
    async def query_range(request: Request) -> Response:
        """Loki's range query: logs (`streams`) or a metric (`matrix`) from start to end."""
        values = await _params(request)
        expr = parse(_required_query(values))
        window = params.range_query(values)
        categorize = answer.CATEGORIZE in request.headers.get("x-loki-response-encoding-flags", "")
        return _json(await run(expr, window, False, categorize))

    @read(
        f"{PREFIX}/query",
        "LogQL at one time (Loki)",
        _QUERY,
        _param("time", "When (default: now).", _TIME),
        _LIMIT,
        _DIRECTION,
    )
    async def query(request: Request) -> Response:
        """Loki's instant query: a metric as a `vector` (or `scalar`) at `time`; a log query reads the hour
        before it."""
        values = await _params(request)
        expr = parse(_required_query(values))
        window = params.instant_query(values)
        categorize = answer.CATEGORIZE in request.headers.get("x-loki-response-encoding-flags", "")
        return _json(await run(expr, window, True, categorize))

    def _bounds(values: dict[str, str]) -> tuple[int, int]:
        end = params.timestamp(values.get("end"), params.now_ns(), "end")
        start = params.timestamp(values.get("start"), end - 6 * params.HOUR_NS, "start")
        if end < start:
            raise QueryError("end timestamp must not be before start time")
        return start, end

    def _conditions(selector: str | None, start: int, end: int) -> list[Condition]:
        conditions = []
        if selector:
            expr = parse(selector)
            if not isinstance(expr, ast.LogQuery):
                raise QueryError('query must be a stream selector, like {service_name="api"}')
            conditions = list(plan(expr).conditions)
        return [
            *conditions,
            Condition("since", "created_at", moment(-(-start // 1000))),
            Condition("until", "created_at", moment(end // 1000 + 1)),
        ]

    async def both(
        conn: asyncpg.Connection,
        conditions: list[Condition],
        hot: Callable[[str, Callable[[Any], str]], str],
        archived: Callable[[str, Callable[[Any], str]], str],
    ) -> list[tuple[Any, ...]]:
        """One read over PostgreSQL and the archived days of the conditions' range (decided in the same
        snapshot): `hot`/`archived` make each dialect's SQL from its WHERE clause and a parameter maker (the
        archived one may use parameters only before its WHERE)."""
        where, args = postgres(conditions)

        def param(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        found = [tuple(r) for r in await conn.fetch(hot(" AND ".join(where), param), *args)]
        if not settings.archive_url:
            return found
        since = max(c.value for c in conditions if c.kind == "since")
        until = min(c.value for c in conditions if c.kind == "until")
        parts = await cold.Parts.find(conn, since, until)
        if parts.paths:
            if reader is None:
                raise ArchiveUnreadable(cold.UNAVAILABLE)
            head: list[Any] = []

            def qmark(value: Any) -> str:
                head.append(value)
                return "?"

            where_cold, args_cold = cold.duckdb_where(conditions)
            found += await reader.fetch(parts.paths, archived(where_cold, qmark), [*head, *args_cold])
        return found

    async def streams(
        values: dict[str, str], selector: str | None
    ) -> dict[tuple[tuple[str, str], ...], tuple[int, int]]:
        """The streams (label sets, as sorted pairs) a selector picks in the range -> (entries, bytes): a log's
        service_name, level and environment, or the labels it was pushed to Loki with."""
        start, end = _bounds(values)
        async with snapshot() as conn:
            rows = await both(
                conn,
                _conditions(selector, start, end),
                lambda where, _: (
                    "SELECT service, lower(level::text), environment::text, loki_labels::text, count(*),"
                    f" sum(octet_length(coalesce(loki_line, message))) FROM logs WHERE {where} GROUP BY 1, 2, 3, 4"
                ),
                lambda where, _: (
                    "SELECT service, lower(level), environment, loki_labels, count(*),"
                    f" sum(strlen(coalesce(loki_line, message))) FROM archived WHERE {where} GROUP BY 1, 2, 3, 4"
                ),
            )
        found: dict[tuple[tuple[str, str], ...], tuple[int, int]] = {}
        for service, level, environment, pushed, n, size in rows:
            labels = (
                orjson.loads(pushed)
                if pushed is not None
                else dict(zip(STREAM, (service, level, environment)))
            )
            key = tuple(sorted(labels.items()))
            before = found.get(key, (0, 0))
            found[key] = (before[0] + n, before[1] + int(size or 0))
        return found

    @read(f"{PREFIX}/labels", "Label names (Loki)", _SELECTOR, _START, _END)
    async def labels(request: Request) -> Response:
        """The stream labels of the logs in [start, end] (default: the last 6 hours): service_name, level and
        environment, and the labels of logs pushed to Loki's push API."""
        values = await _params(request)
        start, end = _bounds(values)
        limit = settings.logql_max_series
        async with snapshot() as conn:
            rows = await both(
                conn,
                _conditions(values.get("query"), start, end),
                # '': some log in the range was not pushed to Loki (it has service_name, level, environment).
                lambda where, _: (
                    f"(SELECT '' FROM logs WHERE {where} AND loki_labels IS NULL LIMIT 1) UNION ALL"
                    f" (SELECT DISTINCT jsonb_object_keys(loki_labels) FROM logs WHERE {where}"
                    f" AND loki_labels IS NOT NULL LIMIT {limit})"
                ),
                lambda where, _: (
                    "SELECT DISTINCT unnest(coalesce(json_keys(loki_labels), [''])) FROM archived"
                    f" WHERE {where} LIMIT {limit + 1}"
                ),
            )
        names = {name for (name,) in rows if name}
        if any(not name for (name,) in rows):
            names.update(STREAM)
        return _json({"status": "success", "data": sorted(names)})

    @read(PREFIX + "/label/{name}/values", "A label's values (Loki)", _SELECTOR, _START, _END)
    async def label_values(name: str, request: Request) -> Response:
        """The values a label has on logs in [start, end], optionally of those a `query=` selector picks."""
        values = await _params(request)
        start, end = _bounds(values)
        limit = settings.logql_max_series
        async with snapshot() as conn:
            rows = await both(
                conn,
                _conditions(values.get("query"), start, end),
                lambda where, param: (
                    f"SELECT DISTINCT {label_sql(name, param)} FROM logs WHERE {where} LIMIT {limit}"
                ),
                lambda where, qmark: (
                    f"SELECT DISTINCT {duckdb_label(name, qmark)} FROM archived WHERE {where} LIMIT {limit}"
                ),
            )
        return _json({"status": "success", "data": sorted({v for (v,) in rows if v})[:limit]})

    @read(f"{PREFIX}/series", "Streams (Loki)", _MATCH, _START, _END)
    async def series(request: Request) -> Response:
        """The streams (label sets) that `match[]` selectors pick in [start, end]."""
        selectors = [v for k, v in request.query_params.multi_items() if k in ("match[]", "match")]
        if request.method == "POST":
            body = (await request.body()).decode("utf-8", "replace")
            selectors += [v for k, v in parse_qsl(body) if k in ("match[]", "match")]
        values = await _params(request)
        found: set[tuple[str, ...]] = set()
        for selector in selectors or [None]:
            found |= set(await streams(values, selector))
        data = [dict(key) for key in sorted(found)[: settings.logql_max_series]]
        return _json({"status": "success", "data": data})

    @read(f"{PREFIX}/index/stats", "Index stats (Loki)", _SELECTOR, _START, _END)
    async def index_stats(request: Request) -> Response:
        """How many streams, entries and bytes a selector covers in [start, end] (chunks: none, we keep rows)."""
        values = await _params(request)
        found = await streams(values, values.get("query"))
        return _json({
            "streams": len(found), "chunks": 0, "bytes": sum(b for _, b in found.values()),
            "entries": sum(n for n, _ in found.values()),
        })  # fmt: skip

    async def volume(request: Request, ranged: bool) -> dict[str, Any]:
        values = await _params(request)
        selector = _required_query(values)
        expr = parse(selector)
        if not isinstance(expr, ast.LogQuery):
            raise QueryError("query must be a stream selector")
        targets = [t for t in values.get("targetLabels", "").split(",") if t]
        names = targets or [m.name for m in expr.matchers]
        label_list = ", ".join(names)
        if ranged:
            window = params.range_query(values)
            span = window.step
        else:
            start, end = _bounds(values)
            window = params.Range(end, end, 1, 100, False)
            span = max(end - start, 10**6)
        # The selector is spliced as text it parsed from: a query of the same meaning, parsed again.
        expr = parse(f"sum by ({label_list}) (bytes_over_time({selector}[{span // 10**6}ms]))")
        return await run(expr, window, not ranged, False)

    @read(f"{PREFIX}/index/volume", "Log volume (Loki)", _QUERY, _START, _END, _TARGETS)
    async def index_volume(request: Request) -> Response:
        """Bytes of the logs a selector picks in [start, end], by its labels (or `targetLabels`)."""
        return _json(await volume(request, False))

    @read(
        f"{PREFIX}/index/volume_range", "Log volume over time (Loki)", _QUERY, _START, _END, _STEP, _TARGETS
    )
    async def index_volume_range(request: Request) -> Response:
        """index/volume per step, as a matrix."""
        return _json(await volume(request, True))

    async def sample(values: dict[str, str]) -> list[Any]:
        text = values.get("query") or '{service_name=~".+"}'
        expr = parse(text)
        if not isinstance(expr, ast.LogQuery):
            raise QueryError("query must be a log query")
        start, end = _bounds(values)
        limit = params.limit(
            values.get("line_limit") or values.get("limit") or str(DETECTED_LINES), "line_limit"
        )
        async with snapshot() as conn:
            return await engine(conn).logs(expr, start, end + 1, limit, False)

    @read(f"{PREFIX}/detected_fields", "Detected fields (Loki)", _LOG_QUERY, _START, _END, _LINE_LIMIT)
    async def detected_fields(request: Request) -> Response:
        """Fields of the newest logs a query picks: structured metadata and what json/logfmt find in lines."""
        fields = _detected(await sample(await _params(request)))
        listed = [
            {"label": name, "type": _type(seen), "cardinality": len(seen), "parsers": sorted(parsers) or None}
            for name, (seen, parsers) in sorted(fields.items())
        ]
        return _json({"fields": listed, "limit": 1000})

    @read(PREFIX + "/detected_field/{name}/values", "A field's values (Loki)", _LOG_QUERY, _START, _END)
    async def detected_field_values(name: str, request: Request) -> Response:
        """The values of one detected field among the newest logs a query picks."""
        fields = _detected(await sample(await _params(request)))
        seen = fields.get(name, (set(), set()))[0]
        return _json({"values": sorted(seen), "limit": 1000})

    @read(f"{PREFIX}/detected_labels", "Detected labels (Loki)", _SELECTOR, _START, _END)
    async def detected_labels(request: Request) -> Response:
        """The stream labels and how many values each has in [start, end]."""
        values = await _params(request)
        found = await streams(values, values.get("query"))
        seen: dict[str, set[str]] = {}
        for key in found:
            for name, value in key:
                seen.setdefault(name, set()).add(value)
        listed = sorted((name, len(values)) for name, values in seen.items())
        return _json({"detectedLabels": [{"label": name, "cardinality": n} for name, n in listed]})

    @api.get(f"{PREFIX}/status/buildinfo", summary="The Loki version this server speaks")
    async def buildinfo() -> Response:
        """Grafana reads the version to decide which Loki features to use."""
        return _json({
            "version": LOKI_VERSION, "revision": f"log-save-server {__version__}", "branch": "",
            "buildUser": "", "buildDate": "", "goVersion": "",
        })  # fmt: skip

    return api


def _detected(entries: list[Any]) -> dict[str, tuple[set[str], set[str]]]:
    fields: dict[str, tuple[set[str], set[str]]] = {}
    for item in entries:
        for name, value in item.metadata.items():
            fields.setdefault(name, (set(), set()))[0].add(value)
        line = item.line
        pairs: list[tuple[str, str]] = []
        parser = ""
        if line.startswith("{"):
            with contextlib.suppress(orjson.JSONDecodeError):
                document = orjson.loads(line)
                if isinstance(document, dict):
                    parser = "json"
                    pairs = [(k, str(v)) for k, v in document.items() if isinstance(v, (str, int, float))]
        elif "=" in line:
            parser = "logfmt"
            pairs = logfmt_pairs(line) or []
        for key, value in pairs:
            if not (name := sanitize(key)):
                continue
            seen, parsers = fields.setdefault(name, (set(), set()))
            seen.add(value)
            parsers.add(parser)
    return fields


def _type(values: set[str]) -> str:
    if values and all(number(v) is not None and "." not in v for v in values):
        return "int"
    if values and all(number(v) is not None for v in values):
        return "float"
    if values and all(seconds(v) is not None for v in values):
        return "duration"
    if values and all(count_bytes(v) is not None for v in values):
        return "bytes"
    return "string"


def _needs_no_rows(expr: ast.Expr) -> bool:
    if isinstance(expr, (ast.Literal, ast.VectorLiteral)):
        return True
    if isinstance(expr, ast.BinaryOp):
        return _needs_no_rows(expr.left) and _needs_no_rows(expr.right)
    if isinstance(expr, ast.VectorAggregation):
        return _needs_no_rows(expr.expr)
    return False


class _NoRows:
    """The Source of queries that read no logs (Grafana's health check, `vector(1)+vector(1)`)."""

    async def rows(self, *args: Any) -> list[Any]:
        return []

    async def buckets(self, *args: Any) -> list[Any]:
        return []


@contextlib.contextmanager
def _bad_regex() -> Iterator[None]:
    """A regex Python accepts but PostgreSQL's does not (a syntax RE2 and PostgreSQL differ on): a 400."""
    try:
        yield
    except asyncpg.InvalidRegularExpressionError as exc:
        raise QueryError(f"error parsing regexp: {exc}") from None
