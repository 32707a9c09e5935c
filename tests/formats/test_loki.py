"""POST /loki/api/v1/push: label text, the mapping to our columns, protobuf+snappy bodies encoded by hand from
push.proto, extreme timestamps, bad bodies; python-logging-loki through `logging` and the golden bodies of
Promtail, Alloy, Fluent Bit, Vector and Docker's driver (tests/golden/loki/) against the real server."""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cramjam
import httpx
import logging_loki
import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import BadRequest, InvalidLogs
from app.formats import loki
from app.intake import rows
from app.models import FIELDS
from tests.support import DB

GOLDEN = Path(__file__).parent.parent / "golden" / "loki"
PUSH = "/loki/api/v1/push"
PROTOBUF = {"Content-Type": "application/x-protobuf"}

# --- push.proto's wire format, by hand (independent of app/formats/loki.py's descriptor) ------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64: two's complement, ten bytes
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


Line = tuple[int, int, str, list[tuple[str, str]]]


def push_request(streams: list[tuple[str, list[Line]]]) -> bytes:
    """PushRequest{1 StreamAdapter{1 labels, 2 EntryAdapter{1 Timestamp{1 s, 2 ns}, 2 line, 3 {1 name, 2 value}}}}."""
    out = b""
    for labels, lines in streams:
        stream = _field(1, labels.encode())
        for seconds, nanos, line, metadata in lines:
            stamp = (_field(1, seconds) if seconds else b"") + (_field(2, nanos) if nanos else b"")
            entry = _field(1, stamp) + _field(2, line.encode())
            entry += b"".join(_field(3, _field(1, k.encode()) + _field(2, v.encode())) for k, v in metadata)
            stream += _field(2, entry)
        out += _field(1, stream + _field(3, 12345))
    return out


def snappy(raw: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(raw))


def now_ns() -> int:
    return time.time_ns()


def mapped(body: bytes, kind: str = loki.PROTOBUF) -> list[dict[str, Any]]:
    """The entries as rows.py reads them (of two equal keys, the later)."""
    logs = loki.body(loki.streams(body, kind, 10**7), 1000)
    return orjson.loads(logs)["logs"] if logs else []


def parsed(body: bytes, kind: str = loki.PROTOBUF) -> list[tuple[Any, ...]]:
    """The rows the route stores, through the same validation as POST /logs."""
    logs = loki.body(loki.streams(body, kind, 10**7), 1000)
    assert logs is not None
    return rows.parse(logs, 1000)


# --- label text -----------------------------------------------------------------------------------------


def test_label_text_is_read_with_prometheus_escapes() -> None:
    text = r'{service="api", msg="say \"hi\"\n\ttab", path="C:\\dir", e="\u00e9\x41", dotted.name = "x" }'
    assert loki.parse_labels(text) == {
        "service": "api", "msg": 'say "hi"\n\ttab', "path": "C:\\dir", "e": "éA", "dotted.name": "x",
    }  # fmt: skip
    assert loki.parse_labels("{}") == {}
    assert loki.parse_labels('{a="}, b=\\"c"}') == {"a": '}, b="c'}


@pytest.mark.parametrize(
    "text",
    [
        'service="x"',
        '{service="x"',
        "{service=x}",
        '{service="x" level="y"}',
        '{1a="x"}',
        '{a="\\q"}',
        '{a="x",}',
        '{a="\\ud800"}',
        '{a="\\xff"}',
    ],
)
def test_bad_label_text_is_a_400_naming_it(text: str) -> None:
    with pytest.raises(BadRequest, match="labels"):
        loki.parse_labels(text)


# --- mapping --------------------------------------------------------------------------------------------


