"""The OpenAPI document says the truth: schemathesis generates requests from it against the real server
(`python -m app` on a real PostgreSQL) and checks every answer: no 5xx, nothing the schema calls valid is
refused, every status and body is one the document lists. Bounded in examples per operation."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.serverproc import start_server
from tests.support import DB


@pytest.fixture(scope="module")
def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    # GET /logs/stream ends after a moment, so that each example's answer is whole. Generated alert rules
    # notify generated URLs: this server never evaluates them (ALERT_INTERVAL a day), and they are deleted
    # afterwards, before another test's server could.
    env = {"DATABASE_URL": database_url, "STREAM_MAX_SECONDS": "0.05", "ALERT_INTERVAL": "86400"}
    process, url = start_server(env, tmp_path_factory.mktemp("openapi"))
    try:
        yield schemathesis.openapi.from_url(url + "/openapi.json")
    finally:
        process.kill()
        process.wait(10)
        DB(database_url).fetch("TRUNCATE alert_rules")


schema = schemathesis.pytest.from_fixture("api")


@schemathesis.serializer("application/x-ndjson")
def _ndjson(context: object, value: object) -> bytes:
    # The bulk API's NDJSON body, documented as a string of lines: sent as those lines' bytes.
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_document(case: schemathesis.Case) -> None:
    if case.headers and "Idempotency-Key" in case.headers:
        # Generated keys repeat across different bodies, which is a (documented) 422 by design.
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    excluded = []
    if str((case.query or {}).get("partial")).lower() in ("true", "1"):
        # ?partial=true exists to store the valid entries of a body the schema would refuse: a 200 for a
        # schema-violating body is its documented answer, listed in `rejected`.
        excluded.append(schemathesis.checks.negative_data_rejection)
    if case.path == "/v1/logs":
        # OTLP's contract is opentelemetry-proto's, which the document only outlines: proto3 JSON reads
        # null and unknown fields as defaults (valid bodies the outline calls invalid), and the outline
        # cannot state every structural rule (invalid bodies it calls valid). That contract is tested with
        # the real SDK and golden bodies (tests/formats/test_otlp.py); here the other checks still hold (no 5xx,
        # documented statuses, response shapes).
        excluded += [
            schemathesis.checks.negative_data_rejection,
            schemathesis.checks.positive_data_acceptance,
        ]
    if case.path == "/loki/api/v1/push":
        # The document describes the JSON's shape; a body of that shape may still be refused with the
        # documented 400 (a label text, a timestamp past the year 5138, a JSON line with an invalid field,
        # any protobuf bytes that are not snappy): tests/formats/test_loki.py covers what is stored.
        excluded.append(schemathesis.checks.positive_data_acceptance)
    if case.path.endswith("/_bulk"):
        # The Elasticsearch bulk body is NDJSON (a sequence of JSON documents, pairs of action and source),
        # which JSON Schema cannot state: the document shows it as a string with an example. Its contract is
        # tested with the real rsyslogd, golden bodies and fuzzing (tests/routes/test_bulk.py,
        # tests/formats/test_bulk.py, tests/test_fuzz.py); here the other checks still hold.
        excluded += [
            schemathesis.checks.negative_data_rejection,
            schemathesis.checks.positive_data_acceptance,
        ]

    if case.path == "/firehose":
        # Firehose's records are stored as far as they can be read: one record the outline calls invalid
        # (no `data`, not base64) is counted, not a reason to refuse the others (tests/routes/test_firehose.py).
        excluded.append(schemathesis.checks.negative_data_rejection)
    if (case.query or {}).get("cursor") is not None:
        # A cursor is opaque: only one a previous page returned is valid, which no generator can guess.
        excluded.append(schemathesis.checks.positive_data_acceptance)
    if case.path == "/alerts" and case.method == "POST":
        # Whether a notify URL can be delivered to (a scheme apprise knows, with the parts that service
        # needs) is apprise's to say, not JSON Schema's: a URL the document allows may still be a 422.
        excluded.append(schemathesis.checks.positive_data_acceptance)
    case.call_and_validate(excluded_checks=excluded)
