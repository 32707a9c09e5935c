from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.errors import BadRequest, InvalidLogs, PayloadTooLarge
from app.intake.rows import COLUMNS, WINDOW, Received, documented, parse, parse_partial, parse_values
from tests.support import log_entry

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
# Every created_at taken as given: for the tests of parsing, not of the window.
WIDE = (timedelta(days=365 * 2000), timedelta(days=365 * 3200))


def body(*entries: dict[str, Any]) -> bytes:
    return json.dumps({"logs": list(entries)}).encode()


def one(**fields: Any) -> dict[str, Any]:
    """Parse a single entry and return its row as {column: value}."""
    (row,) = parse(body(log_entry(**fields)), 1000, NOW, WIDE)
    return dict(zip(COLUMNS, row))


def errors_of(raw: bytes, max_batch_size: int = 1000) -> list[str]:
    with pytest.raises(InvalidLogs) as caught:
        parse(raw, max_batch_size, NOW)
    return [error["field"] for error in caught.value.errors]


def test_minimal_entry_gets_the_tables_defaults() -> None:
    row = one()
    assert row["created_at"] == NOW
    assert (row["level"], row["service"], row["message"]) == ("INFO", "checkout", "order placed")
    assert (row["log_type"], row["environment"], row["service_version"]) == (
        "BACKEND",
        "development",
        "v0.0.0-dev",
    )
    assert row["metadata"] is None and row["trace_id"] is None


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("info", "INFO"),
        (" Error ", "ERROR"),
        ("warning", "WARN"),
        ("WARN", "WARN"),
        ("critical", "FATAL"),
        ("trace", "TRACE"),
    ],
)
def test_levels_are_case_insensitive_and_stored_canonical(sent: str, stored: str) -> None:
    assert one(level=sent)["level"] == stored


def test_enums_are_stored_canonical() -> None:
    row = one(log_type="frontend", environment="Production", method="post")
    assert (row["log_type"], row["environment"], row["method"]) == ("FRONTEND", "production", "POST")


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        (1_764_244_800, datetime(2025, 11, 27, 12, 0, tzinfo=UTC)),
        (1_764_244_800.25, datetime(2025, 11, 27, 12, 0, 0, 250000, tzinfo=UTC)),
        # Milliseconds (JavaScript's Date.now()), microseconds and nanoseconds, told apart by magnitude.
        (1_764_244_800_250, datetime(2025, 11, 27, 12, 0, 0, 250000, tzinfo=UTC)),
        (1_764_244_800_250_001, datetime(2025, 11, 27, 12, 0, 0, 250001, tzinfo=UTC)),
        (1_764_244_800_250_001_000, datetime(2025, 11, 27, 12, 0, 0, 250001, tzinfo=UTC)),
        (99_999_999_999, datetime(5138, 11, 16, 9, 46, 39, tzinfo=UTC)),  # the largest in seconds
        (100_000_000_000, datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)),  # the smallest in milliseconds
        ("2026-11-27T10:00:00Z", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T19:00:00.5+09:00", datetime(2026, 11, 27, 10, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_created_at_accepts_unix_seconds_and_rfc3339(sent: Any, stored: datetime) -> None:
    assert one(created_at=sent)["created_at"] == stored


@pytest.mark.parametrize(
    ("sent", "message"),
    [
        ("2026-11-27T10:00:00", "need a UTC offset"),
        ("yesterday", "RFC 3339"),
        # Offsets that put the first or last year outside the range in UTC.
        ("0001-01-01T00:00:00+01:00", "outside 0001-01-01"),
        ("9999-12-31T23:59:59-01:00", "outside 0001-01-01"),
        (-1, "from 0 (1970) below 1e20"),
        (1e20, "from 0 (1970) below 1e20"),
        (True, "Unix seconds"),
        ([], "Unix seconds"),
    ],
)
def test_bad_created_at_is_named(sent: Any, message: str) -> None:
    with pytest.raises(InvalidLogs) as caught:
        parse(body(log_entry(created_at=sent)), 1000, NOW)
    (error,) = caught.value.errors
    assert error["field"] == "logs.0.created_at"
    assert message in error["message"]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (0, "1970-01-01T00:00:00+00:00"),  # a client whose clock never got set
        ("2999-01-01T00:00:00Z", "2999-01-01T00:00:00+00:00"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:00"),  # the first year, in range in UTC
        ("9999-12-31T23:59:59+00:00", "9999-12-31T23:59:59+00:00"),
        ("2026-10-28T11:59:59Z", "2026-10-28T11:59:59+00:00"),  # just past the 30-day window
    ],
)
def test_a_created_at_outside_the_window_is_stored_as_received_with_the_original_kept(
    sent: Any, kept: str
) -> None:
    (row,) = parse(body(log_entry(created_at=sent, metadata={"original_created_at": "mine"})), 1000, NOW)
    stored = dict(zip(COLUMNS, row))
    assert stored["created_at"] == NOW
    assert json.loads(stored["metadata"]) == {"original_created_at": "mine", "original_created_at~1": kept}


