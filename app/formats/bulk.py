"""The Elasticsearch bulk API's body (NDJSON action/source pairs) -> entries of our schema.

What rsyslog's omelasticsearch, Filebeat, Logstash, Fluent Bit's `es` output and Vector's `elasticsearch`
sink send to `/_bulk`:

    {"create": {"_index": "checkout", "_id": "…"}}      an action line: index | create | delete | update
    {"@timestamp": "…", "message": "…", …}              its source (none after delete)

`index` and `create` documents become entries; `delete` and `update` are refused per item (we are
append-only), as is a source that is not a JSON object. A line that cannot be read as an action leaves no
way to pair the lines after it, so the whole request is refused (as Elasticsearch does).

A document's fields are read ECS first, dotted (`"log.level": …`) and nested (`"log": {"level": …}`) alike,
first name found wins:

    message        message, msg, log (a string)          created_at   @timestamp, timestamp, time, timereported
    level          log.level, level, severity, priority  (syslog names too: emerg/alert/crit -> FATAL,
                   err -> ERROR, warning -> WARN, notice/info -> INFO; another text is kept in metadata)
    service        service.name, service, app, application, appname, app_name, programname; else ?service=;
                   else the action's `_index`, else the path's `{index}` (a trailing date such as
                   `-2026.11.30`, which Logstash and Fluent Bit add daily, taken off)
    trace_id       trace.id, trace_id       user_id     user.id, user_id      session_id  session.id, session_id
    error_type     error.type, error_type   stack_trace error.stack_trace, stack_trace
    environment    service.environment, deployment.environment, environment, env (a value we know)
    service_version service.version         path        url.path              method      http.request.method
    function_name  log.origin.function      file_path   log.origin.file.name

A value of the wrong type is not taken; everything not taken stays in `metadata`, as it came (with the
document's `_id`). The entries are then validated by app/intake/rows.py like every other format.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import orjson

from app.errors import BadRequest, PayloadTooLarge
from app.models import ENVIRONMENTS, METHODS
from app.models import LEVELS as OUR_LEVELS

ACTIONS = ("index", "create", "delete", "update")
STORED = ("index", "create")

# Syslog severity names (RFC 5424, as rsyslog's `priority` property spells them) and ECS's, -> our levels.
LEVELS = {
    "emerg": "FATAL", "emergency": "FATAL", "panic": "FATAL", "alert": "FATAL", "crit": "FATAL",
    "critical": "FATAL", "fatal": "FATAL", "err": "ERROR", "error": "ERROR", "warning": "WARN",
    "warn": "WARN", "notice": "INFO", "info": "INFO", "informational": "INFO", "debug": "DEBUG",
    "trace": "TRACE",
}  # fmt: skip

# A date at the end of an index name, as daily indices have it: logstash-2026.11.30, app_2026-11-30.
_DAILY = re.compile(r"[-_.]?\d{4}[.\-_]\d{2}[.\-_]\d{2}$")


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _time(value: Any) -> bool:
    return _text(value) or (isinstance(value, int | float) and not isinstance(value, bool))


def _environment(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in ENVIRONMENTS


def _method(value: Any) -> bool:
    return isinstance(value, str) and value.strip().upper() in METHODS


# (column, names in order of preference, which values are taken)
MAPPING: tuple[tuple[str, tuple[str, ...], Callable[[Any], bool]], ...] = (
    ("message", ("message", "msg", "log"), lambda value: isinstance(value, str)),
    ("created_at", ("@timestamp", "timestamp", "time", "timereported"), _time),
    ("level", ("log.level", "level", "severity", "priority"), _text),
    (
        "service",
        ("service.name", "service", "app", "application", "appname", "app_name", "programname"),
        _text,
    ),
    ("service_version", ("service.version",), _text),
    ("environment", ("service.environment", "deployment.environment", "environment", "env"), _environment),
    ("trace_id", ("trace.id", "trace_id"), _text),
    ("user_id", ("user.id", "user_id"), _text),
    ("session_id", ("session.id", "session_id"), _text),
    ("error_type", ("error.type", "error_type"), _text),
    ("stack_trace", ("error.stack_trace", "stack_trace"), _text),
    ("path", ("url.path",), _text),
    ("method", ("http.request.method",), _method),
    ("function_name", ("log.origin.function",), _text),
    ("file_path", ("log.origin.file.name",), _text),
)


@dataclass(slots=True)
class Item:
    """One action of the request, in order: what its answer names, and its entry or why it has none."""

    action: str
    index: str
    id: str
    given_id: bool  # the action named its `_id` (then it is claimed: app/intake/documents.py)
    entry: dict[str, Any] | None = None
    error: tuple[str, str] | None = None  # (Elasticsearch's error type, reason): a per-item 400


def items(body: bytes, path_index: str | None, service: str | None, limit: int = 10_000) -> list[Item]:
    """Every action of an NDJSON bulk body; 400 for a body whose lines cannot be paired, 413 (as soon as it
    is seen) for one of more than `limit` actions."""
    return [item for chunk in chunks(body, path_index, service, limit, limit) for item in chunk]


def chunks(
    body: bytes, path_index: str | None, service: str | None, limit: int = 10_000, size: int = 250
) -> Iterator[list[Item]]:
    """`items`, `size` at a time, each source read only when its chunk is asked for: the route turns a chunk's
    entries into rows before the next chunk's documents are read, so a request's documents are not all held
    (and walked by the garbage collector) at once. A body that cannot be paired, or holds more than `limit`
    actions, raises when that is seen, before the last chunk: nothing is written until every chunk is read."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    # Ids for actions without one: 20 URL-safe characters like Elasticsearch's, random per request (72 bits)
    # and numbered within it.
    prefix = base64.urlsafe_b64encode(os.urandom(9)).decode()
    if not lines:
        raise BadRequest("the bulk body holds no actions: send NDJSON action/source pairs")
    out: list[Item] = []
    count = 0
    # Agents repeat one action line (`{"create":{}}`, or one `_index`): each text is read once, to (action,
    # its `_index`, its `_id`).
    actions: dict[bytes, tuple[str, str | None, str | None]] = {}
    good_indices: set[str] = set()
    position = 0
    while position < len(lines):
        if count == limit:
            raise PayloadTooLarge(f"the bulk request holds more than {limit} actions; send smaller bulks")
        if len(out) == size:
            yield out
            out = []
        number = position + 1
        line = lines[position]
        read = actions.get(line)
        if read is None:
            read = actions[line] = _action(line, number)
        action, named_index, given = read
        position += 1
        index = named_index or path_index or ""
        given_id = given is not None
        item = Item(action, index, given if given_id else f"{prefix}{count:08d}", given_id)
        out.append(item)
        count += 1
        # A generated id is always a good name: without a given one, only the index can be bad, and an index
        # once found good is not looked at again.
        problem = _bad_name(item) if given_id or index not in good_indices else None
        if problem is None and not given_id:
            good_indices.add(index)
        if problem:
            item.error = problem
            if action != "delete":
                position += 1  # its source line, unread
            continue
        if action == "delete":
            item.error = ("illegal_argument_exception", "this store is append-only: delete is not supported")
            continue
        if position >= len(lines):
            raise BadRequest(f"line {number}: the {action} action has no source line after it")
        source_line = lines[position]
        position += 1
        if action == "update":
            item.error = ("illegal_argument_exception", "this store is append-only: update is not supported")
            continue
        try:
            source = orjson.loads(source_line)
        except orjson.JSONDecodeError as exc:
            item.error = ("document_parsing_exception", f"line {position}: source is not valid JSON: {exc}")
            continue
        if not isinstance(source, dict):
            item.error = ("document_parsing_exception", f"line {position}: source must be a JSON object")
            continue
        item.entry = entry(source, service or _service_of(index), item.id if given_id else None)
    yield out


