"""Fuzzing the ingest path (decode -> parse -> rows, and the whole app over HTTP): whatever the body, the
answer is a success or a 4xx that names the problem, never an exception. Bounded in examples."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import zstandard
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import IngestError
from app.intake.decode import decode
from app.intake.rows import COLUMNS, parse, parse_partial
from app.models import FIELDS

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
        filter_names, st.sampled_from(["INFO", "500", "true", "eu", "", "1e999"]) | st.text(max_size=10)
    ),
    max_size=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(params=filter_params)
def test_log_filters_never_answer_5xx(client: TestClient, params: list[tuple[str, str]]) -> None:
    response = client.get("/logs", params=params)
    assert response.status_code in (200, 422), response.text