@pytest.mark.parametrize("sent", ["2026-10-28T12:00:00Z", "2026-11-28T12:00:00Z", "2026-11-27T11:00:00Z"])
def test_a_created_at_inside_the_window_is_kept(sent: str) -> None:
    (row,) = parse(body(log_entry(created_at=sent)), 1000, NOW)
    assert row[0] == datetime.fromisoformat(sent)
    assert row[-1] is None


def test_null_created_at_means_receive_time() -> None:
    assert one(created_at=None)["created_at"] == NOW


def test_unknown_fields_are_kept_in_metadata_under_their_own_names() -> None:
    row = one(host="web-1", tags=["a", "b"], metadata={"request": {"id": 7}})
    assert json.loads(row["metadata"]) == {"request": {"id": 7}, "host": "web-1", "tags": ["a", "b"]}


def test_id_and_deleted_are_not_columns_a_client_can_set() -> None:
    row = one(id=5, deleted=True)
    assert json.loads(row["metadata"]) == {"id": 5, "deleted": True}


def test_unknown_field_that_collides_with_a_metadata_key_is_kept_beside_it() -> None:
    row = one(host="a", metadata={"host": "b", "host~1": "c"})
    assert json.loads(row["metadata"]) == {"host": "b", "host~1": "c", "host~2": "a"}


def test_nul_is_replaced_in_every_stored_string() -> None:
    row = one(
        message="a\x00b", service="svc\x00", stack_trace="\x00", metadata={"k\x00": ["v\x00", {"n": "\x00"}]}
    )
    assert row["message"] == "a\ufffdb" and row["service"] == "svc\ufffd" and row["stack_trace"] == "\ufffd"
    assert json.loads(row["metadata"]) == {"k\ufffd": ["v\ufffd", {"n": "\ufffd"}]}


def test_non_ascii_text_is_kept_as_is() -> None:
    row = one(message="주문 완료 ✓", metadata={"도시": "서울"})
    assert row["message"] == "주문 완료 ✓"
    assert "서울" in row["metadata"]


def test_duration_is_rounded_to_the_columns_three_decimals() -> None:
    assert one(duration_ms=12.34567)["duration_ms"] == 12.346
    assert one(duration_ms=7)["duration_ms"] == 7


@pytest.mark.parametrize("duration", [-1, 10_000_000, "12"])
def test_out_of_range_duration_is_refused(duration: Any) -> None:
    assert errors_of(body(log_entry(duration_ms=duration))) == ["logs.0.duration_ms"]


@pytest.mark.parametrize(
    ("field", "limit"),
    [("service", 100), ("service_version", 50), ("trace_id", 32), ("user_id", 255), ("session_id", 100),
     ("error_type", 200), ("path", 500), ("action_type", 50), ("function_name", 300), ("file_path", 1000)],
)  # fmt: skip
def test_length_limits_follow_the_table(field: str, limit: int) -> None:
    assert one(**{field: "é" * limit})[field] == "é" * limit
    assert errors_of(body(log_entry(**{field: "é" * (limit + 1)}))) == [f"logs.0.{field}"]


def test_each_bad_entry_is_named_by_index_and_field() -> None:
    entries = [
        log_entry(),
        log_entry(level="LOUD"),
        {"level": "INFO", "message": "no service"},
        log_entry(metadata=[1, 2]),
        log_entry(method="FETCH", environment="prod", log_type="desktop"),
        log_entry(service=""),
        log_entry(message=42),
    ]
    assert errors_of(body(*entries)) == [
        "logs.1.level",
        "logs.2.service",
        "logs.3.metadata",
        "logs.4.log_type",
        "logs.4.environment",
        "logs.4.method",
        "logs.5.service",
        "logs.6.message",
    ]