# Elasticsearch's own limits (bytes of UTF-8); within them a name also fits the id table's btree index.
MAX_ID_BYTES = 512
MAX_INDEX_BYTES = 255


def _bad_name(item: Item) -> tuple[str, str] | None:
    if "\x00" in item.id or "\x00" in item.index:
        return ("illegal_argument_exception", "_id and _index cannot hold the character U+0000")
    # A character is at most 4 bytes of UTF-8: shorter names are not encoded to be measured.
    if item.given_id and len(item.id) * 4 > MAX_ID_BYTES and len(item.id.encode()) > MAX_ID_BYTES:
        return ("illegal_argument_exception", f"id is too long, must be no longer than {MAX_ID_BYTES} bytes")
    if len(item.index) * 4 > MAX_INDEX_BYTES and len(item.index.encode()) > MAX_INDEX_BYTES:
        return (
            "invalid_index_name_exception",
            f"index name is too long, must be at most {MAX_INDEX_BYTES} bytes",
        )
    return None


def _action(line: bytes, number: int) -> tuple[str, str | None, str | None]:
    try:
        action = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"line {number}: not a valid bulk action line: {exc}") from None
    if not isinstance(action, dict) or len(action) != 1:
        raise BadRequest(
            f"line {number}: a bulk action line is one object with one key: {', '.join(ACTIONS)}"
        )
    ((name, meta),) = action.items()
    if name not in ACTIONS or not isinstance(meta, dict):
        raise BadRequest(f"line {number}: unknown bulk action {name!r}: expected one of {', '.join(ACTIONS)}")
    index = meta.get("_index")
    given = meta.get("_id")
    named = isinstance(given, str | int) and not isinstance(given, bool) and str(given) != ""
    return name, index if isinstance(index, str) else None, str(given) if named else None


