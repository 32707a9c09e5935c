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
import re
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
# proto3 JSON as the walker below reads it, and as JSON_SCHEMAS documents it (built from the same rules):
# every message field may be null (its default) and unknown fields are ignored; repeated fields hold
# objects; integers are numbers or decimal strings in their type's range; an AnyValue holds one kind.


def _at_most(n: int) -> str:
    """A regular expression for the decimal numbers from 0 to `n`, without leading zeros."""
    digits = str(n)
    shorter = [f"[1-9][0-9]{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []
    same = []
    for i, digit in enumerate(digits):
        low = 1 if i == 0 else 0
        if int(digit) > low:
            rest = len(digits) - i - 1
            below = f"[{low}-{int(digit) - 1}]" if int(digit) - 1 > low else str(low)
            same.append(digits[:i] + below + (f"[0-9]{{{rest}}}" if rest > 1 else "[0-9]" if rest else ""))
    return "|".join(["0", *shorter, *same, digits])


# (lowest, highest, the decimal strings taken) per integer type: the pattern is exactly the range, so that
# the document's pattern alone says which strings are taken.
_INTEGERS = {
    "fixed64": (0, 2**64 - 1, f"({_at_most(2**64 - 1)})?"),
    "int64": (-(2**63), 2**63 - 1, f"(-?({_at_most(2**63 - 1)})|-{2**63})?"),
    "int32": (-(2**31), 2**31 - 1, f"(-?({_at_most(2**31 - 1)})|-{2**31})?"),
    "fixed32": (0, 2**32 - 1, f"({_at_most(2**32 - 1)})?"),
}
_DOUBLE = "NaN|-?Infinity|-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?"
_BASE64 = "([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
_INTEGER_TEXT = {kind: re.compile(pattern) for kind, (_, _, pattern) in _INTEGERS.items()}
_DOUBLE_TEXT = re.compile(_DOUBLE)
_BASE64_TEXT = re.compile(_BASE64)
# An AnyValue's kinds: (camelCase, snake_case) names.
_KINDS = (
    ("stringValue", "string_value"), ("boolValue", "bool_value"), ("intValue", "int_value"),
    ("doubleValue", "double_value"), ("arrayValue", "array_value"), ("kvlistValue", "kvlist_value"),
    ("bytesValue", "bytes_value"),
)  # fmt: skip


def _from_json(body: bytes) -> Iterator[Scope]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest("OTLP/JSON body must be an object with resourceLogs")
    try:
        for resource_logs in _objects(document, "resourceLogs", "resource_logs"):
            resource = _json_attributes(_get(_object(resource_logs, "resource"), "attributes"))
            for scope_logs in _objects(resource_logs, "scopeLogs", "scope_logs"):
                scope = _object(scope_logs, "scope")
                records = [_json_record(r) for r in _objects(scope_logs, "logRecords", "log_records")]
                yield Scope(resource, _text(_get(scope, "name")), _text(_get(scope, "version")), records)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadRequest(f"body is not a valid OTLP/JSON ExportLogsServiceRequest: {exc}") from None


def _get(obj: Any, *names: str) -> Any:
    if not isinstance(obj, dict):
        raise TypeError(f"expected an object, got {_kind(obj)}")
    for name in names:
        if name in obj:
            return obj[name]
    return None


def _object(obj: Any, *names: str) -> dict[str, Any]:
    """A message field: an object, or null/absent for the empty message."""
    value = _get(obj, *names)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{names[0]}: expected an object, got {_kind(value)}")
    return value


def _objects(obj: Any, *names: str) -> list[Any]:
    """A repeated message field: an array of objects (each checked as it is read), or null/absent."""
    value = _get(obj, *names)
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{names[0]}: expected an array, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_kind(value)}")
    return value


def _int(value: Any, kind: str) -> int:
    # proto3 JSON: integers as numbers or decimal strings.
    lowest, highest, _ = _INTEGERS[kind]
    if value is None:
        return 0
    if type(value) is int:
        number = value
    elif type(value) is float and value.is_integer():
        # orjson reads an integer beyond 64 bits as a float, rounded: a float on a 64-bit limit (beyond 2**53,
        # where floats skip integers) may have been beyond it.
        if value in (lowest, highest) and abs(value) >= 2**53:
            raise ValueError(f"a {kind} is from {lowest} to {highest}, got {value:.0f}")
        number = int(value)
    elif type(value) is str and _INTEGER_TEXT[kind].fullmatch(value):
        number = int(value or "0")
    else:
        raise ValueError(f"expected a {kind} (a number or a decimal string), got {str(value)[:40]!r}")
    if not lowest <= number <= highest:
        raise ValueError(f"a {kind} is from {lowest} to {highest}, got {number}")
    return number


def _double(value: Any) -> float:
    if type(value) in (int, float):
        return float(value)
    if type(value) is str and _DOUBLE_TEXT.fullmatch(value):
        return float(value)
    raise ValueError(
        f"expected a double (a number, a decimal string, NaN or ±Infinity), got {str(value)[:40]!r}"
    )


def _hex_id(value: Any, size: int) -> str:
    text = _text(value)
    if text and (len(text) != size * 2 or any(c not in "0123456789abcdefABCDEF" for c in text)):
        raise ValueError(f"an id must be {size * 2} hex digits, got {text[:40]!r}")
    return text.lower()


