"""Times from a request at both ends of what `datetime` can hold, on every route that reads one: each is
answered (a range clamped to what can be counted) or refused with a 422/400 naming the field, never a 500.

The API accepts any RFC 3339 time with an offset and Unix times below 1e20; the first and last days of
year 1 and 9999 with an offset are the ones whose UTC value falls outside `datetime`, and numbers beyond a
float (or a fixed64) are the ones that cannot be turned into seconds.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.models import from_epoch, parse_created_at
from tests.support import DB, log_entry

EARLIEST = "0001-01-01T00:00:00Z"
LATEST = "9999-12-31T23:59:59.999999Z"
# Valid RFC 3339 whose UTC time is before year 1 or after year 9999.
BEYOND = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-00:01"]
# Unix times that are no time at all: negative, past 1e20, beyond a float, not finite.
NOT_UNIX = ["-1", "1e20", "100000000000000000000", "1e300", "1" + "0" * 400, "nan", "inf"]


def cursor(created_at: str, last_id: int = 2**62) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, last_id]).encode()).decode().rstrip("=")


def store_one(client: TestClient) -> dict[str, Any]:
    assert client.post("/logs", json={"logs": [log_entry(message="the one")]}).status_code == 200
    return client.get("/logs").json()["logs"][0]


@pytest.mark.parametrize("value", BEYOND)
def test_a_time_outside_utc_is_refused_by_name(value: str) -> None:
    with pytest.raises(ValueError, match="outside 0001-01-01"):
        parse_created_at(value)


@pytest.mark.parametrize(
    "value", [EARLIEST, LATEST, "0001-01-01T00:00:00-01:00", "9999-12-31T23:59:59+01:00"]
)
def test_both_ends_of_utc_are_times(value: str) -> None:
    assert parse_created_at(value).astimezone(UTC).year in (1, 9999)


@pytest.mark.parametrize("value", [-1, 1e20, 10**400, float("nan"), float("inf"), -float("inf")])
def test_a_unix_time_beyond_its_range_is_a_value_error(value: float) -> None:
    with pytest.raises(ValueError, match="from 0"):
        from_epoch(value)


@pytest.mark.parametrize("path", ["/logs", "/stats/timeline"])
@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("value", BEYOND + NOT_UNIX)
def test_a_time_filter_that_is_no_time_is_a_422_naming_it(
    client: TestClient, path: str, name: str, value: str
) -> None:
    response = client.get(path, params={name: value})
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [f"query.{name}"]


def test_the_whole_range_of_datetime_finds_every_log(client: TestClient, db: DB) -> None:
    stored = store_one(client)
    for params in (
        {"since": EARLIEST, "until": LATEST},
        {"since": "0"},
        {"until": "99999999999999999999"},
    ):
        logs = client.get("/logs", params=params).json()["logs"]
        assert [log["id"] for log in logs] == [stored["id"]], params
    timeline = client.get("/stats/timeline", params={"since": EARLIEST, "until": LATEST}).json()
    assert timeline["bucket"] == "hour"
    assert [sum(point["counts"].values()) for point in timeline["points"]] == [1]


@pytest.mark.parametrize("until", ["0001-01-01T00:02:13Z", EARLIEST, "0001-01-01T05:59:59.999999+00:00"])
def test_a_timeline_until_the_first_day_counts_from_the_first_moment(client: TestClient, until: str) -> None:
    # The default `since` (a day before `until`) would be before year 1: the range starts at its beginning,
    # so it is at most a day long (counted by the minute when under 6 hours).
    response = client.get("/stats/timeline", params={"until": until})
    assert response.status_code == 200, response.text
    assert response.json() == {"bucket": "minute", "points": []}


def test_a_timeline_at_the_last_moment_and_an_empty_range(client: TestClient, db: DB) -> None:
    store_one(client)
    assert client.get("/stats/timeline", params={"until": LATEST}).json()["points"] == []
    backwards = client.get("/stats/timeline", params={"since": LATEST, "until": EARLIEST})
    assert backwards.status_code == 200 and backwards.json()["points"] == []


@pytest.mark.parametrize(
    ("created_at", "finds"),
    [
        ("0001-01-01T00:00:00+00:00", False),
        ("9999-12-31T23:59:59.999999+00:00", True),
        ("1970-01-01T00:00:00Z", False),
    ],
)
def test_a_cursor_at_either_end_pages_on(client: TestClient, db: DB, created_at: str, finds: bool) -> None:
    stored = store_one(client)
    response = client.get("/logs", params={"cursor": cursor(created_at)})
    assert response.status_code == 200, response.text
    assert [log["id"] for log in response.json()["logs"]] == ([stored["id"]] if finds else [])


@pytest.mark.parametrize(
    "made",
    [cursor(BEYOND[0]), cursor(BEYOND[1]), cursor(LATEST, 2**70), cursor("9999-12-31"), cursor("1e30")],
)
def test_a_cursor_holding_no_time_is_a_422_naming_it(client: TestClient, made: str) -> None:
    response = client.get("/logs", params={"cursor": made})
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["query.cursor"]


def _bodies(created_at: str) -> list[tuple[str, str]]:
    """POST /logs's shapes (native, an array with a shipper's alias, NDJSON), each with this created_at."""
    entry = '{"level":"INFO","service":"s","message":"m","%s":%s}'
    return [
        ('{"logs":[%s]}' % (entry % ("created_at", created_at)), "application/json"),
        ("[%s]" % (entry % ("timestamp", created_at)), "application/json"),
        (entry % ("@timestamp", created_at), "application/x-ndjson"),
    ]


@pytest.mark.parametrize(
    "created_at", [f'"{v}"' for v in BEYOND] + [v for v in NOT_UNIX if v not in ("nan", "inf")]
)
def test_a_created_at_that_is_no_time_is_a_422_naming_it(client: TestClient, db: DB, created_at: str) -> None:
    for body, kind in _bodies(created_at):
        response = client.post("/logs", content=body, headers={"Content-Type": kind})
        assert response.status_code == 422, (body, response.text)
        assert [e["field"] for e in response.json()["errors"]] == ["logs.0.created_at"]
    assert db.count() == 0


@pytest.mark.parametrize(
    "created_at", [EARLIEST, LATEST, "0001-01-01T00:00:00-01:00", "9999-12-31T23:59:59+01:00"]
)
def test_a_created_at_at_either_end_is_kept_as_given(client: TestClient, db: DB, created_at: str) -> None:
    # Far outside the window: stored at the time received, the time sent kept in metadata.
    for body, kind in _bodies(f'"{created_at}"'):
        assert client.post("/logs", content=body, headers={"Content-Type": kind}).status_code == 200, body
    originals = [
        json.loads(row["metadata"])["original_created_at"] for row in db.fetch("SELECT metadata FROM logs")
    ]
    assert originals == [datetime.fromisoformat(created_at).isoformat()] * 3


def _otlp(time_unix_nano: Any) -> dict[str, Any]:
    record = {"timeUnixNano": time_unix_nano, "body": {"stringValue": "m"}}
    return {"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}


@pytest.mark.parametrize("nanos", [2**64, -1, "18446744073709551616", 10**400, "1" + "0" * 400])
def test_an_otlp_time_beyond_fixed64_is_a_400(client: TestClient, db: DB, nanos: Any) -> None:
    body = json.dumps(_otlp(nanos))
    response = client.post("/v1/logs", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    # orjson itself refuses a number beyond a double; the rest are read, and refused as times.
    assert any(word in response.json()["message"] for word in ("fixed64", "infinity")), response.text
    assert db.count() == 0


def test_the_last_otlp_time_is_stored_with_the_time_sent(client: TestClient, db: DB) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=2**64 - 1)
    response = client.post(
        "/v1/logs", content=request.SerializeToString(), headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status_code == 200, response.text
    json_response = client.post("/v1/logs", json=_otlp(str(2**64 - 1)))
    assert json_response.status_code == 200, json_response.text
    originals = {
        json.loads(row["metadata"])["original_created_at"] for row in db.fetch("SELECT metadata FROM logs")
    }
    assert originals == {datetime.fromtimestamp((2**64 - 1) / 1e9, UTC).isoformat()}
