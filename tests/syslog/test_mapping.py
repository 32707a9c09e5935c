"""Parsed syslog -> entries of our schema: level, service, created_at, metadata; JSON and @cee: MSGs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import InvalidLogs
from app.intake.rows import WINDOW, Received, Row, parse_values
from app.syslog.mapping import entry, row
from app.syslog.parse import parse

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def mapped(raw: bytes, truncated: bool = False) -> dict[str, object]:
    return entry(parse(raw, NOW), "syslog", truncated)


@pytest.mark.parametrize(
    ("severity", "level"),
    [
        (0, "FATAL"),
        (1, "FATAL"),
        (2, "FATAL"),
        (3, "ERROR"),
        (4, "WARN"),
        (5, "INFO"),
        (6, "INFO"),
        (7, "DEBUG"),
    ],
)
def test_severity_gives_the_level(severity: int, level: str) -> None:
    assert mapped(b"<%d>1 - - app - - - x" % (16 * 8 + severity))["level"] == level


def test_rfc5424_fields_go_to_columns_and_metadata() -> None:
    found = mapped(b'<131>1 2026-12-06T11:00:00Z web-1 checkout 4242 PAY [order@32473 id="17"] declined')
    assert found["service"] == "checkout" and found["message"] == "declined" and found["level"] == "ERROR"
    assert found["created_at"] == datetime(2026, 12, 6, 11, tzinfo=UTC).timestamp()
    assert found["metadata"] == {
        "facility": "local0", "severity": "err", "hostname": "web-1", "procid": "4242", "msgid": "PAY",
        "sd": {"order@32473": {"id": "17"}},
    }  # fmt: skip


def test_no_app_name_is_the_default_service_and_flags_are_kept() -> None:
    found = mapped(b"<13>no header at all", truncated=True)
    assert found["service"] == "syslog" and "created_at" not in found
    assert found["metadata"] == {"facility": "user", "severity": "notice", "truncated": True}
    assert mapped(b"not syslog")["metadata"]["unparsed"] is True  # type: ignore[index]


def test_a_json_msg_is_read_like_a_logs_entry() -> None:
    found = mapped(
        b'<11>1 2026-12-06T11:00:00Z h api - - - {"msg": "boom", "severity": "critical", "trace_id": "t1", '
        b'"order": 5, "metadata": {"region": "eu"}}'
    )
    assert (found["message"], found["level"], found["service"], found["trace_id"]) == (
        "boom",
        "FATAL",
        "api",
        "t1",
    )
    assert found["metadata"] == {
        "facility": "user",
        "severity": "err",
        "hostname": "h",
        "order": 5,
        "region": "eu",
    }


def test_cee_cookie_and_a_level_we_cannot_place() -> None:
    found = mapped(b'<14>app: @cee: {"message": "hi", "level": "loud", "service": "svc"}')
    assert (found["message"], found["level"], found["service"]) == ("hi", "INFO", "svc")
    assert found["metadata"]["level"] == "loud"  # type: ignore[index]


def test_json_that_is_not_an_object_stays_text() -> None:
    assert mapped(b"<14>app: [1, 2]")["message"] == "[1, 2]"
    assert mapped(b"<14>app: {broken")["message"] == "{broken"


def test_a_time_before_1970_is_kept_in_metadata() -> None:
    found = mapped(b"<14>1 1969-12-31T23:59:59Z h a - - - old")
    assert found["created_at"] is None
    assert found["metadata"]["original_created_at"] == "1969-12-31T23:59:59+00:00"  # type: ignore[index]


def test_mapped_entries_pass_the_schema() -> None:
    raws = [b"<13>x", b"<191>1 - - - - - - y", b"junk \x00 with nul", b"<13>Feb 29 10:00:00 h t: leap"]
    rows, rejected = parse_values([mapped(raw) for raw in raws], 10, NOW)
    assert not rejected and len(rows) == 4


def test_a_json_integer_past_64_bits_is_kept_whole() -> None:
    found = mapped(b'<14>app: {"message": "m", "metadata": {"n": 100000000000000000000001}}')
    assert found["metadata"]["n"] == 100000000000000000000001  # type: ignore[index]


# --- `row`: the direct path gives what `entry` and the generic validation give ----------------------------

_HEADERS = st.sampled_from([
    b"<134>1 2026-12-06T11:59:00.123456+00:00 web-1 payments 42 ID7 - ",
    b'<134>1 2026-12-06T11:59:00Z web-1 payments - - [log@32473 a="1" b="x\\"y"] ',
    b"<131>1 1969-12-31T23:59:59Z h api - - - ", b"<131>1 2999-01-01T00:00:00Z h api - - - ",
    b"<14>1 - - - - - - ", b"<14>Dec  6 11:00:00 host app[7]: ", b"<14>app: ", b"<14>", b"", b"<14>1 bad h a - - - ",
])  # fmt: skip
# Deeper than metadata may nest (rows.MAX_METADATA_DEPTH).
_DEEP: dict[str, Any] = {"deep": 1}
for _ in range(70):
    _DEEP = {"deep": _DEEP}
_VALUES: dict[str, list[Any]] = {
    "level": ["INFO", "warn", " error ", "Critical", "loud", None, 5, ""],
    "service": ["api", "", None, "s" * 100, "s" * 101, 7],
    "message": ["hello", "", None, 5, "nul \x00 inside"],
    "created_at": [1796557140.5, 1796557140, -5.0, 4102444800.0, "2026-12-06T10:00:00Z", "yesterday", None, True],
    "environment": ["production", "Production", "weird", None],
    "log_type": ["BACKEND", "frontend", "x"],
    "method": ["GET", "post", "FETCH"],
    "trace_id": ["t" * 32, "t" * 33, 5],
    "duration_ms": [1.5, -1, 10_000_000, "x", None],
    "stack_trace": ["Traceback\n  line", None],
    "metadata": [{"region": "eu"}, {"level": "own", "facility": "mine"}, {"n": 2**70}, {"s": "a\x00b"}, [1],
                 "text", None, {}, _DEEP],
    "msg": ["aliased"], "severity": ["crit"], "user": ["unknown field"],
}  # fmt: skip
_DOCUMENTS = st.fixed_dictionaries(
    {}, optional={name: st.sampled_from(values) for name, values in _VALUES.items()}
).map(lambda document: json.dumps(document).encode())  # json: orjson stops at 64-bit integers
_MSGS = (
    _DOCUMENTS
    | _DOCUMENTS.map(lambda d: b"@cee: " + d)
    | st.sampled_from(
        [b"plain text", b"{broken", b"[1, 2]", b"{}", b'{"message": "\\u0000"}', b"\x00", b"@cee: x"]
    )
)


def _generic(raw: bytes, truncated: bool) -> Row | None:
    """The row `entry` and rows.parse_values give; None when the schema refuses the entry."""
    try:
        rows, rejected = parse_values([entry(parse(raw, NOW), "syslog", truncated)], 1, NOW)
    except InvalidLogs:
        return None
    return None if rejected else rows[0]


def _comparable(found: Row) -> tuple[Any, ...]:
    # Metadata is JSON text for jsonb, whose key order does not matter.
    return (*found[:-1], None if found[-1] is None else orjson.loads(found[-1]))


@given(_HEADERS, _MSGS, st.booleans())
@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
def test_row_is_what_entry_and_the_generic_validation_give(
    header: bytes, msg: bytes, truncated: bool
) -> None:
    raw = header + msg
    strip_nul = b"\x00" in raw or b"\\u0000" in raw
    direct = row(parse(raw, NOW), "syslog", truncated, Received(NOW, WINDOW), strip_nul)
    generic = _generic(raw, truncated)
    if direct is not None:  # None: left to the generic path, which then decides
        assert generic is not None
        assert _comparable(direct) == _comparable(generic)


def test_row_takes_the_common_messages_itself() -> None:
    now = Received(NOW, WINDOW)
    for raw in (
        b'<134>1 2026-12-06T11:59:00Z web-1 payments - - [log@32473 a="1"] text',
        b'<134>1 2026-12-06T11:59:00Z web-1 payments - - - {"message": "m", "trace_id": "t", "metadata": {"a": 1}}',
        b"<14>Dec  6 11:00:00 host app[7]: plain",
    ):
        assert row(parse(raw, NOW), "syslog", False, now, False) == _generic(raw, False)
