"""Amazon Data Firehose's HTTP endpoint delivery (protocol 1.0) -> entries of our schema.

Firehose POSTs `{"requestId", "timestamp" (ms), "records": [{"data": base64}]}` with the headers
X-Amz-Firehose-Request-Id (the same on every attempt of one request), X-Amz-Firehose-Access-Key (checked
by app/auth.py as an API key) and optionally X-Amz-Firehose-Common-Attributes
(`{"commonAttributes": {...}}`). It wants `{"requestId", "timestamp"}` with 200 once the data is safe, and
`{"requestId", "timestamp", "errorMessage"}` otherwise; it retries any other answer until its retry
duration ends, then backs the records up to S3.

A record is, in this order of trial:

    gzip            CloudWatch Logs payload(s) from a subscription filter (app/formats/cloudwatch.py);
                    CONTROL_MESSAGE records are skipped
    JSON            an object, an array of objects, or NDJSON: read like POST /logs entries, with the
                    shippers' field names (app/formats/shippers.py)
    anything else   one plain text log: the record is the message, level INFO unless it starts with a
                    level word

Defaults for service, level, environment, log_type and service_version come from the common attributes
or the query string (the endpoint URL is configured once per stream: `/firehose?service=web`); an
entry's own value wins, other common attributes go to metadata. A record that cannot be read is reported,
not raised: the rest of the request is still stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.errors import BadRequest, PayloadTooLarge
from app.formats import cloudwatch
from app.formats.shippers import ALIASES, DEFAULTS, checked

PATH = "/firehose"
REQUEST_ID = "x-amz-firehose-request-id"
ACCESS_KEY = "x-amz-firehose-access-key"
COMMON_ATTRIBUTES = "x-amz-firehose-common-attributes"
SOURCE_ARN = "x-amz-firehose-source-arn"
MAX_TIMESTAMP = 10**14


@dataclass
class Delivery:
    request_id: str
    timestamp: int | None
    records: list[Any]


@dataclass
class Mapped:
    entries: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def delivery(body: bytes, header_id: str | None) -> Delivery:
    """The request's envelope; 400 naming what is wrong with it."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:  # orjson refuses lone surrogate escapes, which JSON allows: the standard library reads them
            document = cloudwatch.scrub(json.loads(body))
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest('body must be a JSON object {"requestId", "timestamp", "records"}')
    request_id = document.get("requestId", header_id)
    if not isinstance(request_id, str) or not request_id:
        raise BadRequest("requestId (or the X-Amz-Firehose-Request-Id header) is required")
    records = document.get("records")
    if not isinstance(records, list):
        raise BadRequest('records must be an array of {"data": base64}')
    timestamp = document.get("timestamp")
    if isinstance(timestamp, float) and timestamp.is_integer():
        timestamp = int(timestamp)  # 1764500000000.0 is that integer in JSON
    # Milliseconds, the records' default time: Firehose always sends its own clock's, so anything else (or
    # past the year 5138) is not Firehose's request, refused as the document's bounds say. Absent: now.
    if "timestamp" in document and not (
        isinstance(timestamp, int) and not isinstance(timestamp, bool) and 0 < timestamp < MAX_TIMESTAMP
    ):
        raise BadRequest(
            f"timestamp must be Unix milliseconds, an integer from 1 below 1e14, not {str(timestamp)[:40]}"
        )
    return Delivery(request_id, timestamp, records)


def defaults(params: Mapping[str, str], header: str | None) -> tuple[dict[str, str], dict[str, Any]]:
    """(defaults for every entry, metadata for every entry) from the query string and the common attributes;
    400 for an unknown query parameter or attributes that are not Firehose's JSON, 422 for a query default
    no log could take (the query string is the documented part; a bad common attribute, like an entry's own
    bad value, refuses the entries it reaches)."""
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise BadRequest(f"unknown query parameter(s) {unknown}: POST {PATH} takes {', '.join(DEFAULTS)}")
    values = checked({name: params[name] for name in DEFAULTS if name in params})
    metadata: dict[str, Any] = {}
    if header:
        try:
            attributes = orjson.loads(header).get("commonAttributes")
        except (orjson.JSONDecodeError, AttributeError):
            attributes = None
        if not isinstance(attributes, dict):
            raise BadRequest('X-Amz-Firehose-Common-Attributes must be {"commonAttributes": {...}}')
        for name, value in attributes.items():
            if name in DEFAULTS and isinstance(value, str):
                values.setdefault(name, value)
            else:
                metadata[name] = value
    return values, metadata


