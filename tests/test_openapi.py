"""The OpenAPI document says the truth: schemathesis generates requests from it against the real server
(`python -m app` on a real PostgreSQL) and checks every answer with all its checks: no 5xx, nothing the
schema calls valid is refused, nothing it calls invalid is accepted, every status, header and body is one
the document lists. Every operation goes through the examples, coverage (boundary values, each keyword
broken in turn) and fuzzing phases; fuzzing is bounded in examples per operation.

What the document cannot say is excluded below answer by answer, each with its reason; nothing else is."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks

from tests.serverproc import start_server

PHASES = ["examples", "coverage", "fuzzing"]


@pytest.fixture(scope="module")
def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    process, url = start_server({"DATABASE_URL": database_url}, tmp_path_factory.mktemp("openapi"))
    try:
        loaded = schemathesis.openapi.from_url(url + "/openapi.json")
        loaded.config.phases.update(phases=PHASES)
        yield loaded
    finally:
        process.kill()
        process.wait(10)


schema = schemathesis.pytest.from_fixture("api")


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
    return excluded


def _json(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