def test_labels_give_service_level_environment_and_the_rest_is_metadata() -> None:
    ns = now_ns()
    body = snappy(
        push_request([
            ('{job="api", container="c1", severity="warning", env="prod", host="h1"}',
             [(ns // 10**9, ns % 10**9, "plain line", [("trace", "abc")])]),
            ('{host="h2", level="notice", environment="qa"}', [(ns // 10**9, 0, "no service", [])]),
        ])
    )  # fmt: skip
    first, second = mapped(body)
    assert first["service"] == "api" and first["level"] == "WARN" and first["environment"] == "production"
    assert first["message"] == "plain line"
    assert first["metadata"] == {"container": "c1", "host": "h1", "trace": "abc"}
    assert second["service"] == loki.UNKNOWN_SERVICE and second["level"] == "INFO"
    assert "environment" not in second and second["metadata"] == {"host": "h2", "environment": "qa"}


def test_an_unknown_level_label_is_kept_in_metadata_and_info_used() -> None:
    [entry] = mapped(json.dumps({"streams": [{"stream": {"app": "a", "level": "loud"},
                                              "values": [[str(now_ns()), "x"]]}]}).encode(), loki.JSON)  # fmt: skip
    assert entry["level"] == "INFO" and entry["metadata"] == {"level": "loud"}


def test_a_json_line_is_read_like_a_logs_entry_and_wins_over_labels() -> None:
    line = json.dumps({"msg": "card declined", "severity": "error", "service": "payments", "user_id": "u-7",
                       "time": "2026-01-01T00:00:00Z", "created_at": 5, "order": 42, "metadata": {"k": 1}})  # fmt: skip
    [entry] = mapped(json.dumps({"streams": [{"stream": {"app": "web", "level": "info", "region": "eu"},
                                              "values": [[str(now_ns()), line]]}]}).encode(), loki.JSON)  # fmt: skip
    assert (entry["service"], entry["level"], entry["message"], entry["user_id"]) == (
        "payments", "ERROR", "card declined", "u-7",
    )  # fmt: skip
    assert entry["metadata"] == {
        "region": "eu",
        "time": "2026-01-01T00:00:00Z",
        "created_at": 5,
        "order": 42,
        "k": 1,
    }
    assert isinstance(entry["created_at"], float)  # the entry's timestamp, not the line's


def test_a_line_in_our_own_fields_wins_over_labels_and_metadata_merges() -> None:
    # Lines in our fields take the spliced path (no Python objects); the result must be the mapping's.
    ns = now_ns()
    plain = json.dumps({"message": "m1", "service": "line-svc", "level": "ERROR", "user_id": "u-1"})
    with_metadata = json.dumps({"message": "m2", "metadata": {"k": 1}})
    only_metadata = json.dumps({"message": "m3", "metadata": {"k": 3}, "environment": "staging"})
    body = snappy(
        push_request([
            ('{app="web", level="info", region="eu"}', [(ns // 10**9, 0, plain, []), (ns // 10**9, 1000, with_metadata, [("pod", "p1")])]),
            ('{app="api"}', [(ns // 10**9, 2000, only_metadata, [])]),
        ])
    )  # fmt: skip
    got = [(r[3], r[1], r[4], r[7], r[10], json.loads(r[-1]) if r[-1] else None) for r in parsed(body)]
    assert got == [
        ("line-svc", "ERROR", "development", "u-1", "m1", {"region": "eu"}),
        ("web", "INFO", "development", None, "m2", {"region": "eu", "pod": "p1", "k": 1}),
        ("api", "INFO", "staging", None, "m3", {"k": 3}),
    ]


def test_a_json_line_without_a_message_is_its_own_message_and_other_lines_are_text() -> None:
    lines = ['{"order": 1}', "[1, 2]", "{not json", ""]
    body = json.dumps({"streams": [{"stream": {"app": "a"}, "values": [[str(now_ns()), x] for x in lines]}]})
    entries = mapped(body.encode(), loki.JSON)
    assert [e["message"] for e in entries] == lines
    assert entries[0]["metadata"] == {"order": 1}


def test_nanoseconds_become_exact_microseconds() -> None:
    seconds = int(time.time())
    body = snappy(push_request([('{app="a"}', [(seconds, 123_456_789, "x", [])])]))
    [row] = parsed(body)
    assert row[0] == datetime.fromtimestamp(seconds, UTC).replace(microsecond=123_456)
    as_json = json.dumps({"streams": [{"stream": {}, "values": [[f"{seconds}999999999", "x"]]}]}).encode()
    [row] = parsed(as_json, loki.JSON)
    assert row[0] == datetime.fromtimestamp(seconds, UTC).replace(microsecond=999_999)


@pytest.mark.parametrize(
    "stamp", ["0", "1", "18446744073709551615"], ids=["1970", "1ns", "u64-max-year-2554"]
)
def test_far_timestamps_follow_the_window_rule(stamp: str) -> None:
    body = json.dumps({"streams": [{"stream": {}, "values": [[stamp, "x"]]}]}).encode()
    [row] = parsed(body, loki.JSON)
    assert abs((row[0] - datetime.now(UTC)).total_seconds()) < 3600
    assert json.loads(row[-1])[rows.ORIGINAL_CREATED_AT].startswith(("1970", "2554"))


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(-1, 0), (10**11, 0), (2**63 - 1, 0), (1, 10**9), (1, -1)],
    ids=["negative", "year-5138", "int64-max", "nanos-too-big", "nanos-negative"],
)  # fmt: skip
def test_protobuf_timestamps_out_of_range_are_a_400(seconds: int, nanos: int) -> None:
    body = snappy(push_request([('{app="a"}', [(seconds, nanos, "x", [])])]))
    with pytest.raises(BadRequest, match="out of range"):
        mapped(body)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([1764504000000000000, "x"], "string of digits"),
        (["-1", "x"], "string of digits"),
        (["1e18", "x"], "string of digits"),
        (["1" * 21, "x"], "out of range"),
        (["9" * 5000, "x"], "out of range"),
        (["1", 5], "line must be a string"),
        (["1"], "optional structured metadata"),
        (["1", "x", {"a": 1}], "object of strings"),
        (["1", "x", None], "object of strings"),
    ],
)
def test_bad_json_values_are_a_400_naming_the_entry(value: list[Any], problem: str) -> None:
    body = json.dumps({"streams": [{"stream": {"a": "b"}, "values": [["1", "ok"], value]}]}).encode()
    with pytest.raises(BadRequest, match=problem) as caught:
        mapped(body, loki.JSON)
    assert "streams.0.values.1" in caught.value.message


# --- the route, in process ------------------------------------------------------------------------------


def test_protobuf_push_is_stored_and_answered_204(client: TestClient, db: DB) -> None:
    ns = now_ns()
    body = snappy(
        push_request(
            [('{service="api", level="error"}', [(ns // 10**9, 0, f"line {i}", []) for i in range(3)])]
        )
    )
    response = client.post(PUSH, content=body, headers=PROTOBUF)
    assert response.status_code == 204 and response.content == b""
    stored = db.fetch("SELECT service, level::text AS level, message FROM logs ORDER BY message")
    assert [(r["service"], r["level"], r["message"]) for r in stored] == [
        ("api", "ERROR", f"line {i}") for i in range(3)
    ]


def test_gzip_json_push_is_stored(client: TestClient, db: DB) -> None:
    body = json.dumps({"streams": [{"stream": {"app": "web"}, "values": [[str(now_ns()), "hello"]]}]})
    response = client.post(
        PUSH,
        content=gzip.compress(body.encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 204
    assert [r["message"] for r in db.fetch("SELECT message FROM logs")] == ["hello"]


@pytest.mark.parametrize(
    ("content", "headers", "status", "problem"),
    [
        (b"\x05abc", PROTOBUF, 400, "snappy"),
        (b"", PROTOBUF, 400, "snappy"),
        (snappy(b"\xff\xff\xff"), PROTOBUF, 400, "PushRequest"),
        (snappy(push_request([("service=x", [(1, 0, "x", [])])])), PROTOBUF, 400, "labels"),
        (b"\xff\xff\xff\xff\x0f", PROTOBUF, 413, "expands to"),
        (b'{"streams": 5}', {"Content-Type": "application/json"}, 400, "streams"),
        (b"not json", {"Content-Type": "application/json"}, 400, "not valid JSON"),
        (b"{}", {"Content-Type": "text/plain"}, 415, "Loki push takes"),
    ],
    ids=[
        "bad-snappy",
        "empty",
        "not-protobuf",
        "bad-labels",
        "snappy-bomb",
        "streams-not-array",
        "bad-json",
        "text",
    ],
)
def test_bad_bodies_are_a_clear_4xx_and_store_nothing(
    client: TestClient, db: DB, content: bytes, headers: dict[str, str], status: int, problem: str
) -> None:
    response = client.post(PUSH, content=content, headers=headers)
    assert response.status_code == status, response.text
    assert problem in response.json()["message"]
    assert db.count() == 0


def test_refused_lines_are_a_400_naming_them_while_the_others_are_stored(client: TestClient, db: DB) -> None:
    ns = str(now_ns())
    body = {"streams": [{"stream": {"app": "a"}, "values": [[ns, "good"], [ns, '{"duration_ms": -5}']]}]}
    response = client.post(PUSH, json=body)
    assert response.status_code == 400
    assert (
        "1 of 2 log line(s) refused" in response.json()["message"]
        and "duration_ms" in response.json()["message"]
    )
    assert [r["message"] for r in db.fetch("SELECT message FROM logs")] == ["good"]


def test_an_empty_push_is_a_204_with_nothing_stored(client: TestClient, db: DB) -> None:
    assert client.post(PUSH, json={"streams": []}).status_code == 204
    assert client.post(PUSH, content=snappy(b""), headers=PROTOBUF).status_code == 204
    assert db.count() == 0


def test_an_idempotency_key_stores_once_and_replays_204(client: TestClient, db: DB) -> None:
    body = {"streams": [{"stream": {"app": "a"}, "values": [[str(now_ns()), "once"]]}]}
    headers = {"Idempotency-Key": "loki-once-1"}
    first, second = (client.post(PUSH, json=body, headers=headers) for _ in range(2))
    assert (first.status_code, second.status_code) == (204, 204)
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert db.count() == 1


def test_loki_ready_answers_ready(client: TestClient) -> None:
    response = client.get("/loki/ready")
    assert (response.status_code, response.text) == (200, "ready\n")


def test_too_many_lines_are_a_413(client: TestClient, db: DB) -> None:
    lines = [(1, 0, "x", [])] * 100_001
    response = client.post(PUSH, content=snappy(push_request([('{app="a"}', lines)])), headers=PROTOBUF)
    assert response.status_code == 413 and "more than 100000 log lines" in response.json()["message"]
    assert db.count() == 0


# --- the real server: python-logging-loki and golden bodies ----------------------------------------------


def test_python_logging_loki_through_logging(server: tuple[subprocess.Popen[bytes], str], db: DB) -> None:
    _, url = server
    failures: list[BaseException] = []

    class Handler(logging_loki.LokiHandler):
        def handleError(self, record: logging.LogRecord) -> None:
            failures.append(sys.exc_info()[1])  # type: ignore[arg-type]

    handler = Handler(url=url + PUSH, tags={"application": "billing", "env": "staging"}, version="1")
    logger = logging.getLogger("billing.loki-test")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.warning("invoice %s overdue", "INV-7", extra={"tags": {"customer": "c-9"}})
    logger.error("charge failed")
    logger.critical("ledger out of balance")
    assert failures == []  # python-logging-loki raises on any answer but 204
    stored = db.fetch(
        "SELECT service, level::text AS level, environment::text AS env, message, metadata FROM logs ORDER BY id"
    )
    assert [(r["service"], r["level"], r["env"], r["message"]) for r in stored] == [
        ("billing", "WARN", "staging", "invoice INV-7 overdue"),
        ("billing", "ERROR", "staging", "charge failed"),
        ("billing", "FATAL", "staging", "ledger out of balance"),
    ]
    first = json.loads(stored[0]["metadata"])
    assert first["logger"] == "billing.loki-test" and first["customer"] == "c-9"


def _moved_to_now(stamps: list[str]) -> dict[str, str]:
    shift = now_ns() - int(min(stamps))
    return {stamp: str(int(stamp) + shift) for stamp in stamps}


def golden_json(name: str) -> bytes:
    document = json.loads((GOLDEN / name).read_text())
    values = [value for stream in document["streams"] for value in stream["values"]]
    moved = _moved_to_now([value[0] for value in values])
    for value in values:
        value[0] = moved[value[0]]
    return json.dumps(document).encode()


def golden_protobuf(name: str) -> bytes:
    """A golden PushRequest (Loki's JSON form) as Promtail's client sends it: protobuf, snappy block."""
    document = json.loads((GOLDEN / name).read_text())
    moved = _moved_to_now([e["ts"] for s in document["streams"] for e in s["entries"]])
    streams = []
    for stream in document["streams"]:
        lines = []
        for e in stream["entries"]:
            seconds, nanos = divmod(int(moved[e["ts"]]), 10**9)
            lines.append(
                (
                    seconds,
                    nanos,
                    e["line"],
                    [(p["name"], p["value"]) for p in e.get("structuredMetadata", [])],
                )
            )
        streams.append((stream["labels"], lines))
    return snappy(push_request(streams))


GOLDEN_CASES = {
    "loki-api-push.json": [
        ("checkout", "WARN", "staging", "fizzbuzz", {"region": "eu-west-1"}),
        ("checkout", "WARN", "staging", "card declined",
         {"region": "eu-west-1", "trace_id": "0242ac120002", "user_id": "superUser123"}),
    ],
    "fluent-bit-loki.json": [
        ("fluent-bit", "INFO", "development", "GET /health 200", {"host": "web-1", "stream": "stdout"}),
        ("fluent-bit", "ERROR", "development", "upstream timed out", {"host": "web-1", "stream": "stderr"}),
    ],
    "vector-loki.json": [
        ("payments", "INFO", "production", "payment authorized", {"source_type": "file", "host": "pay-1"}),
        ("payments", "ERROR", "production", "payment failed", {"source_type": "file"}),
    ],
    "promtail.json": [
        ("api", "ERROR", "development", "connection refused to db-1:5432",
         {"filename": "/var/log/app/api.log", "host": "web-1"}),
        ("api", "ERROR", "development", 'retry 2 of 3 "db-1"', {"filename": "/var/log/app/api.log", "host": "web-1"}),
    ],
    "alloy.json": [
        ("inventory", "WARN", "development", "stock low",
         {"filename": "/var/log/inventory.log", "sku": "sku-7", "pod": "inventory-7d9f"}),
    ],
    "docker-driver.json": [
        ("docker", "INFO", "development", '172.18.0.1 - - "GET / HTTP/1.1" 200 615',
         {"compose_project": "shop", "compose_service": "web", "container_name": "shop-web-1", "host": "docker-host",
          "filename": "/var/lib/docker/containers/abc/abc-json.log"}),
    ],
}  # fmt: skip
PROTOBUF_GOLDEN = ("promtail.json", "alloy.json", "docker-driver.json")


@pytest.mark.parametrize("name", list(GOLDEN_CASES))
def test_golden_bodies_of_the_agents_land_in_the_right_columns(
    server: tuple[subprocess.Popen[bytes], str], db: DB, name: str
) -> None:
    _, url = server
    if name in PROTOBUF_GOLDEN:
        response = httpx.post(url + PUSH, content=golden_protobuf(name), headers=PROTOBUF)
    else:
        # Vector and Fluent Bit may gzip their JSON.
        body = golden_json(name)
        response = httpx.post(
            url + PUSH,
            content=gzip.compress(body),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
    assert response.status_code == 204, response.text
    stored = db.fetch(
        "SELECT service, level::text AS level, environment::text AS env, message, metadata, trace_id, user_id, "
        "created_at FROM logs ORDER BY created_at, id"
    )
    got = [
        (r["service"], r["level"], r["env"], r["message"], json.loads(r["metadata"] or "{}")) for r in stored
    ]
    assert got == GOLDEN_CASES[name]
    assert all(abs((r["created_at"] - datetime.now(UTC)).total_seconds()) < 600 for r in stored)
    if name == "alloy.json":
        assert stored[0]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    if name == "vector-loki.json":
        assert stored[0]["user_id"] == "u-42"


# --- the spliced path agrees with the mapping --------------------------------------------------------------

_values = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.text(max_size=6)
    | st.sampled_from(["INFO", "warn", "ERROR", "production", "qa", "GET", "get"])
    | st.dictionaries(st.text(max_size=4), st.integers(), max_size=2)
)
_own_fields = st.fixed_dictionaries(
    {"message": st.text(max_size=5)},
    optional={name: _values for name in ("level", "service", "environment", "user_id", "method", "metadata")},
).map(json.dumps)
_lines = (
    _own_fields
    | st.dictionaries(st.sampled_from([*FIELDS, "msg", "severity", "extra"]), _values, max_size=6).map(
        json.dumps
    )
    | st.text(max_size=10)
)


@given(
    st.lists(_lines, min_size=1, max_size=6),
    st.dictionaries(
        st.sampled_from(["app", "level", "env", "region"]), st.sampled_from(["x", "warn", "prod"]), max_size=3
    ),
    st.dictionaries(st.sampled_from(["pod", "k"]), st.just("v"), max_size=1),
)
@settings(max_examples=300, deadline=None)
def test_spliced_lines_store_what_the_python_mapping_stores(
    lines: list[str], labels: dict[str, str], structured: dict[str, str]
) -> None:
    received = datetime.now(UTC)
    stream = [(int(received.timestamp()), i * 1000, line, structured or None) for i, line in enumerate(lines)]
    spliced = loki.body(iter([(labels, stream)]), 100)
    common, common_metadata = loki._common(labels)
    mapped_only = orjson.dumps({"logs": [
        loki._entry(s + n // 1000 / 1e6, line, md, common, common_metadata) for s, n, line, md in stream
    ]})  # fmt: skip

    def outcome(body: bytes | None) -> Any:
        assert body is not None
        try:
            return rows.parse_partial(body, 100, received)
        except (InvalidLogs, BadRequest) as exc:
            return type(exc), exc.message

    assert outcome(spliced) == outcome(mapped_only)
