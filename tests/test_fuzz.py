"""Fuzzing the ingest path (decode -> parse -> rows, and the whole app over HTTP): whatever the body, the
answer is a success or a 4xx that names the problem, never an exception. Bounded in examples."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import zstandard
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.decode import decode
from app.errors import IngestError
from app.models import FIELDS
from app.rows import COLUMNS, parse, parse_partial

LIMIT = 1024 * 1024

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
# Keys a log may have: its real fields (so some entries get far), and anything else.
keys = st.sampled_from(FIELDS) | st.text(max_size=10)
plausible_values = (
    st.sampled_from(["INFO", "warning", "svc", "", "2026-11-27T10:00:00Z", 1_764_244_800_250]) | json_values
)
entries = st.dictionaries(keys, plausible_values, max_size=8) | json_values
bodies = st.builds(lambda logs: {"logs": logs}, st.lists(entries, max_size=5)) | json_values


def serialize(value: Any, draw: st.DrawFn) -> bytes:
    try:
        raw = json.dumps(value, allow_nan=draw(st.booleans())).encode("utf-8", "surrogatepass")
    except ValueError:
        raw = b"{}"
    mutation = draw(st.sampled_from(["none", "truncate", "flip", "bom", "nul"]))
    if mutation == "truncate" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif mutation == "flip" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1 :]
    elif mutation == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif mutation == "nul":
        raw = raw.replace(b'"', b'"\\u0000', 1)
    return raw


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, str]:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200)), draw(st.sampled_from(["identity", "gzip", "deflate", "zstd"]))
    raw = serialize(draw(bodies), draw)
    encoding = draw(st.sampled_from(["identity", "identity", "gzip", "deflate", "zstd"]))
    compress = {
        "identity": bytes,
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "zstd": zstandard.compress,
    }
    return compress[encoding](raw), encoding


@given(requests(), st.booleans())
@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
def test_decode_and_parse_answer_rows_or_a_4xx(request: tuple[bytes, str], partial: bool) -> None:
    body, encoding = request
    try:
        rows = (
            parse_partial(decode(body, encoding, LIMIT), 1000)[0]
            if partial
            else parse(decode(body, encoding, LIMIT), 1000)
        )
    except IngestError as exc:
        assert 400 <= exc.status < 500, exc
        assert exc.message
        return
    assert rows and all(len(row) == len(COLUMNS) for row in rows)


@given(requests())
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_app_never_answers_5xx(client: TestClient, request: tuple[bytes, str]) -> None:
    body, encoding = request
    response = client.post(
        "/logs", content=body, headers={"Content-Type": "application/json", "Content-Encoding": encoding}
    )
    assert response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json"
