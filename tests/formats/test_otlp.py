"""POST /v1/logs: the real OpenTelemetry SDK and its two OTLP/HTTP exporters as the client (protobuf with
none, gzip and deflate; OTLP/JSON with none and gzip), OTLP/JSON golden bodies by the spec's rules, the
mapping to our columns, and partial success."""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.common.http import Compression as JSONCompression
from opentelemetry.exporter.otlp.json.http._log_exporter import OTLPLogExporter as JSONLogExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from tests.serverproc import start_server
from tests.support import DB

RESOURCE = {"service.name": "otel-app", "service.version": "1.2.3", "deployment.environment.name": "staging",
            "host.name": "web-1"}  # fmt: skip


@pytest.fixture
def otel_logger(
    server: tuple[subprocess.Popen[bytes], str], request: pytest.FixtureRequest
) -> Iterator[logging.Logger]:
    _, url = server
    compression = getattr(request, "param", Compression.Gzip)
    # The two exporters name their compression enums apart; which enum was given picks the exporter.
    exporter = JSONLogExporter if isinstance(compression, JSONCompression) else OTLPLogExporter
    provider = LoggerProvider(resource=Resource.create(RESOURCE))
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(exporter(endpoint=url + "/v1/logs", compression=compression))
    )
    logger = logging.getLogger(f"otel.{exporter.__module__}.{compression.value}")
    logger.handlers[:] = [LoggingHandler(level=logging.DEBUG, logger_provider=provider)]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    provider.shutdown()


@pytest.mark.parametrize(
    "otel_logger",
    [
        Compression.NoCompression,
        Compression.Gzip,
        Compression.Deflate,
        JSONCompression.NONE,
        JSONCompression.GZIP,
    ],
    ids=["protobuf", "protobuf-gzip", "protobuf-deflate", "json", "json-gzip"],
    indirect=True,
)
def test_the_sdk_through_logging_lands_in_the_right_columns(otel_logger: logging.Logger, db: DB) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("checkout") as span:
        context = span.get_span_context()
        otel_logger.warning("card declined for %s", "order-7", extra={"user.id": "u-1", "order_id": 1042})
        try:
            raise TimeoutError("upstream slow")
        except TimeoutError:
            otel_logger.exception("payment failed")
    rows = db.fetch("SELECT *, level::text AS lv, environment::text AS env FROM logs ORDER BY created_at, id")
    assert len(rows) == 2
    warn, error = rows
    assert (warn["lv"], warn["message"], warn["service"], warn["service_version"], warn["env"]) == (
        "WARN", "card declined for order-7", "otel-app", "1.2.3", "staging")  # fmt: skip
    assert warn["user_id"] == "u-1"
    assert warn["trace_id"] == f"{context.trace_id:032x}"
    metadata = json.loads(warn["metadata"])
    assert metadata["order_id"] == 1042 and metadata["span_id"] == f"{context.span_id:016x}"
    assert metadata["resource"]["host.name"] == "web-1"
    assert warn["function_name"] == "test_the_sdk_through_logging_lands_in_the_right_columns"
    assert warn["file_path"].endswith("test_otlp.py")
    assert error["lv"] == "ERROR" and error["error_type"] == "TimeoutError"
    assert "raise TimeoutError" in error["stack_trace"]


@pytest.fixture
def app_client(client: TestClient) -> TestClient:
    return client


def golden(records: list[dict[str, Any]], resource: dict[str, Any] | None = None) -> dict[str, Any]:
    attributes = [
        {"key": k, "value": {"stringValue": v}} for k, v in (resource or {"service.name": "json-app"}).items()
    ]
    return {"resourceLogs": [{"resource": {"attributes": attributes},
                              "scopeLogs": [{"scope": {"name": "my.lib", "version": "2.0"}, "logRecords": records}]}]}  # fmt: skip


def post_json(client: TestClient, document: dict[str, Any], **headers: str) -> Any:
    return client.post(
        "/v1/logs", content=json.dumps(document), headers={"Content-Type": "application/json", **headers}
    )


