"""LogQL over archived days (app/logql/store.py): every query answers the same before and after its days
move to Parquet, as tests/storage/test_cold.py checks for GET /logs; and Grafana's one-day splits add up
to the whole range."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.main import create_app
from app.query import Condition, Query
from app.search import lookup
from app.storage import archive
from tests.search import test_lookup as lookup_cases
from tests.storage.test_archive import DAYS, KEPT, archive_pass, drop_days, make_store
from tests.support import DB, make_settings, run

DAY_NS = 86400 * 10**9
START = (
    int(archive.datetime(DAYS[0].year, DAYS[0].month, DAYS[0].day, tzinfo=archive.UTC).timestamp()) * 10**9
)
END = START + (KEPT - DAYS[0]).days * DAY_NS + DAY_NS
LOG_QUERIES = [
    '{service_name="search"}',
    '{service_name=~"auth|billing", level="error"} |= "Ünïcode" != "50%_off"',
    '{environment="staging"} |~ "message 1[0-9]+ " | trace_id=~"trace.*" | region="eu-1"',
    '{service_name="auth"} | path="/api/3" | method!="POST"',
    '{level=~"warn|error"} | duration_ms > 300 | status="400"',
    '{service_name="search"} | logfmt | line_format "{{.service_name}} {{ .level | ToUpper }}"',
]
METRIC_QUERIES = [
    'sum by (level, detected_level) (count_over_time({service_name=~".+"} | drop __error__[1h]))',
    'sum by (service_name) (rate({service_name=~".+"} |= "Ünïcode"[6h]))',
    'sum(bytes_over_time({environment="production"}[1d]))',
    'max by (service_name) (max_over_time({service_name=~".+"} | unwrap duration_ms [3h]))',
    'avg_over_time({service_name="auth"} | unwrap duration_ms [12h]) by (method)',
    'quantile_over_time(0.99, {service_name="auth", level="info"} | unwrap duration_ms [1d]) by (service_name)',
    'sum by (region) (count_over_time({service_name="billing"} | region=~"eu-.*" [4h]))',
    'topk(2, sum by (path) (count_over_time({service_name="search"} | path=~"/api/[0-4]" [2h])))',
]


@pytest.fixture
def fresh(db: DB, tmp_path: Path) -> Iterator[archive.Store]:
    yield make_store(db, tmp_path)
    drop_days(db)


@pytest.fixture
def reads(db: DB, database_url: str, fresh: archive.Store) -> Iterator[TestClient]:
    settings = make_settings(database_url, archive_url=fresh.root)
    with TestClient(create_app(settings)) as client:
        yield client


def ask(client: TestClient, **params: Any) -> Any:
    response = client.get("/loki/api/v1/query_range", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]["result"]


def answers(client: TestClient) -> dict[str, Any]:
    got: dict[str, Any] = {}
    for query in LOG_QUERIES:
        for direction in ("backward", "forward"):
            got[f"{query} {direction}"] = ask(
                client, query=query, start=START, end=END, limit=300, direction=direction
            )
    for query in METRIC_QUERIES:
        got[query] = ask(client, query=query, start=START, end=END, step="1h")
    span = {"start": START, "end": END}
    for path, extra in [
        ("labels", {}),
        ("label/service_name/values", {}),
        ("label/level/values", {"query": '{service_name="auth"}'}),
        ("label/region/values", {}),
        ("series", {"match[]": '{service_name=~"auth|search"}'}),
        ("index/stats", {"query": '{environment="staging"}'}),
        ("detected_labels", {}),
        ("index/volume", {"query": '{service_name=~".+"}'}),
    ]:
        response = client.get(f"/loki/api/v1/{path}", params={**span, **extra})
        assert response.status_code == 200, response.text
        got[path] = response.json()
    return got


def test_queries_answer_the_same_before_and_after_the_days_are_archived(
    reads: TestClient, db: DB, fresh: archive.Store
) -> None:
    before = answers(reads)
    assert all(before.values()), [k for k, v in before.items() if not v]
    moved = archive_pass(db, fresh)
    assert [m["day"] for m in moved] == [str(d) for d in DAYS]
    after = answers(reads)
    for key in before:
        assert after[key] == before[key], key


def test_one_day_splits_add_up_to_the_whole(reads: TestClient) -> None:
    """Grafana splits a range into one-day queries (newest first); with whole-day steps, the pieces' points
    are the whole's."""
    query = 'sum by (level) (count_over_time({service_name=~".+"}[1h]))'
    whole = ask(reads, query=query, start=START, end=END, step="1h")
    pieces: dict[str, list[Any]] = {}
    for day_start in range(END - DAY_NS, START - 1, -DAY_NS):
        # Each piece starts one step after the previous one ended, as Grafana's splits do.
        first = day_start if day_start == START else day_start + 3600 * 10**9
        for series in ask(reads, query=query, start=first, end=day_start + DAY_NS, step="1h"):
            pieces.setdefault(series["metric"]["level"], []).extend(series["values"])
    assert {s["metric"]["level"]: s["values"] for s in whole} == {k: sorted(v) for k, v in pieces.items()}


