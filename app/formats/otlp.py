"""OTLP/HTTP logs (opentelemetry-proto's ExportLogsServiceRequest) -> entries of our schema.

Both encodings end in the same plain values before they are mapped, so the mapping is written once:

* protobuf is parsed by `opentelemetry-proto` (upb, in C);
* OTLP/JSON is read with orjson and walked here: keys in lowerCamelCase (snake_case is accepted too),
  trace and span ids in hex (google.protobuf.json_format would read them as base64), 64-bit integers as
  strings or numbers, enums as numbers, unknown fields ignored.

The entries then go through the same validation as POST /logs (app/intake/rows.py), so a record is stored only
as a log of our schema would be; records it refuses are counted in `partial_success`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from app.errors import BadRequest, UnsupportedMediaType
from app.models import ENVIRONMENTS, LEVEL_ALIASES, LEVELS, METHODS

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# severity_number 1-4 TRACE, 5-8 DEBUG, 9-12 INFO, 13-16 WARN, 17-20 ERROR, 21-24 FATAL
_SEVERITY = {n: LEVELS[(n - 1) // 4] for n in range(1, 25)}
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


# One log record with every value already plain Python, in this order; a tuple because both walkers
# build one per record and a class's __init__ would be a tenth of a protobuf record's cost.
Record = tuple[int, int, int, str, Any, dict[str, Any], str, str, int, str]
# (time_unix_nano, observed_time_unix_nano, severity_number, severity_text, body, attributes, trace_id,
#  span_id, flags, event_name)


@dataclass
class Scope:
    resource: dict[str, Any]
    name: str
    version: str
    records: list[Record]


def media_type(header: str | None) -> str:
    kind = (header or "").partition(";")[0].strip().lower()
    if kind in (PROTOBUF, JSON):
        return kind
    raise UnsupportedMediaType(
        f"unsupported Content-Type {kind or '(none)'!r}: OTLP/HTTP sends {PROTOBUF} or {JSON}"
    )


def scopes(body: bytes, kind: str) -> Iterator[Scope]:
    """The request's scopes of records, from either encoding; 400 when the body cannot be read."""
    return _from_protobuf(body) if kind == PROTOBUF else _from_json(body)


# --- protobuf ---------------------------------------------------------------------------------------


@cache
def _messages() -> Any:
    """opentelemetry-proto's request and response, imported by the first protobuf request: protobuf's
    import is a cost a Lambda cold start, or a server that never sees OTLP, need not pay."""
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

    return logs_service_pb2


def _from_protobuf(body: bytes) -> Iterator[Scope]:
    from google.protobuf.message import DecodeError

    request = _messages().ExportLogsServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise BadRequest(f"body is not a valid OTLP ExportLogsServiceRequest (protobuf): {exc}") from None
    for resource_logs in request.resource_logs:
        resource = _pb_attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            records = [
                (
                    r.time_unix_nano,
                    r.observed_time_unix_nano,
                    r.severity_number,
                    r.severity_text,
                    _pb_value(r.body) if r.HasField("body") else None,
                    _pb_attributes(r.attributes),
                    r.trace_id.hex(),
                    r.span_id.hex(),
                    r.flags,
                    r.event_name,
                )
                for r in scope_logs.log_records
            ]
            yield Scope(resource, scope_logs.scope.name, scope_logs.scope.version, records)


def _pb_attributes(pairs: Any) -> dict[str, Any]:
    # Most of a protobuf request's cost is here, in upb's wrapper objects for each pair and value (about
    # 0.25 µs a pair just to iterate, results/REPORT.md): strings, nearly every attribute, and nested
    # maps are read without a further call.
    out = {}
    for pair in pairs:
        value = pair.value
        kind = value.WhichOneof("value")
        if kind == "string_value":
            out[pair.key] = value.string_value
        elif kind == "kvlist_value":
            out[pair.key] = _pb_attributes(value.kvlist_value.values)
        else:
            out[pair.key] = _pb_other(value, kind)
    return out


def _pb_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    return _pb_other(value, kind)


def _pb_other(value: Any, kind: str | None) -> Any:
    """Every kind but a string, which both callers read themselves."""
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "kvlist_value":
        return _pb_attributes(value.kvlist_value.values)
    if kind == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None