def test_batch_size_is_bounded() -> None:
    assert errors_of(body(*[log_entry()] * 3), max_batch_size=2) == ["logs"]
    assert errors_of(body()) == ["logs"]
    assert len(parse(body(*[log_entry()] * 2), 2, NOW)) == 2


@pytest.mark.parametrize(
    "raw", [b'{"logs": 1}', b"[]", b'"logs"', b"{}", b'{"logs": [], "extra": 1}', b'{"logs": [1]}']
)
def test_wrong_shapes_are_validation_errors(raw: bytes) -> None:
    assert errors_of(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"logs": [', "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"logs": [{"message": "\xff"}]}', "not valid UTF-8 JSON"),
        (b'{"logs": [{"message": "\\ud800"}]}', "not valid JSON"),
    ],
)
def test_malformed_bodies_are_bad_requests(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse(raw, 1000, NOW)


def test_receive_time_defaults_to_now() -> None:
    (row,) = parse(body(log_entry()), 1000)
    assert abs(row[0] - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.parametrize(
    "metadata_json",
    ['{"ratio": NaN}', '{"a": [1, Infinity]}', '{"big": 1e400}', '{"n": -Infinity, "x": null}'],
)
def test_non_finite_numbers_in_metadata_are_refused_not_nulled(metadata_json: str) -> None:
    raw = (
        b'{"logs": [{"level": "INFO", "service": "s", "message": "m", "metadata": %s}]}'
        % metadata_json.encode()
    )
    assert errors_of(raw) == ["logs.0.metadata"]


def test_non_finite_numbers_in_unknown_fields_are_refused() -> None:
    raw = b'{"logs": [{"level": "INFO", "service": "s", "message": "m", "score": NaN}]}'
    assert errors_of(raw) == ["logs.0.metadata"]


def test_nulls_and_huge_integers_in_metadata_are_kept() -> None:
    row = one(metadata={"a": None, "big": 2**80, "list": [None, 1.5]})
    assert json.loads(row["metadata"]) == {"a": None, "big": 2**80, "list": [None, 1.5]}


def _documented_only(raw: bytes) -> Any:
    """What the documented schema alone makes of a body: the reference the two-pass parse must match."""
    try:
        return documented(raw, 1000, Received(NOW, WINDOW))
    except (InvalidLogs, BadRequest) as exc:
        return type(exc), [e["field"] for e in getattr(exc, "errors", [])]


def _two_pass(raw: bytes) -> Any:
    try:
        return parse(raw, 1000, NOW)
    except (InvalidLogs, BadRequest) as exc:
        return type(exc), [e["field"] for e in getattr(exc, "errors", [])]


VARIANTS: dict[str, list[Any]] = {
    "level": ["INFO", "info", " Warning ", "CRITICAL", "\x1cerror", "LOUD", "", 3, None, "ＩＮＦＯ"],
    "log_type": ["backend", "IOT", "desktop", None, 1],
    "environment": ["Production", "prod", None, "TEST", " local "],
    "method": ["get", "FETCH", None, "options", True],
    "created_at": [
        0,
        1.5e9,
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00",
        "x",
        -5,
        1e20,
        True,
        None,
        [],
        "2026-01-01",
    ],
    "duration_ms": [0, 1.23456, -1, "3", None, 9_999_999.999, 1e7],
    "service": ["a", "", "x" * 100, "x" * 101, None, 7],
    "metadata": [{"a": 1}, None, [], "text", {"n": None}],
    "extra_field": ["kept", None, {"nested": [1, 2]}],
}


def test_two_pass_parse_agrees_with_the_documented_schema() -> None:
    import random

    rng = random.Random(1234)
    for _ in range(400):
        entry = log_entry()
        for field, options in VARIANTS.items():
            if rng.random() < 0.4:
                entry[field] = rng.choice(options)
        raw = json.dumps({"logs": [log_entry(), entry]}).encode()
        assert _two_pass(raw) == _documented_only(raw), entry


def test_a_plain_valid_batch_never_needs_the_second_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.intake.rows

    def second_pass(*args: Any) -> None:
        raise AssertionError("the documented schema was consulted for a valid batch")

    monkeypatch.setattr(app.intake.rows, "documented", second_pass)
    entries = [log_entry(level="warning", environment="Production", created_at="2026-01-01T00:00:00Z",
                         metadata={"k": [1, None]}, duration_ms=3)] * 3  # fmt: skip
    assert len(parse(body(*entries), 1000, NOW)) == 3


def test_unknown_fields_take_the_second_pass_and_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.intake.rows

    calls = []
    monkeypatch.setattr(app.intake.rows, "documented", lambda *args: calls.append(args) or documented(*args))
    (row,) = parse(body(log_entry(region="eu")), 1000, NOW)
    assert calls and json.loads(row[COLUMNS.index("metadata")]) == {"region": "eu"}


def test_a_literal_backslash_u0000_is_text_not_nul() -> None:
    row = one(message="a\x00", metadata={"lit": "\\u0000", "nul": "a\x00b", "k\x00": 1, "both": "\\\x00"})
    assert json.loads(row["metadata"]) == {
        "lit": "\\u0000",
        "nul": "a\ufffdb",
        "k\ufffd": 1,
        "both": "\\\ufffd",
    }


def test_a_body_with_too_many_objects_and_arrays_is_refused_before_decoding() -> None:
    entries = [log_entry(metadata={"a": [[0]] * 250}) for _ in range(1000)]
    with pytest.raises(PayloadTooLarge, match="JSON objects and arrays"):
        parse(body(*entries), 1000, NOW)
    # Brackets inside strings are text, not containers.
    assert len(parse(body(*[log_entry(message="[{" * 300) for _ in range(1000)]), 1000, NOW)) == 1000


@pytest.mark.parametrize("depth", [64, 65, 300, 900])
def test_metadata_nesting_is_limited_to_64_levels(depth: int) -> None:
    metadata: Any = 1
    for _ in range(depth):
        metadata = {"a": metadata}
    raw = body(log_entry(metadata=metadata, note="\x00"))  # the NUL and unknown field take the slower paths
    if depth <= 64:
        assert len(parse(raw, 1000, NOW)) == 1
    else:
        with pytest.raises((InvalidLogs, BadRequest), match="nest"):
            parse(raw, 1000, NOW)


def _partial(parse_one: Any, *args: Any) -> Any:
    try:
        return parse_one(*args)
    except (InvalidLogs, BadRequest) as exc:
        return type(exc), [e["field"] for e in getattr(exc, "errors", [])]


def test_python_values_parse_as_their_json_would() -> None:
    # parse_values (OTLP's entries) skips the JSON text; it must keep and refuse exactly what parse_partial
    # does for the same entries as JSON, and name the same fields.
    import random

    rng = random.Random(4321)
    for _ in range(300):
        entries = [log_entry(), log_entry()]
        for entry in entries:
            for field, options in VARIANTS.items():
                if rng.random() < 0.3:
                    entry[field] = rng.choice(options)
        as_json = json.dumps({"logs": entries}).encode()
        assert _partial(parse_values, entries, 1000, NOW) == _partial(parse_partial, as_json, 1000, NOW), (
            entries
        )


def test_nul_in_python_values_is_replaced() -> None:
    # A protobuf string holds U+0000 as a raw byte: there is no JSON escape to notice it by.
    (row,), rejected = parse_values(
        [log_entry(message="a\x00b", metadata={"k\x00": "v\x00"})], 1000, NOW, WIDE
    )
    stored = dict(zip(COLUMNS, row))
    assert rejected == [] and stored["message"] == "a\ufffdb"
    assert json.loads(stored["metadata"]) == {"k\ufffd": "v\ufffd"}


def test_the_container_limit_is_exact() -> None:
    from app.intake.rows import MAX_CONTAINERS

    def with_containers(n: int) -> bytes:
        # Root object, logs array, the entry, its metadata object, the array in it: 5; the rest empty arrays.
        inner = ",".join(["[]"] * (n - 5))
        return (
            b'{"logs":[{"level":"INFO","service":"s","message":"m","metadata":{"a":[%s]}}]}' % inner.encode()
        )

    at_limit = with_containers(MAX_CONTAINERS)
    assert len(at_limit) > 2 * MAX_CONTAINERS  # long enough to be counted
    assert len(parse(at_limit, 1000, NOW)) == 1
    with pytest.raises(PayloadTooLarge):
        parse(with_containers(MAX_CONTAINERS + 1), 1000, NOW)