# --- `|=` through the search index (app/search/): the same streams and counts with the index and without ----


@pytest.fixture
def searched(db: DB, database_url: str) -> Iterator[tuple[TestClient, TestClient]]:
    with (
        TestClient(create_app(make_settings(database_url))) as on,
        TestClient(create_app(make_settings(database_url, search_index=False))) as off,
    ):
        yield on, off


def _line_queries(needle: str) -> list[str]:
    quoted = json.dumps(needle, ensure_ascii=False)
    return [
        f'{{service_name=~".+"}} |= {quoted}',
        f'{{service_name="api"}} |= {quoted} != "zz"',
        f'sum by (level) (count_over_time({{service_name=~".+"}} |= {quoted} [1h]))',
    ]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corpus=st.lists(lookup_cases.entry, min_size=1, max_size=25), data=st.data())
def test_line_filters_answer_the_same_with_and_without_the_index(
    db: DB, searched: tuple[TestClient, TestClient], corpus: list[dict[str, Any]], data: Any
) -> None:
    on, off = searched
    db.fetch("TRUNCATE logs, log_counts, search_blocks, search_days, search_dirty")
    assert on.post("/logs", content=lookup_cases._body(corpus)).status_code == 200
    text = data.draw(st.sampled_from(corpus))["message"]
    start = data.draw(st.integers(0, len(text) - 1))
    end = data.draw(st.integers(start + 1, len(text)))
    window = {"start": str(time.time_ns() - 3 * DAY_NS), "end": str(time.time_ns() + 10**9), "limit": "1000"}
    for needle in (text, text[start:end], data.draw(lookup_cases.message)):
        for query in _line_queries(needle):
            params = {**window, "query": query, **({"step": "600"} if query.startswith("sum") else {})}
            assert ask(on, **params) == ask(off, **params), query


def test_a_line_needle_is_looked_up_in_the_index(db: DB, searched: tuple[TestClient, TestClient]) -> None:
    on, _ = searched
    db.fetch("TRUNCATE logs, log_counts, search_blocks, search_days, search_dirty")
    logs = [{"level": "INFO", "service": "api", "message": f"request req-{n:012x} done"} for n in range(50)]
    assert on.post("/logs", content=json.dumps({"logs": logs})).status_code == 200
    query = Query([Condition("line", "message", ("|=", ("req-00000000002a done",)))], limit=None)
    narrowed = run(_narrow(db, query))
    assert narrowed is not None and narrowed.conditions[-1].kind == "within"
    found = ask(
        on, query='{service_name="api"} |= "req-00000000002a done"', start=str(time.time_ns() - DAY_NS)
    )
    assert [v[1] for s in found for v in s["values"]] == ["request req-00000000002a done"]


async def _narrow(db: DB, query: Query) -> Query | None:
    conn = await asyncpg.connect(db.url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await lookup.narrow(conn, query)
    finally:
        await conn.close()


def test_a_needle_only_in_a_pushed_line_is_found(db: DB, searched: tuple[TestClient, TestClient]) -> None:
    """A Loki push keeps its JSON line (loki_line) beside the message taken from it, and `|=` reads the line,
    which the index does not hold: with a pushed log in the range the lookup is skipped, not trusted."""
    on, off = searched
    db.fetch("TRUNCATE logs, log_counts, log_minutes, search_blocks, search_days, search_dirty")
    line = '{"msg": "charge done", "order": "ord-55443322"}'
    push = {"streams": [{"stream": {"job": "shop"}, "values": [[str(time.time_ns()), line]]}]}
    assert on.post("/loki/api/v1/push", json=push).status_code == 204
    assert db.fetch("SELECT message FROM logs")[0]["message"] == "charge done"
    # The index alone would propose no block: the word `msg` is in no message or metadata, only in the line.
    needle = '"msg": "'
    narrowed = run(_narrow(db, Query([Condition("line", "message", ("|=", (needle,)))], limit=None)))
    assert narrowed is not None and narrowed.conditions[-1].value == []
    window = {"start": str(time.time_ns() - DAY_NS), "query": '{job="shop"} |= ' + json.dumps(needle)}
    found = ask(on, **window)
    assert [v[1] for s in found for v in s["values"]] == [line]
    assert found == ask(off, **window)
