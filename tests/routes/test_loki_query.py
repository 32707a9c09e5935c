"""Loki's query API (app/routes/loki_query.py) against the real PostgreSQL: a LogQL conformance table written
from Loki's LogQL and HTTP API documentation (query, data, expected answer), Grafana's own requests (the
health check, log volume, log context, label browser), the parameter rules and the errors."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import DB, log_entry

S = 10**9
# A minute boundary ten minutes ago: every log of the data set lies in the minute after it.
BASE = (time.time_ns() // (60 * S) - 10) * 60 * S


def at(seconds: float) -> float:
    return (BASE + round(seconds * S)) / S


DATA = [
    log_entry(created_at=at(1), service="api", level="INFO", environment="production",
              message='{"status": 200, "took": "150ms", "size": "2KB", "user": {"id": "u1"}}', trace_id="t1"),
    log_entry(created_at=at(2), service="api", level="ERROR", environment="production",
              message='{"status": 500, "took": "1.5s", "size": "10KB", "user": {"id": "u2"}}', duration_ms=1500),
    log_entry(created_at=at(3), service="api", level="WARN", environment="production",
              message="method=GET path=/a status=404 took=20ms", duration_ms=20),
    log_entry(created_at=at(4), service="web", level="INFO", environment="staging",
              message="rendered home page", duration_ms=10, metadata={"region": "eu", "attempt": 2}),
    log_entry(created_at=at(5), service="web", level="ERROR", environment="staging",
              message="timeout talking to api", duration_ms=30),
    log_entry(created_at=at(6), service="web", level="FATAL", environment="staging",
              message="out of memory", duration_ms=40),
]  # fmt: skip


@pytest.fixture
def loaded(client: TestClient, db: DB) -> TestClient:
    response = client.post("/logs", json={"logs": DATA})
    assert response.status_code == 200, response.text
    return client


def get(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(f"/loki/api/v1/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def lines(client: TestClient, query: str, **params: Any) -> list[str]:
    body = get(client, "query_range", query=query, **{"start": BASE, "end": BASE + 60 * S, **params})
    assert body["status"] == "success" and body["data"]["resultType"] == "streams"
    values = [v for stream in body["data"]["result"] for v in stream["values"]]
    return [line for _, line in sorted(values, reverse=params.get("direction") != "forward")]


# (LogQL, the messages it answers, newest first): written from the LogQL docs' descriptions of each stage.
LOG_QUERIES = [
    ('{service_name="web"}', ["out of memory", "timeout talking to api", "rendered home page"]),
    ('{service_name=~"w.b", level!="fatal"}', ["timeout talking to api", "rendered home page"]),
    ('{service_name=~".+"} |= "api"', ["timeout talking to api"]),
    ('{service_name="web"} != "api" != "memory"', ["rendered home page"]),
    ('{service_name="web"} |= "memory" or "home"', ["out of memory", "rendered home page"]),
    ('{service_name="web"} |~ "t.me"', ["timeout talking to api"]),
    ('{service_name="web"} !~ "^(out|rendered)"', ["timeout talking to api"]),
    ('{level=~"error|fatal"}', ["out of memory", "timeout talking to api", DATA[1]["message"]]),
    ('{service_name="web"} | region="eu"', ["rendered home page"]),
    ('{service_name=~".+"} | trace_id="t1"', [DATA[0]["message"]]),
    # A line the parser could not read passes a numeric filter with its __error__, as in Loki.
    ('{service_name="api"} | json | status >= 500', [DATA[2]["message"], DATA[1]["message"]]),
    ('{service_name="api"} | json | status >= 500 | __error__=""', [DATA[1]["message"]]),
    ('{service_name="api"} | json | user_id="u1"', [DATA[0]["message"]]),
    ('{service_name="api"} | json | took > 1s | __error__=""', [DATA[1]["message"]]),
    ('{service_name="api"} | json | size > 5KB | __error__=""', [DATA[1]["message"]]),
    ('{service_name="api"} | logfmt | status == 404 and method="GET"', [DATA[2]["message"]]),
    ('{service_name="api"} | json | __error__=""', [DATA[1]["message"], DATA[0]["message"]]),
    ('{service_name="api"} | json | __error__!=""', [DATA[2]["message"]]),
    ('{service_name="api"} | json | __error__="" | status=200 or status=500 | line_format "{{.status}} {{.user_id}}"',
     ["500 u2", "200 u1"]),
    ('{service_name="api"} |= "method" | logfmt | label_format p=path | line_format "{{ .p | ToUpper }}"', ["/A"]),
    ('{service_name="web"} | duration_ms > 15', ["out of memory", "timeout talking to api"]),
    ('{service_name="web"} | duration_ms="10"', ["rendered home page"]),
    ('{service_name="web"} | attempt="2" | region=~"e."', ["rendered home page"]),
]  # fmt: skip


@pytest.mark.parametrize(("query", "expected"), LOG_QUERIES)
def test_log_queries_answer_as_the_docs_describe(loaded: TestClient, query: str, expected: list[str]) -> None:
    assert lines(loaded, query) == expected


def test_limit_and_direction(loaded: TestClient) -> None:
    assert lines(loaded, '{service_name="web"}', limit=2) == ["out of memory", "timeout talking to api"]
    assert lines(loaded, '{service_name="web"}', limit=2, direction="forward") == [
        "rendered home page",
        "timeout talking to api",
    ]


def test_streams_carry_their_labels_and_categorized_entries(loaded: TestClient) -> None:
    body = get(
        loaded, "query_range", query='{service_name="web", level="info"}', start=BASE, end=BASE + 60 * S
    )
    [stream] = body["data"]["result"]
    assert stream["stream"]["service_name"] == "web" and stream["stream"]["region"] == "eu"
    assert stream["values"] == [[str(int(at(4) * S)), "rendered home page"]]
    response = loaded.get(
        "/loki/api/v1/query_range",
        params={"query": '{service_name="web", level="info"} | logfmt', "start": BASE, "end": BASE + 60 * S},
        headers={"X-Loki-Response-Encoding-Flags": "categorize-labels"},
    )
    data = response.json()["data"]
    assert data["encodingFlags"] == ["categorize-labels"]
    [stream] = data["result"]
    assert stream["stream"] == {"service_name": "web", "level": "info", "environment": "staging"}
    [(_, line, extra)] = stream["values"]
    assert line == "rendered home page"
    assert extra["structuredMetadata"]["region"] == "eu"
    assert extra["structuredMetadata"]["detected_level"] == "info"
    assert extra["structuredMetadata"]["duration_ms"] == "10"
    assert extra["parsed"] == {"rendered": "", "home": "", "page": ""}


def matrix(client: TestClient, query: str, step: str = "60s", start: int = BASE + 60 * S) -> dict[str, Any]:
    body = get(client, "query_range", query=query, start=start, end=start, step=step)
    assert body["data"]["resultType"] == "matrix"
    return {
        ",".join(f"{k}={v}" for k, v in sorted(s["metric"].items())): [v for _, v in s["values"]]
        for s in body["data"]["result"]
    }


# (metric query over [BASE, BASE + 60 s], its one point per series).
METRIC_QUERIES = [
    ('sum(count_over_time({service_name=~".+"}[1m]))', {"": ["6"]}),
    ('sum by (service_name) (count_over_time({service_name=~".+"}[1m]))', {"service_name=api": ["3"], "service_name=web": ["3"]}),
    ('sum by (service_name) (rate({service_name=~".+"}[1m]))', {"service_name=api": ["0.05"], "service_name=web": ["0.05"]}),
    ('sum(bytes_over_time({service_name="web"}[1m]))', {"": [str(len("rendered home page") + len("timeout talking to api") + len("out of memory"))]}),
    ('sum by (level) (count_over_time({service_name="web"} |= "o" [1m]))', {"level=error": ["1"], "level=fatal": ["1"], "level=info": ["1"]}),
    ('max_over_time({service_name="web"} | unwrap duration_ms [1m]) by (service_name)', {"service_name=web": ["40"]}),
    ('sum_over_time({service_name="web"} | unwrap duration_ms [1m]) by (service_name)', {"service_name=web": ["80"]}),
    ('avg_over_time({service_name="web"} | unwrap duration_ms [1m]) by (service_name)', {"service_name=web": ["26.666666666666668"]}),
    ('quantile_over_time(0.5, {service_name="web"} | unwrap duration_ms [1m]) by (service_name)', {"service_name=web": ["30"]}),
    ('quantile_over_time(0.75, {service_name="web"} | unwrap duration_ms [1m]) by (service_name)', {"service_name=web": ["35"]}),
    # Overlapping windows (range 2m, step 1m): read as rows, the same answer for the one window with data.
    ('quantile_over_time(0.75, {service_name="web"} | unwrap duration_ms [2m]) by (service_name)', {"service_name=web": ["35"]}),
    ('quantile_over_time(1.5, {service_name="web"} | unwrap duration_ms [1m]) by (service_name)', {"service_name=web": ["+Inf"]}),
    # The unwrapped label leaves the series' labels, as in Loki.
    ('quantile_over_time(0.75, {service_name="web"} | unwrap duration_ms [1m])', {"detected_level=error,environment=staging,level=error,log_type=BACKEND,service_name=web,service_version=v0.0.0-dev": ["30"], "detected_level=fatal,environment=staging,level=fatal,log_type=BACKEND,service_name=web,service_version=v0.0.0-dev": ["40"], "attempt=2,detected_level=info,environment=staging,level=info,log_type=BACKEND,region=eu,service_name=web,service_version=v0.0.0-dev": ["10"]}),
    ('sum by (service_name) (count_over_time({service_name="api"} | json | status >= 400 [1m]))', {"service_name=api": ["2"]}),
    ('sum by (service_name) (count_over_time({service_name="api"} | json | __error__="" | status >= 400 [1m]))', {"service_name=api": ["1"]}),
    ('sum(count_over_time({service_name="api"} | json | __error__="" [1m]))', {"": ["2"]}),
    ('max by (service_name) (max_over_time({service_name="api"} | json | unwrap duration(took) [1m]))', {"service_name=api": ["1.5"]}),
    ('sum(sum_over_time({service_name="api"} | json | unwrap bytes(size) [1m]))', {"": ["12000"]}),
    ('topk(1, sum by (service_name) (count_over_time({level=~"error|fatal"}[1m])))', {"service_name=web": ["2"]}),
    ('bottomk(1, sum by (service_name) (count_over_time({level=~"error|fatal"}[1m])))', {"service_name=api": ["1"]}),
    ('count(sum by (level) (count_over_time({service_name=~".+"}[1m])))', {"": ["4"]}),
    ('sum(count_over_time({service_name=~".+"}[1m])) * 2 + 1', {"": ["13"]}),
    ('sum(count_over_time({service_name="api"}[1m])) / sum(count_over_time({service_name=~".+"}[1m]))', {"": ["0.5"]}),
    ('sum by (level) (count_over_time({service_name=~".+"}[1m])) > 1', {"level=error": ["2"], "level=info": ["2"]}),
    ('sum by (level) (count_over_time({service_name=~".+"}[1m])) > bool 1', {"level=error": ["1"], "level=fatal": ["0"], "level=info": ["1"], "level=warn": ["0"]}),
    ('sum by (level) (count_over_time({service_name=~".+"}[1m])) and sum by (level) (count_over_time({service_name="web"}[1m]))', {"level=error": ["2"], "level=fatal": ["1"], "level=info": ["2"]}),
    ('sum by (level) (count_over_time({service_name=~".+"}[1m])) unless sum by (level) (count_over_time({service_name="web"}[1m]))', {"level=warn": ["1"]}),
    ('sum by (level) (count_over_time({service_name="web"}[1m])) - sum by (level) (count_over_time({service_name="api"}[1m]))', {"level=error": ["0"], "level=info": ["0"]}),
    ('count_over_time({service_name="web", level="info"}[1m])', {"attempt=2,detected_level=info,duration_ms=10,environment=staging,level=info,log_type=BACKEND,region=eu,service_name=web,service_version=v0.0.0-dev": ["1"]}),
]  # fmt: skip


@pytest.mark.parametrize(("query", "expected"), METRIC_QUERIES)
def test_metric_queries_answer_as_the_docs_describe(
    loaded: TestClient, query: str, expected: dict[str, Any]
) -> None:
    assert matrix(loaded, query) == expected


def test_windows_are_open_at_the_start_and_steps_without_samples_are_left_out(loaded: TestClient) -> None:
    # (t − 2s, t] at t = BASE + k·2s: 1 s falls in k=1, 2 s in k=1, 3 s and 4 s in k=2, 5 s and 6 s in k=3.
    body = get(loaded, "query_range", query='sum(count_over_time({service_name=~".+"}[2s]))',
               start=BASE, end=BASE + 20 * S, step="2s")  # fmt: skip
    [series] = body["data"]["result"]
    assert series["values"] == [[at(2), "2"], [at(4), "2"], [at(6), "2"]]
    # Overlapping windows (range 3 s, step 1 s) from buckets of gcd(1 s, 3 s).
    body = get(loaded, "query_range", query='sum(count_over_time({service_name="web"}[3s]))',
               start=BASE + 3 * S, end=BASE + 9 * S, step="1s")  # fmt: skip
    [series] = body["data"]["result"]
    assert series["values"] == [[at(4), "1"], [at(5), "2"], [at(6), "3"], [at(7), "2"], [at(8), "1"]]


def test_grafana_health_check(client: TestClient) -> None:
    body = get(client, "query", query="vector(1)+vector(1)", time="4000000000")
    assert body["data"]["resultType"] == "vector"
    assert body["data"]["result"] == [{"metric": {}, "value": [4000000000, "2"]}]


def test_grafana_log_volume(loaded: TestClient) -> None:
    query = 'sum by (level, detected_level) (count_over_time({service_name="web"} | drop __error__[1m]))'
    assert matrix(loaded, query) == {
        "detected_level=error,level=error": ["1"],
        "detected_level=fatal,level=fatal": ["1"],
        "detected_level=info,level=info": ["1"],
    }


def test_instant_vector_and_sort(loaded: TestClient) -> None:
    body = get(loaded, "query", query='sort_desc(sum by (service_name) (count_over_time({level=~".+"} | duration_ms > 25 [1m])))',
               time=BASE + 60 * S)  # fmt: skip
    assert [(r["metric"], r["value"][1]) for r in body["data"]["result"]] == [
        ({"service_name": "web"}, "2"),
        ({"service_name": "api"}, "1"),
    ]
    body = get(loaded, "query", query='sort(sum by (service_name) (count_over_time({level=~".+"} | duration_ms > 25 [1m])))',
               time=BASE + 60 * S)  # fmt: skip
    assert [(r["metric"], r["value"][1]) for r in body["data"]["result"]] == [
        ({"service_name": "api"}, "1"),
        ({"service_name": "web"}, "2"),
    ]


def test_post_form_is_taken_as_get(loaded: TestClient) -> None:
    response = loaded.post(
        "/loki/api/v1/query_range",
        data={"query": '{service_name="web"} |= "memory"', "start": str(BASE), "end": str(BASE + 60 * S)},
    )
    assert response.status_code == 200
    assert response.json()["data"]["result"][0]["values"][0][1] == "out of memory"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"query": '{foo="bar"} |= '}, "parse error at line 1, col 16: syntax error: unexpected $end"),
        ({"query": '{foo=~".*"}'}, "queries require at least one regexp or equality matcher"),
        ({"query": 'sum_over_time({a="b"}[1m])'}, "invalid aggregation sum_over_time without unwrap"),
        ({"query": '{a="b"}', "limit": "5001"}, "max entries limit per query exceeded"),
        ({"query": '{a="b"}', "start": "20", "end": "10"}, "end timestamp must not be before start time"),
        (
            {"query": '{a="b"}', "start": "0", "end": "100000", "step": "1s"},
            "exceeded maximum resolution of 11,000",
        ),
        ({"query": '{a="b"}', "start": "yesterday"}, 'cannot parse "yesterday" to a valid timestamp'),
        ({"query": '{a="b"}', "direction": "up"}, "invalid direction"),
        ({}, "query parameter is required"),
        ({"query": '{a="b"} |~ "(?<x>a)"'}, "error parsing regexp"),
    ],
)
def test_bad_queries_are_400_in_lokis_words(client: TestClient, params: dict[str, str], message: str) -> None:
    response = client.get("/loki/api/v1/query_range", params=params)
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]


def test_times_in_every_form_loki_takes(loaded: TestClient) -> None:
    start_s, end_s = BASE // S, BASE // S + 60
    expected = lines(loaded, '{service_name="web"}')
    for start, end in [
        (str(start_s), str(end_s)),
        (f"{start_s}.0", f"{end_s}.0"),
        (
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start_s)),
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end_s)),
        ),
    ]:
        assert lines(loaded, '{service_name="web"}', start=start, end=end) == expected


def test_label_browser(loaded: TestClient) -> None:
    span = {"start": BASE, "end": BASE + 60 * S}
    assert get(loaded, "labels", **span)["data"] == ["environment", "level", "service_name"]
    assert get(loaded, "label/service_name/values", **span)["data"] == ["api", "web"]
    assert get(loaded, "label/level/values", query='{service_name="web"}', **span)["data"] == [
        "error",
        "fatal",
        "info",
    ]
    series = get(loaded, "series", **{"match[]": '{service_name="web", level="fatal"}'}, **span)["data"]
    assert series == [{"service_name": "web", "level": "fatal", "environment": "staging"}]
    stats = get(loaded, "index/stats", query='{service_name="web"}', **span)
    assert stats == {
        "streams": 3,
        "chunks": 0,
        "entries": 3,
        "bytes": len("rendered home pagetimeout talking to apiout of memory"),
    }
    labels = get(loaded, "detected_labels", **span)["detectedLabels"]
    assert {"label": "service_name", "cardinality": 2} in labels
    fields = get(loaded, "detected_fields", query='{service_name="api"}', **span)["fields"]
    by_name = {f["label"]: f for f in fields}
    assert by_name["status"]["cardinality"] == 3 and by_name["status"]["type"] == "int"
    assert get(loaded, "detected_field/status/values", query='{service_name="api"}', **span)["values"] == [
        "200",
        "404",
        "500",
    ]


def test_detected_fields_line_limit_is_checked(client: TestClient) -> None:
    response = client.get("/loki/api/v1/detected_fields", params={"line_limit": "null"})
    assert response.status_code == 400 and "invalid line_limit" in response.json()["message"]


def test_volume(loaded: TestClient) -> None:
    body = get(loaded, "index/volume", query='{service_name=~".+"}', start=BASE, end=BASE + 60 * S)
    result = {r["metric"]["service_name"]: r["value"][1] for r in body["data"]["result"]}
    assert result == {
        "api": str(sum(len(d["message"]) for d in DATA[:3])),
        "web": str(sum(len(d["message"]) for d in DATA[3:])),
    }


def test_buildinfo_is_a_loki_3(client: TestClient) -> None:
    assert get(client, "status/buildinfo")["version"].startswith("3.")