def entries(
    records: list[Any],
    defaults: dict[str, str],
    metadata: dict[str, Any],
    created_at: float | None,
    limit: int,
) -> Mapped:
    """Every record's entries; `limit` bounds the bytes the records may expand to, all together."""
    mapped = Mapped()
    budget = limit
    for index, record in enumerate(records):
        data = record.get("data") if isinstance(record, dict) else None
        try:
            if not isinstance(data, str):
                raise BadRequest("must be an object with a base64 `data` string")
            raw = cloudwatch.from_base64(data, "data")
        except BadRequest as exc:
            mapped.problems.append(f"records.{index}: {exc.message}")
            continue
        try:
            if raw.startswith(cloudwatch.GZIP_MAGIC):
                raw = cloudwatch.gunzip(raw, budget)
                budget -= len(raw)
                for payload in cloudwatch.payloads(raw):
                    found = cloudwatch.entries(payload)
                    mapped.problems.extend(f"records.{index}.{problem}" for problem in found.problems)
                    mapped.entries.extend(_with(entry, defaults, metadata) for entry in found.entries)
                continue
        except PayloadTooLarge:
            raise PayloadTooLarge(
                f"the records expand to more than {limit} bytes (MAX_BODY_BYTES): lower the stream's buffer size"
            ) from None
        except BadRequest as exc:
            mapped.problems.append(f"records.{index}: {exc.message}")
            continue
        mapped.entries.extend(_record(raw, defaults, metadata, created_at))
    return mapped


def _with(entry: dict[str, Any], defaults: dict[str, str], metadata: dict[str, Any]) -> dict[str, Any]:
    """A CloudWatch entry, which has its own service and level: only what it lacks is filled in."""
    for name, value in defaults.items():
        if name not in ("service", "level"):
            entry.setdefault(name, value)
    if metadata and isinstance(entry.get("metadata"), dict):
        entry["metadata"] = {**metadata, **entry["metadata"]}
    return entry


def _record(
    raw: bytes, defaults: dict[str, str], metadata: dict[str, Any], created_at: float | None
) -> list[dict[str, Any]]:
    text = raw.decode("utf-8", "replace").strip()
    if not text:
        return []
    documents = _json(text) if text[0] in "{[" else None
    if documents is None:
        level = cloudwatch.leading_level(text)
        entry: dict[str, Any] = {**defaults, "message": text, "level": level or defaults.get("level", "INFO")}
        return [_finish(entry, metadata, created_at)]
    out = []
    for document in documents:
        if not isinstance(document, dict):
            out.append(document)  # validation names it
            continue
        entry = dict(document)
        for name, aliases in ALIASES.items():
            for alias in aliases:
                if alias in entry and name not in entry:
                    entry[name] = entry.pop(alias)
        for name, value in defaults.items():
            entry.setdefault(name, value)
        entry.setdefault("level", "INFO")
        out.append(_finish(entry, metadata, created_at))
    return out


def _finish(entry: dict[str, Any], metadata: dict[str, Any], created_at: float | None) -> dict[str, Any]:
    if created_at is not None:
        entry.setdefault("created_at", created_at)
    own = entry.get("metadata")
    if metadata and (own is None or isinstance(own, dict)):
        entry["metadata"] = {**metadata, **(own or {})}
    return entry


def _json(text: str) -> list[Any] | None:
    """The record's JSON values (an object, an array's items, or NDJSON lines); None when it is not JSON."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            return None
        try:
            return [orjson.loads(line) for line in lines]
        except orjson.JSONDecodeError:
            return None
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, dict) else None


def answer(request_id: str, error: str | None = None) -> bytes:
    """Firehose's response body: the request's id, the time in ms, and what went wrong if anything did."""
    body: dict[str, Any] = {"requestId": request_id, "timestamp": int(time.time() * 1000)}
    if error is not None:
        body["errorMessage"] = error
    return orjson.dumps(body)
