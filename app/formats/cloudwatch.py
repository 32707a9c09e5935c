"""CloudWatch Logs subscription payloads -> entries of our schema.

A subscription filter (to a Lambda, or through Firehose) delivers `base64(gzip(JSON))` where the JSON is

    {"messageType": "DATA_MESSAGE" | "CONTROL_MESSAGE", "owner", "logGroup", "logStream",
     "subscriptionFilters": [...], "logEvents": [{"id", "timestamp" (ms), "message"}]}

Every logEvents[] item becomes one entry (START, END and REPORT lines too): service from the log group
(`/aws/lambda/NAME`, `/aws/ecs/NAME`, `/ecs/NAME` -> NAME, else the group), the event's timestamp as
created_at (app/intake/rows.py's window rule applies), and log_group, log_stream, owner, event_id and the
Lambda request id in metadata. The message is read in the first of these forms it matches:

    Lambda JSON log format   {"timestamp","level","message","requestId",...}, and `platform.*` records
    a JSON object            with a `message` (or a shipper alias): read like a POST /logs entry
    Python runtime           [LEVEL]\\t<time>\\t<request id>\\t<message>
    Node.js runtime          <time>\\t<request id>\\tLEVEL\\t<message>
    REPORT RequestId: ...    Duration -> duration_ms; billed duration, memory, max memory used, init
                             duration in metadata
    START / END RequestId    kept, with the request id
    anything else            the message; level INFO unless the line starts with a level word

Entries are validated afterwards like any other (app/intake/rows.py); a line that cannot become an entry
at all (an item that is not an object with a text message) is reported here, not raised, so one bad line
never blocks the rest of its event.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.errors import BadRequest
from app.formats.shippers import ALIASES
from app.intake.decode import decode as inflate
from app.models import LEVEL_ALIASES, LEVELS

DATA = "DATA_MESSAGE"
CONTROL = "CONTROL_MESSAGE"
GZIP_MAGIC = b"\x1f\x8b"
_SERVICE_PREFIXES = ("/aws/lambda/", "/aws/ecs/", "/ecs/")
_SERVICE_MAX = 100  # LogEntry.service's limit; log group names may be 512 characters
_LEVEL_WORDS = "|".join([*LEVELS, *LEVEL_ALIASES, "WARNING", "ERR", "CRIT"])
_PYTHON = re.compile(rf"\[({_LEVEL_WORDS})\]\t([^\t]*)\t([^\t]*)\t(.*)", re.DOTALL)
_NODE = re.compile(rf"(\d{{4}}-\d\d-\d\dT[^\t]*)\t([^\t]*)\t({_LEVEL_WORDS})\t(.*)", re.DOTALL)
_LEADING_LEVEL = re.compile(rf"\[?({_LEVEL_WORDS})\b", re.IGNORECASE)
_REQUEST_LINE = re.compile(r"(START|END|REPORT) RequestId: ([0-9A-Za-z-]+)")
_REPORT_FIELD = re.compile(r"([A-Za-z][A-Za-z ]*?): ([0-9.]+) (ms|MB)")
# REPORT's fields that go to metadata, by the name the runtime prints.
_REPORT_METADATA = {
    "Billed Duration": "billed_duration_ms",
    "Memory Size": "memory_size_mb",
    "Max Memory Used": "max_memory_used_mb",
    "Init Duration": "init_duration_ms",
    "Restore Duration": "restore_duration_ms",
}
# platform.report's metrics, by their JSON names.
_PLATFORM_METRICS = {
    "billedDurationMs": "billed_duration_ms",
    "memorySizeMB": "memory_size_mb",
    "maxMemoryUsedMB": "max_memory_used_mb",
    "initDurationMs": "init_duration_ms",
    "restoreDurationMs": "restore_duration_ms",
}
_SHORT_LEVELS = {"ERR": "ERROR", "CRIT": "FATAL", "WARNING": "WARN"}
_DECODER = json.JSONDecoder()
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Mapped:
    """One payload's entries, the lines that could not become entries, and what identifies the events."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    control: bool = False
    identity: bytes = b""


def unpack(data: Any, limit: int) -> bytes:
    """`awslogs.data` (base64 of gzip) -> the JSON text; 400 naming what is wrong with it."""
    if not isinstance(data, (str, bytes)):
        raise BadRequest("awslogs.data must be a base64 string")
    return gunzip(from_base64(data, "awslogs.data"), limit)


def from_base64(data: str | bytes, name: str) -> bytes:
    """Strict base64, but for the padding: some producers (sam's sample events) add one `=` too many."""
    text = data.strip().rstrip(b"=" if isinstance(data, bytes) else "=")
    padding = "=" * (-len(text) % 4)
    try:
        return base64.b64decode(
            text + (padding.encode() if isinstance(text, bytes) else padding), validate=True
        )
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"{name} is not valid base64: {exc}") from None


