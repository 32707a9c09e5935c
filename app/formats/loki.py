"""Loki's push API (POST /loki/api/v1/push) -> entries of our schema.

Two encodings, what Promtail, Grafana Alloy, Fluent Bit's `loki` output, Vector's `loki` sink, Docker's Loki
driver and python-logging-loki send:

* JSON: `{"streams": [{"stream": {labels}, "values": [["<unix ns>", "line", {structured metadata}?]]}]}`;
* protobuf (`application/x-protobuf`), snappy *block* compressed: Loki's push.proto, PushRequest{1 repeated
  StreamAdapter}; StreamAdapter{1 labels (Prometheus label text `{a="b", c="d"}`), 2 repeated EntryAdapter,
  3 hash}; EntryAdapter{1 google.protobuf.Timestamp, 2 line, 3 repeated LabelPairAdapter{1 name, 2 value}}.
  The message classes are built from a descriptor here (no generated code, no protoc) and parsed by upb.

Mapping: the labels service/service_name/app/application/job/container give `service` (the first present;
"unknown_service" without any), level/severity/detected_level give `level`, env/environment give
`environment`; the other labels and the structured metadata go into `metadata`. Level and environment are
read leniently (syslog names, prod/dev): a value we cannot place is kept in metadata and the default used,
since an agent cannot fix its labels for us. A line that is a JSON object is read like a /logs entry (our
fields, plus the shippers' message and level aliases; its other fields join metadata, and its own values win
over the labels); any other line is the message. The entry's timestamp is `created_at`, to the microsecond;
a time in a JSON line stays in metadata. The entries then go through app/intake/rows.py like every format.

That mapping is what GET /logs shows. Beside each entry, what the Loki query API gives back is kept
(`Kept`, the loki_* columns): the labels as pushed (service_name added as Loki 3 derives it), the structured
metadata as pushed, and the line when the message is not it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache, lru_cache
from typing import Any, Optional

import msgspec
import orjson

from app.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from app.models import ENVIRONMENTS, KNOWN_FIELDS, LEVEL_ALIASES, LEVELS, SECONDS_BELOW, RawLogEntry

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

SERVICE_LABELS = ("service", "service_name", "app", "application", "job", "container")
LEVEL_LABELS = ("level", "severity", "detected_level")
ENVIRONMENT_LABELS = ("env", "environment")
UNKNOWN_SERVICE = "unknown_service"
# The labels Loki 3 derives a stream's service_name from when none is pushed, in its order (its limits'
# `discover_service_name` default); without any, service_name is unknown_service.
DISCOVER_SERVICE_NAME = ("service", "app", "application", "name", "app_kubernetes_io_name", "container",
                         "container_name", "component", "workload", "job")  # fmt: skip
# Level names agents and syslog use beyond ours (python-logging-loki sends logging's names in lower case).
_LEVELS = {
    **{level: level for level in LEVELS},
    **LEVEL_ALIASES,
    "EMERG": "FATAL", "EMERGENCY": "FATAL", "ALERT": "FATAL", "CRIT": "FATAL", "PANIC": "FATAL",
    "ERR": "ERROR", "EROR": "ERROR", "WARN": "WARN", "WRN": "WARN", "NOTICE": "INFO", "INF": "INFO",
    "INFORMATIONAL": "INFO", "DBG": "DEBUG", "TRC": "TRACE",
}  # fmt: skip
_ENVIRONMENTS = {
    **{value: value for value in ENVIRONMENTS},
    "prod": "production", "stage": "staging", "stg": "staging", "dev": "development",
}  # fmt: skip
# A JSON line's names for our fields (app/formats/shippers.py's aliases, without the times: the entry's own
# timestamp is created_at).
_LINE_ALIASES = (("message", ("msg", "log")), ("level", ("severity",)))
_NANOS = 1_000_000_000


def media_type(header: str | None) -> str:
    kind = (header or "").partition(";")[0].strip().lower()
    if kind in (PROTOBUF, JSON):
        return kind
    raise UnsupportedMediaType(
        f"unsupported Content-Type {kind or '(none)'!r}: Loki push takes {PROTOBUF} (snappy) or {JSON}"
    )


# --- streams: (labels, [(seconds, nanos, line, structured metadata)]) -----------------------------------

Entry = tuple[int, int, str, dict[str, Any] | None]


def streams(body: bytes, kind: str, max_bytes: int) -> Iterator[tuple[dict[str, str], list[Entry]]]:
    """The request's streams, from either encoding; 400 when the body cannot be read."""
    return _from_protobuf(body, max_bytes) if kind == PROTOBUF else _from_json(body)


