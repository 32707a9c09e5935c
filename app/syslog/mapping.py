"""A parsed syslog message -> an entry of POST /logs's schema (validated afterwards by app/intake/rows.py).

    level        severity: emerg/alert/crit -> FATAL, err -> ERROR, warning -> WARN, notice/info -> INFO,
                 debug -> DEBUG
    service      APP-NAME (RFC 5424) or the tag (RFC 3164), else SYSLOG_SERVICE
    created_at   the message's time, through the same window rule as every front door (a time too far
                 from the time received is stored as received, the original in `original_created_at`);
                 no time: the time received
    message      MSG
    metadata     facility and severity by name, hostname, procid, msgid, structured data as
                 {"sd": {"id@pen": {"param": "value"}}}; `truncated` for a message cut at
                 SYSLOG_MAX_MESSAGE, `unparsed` for bytes that are not syslog, `timestamp` for a time that
                 could not be read

A MSG that is a JSON object, or rsyslog's CEE form `@cee: {...}`, is read like a POST /logs entry: its
fields win over the syslog header's (msg/log name the message, severity the level, as shippers send
them), its other fields and its `metadata` join metadata. A level we cannot place stays in metadata and the
severity's is used. `plain` is the same message with MSG kept as text, for a JSON MSG the schema refuses.

`row` is `entry` and its validation (app/intake/rows.py) in one step, without the entry dict: a JSON MSG is
decoded by msgspec in C straight into `Document` (our fields, within the schema's types and limits), and
the row built from it. What that cannot settle alone (a MSG with other fields, a null, a value the schema
refuses) is left to `entry` and the generic validation, which give the same row where both apply
(tests/syslog/test_mapping.py holds them to it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from app.intake.rows import ORIGINAL_CREATED_AT, Received, Row, build_row
from app.models import KNOWN_FIELDS, LEVEL_ALIASES, LEVELS, SECONDS_BELOW, RawLogEntry
from app.syslog.parse import Message

SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
SEVERITY_LEVELS = ("FATAL", "FATAL", "FATAL", "ERROR", "WARN", "INFO", "INFO", "DEBUG")
FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
    "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
    "local7",
)  # fmt: skip
CEE = "@cee:"

# Level names a JSON MSG may use beyond ours: syslog's severities and the usual abbreviations.
_LEVELS = {
    **{level: level for level in LEVELS}, **LEVEL_ALIASES,
    **{name.upper(): level for name, level in zip(SEVERITIES, SEVERITY_LEVELS, strict=True)},
    "EMERGENCY": "FATAL", "PANIC": "FATAL", "CRITICAL": "FATAL", "WARNING": "WARN", "INFORMATIONAL": "INFO",
}  # fmt: skip
_FIELDS = KNOWN_FIELDS - {"metadata"}
_ALIASES = (("message", ("msg", "log")), ("level", ("severity",)))


def _document_struct() -> Any:
    """RawLogEntry with every field optional: absent is UNSET where it differs from null (a null level,
    service, message or created_at means something else in `_read_document`, so it is left to it)."""
    fields: list[Any] = []
    for field in msgspec.structs.fields(RawLogEntry):
        if field.required or field.name == "created_at":
            fields.append((field.name, field.type | msgspec.UnsetType, msgspec.UNSET))
        else:
            fields.append((field.name, field.type, field.default))
    return msgspec.defstruct("Document", fields, kw_only=True, forbid_unknown_fields=True)


Document = _document_struct()
_DOCUMENT = msgspec.json.Decoder(Document)
_UNSET = msgspec.UNSET
_ANY = msgspec.json.Decoder()


def row(message: Message, service: str, truncated: bool, now: Received, strip_nul: bool) -> Row | None:
    """The message's row, as `entry` then rows.parse_values would give it; None when only they can say."""
    found = plain(message, service, truncated)
    metadata = found["metadata"]
    level, text = found["level"], found["message"]
    service, created_at = found["service"], found.get("created_at")
    if not message.syslog or not text.startswith(("{", CEE)):
        return build_row((level, service, text, created_at, *_ABSENT, metadata), now, strip_nul)
    json_text = text[len(CEE) :].lstrip() if text.startswith(CEE) else text
    if not json_text.startswith("{"):
        return build_row((level, service, text, created_at, *_ABSENT, metadata), now, strip_nul)
    try:
        document = _DOCUMENT.decode(json_text)
    except (msgspec.MsgspecError, RecursionError):
        return None
    if document.metadata is not None:
        metadata.update(document.metadata)
    if document.level is not _UNSET:
        canonical = _LEVELS.get(document.level) or _LEVELS.get(document.level.strip().upper())
        if canonical is None:
            metadata["level"] = document.level
        else:
            level = canonical
    if document.service is not _UNSET:
        service = document.service
    if document.message is not _UNSET:
        text = document.message
    if document.created_at is not _UNSET:
        created_at = document.created_at
    d = document
    return build_row(
        (level, service, text, created_at, d.log_type, d.environment, d.service_version, d.trace_id,
         d.user_id, d.session_id, d.error_type, d.stack_trace, d.path, d.method, d.action_type,
         d.function_name, d.file_path, d.duration_ms, metadata),
        now, strip_nul,
    )  # fmt: skip


