"""app/formats/firehose.py on its own: the envelope, defaults and records -> entries (the route is tested
against the real server in tests/routes/test_firehose.py)."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from app.errors import BadRequest, InvalidQuery, PayloadTooLarge
from app.formats import firehose


def record(raw: bytes) -> dict[str, str]:
    return {"data": base64.b64encode(raw).decode()}


def test_the_envelope() -> None:
    body = json.dumps({"requestId": "r1", "timestamp": 1764500000000, "records": []}).encode()
    assert firehose.delivery(body, "header-id") == firehose.Delivery("r1", 1764500000000, [])
    assert firehose.delivery(b'{"records": []}', "header-id").request_id == "header-id"
    assert firehose.delivery(b'{"requestId": "r", "records": []}', None).timestamp is None
    whole = b'{"requestId": "r", "timestamp": 1.7645e12, "records": []}'
    assert firehose.delivery(whole, None).timestamp == 1764500000000
    for bad, words in [(b"[]", "JSON object"), (b'{"requestId": "r"}', "records"), (b"{", "not valid JSON"),
                       (b'{"records": []}', "requestId")] + [
                       (b'{"requestId": "r", "timestamp": %s, "records": []}' % t, "timestamp must be Unix milliseconds")
                       for t in (b'"x"', b"null", b"0", b"-5", b"1.5", b"true", b"100000000000000")]:  # fmt: skip
        with pytest.raises(BadRequest, match=words):
            firehose.delivery(bad, None)


def test_defaults_from_the_query_and_common_attributes() -> None:
    attributes = json.dumps({"commonAttributes": {"service": "api", "level": "WARN", "team": "pay"}})
    assert firehose.defaults({"service": "web"}, attributes) == (
        {"service": "web", "level": "WARN"},
        {"team": "pay"},
    )
    with pytest.raises(BadRequest, match="colour"):
        firehose.defaults({"colour": "red"}, None)
    with pytest.raises(BadRequest, match="commonAttributes"):
        firehose.defaults({}, "not json")
    # A query default no log could take is refused with the request, whatever its records hold.
    with pytest.raises(InvalidQuery, match="query.service_version: String should have at most 50"):
        firehose.defaults({"service_version": "x" * 51}, None)


def test_records_of_every_kind() -> None:
    cloudwatch = {"messageType": "DATA_MESSAGE", "logGroup": "/aws/lambda/f", "logStream": "s",
                  "logEvents": [{"id": "1", "timestamp": 1764500000000, "message": "[ERROR]\tt\tr\tboom"}]}  # fmt: skip
    control = {"messageType": "CONTROL_MESSAGE", "logEvents": []}
    records = [
        record(gzip.compress(json.dumps(cloudwatch).encode()) + gzip.compress(json.dumps(control).encode())),
        record(b'{"msg": "json", "severity": "debug"}'),
        record(b'{"message": "a"}\n{"message": "b", "service": "own"}'),
        record(b"plain text\n"),
        record(b""),
        record(b"[1]"),
        {"data": "%%%"},
        "not an object",
        record(gzip.compress(b"not json")),
    ]
    mapped = firehose.entries(
        records, {"service": "web", "environment": "staging"}, {"team": "pay"}, 1.0, 10_000
    )
    got = [(e["service"], e["level"], e["message"]) for e in mapped.entries[:5]]
    assert got == [("f", "ERROR", "boom"), ("web", "debug", "json"), ("web", "INFO", "a"), ("own", "INFO", "b"),
                   ("web", "INFO", "plain text")]  # fmt: skip
    assert mapped.entries[5] == 1  # left for validation to refuse
    assert all(e["metadata"]["team"] == "pay" and e["environment"] == "staging" for e in mapped.entries[:5])
    assert mapped.entries[4]["created_at"] == 1.0
    assert [p.split(":")[0] for p in mapped.problems] == ["records.6", "records.7", "records.8"]


def test_records_may_not_expand_past_the_limit_together() -> None:
    big = record(gzip.compress(b" " * 6000))
    with pytest.raises(PayloadTooLarge, match="buffer size"):
        firehose.entries([big, big], {}, {}, None, 10_000)