def test_otlp_json_by_the_specs_rules(app_client: TestClient, db: DB) -> None:
    now_ns = 1_795_800_000_000_000_000
    records = [
        {"timeUnixNano": str(now_ns), "severityNumber": 17, "severityText": "ERROR",  # int64 as a string
         "body": {"stringValue": "db down"}, "traceId": "5B8EFFF798038103D269B633813FC60C",
         "spanId": "EEE19B7EC3C1B174", "flags": 1,
         "attributes": [{"key": "retries", "value": {"intValue": 3}}, {"key": "ratio", "value": {"doubleValue": 0.5}},
                        {"key": "http.request.method", "value": {"stringValue": "POST"}},
                        {"key": "url.path", "value": {"stringValue": "/pay"}}]},
        {"observedTimeUnixNano": now_ns, "severityNumber": 0, "severityText": "warning",  # int64 as a number
         "body": {"kvlistValue": {"values": [{"key": "event", "value": {"stringValue": "login"}},
                                             {"key": "ok", "value": {"boolValue": True}}]}},
         "traceId": "00000000000000000000000000000000", "eventName": "user.login", "unknownField": 1},
        {"body": {"arrayValue": {"values": [{"intValue": "1"}, {"bytesValue": "AQI="}]}}},
    ]  # fmt: skip
    response = post_json(app_client, golden(records))
    assert response.status_code == 200 and response.json() == {}
    assert response.headers["content-type"].startswith("application/json")
    first, second, third = db.fetch("SELECT *, level::text AS lv, method::text AS m FROM logs ORDER BY id")
    assert first["lv"] == "ERROR" and first["message"] == "db down"
    assert first["trace_id"] == "5b8efff798038103d269b633813fc60c"  # hex, not base64
    assert first["m"] == "POST" and first["path"] == "/pay"
    meta = json.loads(first["metadata"])
    assert meta["retries"] == 3 and meta["ratio"] == 0.5 and meta["span_id"] == "eee19b7ec3c1b174"
    assert meta["scope"] == {"name": "my.lib", "version": "2.0"}
    assert second["lv"] == "WARN" and second["trace_id"] is None
    assert json.loads(second["message"]) == {"event": "login", "ok": True}  # a map body is JSON, never ""
    assert json.loads(second["metadata"])["event_name"] == "user.login"
    assert first["created_at"] == second["created_at"]
    assert (
        json.loads(third["message"]) == [1, "AQI="]
        and third["lv"] == "INFO"
        and third["service"] == "json-app"
    )


def test_invalid_records_go_to_partial_success(app_client: TestClient, db: DB) -> None:
    records = [{"body": {"stringValue": "ok"}},
               {"body": {"stringValue": "bad"}, "attributes": [{"key": "session.id", "value": {"stringValue": "s" * 500}}]}]  # fmt: skip
    response = post_json(app_client, golden(records))
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1" and "session_id" in partial["errorMessage"]
    assert [r["message"] for r in db.fetch("SELECT message FROM logs")] == ["ok"]


def test_protobuf_answers_in_protobuf(app_client: TestClient, db: DB) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    scope.log_records.append(LogRecord(severity_number=9, body={"string_value": "fine"}))
    bad = scope.log_records.add()
    bad.body.string_value = "refused"
    attribute = bad.attributes.add()
    attribute.key, attribute.value.string_value = "user.id", "u" * 300
    response = app_client.post(
        "/v1/logs", content=gzip.compress(request.SerializeToString()),
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )  # fmt: skip
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    answer = ExportLogsServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_log_records == 1
    assert [r["message"] for r in db.fetch("SELECT message FROM logs")] == ["fine"]


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"\x0a\xff\xff", {"Content-Type": "application/x-protobuf"}, 400),
        (b"{not json", {"Content-Type": "application/json"}, 400),
        (
            b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "not-hex"}]}]}]}',
            {"Content-Type": "application/json"},
            400,
        ),
        (b"{}", {"Content-Type": "text/plain"}, 415),
        (
            gzip.compress(b" " * (11 * 1024 * 1024)),
            {"Content-Type": "application/json", "Content-Encoding": "gzip"},
            413,
        ),
    ],
)
def test_bad_requests_get_the_status_exporters_understand(
    app_client: TestClient, db: DB, body: bytes, headers: dict[str, str], status: int
) -> None:
    assert app_client.post("/v1/logs", content=body, headers=headers).status_code == status
    assert db.count() == 0


