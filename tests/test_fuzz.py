"""Fuzzing the ingest path (decode -> parse -> rows, and the whole app over HTTP): whatever the body, the
answer is a success or a 4xx that names the problem, never an exception. Bounded in examples."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import random
import socket
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import zstandard
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import Settings
from app.errors import IngestError
from app.intake.decode import decode
from app.intake.rows import COLUMNS, parse, parse_partial
from app.main import create_app
from app.models import FIELDS
from app.syslog.framing import Framer
from app.syslog.relp import FramingError, RelpFramer
from app.syslog.sink import Sink
from tests.support import DB, make_settings
from tests.syslog.conftest import start_syslog

LIMIT = 1024 * 1024

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
# Keys a log may have: its real fields (so some entries get far), and anything else.
keys = st.sampled_from(FIELDS) | st.text(max_size=10)
plausible_values = (
    st.sampled_from(["INFO", "warning", "svc", "", "2026-11-27T10:00:00Z", 1_764_244_800_250]) | json_values
)
entries = st.dictionaries(keys, plausible_values, max_size=8) | json_values
bodies = st.builds(lambda logs: {"logs": logs}, st.lists(entries, max_size=5)) | json_values


def serialize(value: Any, draw: st.DrawFn) -> bytes:
    try:
        raw = json.dumps(value, allow_nan=draw(st.booleans())).encode("utf-8", "surrogatepass")
    except ValueError:
        raw = b"{}"
    mutation = draw(st.sampled_from(["none", "truncate", "flip", "bom", "nul"]))
    if mutation == "truncate" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif mutation == "flip" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1 :]
    elif mutation == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif mutation == "nul":
        raw = raw.replace(b'"', b'"\\u0000', 1)
    return raw


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, str]:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200)), draw(st.sampled_from(["identity", "gzip", "deflate", "zstd"]))
    raw = serialize(draw(bodies), draw)
    encoding = draw(st.sampled_from(["identity", "identity", "gzip", "deflate", "zstd"]))
    compress = {
        "identity": bytes,
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "zstd": zstandard.compress,
    }
    return compress[encoding](raw), encoding


@given(requests(), st.booleans())
@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
def test_decode_and_parse_answer_rows_or_a_4xx(request: tuple[bytes, str], partial: bool) -> None:
    body, encoding = request
    try:
        rows = (
            parse_partial(decode(body, encoding, LIMIT), 1000)[0]
            if partial
            else parse(decode(body, encoding, LIMIT), 1000)
        )
    except IngestError as exc:
        assert 400 <= exc.status < 500, exc
        assert exc.message
        return
    assert rows and all(len(row) == len(COLUMNS) for row in rows)


@given(requests())
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_app_never_answers_5xx(client: TestClient, request: tuple[bytes, str]) -> None:
    body, encoding = request
    response = client.post(
        "/logs", content=body, headers={"Content-Type": "application/json", "Content-Encoding": encoding}
    )
    assert response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json"


@st.composite
def otlp_json(draw: st.DrawFn) -> bytes:
    value = st.fixed_dictionaries(
        {},
        optional={
            "stringValue": st.text(max_size=10), "intValue": st.one_of(st.integers(), st.text(max_size=5)),
            "doubleValue": st.floats(), "boolValue": st.booleans(), "bytesValue": st.text(max_size=8),
            "arrayValue": st.just({"values": [{"intValue": "1"}]}), "kvlistValue": json_values,
        },
    )  # fmt: skip
    record = st.fixed_dictionaries(
        {},
        optional={
            "timeUnixNano": st.one_of(st.integers(), st.text(max_size=22)), "severityNumber": st.integers(-5, 30),
            "severityText": st.text(max_size=8), "body": value | json_values, "traceId": st.text("0123456789abcdefg", max_size=33),
            "spanId": st.text("0123456789abcdef", max_size=17), "attributes": st.lists(st.fixed_dictionaries({"key": st.text(max_size=12) | st.sampled_from(["user.id", "exception.type", "http.method", "service.name"]), "value": value}), max_size=4),
        },
    )  # fmt: skip
    resource = st.fixed_dictionaries({"attributes": st.lists(st.fixed_dictionaries({"key": st.sampled_from(["service.name", "deployment.environment", "x"]), "value": value}), max_size=3)})  # fmt: skip
    document = {
        "resourceLogs": [
            {"resource": draw(resource), "scopeLogs": [{"logRecords": draw(st.lists(record, max_size=4))}]}
        ]
    }
    return serialize(draw(st.sampled_from([document, draw(json_values)])), draw)


@given(otlp_json() | st.binary(max_size=300), st.sampled_from(["application/json", "application/x-protobuf"]))
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_otlp_never_answers_5xx(client: TestClient, body: bytes, content_type: str) -> None:
    response = client.post("/v1/logs", content=body, headers={"Content-Type": content_type})
    assert response.status_code < 500, response.text


@st.composite
def shipper_lines(draw: st.DrawFn) -> list[bytes]:
    return [serialize(draw(entries), draw) for _ in range(draw(st.integers(0, 6)))]


@given(shipper_lines(), st.booleans())
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_ndjson_and_arrays_never_answer_5xx(client: TestClient, lines: list[bytes], ndjson: bool) -> None:
    body = b"\n".join(lines) if ndjson else b"[" + b",".join(lines) + b"]"
    kind = "application/x-ndjson" if ndjson else "application/json"
    response = client.post("/logs?service=fuzz&level=INFO", content=body, headers={"Content-Type": kind})
    assert response.status_code < 500, response.text


@st.composite
def loki_json(draw: st.DrawFn) -> bytes:
    stamps = st.sampled_from(["0", "1764504000000000000", "99999999999999999999", "-1", "1e9", ""]) | st.text(
        max_size=22
    )
    lines = st.text(max_size=20) | st.builds(json.dumps, st.dictionaries(keys, plausible_values, max_size=5))
    value = st.lists(stamps | lines | json_values, min_size=0, max_size=4) | st.tuples(stamps, lines).map(
        list
    )
    labels = st.dictionaries(st.sampled_from(["app", "job", "level", "env", "x"]) | st.text(max_size=6),
                             st.text(max_size=8) | json_values, max_size=4)  # fmt: skip
    stream = st.fixed_dictionaries(
        {}, optional={"stream": labels | json_values, "values": st.lists(value, max_size=4)}
    )
    document = {"streams": draw(st.lists(stream, max_size=3))}
    return serialize(draw(st.sampled_from([document, draw(json_values)])), draw)


@st.composite
def loki_protobuf(draw: st.DrawFn) -> bytes:
    import cramjam

    from app.formats.loki import push_request

    request = push_request()
    for _ in range(draw(st.integers(0, 3))):
        stream = request.streams.add()
        stream.labels = draw(
            st.sampled_from(['{app="a", level="warn"}', "{}", "", '{a="\\q"}']) | st.text(max_size=30)
        )
        for _ in range(draw(st.integers(0, 3))):
            entry = stream.entries.add()
            entry.timestamp.seconds = draw(st.integers(-(2**63), 2**63 - 1))
            entry.timestamp.nanos = draw(st.integers(-(2**31), 2**31 - 1))
            entry.line = draw(st.text(max_size=20) | st.sampled_from(['{"level": "bogus", "msg": 1}', "{}"]))
    raw = request.SerializeToString()
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    return bytes(cramjam.snappy.compress_raw(raw)) if draw(st.integers(0, 4)) else raw


@given(
    loki_json() | loki_protobuf() | st.binary(max_size=300),
    st.sampled_from(["application/json", "application/x-protobuf"]),
)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_loki_push_never_answers_5xx(client: TestClient, body: bytes, content_type: str) -> None:
    response = client.post("/loki/api/v1/push", content=body, headers={"Content-Type": content_type})
    assert response.status_code < 500, response.text
    assert response.status_code in (204, 400, 413, 415), response.text


# GET /logs's filters (and every route that takes them): names from the real ones, prefixed or not with
# `not.`/`meta.`, dotted and escaped paths, and any text as values.
filter_names = st.builds(
    lambda prefix, name: prefix + name,
    st.sampled_from(["", "not.", "meta.", "not.meta."]),
    st.sampled_from(["service", "level", "environment", "trace_id", "q", "since", "a.b", "a\\.b", "a..b", ""])
    | st.text(max_size=8),
)
filter_params = st.lists(
    st.tuples(
        filter_names,
        st.sampled_from(["INFO", "500", "true", "eu", "", "1e999", '""', '"a b"'])
        | st.text(max_size=10)
        | st.text(max_size=10).map(lambda t: f'"{t}"'),  # a quoted phrase for q
    ),
    max_size=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(params=filter_params, path=st.sampled_from(["/logs", "/logs/facets", "/logs/stream"]))
def test_log_filters_never_answer_5xx(
    short_streams: TestClient, params: list[tuple[str, str]], path: str
) -> None:
    response = short_streams.get(path, params=params)
    assert response.status_code in (200, 422), response.text


@pytest.fixture
def short_streams(db: DB, database_url: str) -> Iterator[TestClient]:
    # GET /logs/stream ends after a moment, so that each example's answer is whole.
    with TestClient(create_app(make_settings(database_url, stream_max_seconds=0.05))) as client:
        yield client


@st.composite
def bulk_bodies(draw: st.DrawFn) -> bytes:
    """Elasticsearch bulk NDJSON: plausible action/source pairs (ECS names among the keys), broken ones too."""
    action = st.fixed_dictionaries(
        {},
        optional={"_index": st.text(max_size=12) | json_values, "_id": st.text(max_size=8) | st.integers() | json_values,
                  "_type": st.just("_doc")},
    )  # fmt: skip
    ecs = st.sampled_from(["message", "@timestamp", "log.level", "service.name", "trace.id", "user.id", "priority",
                           "error.stack_trace", "log", "service", "http.request.method", "programname"])  # fmt: skip
    source = st.dictionaries(ecs | st.text(max_size=8), plausible_values, max_size=6) | json_values
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(["index", "create", "create", "delete", "update", "merge"]))
        lines.append(serialize({name: draw(action)} if draw(st.integers(0, 9)) else draw(json_values), draw))
        if name != "delete" or draw(st.booleans()):
            lines.append(serialize(draw(source), draw))
    return b"\n".join(lines)


@given(bulk_bodies(), st.sampled_from(["/_bulk", "/fuzz/_bulk", "/elasticsearch/_bulk?service=x"]))
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
def test_bulk_never_answers_5xx(client: TestClient, body: bytes, path: str) -> None:
    response = client.post(path, content=body, headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        answer = response.json()
        assert answer["errors"] == any(
            "error" in result for item in answer["items"] for result in item.values()
        )


@st.composite
def firehose_records(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["text", "json", "cloudwatch", "bytes", "junk"]))
    if kind == "junk":
        return draw(json_values | st.fixed_dictionaries({"data": st.text(max_size=12)}))
    if kind == "text":
        raw = draw(st.text(max_size=40)).encode("utf-8", "surrogatepass")
    elif kind == "json":
        raw = serialize(draw(entries), draw)
    elif kind == "cloudwatch":
        raw = gzip.compress(serialize(draw(cloudwatch_payloads()), draw))
    else:
        raw = draw(st.binary(max_size=60))
    return {"data": base64.b64encode(raw).decode()}


@st.composite
def cloudwatch_payloads(draw: st.DrawFn) -> Any:
    event = st.fixed_dictionaries(
        {"id": st.text(max_size=6) | st.integers(), "timestamp": st.integers(-5, 2**45) | st.floats() | st.text(max_size=3),
         "message": st.text(max_size=30) | st.sampled_from(["REPORT RequestId: x\tDuration: 1e999 ms", "[ERROR]\tt\tr\tm",
                    '{"level": "x", "requestId": 1}', '{"type": "platform.report", "record": {"metrics": 5}}',
                    '{"message": 1, "metadata": [1]}']) | json_values},
    )  # fmt: skip
    payload = st.fixed_dictionaries(
        {"messageType": st.sampled_from(["DATA_MESSAGE", "CONTROL_MESSAGE", "X"]),
         "logGroup": st.sampled_from(["/aws/lambda/f", "/ecs/", "g" * 600, ""]) | json_values,
         "logStream": st.text(max_size=5), "owner": json_values, "logEvents": st.lists(event | json_values, max_size=4)},
    )  # fmt: skip
    return draw(payload | json_values)


@given(cloudwatch_payloads())
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_cloudwatch_payloads_map_or_answer_a_4xx(payload: Any) -> None:
    from app.config import Settings
    from app.formats import cloudwatch
    from app.intake import subscription

    try:
        mapped = cloudwatch.entries(cloudwatch.payloads(json.dumps(payload).encode())[0])
    except IngestError as exc:
        assert 400 <= exc.status < 500 and exc.message
        return
    checked = subscription.check(mapped.entries, Settings(_env_file=None))  # type: ignore[call-arg]
    assert len(checked.rows) + checked.refused == len(mapped.entries)


@given(st.lists(firehose_records(), max_size=5), st.sampled_from(["", "?service=s", "?level=LOUD"]))
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
def test_firehose_never_answers_5xx(client: TestClient, records: list[Any], query: str) -> None:
    body = json.dumps({"requestId": uuid.uuid4().hex, "timestamp": 1, "records": records})
    response = client.post(f"/firehose{query}", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code < 500, response.text
    answer = response.json()
    assert answer["requestId"] and ("errorMessage" in answer) == (response.status_code != 200)


@st.composite
def alert_rules(draw: st.DrawFn) -> Any:
    filters = st.sampled_from(["service", "level", "min_level", "environment", "q", "trace_id", "user_id",
                               "session_id", "meta.region", "meta.", "since", "limit"]) | st.text(max_size=8)  # fmt: skip
    rule = {
        "name": st.text(max_size=30),
        "query": st.dictionaries(filters, plausible_values | st.lists(plausible_values, max_size=3), max_size=4),
        "threshold": st.integers(-2, 2**40) | json_values,
        "window_seconds": st.integers(-2, 2**40),
        "notify": st.lists(st.sampled_from(["https://hooks.example.com/x", "slack://T1/B1/C1", "ftp://x"])
                           | st.text(max_size=20), max_size=3),
        "renotify_seconds": st.integers(-2, 10**7),
    }  # fmt: skip
    body = draw(st.fixed_dictionaries({}, optional=rule))
    return draw(st.sampled_from([body, draw(json_values)]))


@given(alert_rules())
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_alert_rules_never_answer_5xx(client: TestClient, rule: Any) -> None:
    body = json.dumps(rule).encode("utf-8", "surrogatepass")  # NaN and lone surrogates included
    response = client.post("/alerts", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code in (201, 400, 422), response.text
    if response.status_code == 201:
        created = response.json()
        assert client.get(f"/alerts/{created['id']}").json()["query"] == created["query"]
        assert client.delete(f"/alerts/{created['id']}").status_code == 204


# --- syslog (app/syslog/): framing, parsing, mapping, validation; and the real listeners ------------------

syslog_pieces = st.sampled_from([
    b"<13>", b"<191>", b"<192>", b"<0>", b"1 ", b"- ", b"2026-12-06T10:00:00.123456+01:00 ", b"Dec  6 10:00:00 ",
    b"Feb 30 25:61:61 ", b"host ", b"app[12]: ", b"app: ", b"[id@1 a=\"b\\\"c\\]\"]", b"[x", b"\xef\xbb\xbf",
    b'{"message": "m", "level": "loud", "service": ""}', b"@cee: {\"trace_id\": 5}", b"\n", b"\x00", b"\r\n",
    b"12 ", b"9999999999 ", b"0 ", b" ", b"\xff\xfe", b"x" * 70,
]) | st.binary(max_size=12)  # fmt: skip
syslog_streams = st.lists(syslog_pieces, max_size=40).map(b"".join)


@given(syslog_streams, st.lists(st.integers(0, 400), max_size=6))
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
def test_syslog_framing_parsing_and_rows_never_fail(stream: bytes, cuts: list[int]) -> None:
    cap = 64
    framer = Framer(cap)
    frames = []
    previous = 0
    for cut in [*sorted(cuts), len(stream)]:
        frames += framer.feed(stream[previous:cut])
        previous = max(previous, cut)
        assert framer.held() <= cap + 12
    frames += framer.finish()
    assert all(len(data) <= cap for data, _ in frames)
    sink = Sink(Settings(_env_file=None), writer=None, transport="fuzz")  # type: ignore[arg-type,call-arg]
    rows = sink.rows(frames)
    assert len(rows) == len(frames)  # every message becomes exactly one row
    assert all(len(row) == len(COLUMNS) for row in rows)


@given(syslog_streams | st.binary(max_size=300))
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_relp_framing_never_fails_but_with_a_framing_error(stream: bytes) -> None:
    framer = RelpFramer(64)
    try:
        for start in range(0, len(stream), 7):
            framer.feed(stream[start : start + 7])
            assert len(framer.buffer) <= 64 + 64
    except FramingError:
        pass


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_syslog_listeners_survive_garbage_slow_senders_and_absurd_counts(
    db: DB, database_url: str, tmp_path: Path
) -> None:
    server = start_syslog(database_url, tmp_path)
    try:
        rng = random.Random(31)
        for port in (server.tcp, server.relp):
            for _ in range(20):  # random bytes and truncated frames, then a hang-up
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=30) as sock,
                    contextlib.suppress(OSError),
                ):
                    sock.sendall(rng.randbytes(rng.randint(1, 3000)))
                    sock.sendall(b"500 <13>1 - h cut - - - only part of it")
        with socket.create_connection(("127.0.0.1", server.tcp), timeout=30) as slow:
            for byte in b"<13>slow: one byte at a time\n":  # a slow sender is read like any other
                slow.sendall(bytes([byte]))
        before = _rss_kb(server.process.pid)
        chunk = b"z" * 1024 * 1024
        with socket.create_connection(("127.0.0.1", server.tcp), timeout=60) as absurd:
            absurd.sendall(b"9999999999 <13>")
            for _ in range(64):  # 64 MB into one frame: cut at SYSLOG_MAX_MESSAGE, the rest thrown away
                absurd.sendall(chunk)
        with socket.create_connection(("127.0.0.1", server.relp), timeout=60) as absurd:
            absurd.sendall(b"1 syslog 999999999 <13>")
            for _ in range(32):
                absurd.sendall(chunk)
        grown = _rss_kb(server.process.pid) - before
        assert grown < 32 * 1024, f"the server grew by {grown} KiB"
        with socket.create_connection(("127.0.0.1", server.tcp), timeout=30) as sock:
            sock.sendall(b"<13>after: still here\n")
        stored: set[str] = set()
        for _ in range(600):  # bounded: 60 s
            stored = {r["message"] for r in db.fetch("SELECT message FROM logs")}
            if {"still here", "one byte at a time"} <= stored:
                break
            time.sleep(0.1)
        assert {"still here", "one byte at a time"} <= stored
        assert server.process.poll() is None
    finally:
        server.stop()
    assert server.process.returncode == 0


# LogQL (app/logql/, app/routes/loki_query.py): queries assembled from the grammar's pieces, shuffled and cut,
# with any text among them, and Loki's parameters with plausible and arbitrary values.
logql_pieces = st.sampled_from([
    '{service_name="checkout"}', '{level=~"error|fatal"}', "{", "}", '{a!~""}', "|=", "!=", "|~", "!~",
    '"x"', '"("', "`raw`", "or", "and", "| json", "| logfmt", "| status >= 500", "| took > 1s", "| size < 1KB",
    '| __error__=""', "| drop __error__", "| keep a", '| line_format "{{.a}}"', '| line_format "{{ .a | X }}"',
    '| label_format a=b', "| unwrap duration_ms", "| unwrap duration(x)", "[5m]", "[0s]", "offset 1h",
    "count_over_time(", "rate(", "quantile_over_time(0.5,", "sum by (a) (", "topk(2,", "sort(", ")", "(",
    "vector(1)", "+", "/", "^", "> bool", "1e308", "-", "unless", ",", "[", "]",
])  # fmt: skip
logql_queries = st.lists(logql_pieces | st.text(max_size=6), max_size=12).map(" ".join)
logql_params = st.fixed_dictionaries(
    {"query": logql_queries},
    optional={
        name: st.sampled_from(values) | st.text(max_size=12)
        for name, values in {
            "start": [
                "0",
                "1700000000",
                "1700000000.5",
                "2026-12-06T10:00:00Z",
                "-1",
                "99999999999999999999",
            ],
            "end": ["4000000000", "1700003600000000000", "1e30", "nan"],
            "time": ["4000000000", "0"],
            "limit": ["1", "5000", "5001", "0", "-3"],
            "step": ["1", "15s", "0", "1ms", "-5", "inf"],
            "direction": ["forward", "BACKWARD", "sideways"],
        }.items()
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(params=logql_params, path=st.sampled_from(["query_range", "query", "index/volume", "detected_fields"]))
def test_logql_never_answers_5xx(client: TestClient, params: dict[str, str], path: str) -> None:
    response = client.get(f"/loki/api/v1/{path}", params=params)
    assert response.status_code in (200, 400, 422), response.text


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    name=st.sampled_from(["service_name", "level", "x", "a.b", ""]) | st.text(max_size=8),
    params=st.dictionaries(st.sampled_from(["query", "start", "end", "match[]"]), logql_queries, max_size=3),
    path=st.sampled_from(
        ["labels", "label/{}/values", "series", "index/stats", "detected_labels", "detected_field/{}/values"]
    ),
)
def test_loki_label_routes_never_answer_5xx(
    client: TestClient, name: str, params: dict[str, str], path: str
) -> None:
    response = client.get(f"/loki/api/v1/{path.format(quote(name, safe=''))}", params=params)
    assert response.status_code in (200, 400, 404, 422), response.text