# --- JSON -------------------------------------------------------------------------------------------


def _from_json(body: bytes) -> Iterator[Scope]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest("OTLP/JSON body must be an object with resourceLogs")
    try:
        for resource_logs in _list(_get(document, "resourceLogs", "resource_logs")):
            resource = _json_attributes(_get(_get(resource_logs, "resource") or {}, "attributes"))
            for scope_logs in _list(_get(resource_logs, "scopeLogs", "scope_logs")):
                scope = _get(scope_logs, "scope") or {}
                records = [_json_record(r) for r in _list(_get(scope_logs, "logRecords", "log_records"))]
                yield Scope(
                    resource, str(_get(scope, "name") or ""), str(_get(scope, "version") or ""), records
                )
    except (TypeError, ValueError, AttributeError, binascii.Error) as exc:
        raise BadRequest(f"body is not a valid OTLP/JSON ExportLogsServiceRequest: {exc}") from None


def _get(obj: Any, *names: str) -> Any:
    if not isinstance(obj, dict):
        raise TypeError(f"expected an object, got {type(obj).__name__}")
    for name in names:
        if name in obj:
            return obj[name]
    return None


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"expected an array, got {type(value).__name__}")
    return value


def _int(value: Any) -> int:
    # proto3 JSON: 64-bit integers as strings or numbers.
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise TypeError("expected an integer, got a boolean")
    return int(value)


def _fixed64(value: Any) -> int:
    # The times are fixed64 in the proto: what protobuf cannot carry, OTLP/JSON cannot either (and a
    # number beyond a float's range could not be turned into seconds).
    number = _int(value)
    if not 0 <= number < 2**64:
        raise ValueError(f"a time in Unix nanoseconds is a fixed64 (0 to 2**64 - 1), got {number}")
    return number


def _hex_id(value: Any, size: int) -> str:
    text = str(value or "")
    if text and (len(text) != size * 2 or any(c not in "0123456789abcdefABCDEF" for c in text)):
        raise ValueError(f"an id must be {size * 2} hex digits, got {text[:40]!r}")
    return text.lower()


def _json_record(record: Any) -> Record:
    body = _get(record, "body")
    return (
        _fixed64(_get(record, "timeUnixNano", "time_unix_nano")),
        _fixed64(_get(record, "observedTimeUnixNano", "observed_time_unix_nano")),
        _int(_get(record, "severityNumber", "severity_number")),
        str(_get(record, "severityText", "severity_text") or ""),
        _json_value(body) if body is not None else None,
        _json_attributes(_get(record, "attributes")),
        _hex_id(_get(record, "traceId", "trace_id"), 16),
        _hex_id(_get(record, "spanId", "span_id"), 8),
        _int(_get(record, "flags")),
        str(_get(record, "eventName", "event_name") or ""),
    )


def _json_attributes(pairs: Any) -> dict[str, Any]:
    return {str(_get(pair, "key")): _json_value(_get(pair, "value") or {}) for pair in _list(pairs)}


def _json_value(value: Any) -> Any:
    if not isinstance(value, dict):
        raise TypeError(f"an AnyValue must be an object, got {type(value).__name__}")
    if (text := _get(value, "stringValue", "string_value")) is not None:
        return str(text)
    if (number := _get(value, "intValue", "int_value")) is not None:
        return _int(number)
    if (double := _get(value, "doubleValue", "double_value")) is not None:
        return float(double)
    if (flag := _get(value, "boolValue", "bool_value")) is not None:
        return bool(flag)
    if (raw := _get(value, "bytesValue", "bytes_value")) is not None:
        return base64.b64encode(base64.b64decode(raw, validate=True)).decode()
    if (array := _get(value, "arrayValue", "array_value")) is not None:
        return [_json_value(v) for v in _list(_get(array, "values"))]
    if (kvlist := _get(value, "kvlistValue", "kvlist_value")) is not None:
        return _json_attributes(_get(kvlist, "values"))
    return None


# --- records -> our entries -------------------------------------------------------------------------