def test_not_one_valid_record_is_a_400(app_client: TestClient, db: DB) -> None:
    response = post_json(app_client, golden([{"body": {"stringValue": "x"}}], {"service.name": "s" * 200}))
    assert response.status_code == 400 and "no log record" in response.json()["message"]


def _requests(url: str, status: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics").text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "logsave_requests_total" and s.labels == {"route": "/v1/logs", "status": status}
    )


def test_the_exporter_retries_our_503_and_not_our_400(tmp_path: Path) -> None:
    from app import embedded
    from tests.test_faults import _pg_ctl

    database_url = embedded.start(tmp_path / "pgdata", "otelretry")
    pgdata = tmp_path / "pgdata" / "pg"
    process, url = start_server({"DATABASE_URL": database_url, "DB_ACQUIRE_TIMEOUT": "1"}, tmp_path)
    try:
        provider = LoggerProvider(resource=Resource.create({"service.name": "retrying"}))
        provider.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(endpoint=url + "/v1/logs", timeout=30))
        )
        logger = logging.getLogger("otel.retry")
        logger.handlers[:] = [LoggingHandler(logger_provider=provider)]
        logger.propagate = False
        _pg_ctl(pgdata, "stop", "-m", "fast")
        restart = threading.Timer(2.5, _pg_ctl, (pgdata, "start"))
        restart.start()
        logger.warning("sent while PostgreSQL is away")  # SimpleLogRecordProcessor exports right here
        restart.join()
        assert _requests(url, "503") >= 1 and _requests(url, "200") == 1
        assert [r["message"] for r in DB(database_url).fetch("SELECT message FROM logs")] == [
            "sent while PostgreSQL is away"
        ]

        refused = LoggerProvider(resource=Resource.create({"service.name": "s" * 200}))
        refused.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(endpoint=url + "/v1/logs", timeout=30))
        )
        logger.handlers[:] = [LoggingHandler(logger_provider=refused)]
        logger.warning("no service name fits")
        assert _requests(url, "400") == 1  # not retried
        provider.shutdown()
        refused.shutdown()
    finally:
        process.kill()
        process.wait(10)
        _pg_ctl(pgdata, "stop", "-m", "immediate")


# --- the OpenAPI document and the server agree on what OTLP/JSON body is taken ---------------------------


def _record_with(**fields: Any) -> dict[str, Any]:
    return {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "m"}, **fields}]}]}]}


def _attribute(value: Any) -> dict[str, Any]:
    return _record_with(attributes=[{"key": "k", "value": value}])