@lru_cache(maxsize=256)
def _service_of(index: str) -> str | None:
    return _DAILY.sub("", index) or index or None


def entry(source: dict[str, Any], service: str | None, document_id: str | None = None) -> dict[str, Any]:
    """One source document as an entry of POST /logs's schema (`source` is consumed)."""
    out = _ecs(source)
    if out is None:
        out = _found(source)
    level = out.get("level")
    if level is not None:
        mapped = LEVELS.get(level.strip().lower())
        if mapped is None and level.strip().upper() not in OUR_LEVELS:
            source["level"] = level  # an unknown level is kept, the entry stored as INFO
            mapped = "INFO"
        out["level"] = mapped or level
    else:
        out["level"] = "INFO"
    out.setdefault("message", "")
    if "service" not in out and service is not None:
        out["service"] = service
    if document_id is not None:
        source["_id"] = document_id
    if source:
        out["metadata"] = source
    return out


def _found(source: dict[str, Any]) -> dict[str, Any]:
    """Every column MAPPING finds in `source`, taken out of it: the general reading, any form of any name."""
    out: dict[str, Any] = {}
    keys = source.keys()
    for column, names, accept, starts in _PLAN:
        if keys.isdisjoint(starts):
            continue
        for name, prefixes in names:
            # Most names are absent: a look-up of the keys any form of the name starts with rules them out.
            for prefix in prefixes:
                if prefix in source:
                    value = take(source, name, accept)
                    if value is not None:
                        out[column] = value
                    break
            if column in out:
                break
    return out


def take(document: dict[str, Any], name: str, accept: Callable[[Any], bool]) -> Any:
    """Remove and return the value at the dotted `name`, however the document splits it into objects
    (`a.b.c`, `a: {b.c}`, `a: {b: {c}}`, `a.b: {c}`); None when absent or not `accept`ed. An object left
    empty is removed too."""
    if name in document:
        value = document[name]
        if accept(value):
            del document[name]
            return value
        return None
    for head, rest in _splits(name):
        inner = document.get(head)
        if type(inner) is dict:
            if rest in inner:  # the common case, `{"service": {"name": …}}`, without a call
                value = inner[rest]
                if not accept(value):
                    continue
                del inner[rest]
            else:
                value = take(inner, rest, accept)
                if value is None:
                    continue
            if not inner:
                del document[head]
            return value
    return None


