"""A log pushed through Loki's push API reads back through the Loki query API as Loki returns it
(app/logql/labels.py, app/formats/loki.py's Kept): the line byte for byte, exactly the labels pushed (with
service_name derived when none was), the structured metadata pushed; before and after its day is archived.
GET /logs shows the same logs as it always did."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.storage import archive
from tests.formats.test_loki import push_request, snappy
from tests.logql.test_store import END, START, answers
from tests.storage.test_archive import DAYS, archive_pass, drop_days, make_store
from tests.support import DB, make_settings

PUSH = "/loki/api/v1/push"
CATEGORIZED = {"X-Loki-Response-Encoding-Flags": "categorize-labels"}
JSON_LINE = '{"message": "paid",  "level": "error", "user": "u-1", "took": "12ms", "trace_id": "tr-9"}'
LOGFMT_LINE = 'level=warn msg="disk almost full" free=3GB took=250ms'
TEXT_LINE = "GET /health 200 Ünïcode"
# Lines of three kinds on two streams, with structured metadata on some; the second stream brings its own
# service_name, the first has it derived from `job` as Loki 3 derives it.
VARLOGS = {"job": "varlogs", "host": "web-1"}
OWN = {"service_name": "payments", "app": "pay-api", "level": "info", "env": "prod"}


def stream_text(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def golden(base_ns: int) -> list[tuple[dict[str, str], list[tuple[int, str, dict[str, str]]]]]:
    return [
        (
            VARLOGS,
            [
                (base_ns + 1_000, TEXT_LINE, {}),
                (base_ns + 2_000, JSON_LINE, {"trace_id": "t-1", "pod": "p-1"}),
                (base_ns + 3_000, LOGFMT_LINE, {}),
            ],
        ),
        (OWN, [(base_ns + 4_000, '{"message": "refund", "amount": 3}', {"region": "eu"})]),
    ]


def json_body(base_ns: int) -> bytes:
    streams = [
        {"stream": labels, "values": [[str(ns), line, *([meta] if meta else [])] for ns, line, meta in lines]}
        for labels, lines in golden(base_ns)
    ]
    return json.dumps({"streams": streams}).encode()


def protobuf_body(base_ns: int) -> bytes:
    streams = [
        (
            stream_text(labels),
            [(ns // 10**9, ns % 10**9, line, list(meta.items())) for ns, line, meta in lines],
        )
        for labels, lines in golden(base_ns)
    ]
    return snappy(push_request(streams))


def push(client: TestClient, body: bytes, protobuf: bool) -> None:
    kind = "application/x-protobuf" if protobuf else "application/json"
    response = client.post(PUSH, content=body, headers={"Content-Type": kind})
    assert response.status_code == 204, response.text


def query(client: TestClient, text: str, start: int, end: int, **extra: Any) -> Any:
    headers = extra.pop("headers", {})
    params = {"query": text, "start": start, "end": end, "limit": 100, "direction": "forward", **extra}
    response = client.get("/loki/api/v1/query_range", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
def test_a_pushed_log_reads_back_with_its_line_labels_and_structured_metadata(
    client: TestClient, db: DB, protobuf: bool
) -> None:
    base = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)
    base_ns = int(base.timestamp()) * 10**9
    start, end = base_ns, base_ns + 10**9
    push(client, protobuf_body(base_ns) if protobuf else json_body(base_ns), protobuf)

    found = query(client, '{job="varlogs", host="web-1"}', start, end, headers=CATEGORIZED)
    assert [s["stream"] for s in found["result"]] == [{**VARLOGS, "service_name": "varlogs"}]
    values = found["result"][0]["values"]
    assert [v[1] for v in values] == [TEXT_LINE, JSON_LINE, LOGFMT_LINE]
    assert [v[2]["structuredMetadata"] for v in values] == [
        {"detected_level": "info"},
        {"trace_id": "t-1", "pod": "p-1", "detected_level": "error"},
        {"detected_level": "info"},
    ]
    # Without categorize-labels, structured metadata joins the stream's labels, as in Loki.
    own = query(client, '{service_name="payments"}', start, end)["result"]
    assert [s["stream"] for s in own] == [{**OWN, "region": "eu", "detected_level": "info"}] and own[0][
        "values"
    ][0][1] == '{"message": "refund", "amount": 3}'
    # The pushed labels select, and our derived stream labels are not theirs.
    assert query(client, '{app="pay-api", env="prod"} | region="eu"', start, end)["result"]
    assert not query(client, '{environment="production"}', start, end)["result"]
    assert not query(client, '{service_name="varlogs", level="info"}', start, end)["result"]
    unlevelled = query(client, '{service_name="varlogs", level=""}', start, end)["result"]
    assert sum(len(s["values"]) for s in unlevelled) == 3

    # Parsers see the line as sent.
    parsed = query(client, '{job="varlogs"} | json | user="u-1"', start, end)["result"]
    assert [v[1] for s in parsed for v in s["values"]] == [JSON_LINE]
    assert parsed[0]["stream"]["took"] == "12ms" and parsed[0]["stream"]["level"] == "error"
    logfmt = query(client, '{host="web-1"} | logfmt | took > 100ms', start, end)["result"]
    assert [v[1] for s in logfmt for v in s["values"]] == [LOGFMT_LINE]
    assert query(client, '{host="web-1"} |= "\\"took\\": \\"12ms\\""', start, end)["result"]

    metric = query(client, 'sum by (host) (bytes_over_time({job="varlogs"}[1s]))', start, end, step="1s")
    total = sum(len(line.encode()) for line in (TEXT_LINE, JSON_LINE, LOGFMT_LINE))
    assert [(s["metric"], s["values"][-1][1]) for s in metric["result"]] == [({"host": "web-1"}, str(total))]
    counted = query(client, 'sum by (pod) (count_over_time({job=~"var.*"}[1s]))', start, end, step="1s")
    assert {s["metric"].get("pod", ""): s["values"][-1][1] for s in counted["result"]} == {
        "": "2",
        "p-1": "1",
    }

    span = {"start": start, "end": end}
    labels = client.get("/loki/api/v1/labels", params=span).json()["data"]
    assert {"job", "host", "app", "service_name", "env", "level"} <= set(labels)
    assert client.get("/loki/api/v1/label/job/values", params=span).json()["data"] == ["varlogs"]
    assert client.get("/loki/api/v1/label/service_name/values", params=span).json()["data"] == [
        "payments",
        "varlogs",
    ]
    series = client.get("/loki/api/v1/series", params={**span, "match[]": '{host=~"web-.*"}'}).json()
    assert series["data"] == [{**VARLOGS, "service_name": "varlogs"}]

    # GET /logs, its export and /traces show what they always showed: our fields, the labels and structured
    # metadata folded into metadata.
    logs = client.get("/logs", params={"service": "varlogs"}).json()["logs"]
    by_message = {log["message"]: log for log in logs}
    assert set(by_message) == {TEXT_LINE, "paid", LOGFMT_LINE}
    assert not any(key.startswith("loki_") for log in logs for key in log)
    paid = by_message["paid"]
    assert (paid["level"], paid["trace_id"], paid["service"]) == ("ERROR", "tr-9", "varlogs")
    assert paid["metadata"] == {
        "host": "web-1",
        "trace_id": "t-1",
        "pod": "p-1",
        "user": "u-1",
        "took": "12ms",
    }
    exported = client.get("/logs", params={"service": "varlogs"}, headers={"Accept": "application/x-ndjson"})
    assert [json.loads(line) for line in exported.text.splitlines()] == logs
    assert client.get("/traces/tr-9").json()["logs"] == [paid]


def test_service_name_is_derived_as_loki_3_derives_it(client: TestClient) -> None:
    base_ns = int((datetime.now(UTC) - timedelta(minutes=5)).timestamp()) * 10**9
    cases = [
        ({"job": "j", "container": "c"}, "c"),
        ({"job": "j", "app_kubernetes_io_name": "k"}, "k"),
        ({"service": "s", "app": "a"}, "s"),
        ({"host": "h"}, "unknown_service"),
    ]
    streams = [
        {"stream": {**labels, "case": str(i)}, "values": [[str(base_ns + i), f"line {i}"]]}
        for i, (labels, _) in enumerate(cases)
    ]
    push(client, json.dumps({"streams": streams}).encode(), False)
    for i, (_, service) in enumerate(cases):
        found = query(client, f'{{case="{i}"}}', base_ns, base_ns + 10)["result"]
        assert found[0]["stream"]["service_name"] == service


# --- before and after the day is archived --------------------------------------------------------------


@pytest.fixture
def fresh(db: DB, tmp_path: Path) -> Iterator[archive.Store]:
    yield make_store(db, tmp_path)
    drop_days(db)


@pytest.fixture
def reads(db: DB, database_url: str, fresh: archive.Store) -> Iterator[TestClient]:
    # The archived days are years old: a window that takes their created_at as given.
    settings = make_settings(database_url, archive_url=fresh.root, created_at_max_age_days=36500)
    with TestClient(create_app(settings)) as client:
        yield client


PUSHED_QUERIES = [
    '{job="varlogs", host="web-1"}',
    '{service_name="payments"} | region="eu"',
    '{host="web-1"} | json | user="u-1"',
    '{job="varlogs"} |= "took"',
    '{service_name=~"varlogs|payments", level=""}',
]
PUSHED_METRICS = [
    'sum by (host, pod) (bytes_over_time({job=~"var.*"}[1h]))',
    'sum by (service_name, level, detected_level) (count_over_time({service_name=~".+"}[1h]))',
    'sum(count_over_time({job="varlogs"} | logfmt | took > 100ms [1h]))',
]


def test_pushed_logs_answer_the_same_before_and_after_their_days_are_archived(
    reads: TestClient, db: DB, fresh: archive.Store
) -> None:
    for day in DAYS:
        base = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        push(reads, protobuf_body(int(base.timestamp()) * 10**9), True)

    def everything() -> dict[str, Any]:
        got = answers(reads)
        for text in PUSHED_QUERIES:
            got[text] = query(reads, text, START, END, limit=300, headers=CATEGORIZED)
        for text in PUSHED_METRICS:
            got[text] = query(reads, text, START, END, step="1h")
        for path in ("labels", "label/job/values", "label/service_name/values", "detected_labels"):
            got[path] = reads.get(f"/loki/api/v1/{path}", params={"start": START, "end": END}).json()
        return got

    before = everything()
    assert all(before[text]["result"] for text in PUSHED_QUERIES + PUSHED_METRICS)
    assert "job" in before["labels"]["data"] and "service_name" in before["labels"]["data"]
    archive_pass(db, fresh)
    assert not db.fetch("SELECT 1 FROM logs WHERE loki_labels IS NOT NULL AND created_at < '2020-01-13'")
    after = everything()
    for key in before:
        assert after[key] == before[key], key
