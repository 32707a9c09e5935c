"""Parsed syslog -> entries of our schema: level, service, created_at, metadata; JSON and @cee: MSGs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.intake.rows import parse_values
from app.syslog.mapping import entry
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
