"""LogQL's rollup (app/logql/rollup.py, log_minutes): count, rate and bytes queries answered from the minutes
are the same as from the rows, on random data (rows exactly on minute boundaries and on midnight, soft
deletes and undeletes, non-ASCII lines, logs pushed through Loki with labels of their own) over random
aligned and unaligned ranges; the rollup is read when a query's windows fall on minute boundaries and no
pushed log is in the range, and rows otherwise. Archived days: tests/logql/test_store.py."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from fastapi.testclient import TestClient

from app.logql import rollup
from app.query import Condition
from app.storage import partitions, retention
from tests.support import DB, log_entry

S = 10**9
MINUTE = 60 * S
# Yesterday's midnight, UTC: the data set straddles a day's edge (two partitions).
MIDNIGHT = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
BASE_NS = int(MIDNIGHT.timestamp()) * S - 10 * MINUTE
SPAN_NS = 20 * MINUTE
PUSHED_FROM = 16  # the span's minute from which logs are also pushed through Loki
SERVICES = ["api", "web", "db"]
LEVELS = ["DEBUG", "INFO", "WARN", "ERROR"]
ENVIRONMENTS = ["production", "staging", "test"]
WORDS = ["ok", "é", "naïve", "日本", "🙂", "request", "x" * 40]
QUERIES = [
    "sum by (level, detected_level) (count_over_time({service_name=\"api\"} | drop __error__[{r}]))",
    "sum by (service_name) (rate({service_name=~\".+\"}[{r}]))",
    "sum by (environment, level) (bytes_over_time({level=~\"info|error\"}[{r}]))",
    "sum(bytes_rate({service_name=~\"api|db\", environment!~\"test\"}[{r}]))",
    "sum by (service_name) (count_over_time({environment=\"production\"}[{r}] offset {o}))",
]  # fmt: skip


PUSHED_LABELS = [{"job": "x"}, {"job": "x", "level": "warn"}, {"service_name": "api"},
                 {"service_name": "web", "level": "error", "environment": "production"}]  # fmt: skip


def pushed_line(rng: random.Random) -> str:
    """A pushed line: JSON or logfmt, some naming a level and a message of their own."""
    words = " ".join(rng.choices(WORDS, k=rng.randrange(1, 4)))
    return rng.choice(
        [
            json.dumps({"level": rng.choice(["info", "error"]), "msg": words}),
            json.dumps({"message": words, "n": rng.randrange(9)}),
            f'level={rng.choice(["debug", "warn"])} msg="{words}"',
            f"took=3ms {words}",
        ]
    )


def push(client: TestClient, rng: random.Random, at: datetime) -> None:
    """Loki streams of random labels and lines at `at`: the rows' stream labels are the pushed ones."""
    ns = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
    streams = [
        {"stream": labels, "values": [[str(ns), pushed_line(rng)]]} for labels in rng.sample(PUSHED_LABELS, 2)
    ]
    response = client.post("/loki/api/v1/push", json={"streams": streams})
    assert response.status_code == 204, response.text