# The fields between created_at and metadata, none of which a syslog header gives.
_ABSENT = (None,) * 14


def entry(message: Message, service: str, truncated: bool) -> dict[str, Any]:
    """The entry for `message`; `service` when the message names none."""
    base = plain(message, service, truncated)
    document = _json_object(message.msg) if message.syslog else None
    if document is not None:
        _read_document(document, base)
    return base


def plain(message: Message, service: str, truncated: bool) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "facility": FACILITIES[message.facility],
        "severity": SEVERITIES[message.severity],
    }
    if message.hostname is not None:
        metadata["hostname"] = message.hostname
    if message.procid is not None:
        metadata["procid"] = message.procid
    if message.msgid is not None:
        metadata["msgid"] = message.msgid
    if message.structured_data:
        metadata["sd"] = message.structured_data
    if message.bad_timestamp is not None:
        metadata["timestamp"] = message.bad_timestamp
    if truncated:
        metadata["truncated"] = True
    if not message.syslog:
        metadata["unparsed"] = True
    found: dict[str, Any] = {
        "level": SEVERITY_LEVELS[message.severity],
        "service": message.app_name[:100] if message.app_name else service,
        "message": message.msg,
        "metadata": metadata,
    }
    if message.timestamp is not None:
        found["created_at"] = _seconds(message.timestamp, metadata)
    return found


def _seconds(moment: datetime, metadata: dict[str, Any]) -> float | None:
    """Unix seconds, what rows.py reads fastest; a time before 1970 (or past the schema's range) is kept
    in metadata as the window rule keeps one, and the time received is used."""
    seconds = moment.timestamp()
    if 0 <= seconds < SECONDS_BELOW:
        return seconds
    metadata[ORIGINAL_CREATED_AT] = moment.isoformat()
    return None


def _json_object(msg: str) -> dict[str, Any] | None:
    text = msg
    if text.startswith(CEE):
        text = text[len(CEE) :].lstrip()
    if not text.startswith("{"):
        return None
    try:
        # msgspec, as `row` and POST /logs decode (integers past 64 bits kept whole, not made floats).
        document = _ANY.decode(text)
    except (msgspec.MsgspecError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _read_document(document: dict[str, Any], found: dict[str, Any]) -> None:
    metadata = found["metadata"]
    syslog_level, text = found["level"], found["message"]
    for field, names in _ALIASES:
        for name in names:
            if name in document and field not in document:
                document[field] = document.pop(name)
                break
    own = document.pop("metadata", None)
    for name, value in document.items():
        if name in _FIELDS:
            found[name] = value
        else:
            metadata[name] = value
    if isinstance(own, dict):
        metadata.update(own)
    elif own is not None:
        metadata["metadata"] = own
    level = found["level"]
    if level is not syslog_level:
        canonical = _LEVELS.get(level.strip().upper()) if isinstance(level, str) else None
        if canonical is None:
            metadata["level"] = level
            canonical = syslog_level
        found["level"] = canonical
    if type(found["message"]) is not str:
        metadata["message"] = found["message"]
        found["message"] = text