def entries(request_scopes: Iterator[Scope]) -> list[dict[str, Any]]:
    """Every record as an entry of POST /logs's schema (app/models.py LogEntry)."""
    out = []
    for scope in request_scopes:
        resource = dict(scope.resource)
        service = _pop_text(resource, "service.name") or "unknown_service"
        version = _pop_text(resource, "service.version")
        environment = _pop_text(resource, "deployment.environment.name") or _pop_text(
            resource, "deployment.environment"
        )
        common: dict[str, Any] = {"service": service}
        common_metadata: dict[str, Any] = {}
        if version:
            common["service_version"] = version
        if environment:
            if environment.strip().lower() in ENVIRONMENTS:
                common["environment"] = environment
            else:
                common_metadata["deployment.environment"] = environment
        if resource:
            common_metadata["resource"] = resource
        if scope.name or scope.version:
            common_metadata["scope"] = {"name": scope.name, "version": scope.version}
        for record in scope.records:
            out.append(_entry(record, common, common_metadata))
    return out


def _entry(record: Record, common: dict[str, Any], common_metadata: dict[str, Any]) -> dict[str, Any]:
    """One record as an entry; `common` and `common_metadata` are its resource's and scope's share."""
    (time_unix_nano, observed_time_unix_nano, severity_number, severity_text, body, attributes, trace_id,
     span_id, flags, event_name) = record  # fmt: skip
    # `attributes` is this record's own dict (both walkers build a new one), so it is consumed here.
    metadata: dict[str, Any] = {}
    entry = dict(common)
    nanos = time_unix_nano or observed_time_unix_nano
    if nanos:
        entry["created_at"] = nanos / 1e9  # seconds: a small nanosecond count must not pass for seconds
    entry["level"] = _level(severity_number, severity_text, metadata)
    message = entry["message"] = _message(body)
    if trace_id and trace_id != _ZERO_TRACE:
        entry["trace_id"] = trace_id
    if span_id and span_id != _ZERO_SPAN:
        metadata["span_id"] = span_id
    if flags:
        metadata["trace_flags"] = flags
    if attributes:
        for column, names in _COLUMNS:
            for name in names:
                value = attributes.pop(name, None)
                if value is not None and column not in entry:
                    entry[column] = value if isinstance(value, str) else orjson.dumps(value).decode()
        exception_message = attributes.pop("exception.message", None)
        if not message and exception_message is not None:
            entry["message"] = str(exception_message)
        elif exception_message is not None:
            metadata["exception.message"] = exception_message
        method = entry.get("method")
        if method is not None and method.strip().upper() not in METHODS:
            metadata["http.request.method"] = entry.pop("method")
        metadata.update(attributes)
    if common_metadata:
        metadata.update(common_metadata)
    if event_name:
        metadata["event_name"] = event_name
    if metadata:
        entry["metadata"] = metadata
    return entry


# (column, attribute names in order of preference): semantic conventions, newest name first.
_COLUMNS = (
    ("error_type", ("exception.type",)),
    ("stack_trace", ("exception.stacktrace",)),
    ("user_id", ("user.id", "enduser.id")),
    ("session_id", ("session.id",)),
    ("path", ("url.path", "http.route")),
    ("method", ("http.request.method", "http.method")),
    ("function_name", ("code.function.name", "code.function")),
    ("file_path", ("code.file.path", "code.filepath")),
)


def _level(severity_number: int, severity_text: str, metadata: dict[str, Any]) -> str:
    if severity_number in _SEVERITY:
        return _SEVERITY[severity_number]
    text = severity_text.strip().upper()
    text = LEVEL_ALIASES.get(text, text)
    if text in LEVELS:
        return text
    if severity_text:
        metadata["severity_text"] = severity_text
    return "INFO"


def _message(body: Any) -> str:
    if body is None:
        return ""
    if isinstance(body, str):
        return body
    return orjson.dumps(body).decode()


def _pop_text(attributes: dict[str, Any], name: str) -> str | None:
    value = attributes.pop(name, None)
    return None if value is None else str(value)


def response(kind: str, rejected: int, message: str) -> bytes:
    """ExportLogsServiceResponse in the request's encoding; partial_success only when something was refused."""
    if kind == PROTOBUF:
        answer = _messages().ExportLogsServiceResponse()
        if rejected:
            answer.partial_success.rejected_log_records = rejected
            answer.partial_success.error_message = message
        return answer.SerializeToString()
    if not rejected:
        return b"{}"
    return orjson.dumps({"partialSuccess": {"rejectedLogRecords": str(rejected), "errorMessage": message}})
