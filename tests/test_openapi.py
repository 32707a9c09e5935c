"""The OpenAPI document says the truth: schemathesis generates requests from it against the real server
(`python -m app` on a real PostgreSQL) and checks every answer with all its checks: no 5xx, nothing the
schema calls valid is refused, nothing it calls invalid is accepted, every status, header and body is one
the document lists. Every operation goes through the examples, coverage (boundary values, each keyword
broken in turn) and fuzzing phases; fuzzing is bounded in examples per operation.

What the document cannot say is excluded below answer by answer, each with its reason; nothing else is."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks

from tests.serverproc import start_server
from tests.support import DB

PHASES = ["examples", "coverage", "fuzzing"]


@pytest.fixture(scope="module")
def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    # GET /logs/stream ends after a moment, so that each example's answer is whole. Generated alert rules
    # notify generated URLs: this server never evaluates them (ALERT_INTERVAL a day), and they are deleted
    # afterwards, before another test's server could.
    env = {"DATABASE_URL": database_url, "STREAM_MAX_SECONDS": "0.05", "ALERT_INTERVAL": "86400"}
    process, url = start_server(env, tmp_path_factory.mktemp("openapi"))
    try:
        loaded = schemathesis.openapi.from_url(url + "/openapi.json")
        loaded.config.phases.update(phases=PHASES)
        yield loaded
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
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    # explicit: the examples and coverage phases' cases; generate: fuzzing's.
    phases=[Phase.explicit, Phase.generate],
)
def test_every_answer_matches_the_document(case: schemathesis.Case) -> None:
    if case.headers and "Idempotency-Key" in case.headers:
        # Generated keys repeat across different bodies: reusing a key with another body is a 422 by design
        # (the IETF Idempotency-Key draft's answer), which no schema can express.
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    response = case.call()
    case.validate_response(response, excluded_checks=_explained(case, response))


def _explained(case: schemathesis.Case, response: Any) -> list[Any]:
    """The checks an answer is exempt from, each for a rule the document states but cannot express."""
    excluded = []
    query = case.query or {}
    body = _json(response)
    if str(query.get("partial")).lower() in ("true", "1"):
        # ?partial=true exists to store the valid entries of a body the schema would refuse: a 200 for a
        # schema-violating body is its documented answer, listed in `rejected`.
        excluded.append(checks.negative_data_rejection)
    if response.status_code == 422 and [e.get("field") for e in body.get("errors") or []] == ["query.cursor"]:
        # A cursor is opaque: only one a previous page returned is valid, which no generator can guess.
        excluded.append(checks.positive_data_acceptance)
    if case.path == "/v1/logs" and response.status_code == 400:
        message = str(body.get("message", ""))
        if message.startswith("no log record could be stored") or "(protobuf)" in message:
            # The document describes OTLP/JSON's structure exactly; not the column limits a record's
            # attributes meet once mapped (a 300-character user.id), which refuse every record of such a
            # request; nor protobuf's grammar (`format: binary`).
            excluded.append(checks.positive_data_acceptance)
    if case.path == "/loki/api/v1/push":
        # The document describes the JSON's shape; a body of that shape may still be refused with the
        # documented 400 (a label text, a timestamp past the year 5138, a JSON line with an invalid field,
        # any protobuf bytes that are not snappy): tests/formats/test_loki.py covers what is stored.
        excluded.append(checks.positive_data_acceptance)
    if case.path.startswith("/loki/api/v1/") and case.path != "/loki/api/v1/push":
        # Loki's reads take LogQL and Loki's time formats, grammars a string schema cannot state: a string
        # the document allows may still be the documented 400 with Loki's parse error
        # (tests/routes/test_loki_query.py, tests/logql/).
        excluded.append(checks.positive_data_acceptance)
    if case.path.endswith("/_bulk"):
        # The Elasticsearch bulk body is NDJSON (a sequence of JSON documents, pairs of action and source),
        # which JSON Schema cannot state: the document shows it as a string with an example. Its contract is
        # tested with the real rsyslogd, golden bodies and fuzzing (tests/routes/test_bulk.py,
        # tests/formats/test_bulk.py, tests/test_fuzz.py); here the other checks still hold.
        excluded += [checks.negative_data_rejection, checks.positive_data_acceptance]
    if case.path == "/firehose":
        # Firehose's records are stored as far as they can be read: one record the outline calls invalid
        # (no `data`, not base64) is counted, not a reason to refuse the others (tests/routes/test_firehose.py).
        excluded.append(checks.negative_data_rejection)
    if case.path == "/alerts" and case.method == "POST":
        # Whether a notify URL can be delivered to (a scheme apprise knows, with the parts that service
        # needs) is apprise's to say, not JSON Schema's: a URL the document allows may still be a 422.
        excluded.append(checks.positive_data_acceptance)
    return excluded


def _json(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