@cache
def _splits(name: str) -> tuple[tuple[str, str], ...]:
    """`a.b.c` -> (a, b.c), (a.b, c): each key an object may hold the rest of the name under."""
    parts = name.split(".")
    return tuple((".".join(parts[:i]), ".".join(parts[i:])) for i in range(1, len(parts)))


def _prefixes(name: str) -> tuple[str, ...]:
    return (*(head for head, _ in _splits(name)), name)


# MAPPING with, for each name, the top-level keys any of its forms starts with, and all of a column's.
_PLAN = tuple(
    (
        column,
        tuple((name, _prefixes(name)) for name in names),
        accept,
        frozenset(prefix for name in names for prefix in _prefixes(name)),
    )
    for column, names, accept in MAPPING
)


# The top-level keys of ECS's nested layout (what ecs-logging, Filebeat, Vector and the bench write). In a
# document with a string `message` and none of MAPPING's other keys, each column can only come from one
# place, so `_ecs` reads it there: what `_found` gives, without its search through every form of every name.
_ECS_KEYS = frozenset(("message", "@timestamp", "log.level", "log", "service", "trace", "user", "session",
                       "error", "url", "http"))  # fmt: skip
_OTHER_KEYS = frozenset(prefix for _, _, _, starts in _PLAN for prefix in starts) - _ECS_KEYS
# Within `log` and `log.origin`, the dotted forms of the names below them (`_found` would look at these).
_LOG_DOTTED = frozenset(("origin.function", "origin.file", "origin.file.name"))


def _ecs(source: dict[str, Any]) -> dict[str, Any] | None:
    """`_found` for a document in ECS's nested layout, or None when it may be in another."""
    message = source.get("message")
    if type(message) is not str or not source.keys().isdisjoint(_OTHER_KEYS):
        return None
    log = source.get("log")
    if type(log) is dict:
        if not log.keys().isdisjoint(_LOG_DOTTED):
            return None
        origin = log.get("origin")
        if type(origin) is dict and "file.name" in origin:
            return None
    http = source.get("http")
    if type(http) is dict and "request.method" in http:
        return None
    # Each column from its one place. Taking a value removes it, and an object a take left empty (not one
    # that came empty); which values are taken does not depend on the order they are taken in.
    out: dict[str, Any] = {"message": message}
    del source["message"]
    value = source.get("@timestamp")
    # `_time` and `_text` written out for strings, what nearly every document has here.
    if (value != "") if isinstance(value, str) else _time(value):
        out["created_at"] = value
        del source["@timestamp"]
    if "log.level" in source:  # the dotted form rules out the nested one, taken or not
        value = source["log.level"]
        if isinstance(value, str) and value != "":
            out["level"] = value
            del source["log.level"]
        if type(log) is dict:
            _log(source, log, out, False)
    elif type(log) is dict:
        _log(source, log, out, True)
    service = source.get("service")
    if type(service) is dict:
        _pick(source, "service", service, _SERVICE, out)
    elif _text(service):
        out["service"] = service
        del source["service"]
    # `_pick` written out for the objects of one text field each (trace.id, user.id, …): four calls fewer.
    for head, column, key in _ONE_FIELD:
        inner = source.get(head)
        if type(inner) is dict:
            value = inner.get(key)
            if isinstance(value, str) and value != "":
                out[column] = value
                del inner[key]
                if not inner:
                    del source[head]
    inner = source.get("error")
    if type(inner) is dict:
        _pick(source, "error", inner, _ERROR, out)
    if type(http) is dict:
        request = http.get("request")
        if type(request) is dict:
            value = request.get("method")
            if _method(value):
                out["method"] = value
                del request["method"]
                if not request:
                    del http["request"]
                    if not http:
                        del source["http"]
    return out