def instant(rng: random.Random, first: int = 0, last: int = SPAN_NS // MINUTE) -> datetime:
    """A time in the span's minutes [first, last): often exactly on a minute (midnight among them) or a
    microsecond from one."""
    minute = BASE_NS // S + 60 * rng.randrange(first, last)
    us = rng.choice([0, 0, 1, 59_999_999, rng.randrange(60_000_000)])
    return datetime.fromtimestamp(minute, UTC) + timedelta(microseconds=us)


def moment(rng: random.Random) -> str:
    return instant(rng).isoformat().replace("+00:00", "Z")


@pytest.fixture
def data(client: TestClient, db: DB) -> TestClient:
    rng = random.Random(30)
    for _ in range(4):
        logs = [
            log_entry(
                created_at=moment(rng), service=rng.choice(SERVICES), level=rng.choice(LEVELS),
                environment=rng.choice(ENVIRONMENTS), message=" ".join(rng.choices(WORDS, k=rng.randrange(1, 6))),
            )
            for _ in range(150)
        ]  # fmt: skip
        response = client.post("/logs", json={"logs": logs})
        assert response.status_code == 200, response.text
    # Pushed logs in the span's last minutes only: ranges before them may read the rollup, ranges over them not.
    for _ in range(40):
        push(client, rng, instant(rng, PUSHED_FROM))
    db.fetch("UPDATE logs SET deleted = true WHERE id % 7 = 3")
    db.fetch("UPDATE logs SET deleted = false WHERE id % 21 = 3")  # some back again
    return client


def ask(client: TestClient, query: str, start: int, end: int, step: int) -> Any:
    response = client.get(
        "/loki/api/v1/query_range", params={"query": query, "start": start, "end": end, "step": f"{step}ms"}
    )
    assert response.status_code == 200, response.text
    return sorted(response.json()["data"]["result"], key=lambda s: sorted(s["metric"].items()))


def from_rows(query: str) -> str:
    """The same query with a line filter every line passes: never the rollup, the rows' GROUP BY."""
    return query.replace("}[", '} |= ""[').replace("} | drop", '} |= "" | drop')


def test_rollup_and_rows_answer_the_same_on_random_ranges(data: TestClient) -> None:
    rng = random.Random(5)
    aligned = [0, 0]
    for _ in range(80):
        r = (
            rng.choice([1, 2, 5]) * MINUTE
            if rng.random() < 0.7
            else rng.choice([30 * S, 90 * S, MINUTE + 10**6])
        )
        step = rng.choice([1, 2, 3]) * MINUTE if rng.random() < 0.7 else rng.choice([45 * S, 20 * S])
        start = BASE_NS + rng.randrange(-2, 8) * MINUTE
        if rng.random() < 0.3:
            start += rng.choice([1000, 17 * S, -1000])
        end = start + rng.randrange(1, 25) * step
        offset = rng.choice([0, 0, MINUTE, 30 * S])
        query = (
            rng.choice(QUERIES)
            .replace("{r}", f"{r // 10**6}ms")
            .replace(" offset {o}", f" offset {offset // 10**6}ms" if offset else "")
        )
        if r % MINUTE == step % MINUTE == start % MINUTE == offset % MINUTE == 0:
            # Before the pushed logs' first minute the rollup answers; over it, the rows.
            aligned[end - offset < BASE_NS + PUSHED_FROM * MINUTE] += 1
        assert ask(data, query, start, end, step // 10**6) == ask(data, from_rows(query), start, end, step // 10**6), (
            query, start, end, step
        )  # fmt: skip
    assert min(aligned) >= 8, (
        aligned
    )  # the rollup was asked often enough to matter, with and without pushed logs


def test_aligned_windows_read_the_minutes_and_unaligned_ones_the_rows(data: TestClient, db: DB) -> None:
    query = 'sum(count_over_time({service_name="api"}[1m]))'
    start, end = BASE_NS + 5 * MINUTE, BASE_NS + 15 * MINUTE
    aligned, unaligned = ask(data, query, start, end, 60_000), ask(data, query, start + S, end + S, 60_000)
    assert aligned and unaligned
    # Minutes that disagree with the rows show where each answer came from.
    db.fetch("UPDATE log_minutes SET n = n + 1000 WHERE service = 'api'")
    assert ask(data, query, start, end, 60_000) != aligned
    assert ask(data, query, start + S, end + S, 60_000) == unaligned


def test_a_range_holding_a_pushed_log_reads_the_rows(data: TestClient, db: DB) -> None:
    query = 'sum by (level) (count_over_time({service_name=~".+"}[1m]))'
    before = (BASE_NS + 5 * MINUTE, BASE_NS + (PUSHED_FROM - 1) * MINUTE)
    over = (BASE_NS + 10 * MINUTE, BASE_NS + 19 * MINUTE)
    answers = [ask(data, query, *span, 60_000) for span in (before, over)]
    db.fetch("UPDATE log_minutes SET n = n + 1000 WHERE NOT pushed")
    assert ask(data, query, *before, 60_000) != answers[0]  # from the minutes
    assert ask(data, query, *over, 60_000) == answers[1]  # from the rows


@pytest.mark.parametrize(
    ("conditions", "labels", "measure", "unwrap", "bounds", "expected"),
    [
        ([Condition("label", "level", ("level", "=~", "info|warn"))], ["service_name"], "count", None, (0, 0), True),
        ([], [], "bytes", None, (0, 0), True),
        ([], ["region"], "count", None, (0, 0), False),  # metadata is not in the minutes
        ([], None, "count", None, (0, 0), False),  # every label: metadata too
        ([Condition("line", "message", ("|=", ("x",)))], [], "count", None, (0, 0), False),
        ([Condition("label", "region", ("region", "=", "eu"))], [], "count", None, (0, 0), False),
        ([], ["level"], "values", "duration_ms", (0, 0), False),
        ([], ["level"], 0.5, None, (0, 0), False),
        ([], ["level"], "count", None, (1, 0), False),  # a range starting a microsecond after a minute
        ([], ["level"], "count", None, (0, 1000), False),  # buckets a microsecond off minutes
    ],
)  # fmt: skip
def test_the_rollup_answers_only_what_it_can_answer_exactly(
    conditions: list[Condition],
    labels: list[str] | None,
    measure: Any,
    unwrap: Any,
    bounds: Any,
    expected: bool,
) -> None:
    since_us, origin_ns = 60_000_000 * 1000 + 1 + bounds[0], 60 * S * 1010 + bounds[1]
    assert (
        rollup.answers(
            conditions, since_us, since_us + 60_000_000 * 20, origin_ns, MINUTE, labels, unwrap, measure
        )
        is expected
    )


MINUTES = """
SELECT minute, service, level::text, environment::text, pushed, sum(n)::bigint AS n, sum(bytes)::bigint AS bytes
FROM log_minutes GROUP BY 1, 2, 3, 4, 5 HAVING sum(n) <> 0 ORDER BY 1, 2, 3, 4, 5
"""
FROM_ROWS = """
SELECT date_trunc('minute', created_at - interval '1 microsecond', 'UTC') + interval '1 minute' AS minute, service,
       level::text, environment::text, loki_labels IS NOT NULL AS pushed, count(*) AS n,
       sum(octet_length(message))::bigint AS bytes
FROM logs WHERE NOT deleted GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
"""


def test_the_minutes_are_the_rows_after_writes_deletes_and_a_dropped_day(data: TestClient, db: DB) -> None:
    assert db.fetch(MINUTES) == db.fetch(FROM_ROWS)
    edges = db.fetch("SELECT count(*) AS n FROM logs WHERE created_at = $1", MIDNIGHT)[0]["n"]
    assert edges > 0  # a row at midnight: in its day's partition, in the minute that ends the day before
    # Retention drops the day before MIDNIGHT (and any older partition of the test database, all empty).
    dropped = asyncio.run(_drop_before(db.url, MIDNIGHT.date()))
    assert partitions.name(MIDNIGHT.date() - timedelta(days=1)) in dropped
    assert db.fetch("SELECT count(*) AS n FROM logs WHERE created_at < $1", MIDNIGHT)[0]["n"] == 0
    assert db.fetch(MINUTES) == db.fetch(FROM_ROWS) != []


async def _drop_before(url: str, day: date) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return await retention.run(conn, 1, today=day + timedelta(days=1))
    finally:
        await conn.close()