def snappy_length(body: bytes, max_bytes: int) -> int:
    """The size a snappy block says it expands to (its varint preamble): 413 past `max_bytes`, checked
    before anything is decompressed."""
    size = shift = 0
    for index, byte in enumerate(body[:5]):
        size |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if size > max_bytes:
                raise PayloadTooLarge(f"the snappy body expands to {size} bytes; the limit is {max_bytes}")
            return size
        shift += 7
        if index == 4:
            break
    raise BadRequest("body is not snappy block data: no length preamble (Loki protobuf is snappy-compressed)")


@cache
def _messages() -> Any:
    """push.proto's PushRequest, built from a descriptor in a pool of its own by the first protobuf request
    (protobuf's import is a cost a Lambda cold start that never sees Loki need not pay)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(
        name="pkg/push/push.proto", package="logproto", syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )  # fmt: skip
    field = descriptor_pb2.FieldDescriptorProto
    optional, repeated = field.LABEL_OPTIONAL, field.LABEL_REPEATED

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        described = proto.message_type.add(name=name)
        for field_name, number, label, kind, type_name in fields:
            added = described.field.add(name=field_name, number=number, label=label, type=kind)
            if type_name:
                added.type_name = type_name

    message("PushRequest", ("streams", 1, repeated, field.TYPE_MESSAGE, ".logproto.StreamAdapter"))
    message(
        "StreamAdapter",
        ("labels", 1, optional, field.TYPE_STRING, ""),
        ("entries", 2, repeated, field.TYPE_MESSAGE, ".logproto.EntryAdapter"),
        ("hash", 3, optional, field.TYPE_UINT64, ""),
    )
    message("LabelPairAdapter", ("name", 1, optional, field.TYPE_STRING, ""),
            ("value", 2, optional, field.TYPE_STRING, ""))  # fmt: skip
    message(
        "EntryAdapter",
        ("timestamp", 1, optional, field.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
        ("line", 2, optional, field.TYPE_STRING, ""),
        ("structuredMetadata", 3, repeated, field.TYPE_MESSAGE, ".logproto.LabelPairAdapter"),
    )
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))


def push_request() -> Any:
    """An empty PushRequest message (tests and the bench build bodies with it, as Promtail does)."""
    return _messages()()


def _from_protobuf(body: bytes, max_bytes: int) -> Iterator[tuple[dict[str, str], list[Entry]]]:
    import cramjam
    from google.protobuf.message import DecodeError

    snappy_length(body, max_bytes)
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise BadRequest(
            f"body is not valid snappy block data (Loki protobuf is snappy-compressed): {exc}"
        ) from None
    request = _messages()()
    try:
        request.ParseFromString(raw)
    except DecodeError as exc:
        raise BadRequest(f"body is not a valid Loki PushRequest (protobuf): {exc}") from None
    del raw
    for number, stream in enumerate(request.streams):
        labels = parse_labels(stream.labels, f"streams.{number}.labels")
        entries = []
        for entry in stream.entries:
            stamp = entry.timestamp
            pairs = entry.structuredMetadata
            entries.append(
                (stamp.seconds, stamp.nanos, entry.line, {p.name: p.value for p in pairs} if pairs else None)
            )
        yield labels, entries


def _from_json(body: bytes) -> Iterator[tuple[dict[str, str], list[Entry]]]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("streams"), list):
        raise BadRequest('a Loki push body is an object {"streams": [...]}')
    for number, stream in enumerate(document["streams"]):
        where = f"streams.{number}"
        if not isinstance(stream, dict):
            raise BadRequest(f"{where} must be an object with stream and values")
        labels = stream.get("stream", {})
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise BadRequest(f"{where}.stream must be an object of string labels")
        values = stream.get("values")
        if not isinstance(values, list):
            raise BadRequest(f"{where}.values must be an array of [timestamp, line] pairs")
        yield labels, [_json_value(value, f"{where}.values.{index}") for index, value in enumerate(values)]


def _json_value(value: Any, where: str) -> Entry:
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise BadRequest(
            f'{where} must be ["<unix nanoseconds>", "<line>"] with optional structured metadata'
        )
    stamp, line = value[0], value[1]
    if not isinstance(line, str):
        raise BadRequest(f"{where}: the line must be a string")
    if not (isinstance(stamp, str) and stamp.isascii() and stamp.isdigit()):
        raise BadRequest(
            f"{where}: the timestamp must be Unix nanoseconds as a string of digits, got {str(stamp)[:40]!r}"
        )
    if len(stamp) > 20:
        raise BadRequest(f"{where}: timestamp {stamp[:40]!r} is out of range: Unix nanoseconds from 1970 on")
    nanos = int(stamp)
    metadata = value[2] if len(value) == 3 else {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise BadRequest(f"{where}: structured metadata must be an object of strings")
    seconds, rest = divmod(nanos, _NANOS)
    return seconds, rest, line, metadata or None


# --- labels ------------------------------------------------------------------------------------------

_PAIR = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\}\s*$)', re.DOTALL)
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|[0-7]{3}|.)", re.DOTALL)
_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"',
           "'": "'"}  # fmt: skip


def parse_labels(text: str, where: str = "labels") -> dict[str, str]:
    """Prometheus label text (`{service="x", msg="say \\"hi\\"\\n"}`) -> labels; 400 naming what is wrong."""
    try:
        # Streams repeat from request to request: a label text of ordinary size is parsed once.
        pairs = _parse_labels(text) if len(text) <= 1024 else _parse_labels.__wrapped__(text)
    except ValueError as exc:
        raise BadRequest(f"{where}: {exc}") from None
    return dict(pairs)


@lru_cache(maxsize=4096)
def _parse_labels(text: str) -> tuple[tuple[str, str], ...]:
    stripped = text.strip()
    if not stripped.startswith("{"):
        raise ValueError(f'label text must look like {{name="value", ...}}, got {text[:80]!r}')
    body = stripped[1:]
    if body.strip() == "}":
        return ()
    pairs = []
    position = 0
    while True:
        match = _PAIR.match(body, position)
        if match is None:
            raise ValueError(
                f"cannot read labels at {body[position : position + 40]!r} in {text[:80]!r}: "
                'expected name="value" pairs separated by commas'
            )
        pairs.append((match[1], _ESCAPE.sub(_unescape, match[2]) if "\\" in match[2] else match[2]))
        position = match.end()
        if match[3] != ",":
            return tuple(pairs)


def _unescape(match: re.Match[str]) -> str:
    code = match[1]
    if code in _SIMPLE:
        return _SIMPLE[code]
    if code[0] in "xuU" or len(code) == 3:
        point = int(code[1:], 16) if code[0] in "xuU" else int(code, 8)
        # \x and octal escapes are bytes in Go's syntax: only ASCII ones make text on their own. A code
        # point must be a character (not a surrogate half) for the label to be stored as UTF-8.
        limit = 0x80 if code[0] not in "uU" else 0x110000
        if point < limit and not 0xD800 <= point <= 0xDFFF:
            return chr(point)
    raise ValueError(f"cannot use the escape \\{code} in a label value")


# --- streams -> our entries ----------------------------------------------------------------------------


# A pushed log's loki_labels, loki_metadata and loki_line columns (rows.LOKI_COLUMNS): JSON texts and text.
Kept = tuple[str, str | None, str | None]


def body(
    request_streams: Iterator[tuple[dict[str, str], list[Entry]]], limit: int
) -> tuple[bytes | None, list[Kept]]:
    """Every line as an entry of POST /logs's schema, as a `{"logs": [...]}` body for app/intake/rows.py
    (None when there is no line), and beside each entry what the Loki query API gives back (`Kept`: the
    labels, service_name added as Loki 3 adds it; the structured metadata; the line when the message is not
    it); 413 past `limit` lines.

    An application's own JSON line in our fields is spliced, not parsed into Python objects: msgspec checks
    in C that it holds only our fields (`_LINE`), and the stream's fields are written before its own, which
    win as the later of two equal keys (both of rows.py's passes keep the last). Every other line is mapped
    in Python (`_entry`). The body is then validated like POST /logs's own, the same C pass."""
    pieces: list[bytes] = []
    kept: list[Kept] = []
    for labels, lines in request_streams:
        if len(pieces) + len(lines) > limit:
            raise PayloadTooLarge(f"the request holds more than {limit} log lines; send smaller batches")
        common, common_metadata = _common(labels)
        head = orjson.dumps(common)[:-1] + b',"created_at":'
        stream = stream_labels(labels)
        for seconds, nanos, line, structured in lines:
            if not 0 <= seconds < SECONDS_BELOW or not 0 <= nanos < _NANOS:
                raise BadRequest(
                    f"entry timestamp {seconds}s {nanos}ns is out of range: Loki timestamps are Unix "
                    "nanoseconds from 1970 on"
                )
            # Microseconds, exact: a float of Unix seconds holds them to about 0.2 µs until the year 2106.
            created_at = seconds + (nanos // 1000) / 1e6
            metadata = {**common_metadata, **structured} if structured else common_metadata
            message = None
            if line[:1] == "{":
                piece, message = _spliced(head, created_at, line, metadata)
            else:
                piece = None
            if piece is None:
                entry = _entry(created_at, line, structured, common, common_metadata)
                message = entry["message"]
                piece = orjson.dumps(entry)
            pieces.append(piece)
            kept.append((
                stream,
                _pairs(structured) if structured else None,
                None if message == line else _text(line),
            ))  # fmt: skip
    return (b'{"logs":[' + b",".join(pieces) + b"]}" if pieces else None), kept


def stream_labels(labels: dict[str, str]) -> str:
    """A stream's labels as stored (JSON text): as pushed, with service_name when none was pushed."""
    if "service_name" not in labels:
        service = next((labels[name] for name in DISCOVER_SERVICE_NAME if name in labels), UNKNOWN_SERVICE)
        labels = {**labels, "service_name": service}
    return _pairs(labels)


def _pairs(pairs: dict[str, str]) -> str:
    """Labels or structured metadata as JSON text for jsonb, which cannot hold U+0000: U+FFFD instead, as
    rows.py stores every string."""
    text = orjson.dumps(pairs).decode()
    if "\\u0000" in text:
        text = orjson.dumps({_text(k): _text(v) for k, v in pairs.items()}).decode()
    return text


def _text(value: str) -> str:
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _line_struct() -> Any:
    """A JSON line holding only our fields (created_at aside), with a string message: RawLogEntry's fields
    and limits, the stream's fields optional, metadata left as raw JSON."""
    fields: list[Any] = []
    for field in msgspec.structs.fields(RawLogEntry):
        if field.name == "message":
            fields.append((field.name, str))
        elif field.name == "metadata":
            fields.append((field.name, msgspec.Raw, None))  # absent: None
        elif field.name != "created_at":
            fields.append((field.name, field.type if not field.required else Optional[field.type], None))  # noqa: UP045 - a runtime type
    return msgspec.defstruct("LokiLine", fields, kw_only=True, forbid_unknown_fields=True)


_LINE = msgspec.json.Decoder(_line_struct())
_CANONICAL_LEVELS = frozenset(LEVELS)
_CANONICAL_ENVIRONMENTS = frozenset(ENVIRONMENTS)


def _spliced(
    head: bytes, created_at: float, line: str, metadata: dict[str, Any] | None
) -> tuple[bytes | None, str | None]:
    """The line as an entry without parsing it into Python objects, and its message; (None, None) when it
    needs mapping."""
    try:
        parsed = _LINE.decode(line)
    except msgspec.MsgspecError:
        return None, None
    if (parsed.level is not None and parsed.level not in _CANONICAL_LEVELS) or (
        parsed.environment is not None and parsed.environment not in _CANONICAL_ENVIRONMENTS
    ):
        return None, None
    extra = b""
    if metadata:
        if parsed.metadata is not None:
            return None, None  # two metadata objects to merge
        extra = b',"metadata":' + orjson.dumps(metadata)
    elif parsed.metadata is not None and memoryview(parsed.metadata)[:1] != b"{":  # not an object
        return None, None
    return b"%s%r%s,%s" % (head, created_at, extra, line[1:].encode()), parsed.message


def _common(labels: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A stream's labels as the fields every entry of it shares, and the metadata they share."""
    rest = dict(labels)
    common: dict[str, Any] = {"service": UNKNOWN_SERVICE, "level": "INFO"}
    metadata: dict[str, Any] = {}
    for name in SERVICE_LABELS:
        if name in rest:
            common["service"] = rest.pop(name)
            break
    for name in LEVEL_LABELS:
        if name in rest:
            value = rest.pop(name)
            level = _level(value)
            if level is None:
                metadata[name] = value
            else:
                common["level"] = level
            break
    for name in ENVIRONMENT_LABELS:
        if name in rest:
            value = rest.pop(name)
            environment = _ENVIRONMENTS.get(value.strip().lower())
            if environment is None:
                metadata[name] = value
            else:
                common["environment"] = environment
            break
    metadata.update(rest)
    return common, metadata


def _level(value: Any) -> str | None:
    return _LEVELS.get(value.strip().upper()) if isinstance(value, str) else None


def _entry(
    created_at: float,
    line: str,
    structured: dict[str, Any] | None,
    common: dict[str, Any],
    common_metadata: dict[str, Any],
) -> dict[str, Any]:
    metadata = {**common_metadata, **structured} if structured else dict(common_metadata)
    entry = dict(common)
    entry["created_at"] = created_at
    document = _json_object(line)
    if document is None:
        entry["message"] = line
    elif _plain(document):
        own = document.pop("metadata", None)
        entry.update(document)
        if own is not None:
            # An explicit object, even an empty one, is stored as a /logs entry would store it.
            metadata.update(own)
            entry["metadata"] = metadata
    else:
        _read_line(document, line, entry, metadata, common)
    if metadata:
        entry["metadata"] = metadata
    return entry


# A JSON line with only these fields, holding a string message, one of our level and environment names as
# written, and an object (or nothing) as metadata, needs nothing renamed or moved.
_PLAIN_FIELDS = KNOWN_FIELDS - {"created_at"}
_PLAIN_VALUES = {"level": frozenset(LEVELS), "environment": frozenset(ENVIRONMENTS)}


def _plain(document: dict[str, Any]) -> bool:
    if not document.keys() <= _PLAIN_FIELDS or type(document.get("message")) is not str:
        return False
    for name, allowed in _PLAIN_VALUES.items():
        value = document.get(name)
        if value is not None and (type(value) is not str or value not in allowed):
            return False
    own = document.get("metadata")
    return own is None or type(own) is dict


def _json_object(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def _read_line(
    document: dict[str, Any],
    line: str,
    entry: dict[str, Any],
    metadata: dict[str, Any],
    common: dict[str, Any],
) -> None:
    """A JSON line read like a /logs entry: its fields win over the labels', the others join metadata; a
    level or environment we cannot place is kept in metadata and the stream's used."""
    for field, names in _LINE_ALIASES:
        for name in names:
            if name in document and field not in document:
                document[field] = document.pop(name)
    own = document.pop("metadata", None)
    for name, value in document.items():
        # The line's own created_at is not the entry's time (its timestamp is): kept in metadata.
        if name in _PLAIN_FIELDS:
            entry[name] = value
        else:
            metadata[name] = value
    if isinstance(own, dict):
        metadata.update(own)
    elif own is not None:
        metadata["metadata"] = own
    level = entry["level"]
    if level not in LEVELS:
        canonical = _level(level)
        if canonical is None:
            metadata["level"] = level
            canonical = common["level"]
        entry["level"] = canonical
    environment = entry.get("environment")
    if environment is not None and environment not in ENVIRONMENTS:
        canonical_environment = (
            _ENVIRONMENTS.get(environment.strip().lower()) if isinstance(environment, str) else None
        )
        if canonical_environment is None:
            metadata["environment"] = environment
            del entry["environment"]
            if "environment" in common:
                entry["environment"] = common["environment"]
        else:
            entry["environment"] = canonical_environment
    if not isinstance(entry.get("message"), str):
        if "message" in entry:
            metadata["message"] = entry["message"]
        entry["message"] = line