def gunzip(packed: bytes, limit: int) -> bytes:
    if not packed.startswith(GZIP_MAGIC):
        raise BadRequest("a CloudWatch Logs payload must be gzip data")
    return inflate(packed, "gzip", limit)


def payloads(raw: bytes) -> list[dict[str, Any]]:
    """The payload objects in `raw`: one, or several back to back (Firehose may concatenate them)."""
    try:
        single = orjson.loads(raw)  # the usual case, in C; back-to-back objects take the loop below
    except orjson.JSONDecodeError:
        pass
    else:
        if not isinstance(single, dict):
            raise BadRequest("a CloudWatch Logs payload must be a JSON object")
        return [single]
    text = raw.decode("utf-8", "replace").strip()
    found: list[dict[str, Any]] = []
    decoder = _DECODER
    position = 0
    while position < len(text):
        try:
            value, position = decoder.raw_decode(text, position)
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"a CloudWatch Logs payload is not valid JSON: {exc}") from None
        value = scrub(value)
        if not isinstance(value, dict):
            raise BadRequest("a CloudWatch Logs payload must be a JSON object")
        found.append(value)
        while position < len(text) and text[position].isspace():
            position += 1
    if not found:
        raise BadRequest("the CloudWatch Logs payload is empty")
    return found


def scrub(value: Any) -> Any:
    """`value` with every lone surrogate (a `\\ud800` escape the standard library's JSON reads; orjson refuses
    them) replaced by U+FFFD: PostgreSQL's text holds UTF-8 only."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [scrub(item) for item in value]
    if isinstance(value, dict):
        return {scrub(key): scrub(item) for key, item in value.items()}
    return value


def entries(payload: dict[str, Any]) -> Mapped:
    """A payload's entries (none for CONTROL_MESSAGE); 400 when the payload is not a subscription's."""
    kind = payload.get("messageType")
    if kind == CONTROL:
        return Mapped(control=True)
    group, stream, events = payload.get("logGroup"), payload.get("logStream"), payload.get("logEvents")
    if (
        kind != DATA
        or not isinstance(group, str)
        or not isinstance(stream, str)
        or not isinstance(events, list)
    ):
        raise BadRequest(
            "not a CloudWatch Logs subscription payload: it needs messageType DATA_MESSAGE or "
            "CONTROL_MESSAGE, and logGroup, logStream and logEvents"
        )
    common: dict[str, Any] = {"log_group": group, "log_stream": stream}
    if isinstance(payload.get("owner"), str):
        common["owner"] = payload["owner"]
    service = service_of(group)
    mapped = Mapped()
    identity = hashlib.sha256(orjson.dumps([group, stream]))
    for index, event in enumerate(events):
        if not isinstance(event, dict) or not isinstance(event.get("message"), str):
            mapped.problems.append(f"logEvents.{index}: must be an object with a text message")
            continue
        timestamp = event.get("timestamp")
        if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or timestamp < 0:
            mapped.problems.append(f"logEvents.{index}.timestamp: must be milliseconds since 1970")
            continue
        event_id = event.get("id")
        identity.update(orjson.dumps([event_id, timestamp] if isinstance(event_id, str) else [timestamp]))
        if not isinstance(event_id, str):
            identity.update(event["message"].encode("utf-8", "replace"))
        metadata = dict(common)
        if isinstance(event_id, str):
            metadata["event_id"] = event_id
        mapped.entries.append(line(event["message"], service, timestamp / 1000, metadata))
    mapped.identity = identity.digest()
    return mapped


def service_of(group: str) -> str:
    for prefix in _SERVICE_PREFIXES:
        if group.startswith(prefix) and len(group) > len(prefix):
            return group[len(prefix) :][:_SERVICE_MAX]
    return (group or "cloudwatch")[:_SERVICE_MAX]


def line(message: str, service: str, created_at: float, metadata: dict[str, Any]) -> dict[str, Any]:
    """One log line as an entry; `metadata` (this line's own dict) receives what the line tells."""
    text = message.rstrip("\n")
    if text.startswith("{"):
        document = _object(text)
        if document is not None:
            if isinstance(document.get("type"), str) and document["type"].startswith("platform."):
                return _platform(document, service, created_at, metadata)
            if "requestId" in document and "level" in document:
                return _lambda_json(document, service, created_at, metadata)
            if any(name in document for name in ("message", *ALIASES["message"])):
                return _our_entry(document, service, created_at, metadata)
    entry: dict[str, Any] = {"service": service, "created_at": created_at, "level": "INFO", "message": text}
    if match := _PYTHON.fullmatch(text):
        level, _, request_id, entry["message"] = match.groups()
        entry["level"] = _level(level)
        _request_id(metadata, request_id)
    elif match := _NODE.fullmatch(text):
        _, request_id, level, entry["message"] = match.groups()
        entry["level"] = _level(level)
        _request_id(metadata, request_id)
    elif match := _REQUEST_LINE.match(text):
        _request_id(metadata, match.group(2))
        if match.group(1) == "REPORT":
            _report(text, entry, metadata)
    elif level := leading_level(text):
        entry["level"] = level
    entry["metadata"] = metadata
    return entry


def leading_level(text: str) -> str | None:
    """The level a plain text line starts with (`ERROR ...`, `[warn] ...`), or None."""
    match = _LEADING_LEVEL.match(text)
    return _level(match.group(1)) if match else None


def _object(text: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _level(word: str) -> str:
    word = word.upper()
    word = _SHORT_LEVELS.get(word, word)
    return LEVEL_ALIASES.get(word, word) if word in LEVELS or word in LEVEL_ALIASES else "INFO"


def _request_id(metadata: dict[str, Any], request_id: str) -> None:
    if request_id:
        metadata["request_id"] = request_id


def _report(text: str, entry: dict[str, Any], metadata: dict[str, Any]) -> None:
    for name, value, _unit in _REPORT_FIELD.findall(text):
        number = float(value)
        if name == "Duration":
            entry["duration_ms"] = number
        elif name in _REPORT_METADATA:
            metadata[_REPORT_METADATA[name]] = number
    if "XRAY TraceId: " in text:
        metadata["xray_trace_id"] = text.split("XRAY TraceId: ", 1)[1].split("\t", 1)[0].strip()


def _lambda_json(
    document: dict[str, Any], service: str, created_at: float, metadata: dict[str, Any]
) -> dict[str, Any]:
    """Lambda's JSON log format (LoggingConfig LogFormat: JSON), an application line."""
    document = dict(document)
    _request_id(metadata, str(document.pop("requestId") or ""))
    level = document.pop("level")
    entry: dict[str, Any] = {
        "service": service,
        "created_at": created_at,
        "level": _level(level) if isinstance(level, str) else "INFO",
        "message": _text(document.pop("message", "")),
    }
    document.pop("timestamp", None)  # the event's own timestamp is the same instant, in ms
    error_type = document.pop("errorType", None)
    if isinstance(error_type, str):
        entry["error_type"] = error_type[:200]
    stack = document.pop("stackTrace", None)
    if stack is not None:
        entry["stack_trace"] = "\n".join(map(str, stack)) if isinstance(stack, list) else _text(stack)
    if not entry["message"] and isinstance(document.get("errorMessage"), str):
        entry["message"] = document.pop("errorMessage")
    metadata.update(document)
    entry["metadata"] = metadata
    return entry


def _platform(
    document: dict[str, Any], service: str, created_at: float, metadata: dict[str, Any]
) -> dict[str, Any]:
    """A `platform.*` record of Lambda's JSON log format (platform.start, platform.report, ...)."""
    kind = document["type"]
    record = document.get("record")
    entry: dict[str, Any] = {"service": service, "created_at": created_at, "level": "INFO", "message": kind}
    if isinstance(record, dict):
        record = dict(record)
        if isinstance(record.get("requestId"), str):
            _request_id(metadata, record.pop("requestId"))
        metrics = record.pop("metrics", None) if kind == "platform.report" else None
        if isinstance(metrics, dict):
            duration = metrics.pop("durationMs", None)
            if isinstance(duration, (int, float)) and not isinstance(duration, bool):
                entry["duration_ms"] = duration
            for name, key in _PLATFORM_METRICS.items():
                if name in metrics:
                    metadata[key] = metrics.pop(name)
            if metrics:
                record["metrics"] = metrics
        status = record.get("status")
        if isinstance(status, str) and status not in ("success", ""):
            entry["level"] = "ERROR"
            entry["message"] = f"{kind}: {status}"
        if record:
            metadata["record"] = record
    elif record is not None:
        metadata["record"] = record
    entry["metadata"] = metadata
    return entry


def _our_entry(
    document: dict[str, Any], service: str, created_at: float, metadata: dict[str, Any]
) -> dict[str, Any]:
    """A line that is a JSON log of our own schema (or with a shipper's field names)."""
    entry = dict(document)
    for name, aliases in ALIASES.items():
        for alias in aliases:
            if alias in entry and name not in entry:
                entry[name] = entry.pop(alias)
    entry.setdefault("service", service)
    entry.setdefault("created_at", created_at)
    entry.setdefault("level", "INFO")
    own = entry.get("metadata")
    if own is None or isinstance(own, dict):
        entry["metadata"] = {**metadata, **(own or {})}
    # else: left as it is, for validation to name
    return entry


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()