def _json_record(record: Any) -> Record:
    body = _get(record, "body")
    return (
        _int(_get(record, "timeUnixNano", "time_unix_nano"), "fixed64"),
        _int(_get(record, "observedTimeUnixNano", "observed_time_unix_nano"), "fixed64"),
        _int(_get(record, "severityNumber", "severity_number"), "int32"),
        _text(_get(record, "severityText", "severity_text")),
        None if body is None else _json_value(body),
        _json_attributes(_get(record, "attributes")),
        _hex_id(_get(record, "traceId", "trace_id"), 16),
        _hex_id(_get(record, "spanId", "span_id"), 8),
        _int(_get(record, "flags"), "fixed32"),
        _text(_get(record, "eventName", "event_name")),
    )


def _json_attributes(pairs: Any) -> dict[str, Any]:
    if pairs is None:
        return {}
    if not isinstance(pairs, list):
        raise TypeError(f"attributes and kvlistValue.values: expected an array, got {_kind(pairs)}")
    out = {}
    for pair in pairs:
        value = _get(pair, "value")
        out[_text(_get(pair, "key"))] = None if value is None else _json_value(value)
    return out


def _json_value(value: Any) -> Any:
    if not isinstance(value, dict):
        raise TypeError(f"an AnyValue must be an object, got {_kind(value)}")
    present = [names for names in _KINDS if names[0] in value or names[1] in value]
    if not present:
        return None
    if len(present) > 1:
        raise ValueError(f"an AnyValue holds one value, got {' and '.join(names[0] for names in present)}")
    (kind, _), content = present[0], _get(value, *present[0])
    if content is None:
        raise TypeError(f"{kind}: expected a value, got null")
    if kind == "stringValue":
        if not isinstance(content, str):
            raise TypeError(f"stringValue: expected a string, got {_kind(content)}")
        return content
    if kind == "boolValue":
        if not isinstance(content, bool):
            raise TypeError(f"boolValue: expected true or false, got {_kind(content)}")
        return content
    if kind == "intValue":
        return _int(content, "int64")
    if kind == "doubleValue":
        return _double(content)
    if kind == "arrayValue":
        return [_json_value(v) for v in _objects(_object(value, *present[0]), "values")]
    if kind == "kvlistValue":
        return _json_attributes(_get(_object(value, *present[0]), "values"))
    if not isinstance(content, str) or not _BASE64_TEXT.fullmatch(content):
        raise ValueError("bytesValue: expected base64 (RFC 4648 with padding)")
    return content


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _integer(kind: str) -> dict[str, Any]:
    lowest, highest, pattern = _INTEGERS[kind]
    return _nullable({"anyOf": [{"type": "integer", "minimum": lowest, "maximum": highest},
                                {"type": "string", "pattern": f"^({pattern})$"}]})  # fmt: skip


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _repeated(name: str) -> dict[str, Any]:
    return {"type": ["array", "null"], "items": _ref(name)}


_STRING = {"type": ["string", "null"]}
# OTLP/JSON as `_from_json` reads it, for the OpenAPI document's components (app/routes/otlp.py). Only
# lowerCamelCase names are listed; snake_case ones are read too.
JSON_SCHEMAS: dict[str, dict[str, Any]] = {
    "OtlpLogsRequest": {"type": "object", "properties": {"resourceLogs": _repeated("OtlpResourceLogs")}},
    "OtlpResourceLogs": {
        "type": "object",
        "properties": {
            "resource": {"type": ["object", "null"], "properties": {"attributes": _repeated("OtlpKeyValue")}},
            "scopeLogs": _repeated("OtlpScopeLogs"),
        },
    },
    "OtlpScopeLogs": {
        "type": "object",
        "properties": {
            "scope": {"type": ["object", "null"], "properties": {"name": _STRING, "version": _STRING}},
            "logRecords": _repeated("OtlpLogRecord"),
        },
    },
    "OtlpLogRecord": {
        "type": "object",
        "properties": {
            "timeUnixNano": _integer("fixed64"),
            "observedTimeUnixNano": _integer("fixed64"),
            "severityNumber": _integer("int32"),
            "severityText": _STRING,
            "body": _nullable(_ref("OtlpAnyValue")),
            "attributes": _repeated("OtlpKeyValue"),
            "traceId": {"type": ["string", "null"], "pattern": "^([0-9a-fA-F]{32})?$"},
            "spanId": {"type": ["string", "null"], "pattern": "^([0-9a-fA-F]{16})?$"},
            "flags": _integer("fixed32"),
            "eventName": _STRING,
        },
    },
    "OtlpKeyValue": {
        "type": "object",
        "properties": {"key": _STRING, "value": _nullable(_ref("OtlpAnyValue"))},
    },
    "OtlpAnyValue": {
        "type": "object",
        "description": "At most one of its kinds.",
        "properties": {
            "stringValue": {"type": "string"},
            "boolValue": {"type": "boolean"},
            "intValue": _integer("int64")["anyOf"][0],
            "doubleValue": {"anyOf": [{"type": "number"}, {"type": "string", "pattern": f"^({_DOUBLE})$"}]},
            "arrayValue": {"type": "object", "properties": {"values": _repeated("OtlpAnyValue")}},
            "kvlistValue": {"type": "object", "properties": {"values": _repeated("OtlpKeyValue")}},
            "bytesValue": {"type": "string", "pattern": f"^({_BASE64})$"},
        },
        "not": {"anyOf": [
            {"required": [a[0], b[0]]} for i, a in enumerate(_KINDS) for b in _KINDS[i + 1:]
        ]},
    },
}  # fmt: skip


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