# (body, taken): each judged by the document's schema and by the server, which must agree.
AGREED = [
    ({"resourceLogs": None}, True),  # proto3 JSON: null is the default, an empty list
    ({}, True),
    ({"resourceLogs": []}, True),
    ({"resourceLogs": [[]]}, False),  # a repeated message holds objects
    ({"resourceLogs": [None]}, False),
    ({"resourceLogs": {}}, False),
    ({"resourceLogs": [{"resource": None, "scopeLogs": None}]}, True),
    ({"resourceLogs": [{"resource": []}]}, False),  # a message is an object or null, never []
    ({"resourceLogs": [{"scopeLogs": [{"scope": [], "logRecords": []}]}]}, False),
    ({"resourceLogs": [{"scopeLogs": [{"scope": {"name": 5}}]}]}, False),
    (_record_with(timeUnixNano="1795800000000000000", observedTimeUnixNano=1795800000000000000), True),
    (_record_with(timeUnixNano=""), True),
    (_record_with(timeUnixNano=str(2**64 - 1)), True),
    (_record_with(timeUnixNano=str(2**64)), False),
    (_record_with(timeUnixNano="007"), False),
    (_record_with(timeUnixNano="+5"), False),
    (_record_with(timeUnixNano="1_000"), False),
    (_record_with(timeUnixNano="\u0661\u0662"), False),  # Arabic-Indic digits: int() would read them
    (_record_with(timeUnixNano=1.5), False),
    (_record_with(timeUnixNano=0.0, flags=float(2**32 - 1), severityNumber=-float(2**31)), True),
    (_record_with(timeUnixNano=-1), False),
    (_record_with(timeUnixNano=2**64), False),
    (_record_with(severityNumber=2**31), False),
    (_record_with(severityNumber=17, severityText=None, flags=1, eventName=None), True),
    (_record_with(severityText=5), False),
    (_record_with(traceId=5), False),
    (_record_with(traceId="5B8EFFF798038103D269B633813FC60C", spanId=None), True),
    (_record_with(spanId="xyz"), False),
    (_record_with(body=None), True),
    (_record_with(body={}), True),
    (_record_with(body=[]), False),
    (_record_with(body={"stringValue": "a", "intValue": 1}), False),  # an AnyValue holds one kind
    (_record_with(body={"stringValue": 5}), False),
    (_record_with(body={"intValue": None}), False),
    (_record_with(attributes=[{"key": None, "value": None}]), True),
    (_record_with(attributes=[{"key": 5, "value": {"stringValue": "v"}}]), False),
    (_record_with(attributes=[None]), False),
    (_attribute([]), False),
    (_attribute({"boolValue": True}), True),
    (_attribute({"boolValue": "yes"}), False),
    (_attribute({"intValue": "-9223372036854775808"}), True),
    (_attribute({"intValue": str(-(2**63) - 1)}), False),
    (_attribute({"intValue": str(2**63 - 1)}), True),
    (_attribute({"intValue": -(2**63) - 1}), False),  # read as a float that rounds onto the limit
    (_attribute({"intValue": 1.0}), True),
    (_attribute({"intValue": 1.5}), False),
    (_attribute({"doubleValue": "Infinity"}), True),  # kept as a string: metadata cannot hold it
    (_attribute({"doubleValue": "1e3"}), True),
    (_attribute({"doubleValue": " 1"}), False),
    (_attribute({"doubleValue": True}), False),
    (_attribute({"bytesValue": "AQI="}), True),
    (_attribute({"bytesValue": "AQI"}), False),
    (_attribute({"arrayValue": {"values": [{"intValue": 1}, {}]}}), True),
    (_attribute({"arrayValue": {"values": [None]}}), False),
    (_attribute({"arrayValue": None}), False),
    (_attribute({"kvlistValue": {"values": [{"key": "a", "value": {"doubleValue": 0.5}}]}}), True),
    (_attribute({"kvlistValue": {"values": {}}}), False),
]


@pytest.fixture
def otlp_schema(app_client: TestClient) -> Any:
    import jsonschema

    document = app_client.get("/openapi.json").json()
    body = document["paths"]["/v1/logs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator({**body, "components": document["components"]})


@pytest.mark.parametrize(("body", "taken"), AGREED)
def test_the_document_says_which_otlp_json_bodies_are_taken(
    app_client: TestClient, db: DB, otlp_schema: Any, body: dict[str, Any], taken: bool
) -> None:
    assert otlp_schema.is_valid(body) is taken, list(otlp_schema.iter_errors(body))
    response = post_json(app_client, body)
    assert (response.status_code == 200) is taken, response.text
    if not taken:
        assert response.status_code == 400 and "OTLP/JSON" in response.json()["message"]