def _pick(
    document: dict[str, Any],
    head: str,
    inner: dict[str, Any],
    fields: tuple[tuple[str, str, Callable[[Any], bool] | None], ...],
    out: dict[str, Any],
) -> None:
    """Take each (column, key, accept) of `fields` from `inner`, the object at `document[head]`; an accept of
    None takes text."""
    taken = False
    for column, key, accept in fields:
        value = inner.get(key)
        # `_text` written out: most fields take text, and this runs for each of them in each document.
        if (isinstance(value, str) and value != "") if accept is None else accept(value):
            out[column] = value
            del inner[key]
            taken = True
    if taken and not inner:
        del document[head]


def _log(source: dict[str, Any], log: dict[str, Any], out: dict[str, Any], level: bool) -> None:
    """`log.level` (when `level`), `log.origin.function` and `log.origin.file.name` from the `log` object."""
    taken = False
    if level:
        value = log.get("level")
        if _text(value):
            out["level"] = value
            del log["level"]
            taken = True
    origin = log.get("origin")
    if type(origin) is dict:
        from_origin = False
        value = origin.get("function")
        if _text(value):
            out["function_name"] = value
            del origin["function"]
            from_origin = True
        file = origin.get("file")
        if type(file) is dict:
            value = file.get("name")
            if _text(value):
                out["file_path"] = value
                del file["name"]
                from_origin = True
                if not file:
                    del origin["file"]
        if from_origin and not origin:
            del log["origin"]
        taken = taken or from_origin
    if taken and not log:
        del source["log"]


# Where `_ecs` reads the other columns: the object, and (column, key in it, which values are taken: None
# for text).
_SERVICE = (
    ("service", "name", None),
    ("service_version", "version", None),
    ("environment", "environment", _environment),
)
_ERROR = (("error_type", "type", None), ("stack_trace", "stack_trace", None))
# (object, column, key in it) for the objects of one text field.
_ONE_FIELD = (
    ("trace", "trace_id", "id"),
    ("user", "user_id", "id"),
    ("session", "session_id", "id"),
    ("url", "path", "path"),
)


def answer(listed: list[Item], took_ms: int, statuses: dict[int, tuple[int, dict[str, Any] | None]]) -> bytes:
    """The bulk answer: an item per action, in order; `statuses` gives the status and error of each position
    not stored (a position absent from it was stored: 201).

    A stored document's item is written from its action and index's head (made once per pair), its id, and
    the same tail: the bytes orjson writes for `{action: {"_index", "_id", **_CREATED}}`, without the two
    dicts per document."""
    parts = []
    errors = False
    dumps = orjson.dumps
    for position, item in enumerate(listed):
        status, error = statuses.get(position, _STORED)
        if error is None:
            parts.append(_head(item.action, item.index) + dumps(item.id) + _CREATED_TAIL)
        else:
            errors = True
            result = {"_index": item.index, "_id": item.id, "status": status, "error": error}
            parts.append(dumps({item.action: result}))
    return b'{"took":%d,"errors":%s,"items":[%s]}' % (
        took_ms,
        b"true" if errors else b"false",
        b",".join(parts),
    )


_CREATED = {
    "_version": 1,
    "result": "created",
    "_shards": {"total": 1, "successful": 1, "failed": 0},
    "status": 201,
}
_STORED = (201, None)
# What follows the `_id` of a stored document's item, as orjson writes `_CREATED` after it.
_CREATED_TAIL = b"," + orjson.dumps(_CREATED)[1:] + b"}"


@lru_cache(maxsize=256)
def _head(action: str, index: str) -> bytes:
    return b'{"' + action.encode() + b'":{"_index":' + orjson.dumps(index) + b',"_id":'


def error(kind: str, reason: str, item: Item) -> dict[str, Any]:
    return {"type": kind, "reason": reason, "index": item.index}
