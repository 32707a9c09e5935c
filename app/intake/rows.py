"""Validated JSON bytes -> row tuples in the table's column order, ready for COPY.

Pure and database-free: everything between the request body and the writer happens here.

Two passes, one set of rules. The first decodes the body into `RawLogEntry` structs with msgspec (in C),
then finishes the few checks that need Python (enum spellings, created_at) while building rows, with the
same functions the documented schema `LogEntry` uses. When that meets anything it does not handle (an
error, an unknown field, a value to normalize that it does not know), the body goes through `LogEntry`
with pydantic, whose errors name every bad field and which keeps unknown fields; its output builds rows
the same way. tests/intake/test_rows.py checks that both passes agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson
from pydantic import ValidationError

from app.errors import BadRequest, InvalidLogs, PayloadTooLarge
from app.models import (
    ENVIRONMENTS,
    FIELDS,
    KNOWN_FIELDS,
    LEVEL_ALIASES,
    LEVELS,
    LOG_TYPES,
    METHODS,
    SECONDS_BELOW,
    RawLogBatch,
    RawLogEntry,
    batch_adapter,
    lower,
    normalize_level,
    parse_created_at,
    upper,
)

# How far from the time received a created_at is taken as given (Settings.created_at_window).
WINDOW = (timedelta(days=30), timedelta(hours=24))


# Where a created_at outside the window is kept (app/storage/partitions.py says why there is a window).
ORIGINAL_CREATED_AT = "original_created_at"


class Received:
    """The time a body was received, and the range of created_at taken as given around it."""

    __slots__ = ("at", "earliest", "latest")

    def __init__(self, at: datetime, window: tuple[timedelta, timedelta]) -> None:
        self.at, self.earliest, self.latest = at, at - window[0], at + window[1]


# Every column COPY writes, in table order (id is the sequence's, deleted is always FALSE on ingest).
COLUMNS = (
    "created_at", "level", "log_type", "service", "environment", "service_version", "trace_id",
    "user_id", "session_id", "error_type", "message", "stack_trace", "path", "method", "action_type",
    "function_name", "file_path", "duration_ms", "metadata",
)  # fmt: skip
# The columns a log pushed through Loki's push API adds after COLUMNS (app/routes/loki.py): its stream labels,
# structured metadata and raw line, which only the Loki query API reads. Every other row leaves them NULL
# by not naming them, so its COPY sends nothing more.
LOKI_COLUMNS = (*COLUMNS, "loki_labels", "loki_metadata", "loki_line")
# The table's NOT NULL defaults, applied here because COPY names every column.
DEFAULTS = {"log_type": "BACKEND", "environment": "development", "service_version": "v0.0.0-dev"}
# PostgreSQL text and jsonb cannot hold U+0000; it becomes U+FFFD so the log is kept, not refused.
NUL = "\x00"
REPLACEMENT = "\ufffd"
# Raw NUL bytes are invalid JSON, so a string can only hold U+0000 if the body has this escape in it.
_NUL_ESCAPE = b"\\u0000"
# RFC 8259 lets a parser ignore a UTF-8 byte-order mark, and some Windows clients send one.
BOM = b"\xef\xbb\xbf"
# How many JSON objects and arrays one body may hold: decoding each costs the same however small it is,
# so this, not the byte count, bounds the CPU time of a body like `[[],[],...]` (results/REPORT.md).
MAX_CONTAINERS = 200_000
# How deep `metadata` (with the unknown fields kept in it) may nest: deeper than any log needs, and far
# below where a recursive decoder or PostgreSQL's jsonb would be in trouble.
MAX_METADATA_DEPTH = 64

_LEVELS = {**{level: level for level in LEVELS}, **LEVEL_ALIASES}
_LOG_TYPES = {value: value for value in LOG_TYPES}
_ENVIRONMENTS = {value: value for value in ENVIRONMENTS}
_METHODS = {value: value for value in METHODS}
# The same with an absent value's stored form, so that a row's common case is one dict lookup per enum.
_LOG_TYPE_OR_DEFAULT = {None: DEFAULTS["log_type"], **_LOG_TYPES}
_ENVIRONMENT_OR_DEFAULT = {None: DEFAULTS["environment"], **_ENVIRONMENTS}
_SERVICE_VERSION = DEFAULTS["service_version"]

Row = tuple[Any, ...]


_RAW = msgspec.json.Decoder(RawLogBatch)


class _RawEntries(msgspec.Struct):
    """The batch with each entry left as its raw JSON bytes: what partial mode re-assembles."""

    logs: list[msgspec.Raw]


_ENTRIES = msgspec.json.Decoder(_RawEntries)


class _Recheck(Exception):
    """The first pass met a value only the documented schema can explain: validate again with it."""


def parse(
    body: bytes,
    max_batch_size: int,
    received_at: datetime | None = None,
    window: tuple[timedelta, timedelta] = WINDOW,
) -> list[Row]:
    """Validate a `{"logs": [...]}` body and return one tuple per log, in COPY column order.

    A created_at further than `window` (before, after) from the time received is stored as the time
    received, with the original in metadata as `original_created_at`: a wrong client clock never loses a
    log, and never needs a partition far from today.
    """
    prepared = prepare(body, max_batch_size, received_at, window)
    return prepared if isinstance(prepared, list) else prepared.build()


def prepare(
    body: bytes,
    max_batch_size: int,
    received_at: datetime | None = None,
    window: tuple[timedelta, timedelta] = WINDOW,
) -> list[Row] | LazyRows:
    """`parse` up to the rows themselves: the body decoded and its shape checked (every error of shape
    raised here), the rows left to build while they are written (app/intake/writer.py streams them into COPY).
    A body the first pass cannot read is parsed whole by the documented schema, and its rows returned."""
    now = Received(received_at or datetime.now(UTC), window)
    body = body.removeprefix(BOM)
    _count_containers(body)
    try:
        entries = _RAW.decode(body).logs
        if 0 < len(entries) <= max_batch_size:
            return LazyRows(body, max_batch_size, now, entries)
    except (msgspec.MsgspecError, UnicodeDecodeError):
        pass
    except RecursionError:
        raise _too_deep() from None
    return documented(body, max_batch_size, now)


class Unsettled(Exception):
    """`LazyRows.chunks` met an entry only `LazyRows.build` can settle (a value to normalize, or an error)."""


class LazyRows:
    """A decoded batch whose rows are built on demand: all at once (`build`), or a chunk at a time while
    the chunks before are being written (`chunks`). Both give the rows `parse` gives."""

    def __init__(self, body: bytes, max_batch_size: int, now: Received, entries: list[Any]) -> None:
        self.body, self.max_batch_size, self.now, self.entries = body, max_batch_size, now, entries
        self.count = len(entries)
        self.strip_nul = _NUL_ESCAPE in body

    def __len__(self) -> int:
        return self.count

    def build(self) -> list[Row]:
        """Every row; raises as `parse` does (InvalidLogs naming every bad field)."""
        # After `chunks` the entries are gone: decoded again from the body, which is kept.
        entries = self.entries if len(self.entries) == self.count else _RAW.decode(self.body).logs
        now, strip_nul, astuple = self.now, self.strip_nul, msgspec.structs.astuple
        try:
            try:
                return [_row(astuple(e), None, now, strip_nul) for e in entries]
            except _MetadataProblem:  # `_rows` names every entry with one
                return _rows([(astuple(e), None) for e in entries], now, strip_nul)
        except _Recheck:
            return documented(self.body, self.max_batch_size, self.now)

    def chunks(self, size: int) -> Iterator[list[Row]]:
        """The rows, `size` at a time; each chunk's entries are let go once it is built, so a batch's
        entries and rows are not all held at once. Raises Unsettled instead of an error: whoever wrote
        the chunks before undoes them and calls `build`, which gives the definitive rows or error."""
        now, strip_nul, entries = self.now, self.strip_nul, self.entries
        while entries:
            part = entries[:size]
            del entries[:size]
            try:
                rows = [_row(msgspec.structs.astuple(e), None, now, strip_nul) for e in part]
            except (_Recheck, _MetadataProblem):
                raise Unsettled from None
            del part
            yield rows


def parse_partial(
    body: bytes,
    max_batch_size: int,
    received_at: datetime | None = None,
    window: tuple[timedelta, timedelta] = WINDOW,
) -> tuple[list[Row], list[dict[str, Any]]]:
    """Like `parse`, but the valid entries are kept: (their rows, one item per rejected entry's error).

    Raises as `parse` does when the body itself is wrong, or when no entry is valid.
    """
    try:
        return parse(body, max_batch_size, received_at, window), []
    except InvalidLogs as exc:
        errors = exc.errors
    indexed = [(_entry_index(error["field"]), error) for error in errors]
    bad = {index for index, _ in indexed}
    if None in bad:  # a batch-level problem (too many logs, not a list): nothing to keep
        raise InvalidLogs(errors)
    try:
        entries = _ENTRIES.decode(body.removeprefix(BOM)).logs
    except (msgspec.MsgspecError, RecursionError):
        # JSON only the documented schema reads (NaN, Infinity): the entries cannot be told apart.
        raise InvalidLogs(errors) from None
    good = [raw for index, raw in enumerate(entries) if index not in bad]
    if not good:
        raise InvalidLogs(errors)
    kept = parse(b'{"logs":[' + b",".join(good) + b"]}", max_batch_size, received_at, window)
    rejected = [{"index": index, **error} for index, error in indexed]
    return kept, rejected


def parse_values(
    entries: list[dict[str, Any]],
    max_batch_size: int,
    received_at: datetime | None = None,
    window: tuple[timedelta, timedelta] = WINDOW,
    strip_nul: bool = True,
) -> tuple[list[Row], list[dict[str, Any]]]:
    """`parse_partial` for entries that are already Python values (app/formats/otlp.py's mapping): msgspec checks
    them against the same struct in C without a JSON round trip. Whatever that pass does not settle (an
    invalid entry, a value to normalize) takes `parse_partial`'s path, for its errors and partial mode.
    `strip_nul=False` when the caller knows no string holds U+0000 (JSON text without a \\u0000 escape)."""
    now = Received(received_at or datetime.now(UTC), window)
    if 0 < len(entries) <= max_batch_size:
        try:
            structs = msgspec.convert(entries, list[RawLogEntry])
            # Strings from protobuf can hold U+0000 anywhere, so unless told otherwise every row is checked.
            return _rows([(msgspec.structs.astuple(entry), None) for entry in structs], now, strip_nul), []
        except (msgspec.ValidationError, _Recheck, InvalidLogs):
            pass
    try:
        body = orjson.dumps({"logs": entries})
    except orjson.JSONEncodeError:  # an integer past 64 bits (a JSON document's, as msgspec decodes it)
        body = json.dumps({"logs": entries}, separators=(",", ":")).encode()
    return parse_partial(body, max_batch_size, now.at, window)


def _entry_index(field: str) -> int | None:
    parts = field.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "logs" and parts[1].isdigit() else None


# Every byte but "{" and "[": deleting them leaves one byte per opening bracket, in one pass over the body
# (two `count`s take twice as long).
_NOT_OPENERS = bytes(set(range(256)) - set(b"{["))


def _count_containers(body: bytes) -> None:
    # Every object or array takes at least its two brackets, so a body this short cannot hold too many
    # (a batch of 1000 realistic logs is ~300 KB: no pass over it at all). Past that, brackets are counted,
    # and only a body with very many is counted again outside its strings.
    if len(body) <= 2 * MAX_CONTAINERS or len(body.translate(None, _NOT_OPENERS)) <= MAX_CONTAINERS:
        return
    outside = b"".join(body.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')[::2])
    if outside.count(b"{") + outside.count(b"[") > MAX_CONTAINERS:
        raise PayloadTooLarge(
            f"the body holds more than {MAX_CONTAINERS} JSON objects and arrays; send smaller batches"
        )


def _too_deep() -> BadRequest:
    return BadRequest(f"JSON nested too deeply: metadata may nest at most {MAX_METADATA_DEPTH} levels")


def documented(body: bytes, max_batch_size: int, now: Received) -> list[Row]:
    """The second pass alone: validate with the documented schema, LogEntry, and build rows from it."""
    try:
        entries = batch_adapter(max_batch_size).validate_json(body)["logs"]
    except ValidationError as exc:
        raise _to_domain_error(exc) from None
    return _rows([_fields_and_extras(entry) for entry in entries], now, _NUL_ESCAPE in body)


def _fields_and_extras(entry: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
    unknown = entry.keys() - KNOWN_FIELDS
    return tuple(map(entry.get, FIELDS)), {name: entry[name] for name in sorted(unknown)} if unknown else None


def _rows(
    entries: list[tuple[tuple[Any, ...], dict[str, Any] | None]], now: Received, strip_nul: bool
) -> list[Row]:
    rows = []
    errors = []
    for index, (values, extras) in enumerate(entries):
        try:
            rows.append(_row(values, extras, now, strip_nul))
        except _MetadataProblem as problem:
            errors.append(
                {"field": f"logs.{index}.{problem.field}", "message": problem.message, "type": problem.kind}
            )
    if errors:
        raise InvalidLogs(errors)
    return rows


class _MetadataProblem(Exception):
    def __init__(self, field: str, message: str, kind: str) -> None:
        self.field, self.message, self.kind = field, message, kind


def _enum(value: Any, allowed: dict[str, str], normalize: Callable[[Any], Any]) -> str:
    canonical = allowed.get(value)
    if canonical is None:
        canonical = allowed.get(normalize(value))
        if canonical is None:
            raise _Recheck
    return canonical


def _row(values: tuple[Any, ...], extras: dict[str, Any] | None, now: Received, strip_nul: bool) -> Row:
    """One entry's fields (in FIELDS order) and unknown fields -> its row."""
    (level, service, message, created_at, log_type, environment, service_version, trace_id, user_id, session_id,
     error_type, stack_trace, path, method, action_type, function_name, file_path, duration, metadata) = values  # fmt: skip
    if created_at is None:
        created_at = now.at
    else:
        if type(created_at) is float and 0 <= created_at < SECONDS_BELOW:
            # Unix seconds, what most clients send: models.from_epoch's first case, without two calls.
            created_at = datetime.fromtimestamp(created_at, UTC)
        elif type(created_at) is str:
            # parse_created_at's case of a string, without its two calls when the text names an offset and a
            # year that cannot be out of range (bulk's `@timestamp`); it settles every other text.
            try:
                parsed = datetime.fromisoformat(created_at)
                if parsed.tzinfo is None or parsed.year in (1, 9999):
                    parsed = parse_created_at(created_at)
            except ValueError:
                raise _Recheck from None
            created_at = parsed
        elif type(created_at) is not datetime:
            try:
                created_at = parse_created_at(created_at)
            except ValueError:
                raise _Recheck from None
        if not now.earliest <= created_at <= now.latest:
            extras = {**(extras or {}), ORIGINAL_CREATED_AT: created_at.isoformat()}
            created_at = now.at
    if extras:
        metadata = _merge(metadata, extras)
    if strip_nul:
        (service, message, service_version, trace_id, user_id, session_id, error_type, stack_trace, path,
         action_type, function_name, file_path) = [
            v.replace(NUL, REPLACEMENT) if v is not None and NUL in v else v
            for v in (service, message, service_version, trace_id, user_id, session_id, error_type, stack_trace,
                      path, action_type, function_name, file_path)
        ]  # fmt: skip
    # Each enum: its stored spelling looked up as sent, normalized only when that misses (`_enum`).
    return (
        created_at,
        _LEVELS.get(level) or _enum(level, _LEVELS, normalize_level),
        _LOG_TYPE_OR_DEFAULT.get(log_type) or _enum(log_type, _LOG_TYPES, upper),
        service,
        _ENVIRONMENT_OR_DEFAULT.get(environment) or _enum(environment, _ENVIRONMENTS, lower),
        _SERVICE_VERSION if service_version is None else service_version,
        trace_id, user_id, session_id, error_type, message, stack_trace, path,
        None if method is None else _METHODS.get(method) or _enum(method, _METHODS, upper),
        action_type, function_name, file_path,
        None if duration is None else round(duration, 3),
        None if metadata is None else _jsonb(metadata, strip_nul),
    )  # fmt: skip


def build_row(values: tuple[Any, ...], now: Received, strip_nul: bool) -> Row | None:
    """One entry's fields in FIELDS order, already within RawLogEntry's types and limits (a front door that
    decodes into its own struct in C, app/syslog/mapping.py), as its row; None when only `parse_values`
    can settle it (a value to normalize, a created_at to read, metadata jsonb cannot hold)."""
    try:
        return _row(values, None, now, strip_nul)
    except (_Recheck, _MetadataProblem):
        return None


def _merge(metadata: dict[str, Any] | None, extras: dict[str, Any]) -> dict[str, Any]:
    """Unknown top-level fields go into metadata under their own names; where metadata already has that
    name, under `name~1` (or `name~2`, …): both values are kept, and a body the schema allows is never
    refused for a clash the schema cannot express."""
    merged = dict(metadata or {})
    for name, value in extras.items():
        key, n = name, 0
        while key in merged:
            n += 1
            key = f"{name}~{n}"
        merged[key] = value
    return merged


def _jsonb(value: dict[str, Any], strip_nul: bool) -> str:
    """Metadata as the JSON text COPY stores, checked for what jsonb cannot hold; all work on the text is
    done by C code (orjson, re), so no body shape makes it cost Python work per node."""
    try:
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        if "ecursion" in str(exc):
            raise _MetadataProblem("metadata", _DEEP, "json_too_deep") from None
        # orjson stops at integers beyond 64 bits; jsonb takes any size.
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    # A text with few brackets cannot nest deeply; only one with many is measured.
    if text.count("{") + text.count("[") > MAX_METADATA_DEPTH and _nests_too_deep(text):
        raise _MetadataProblem("metadata", _DEEP, "json_too_deep")
    if strip_nul and "\\u0000" in text:
        # U+0000 as JSON text writes it. An escaped backslash before "u0000" is text, not U+0000: the
        # pairs are parked on a character JSON text cannot hold raw (NUL) while the escapes are replaced.
        text = text.replace("\\\\", NUL).replace("\\u0000", "\\ufffd").replace(NUL, "\\\\")
    # pydantic reads NaN, Infinity and numbers beyond 1.8e308 as floats JSON cannot hold, which orjson
    # writes as null. Only output with a null in it can hide one: check those strictly.
    if "null" in text:
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise _MetadataProblem(
                "metadata",
                "NaN, Infinity and numbers beyond ±1.8e308 cannot be stored as JSON",
                "json_non_finite",
            ) from None
    return text


_DEEP = f"nested more than {MAX_METADATA_DEPTH} levels deep"
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def _nests_too_deep(text: str) -> bool:
    """Whether JSON `text` nests objects and arrays more than MAX_METADATA_DEPTH deep.

    Only C-speed string operations, so that no body shape can make this cost Python work per node: drop
    escaped backslashes and quotes, keep what lies outside strings, keep only its brackets, then remove
    innermost pairs a level at a time; a text nested n levels deep is empty after exactly n passes.
    """
    outside = "".join(text.replace("\\\\", "").replace('\\"', "").split('"')[::2])
    brackets = outside.encode().translate(None, _NOT_BRACKETS)
    for _ in range(MAX_METADATA_DEPTH):
        brackets = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if not brackets:
            return False
    return True


def _to_domain_error(exc: ValidationError) -> BadRequest | InvalidLogs:
    details = exc.errors(include_url=False, include_input=False)
    for detail in details:
        if detail["type"] == "json_invalid":
            reason = detail.get("ctx", {}).get("error", detail["msg"])
            if "recursion limit" in reason:
                return _too_deep()
            kind = "UTF-8 " if "unicode" in reason else ""
            return BadRequest(f"body is not valid {kind}JSON: {reason}")
    return InvalidLogs(
        [
            {
                "field": ".".join(str(part) for part in detail["loc"]) or "body",
                "message": detail["msg"],
                "type": detail["type"],
            }
            for detail in details
        ]
    )
