"""RFC 5424 and RFC 3164 parsing, detected per message; what is not syslog."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.syslog.parse import parse

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_rfc5424_with_structured_data_and_bom() -> None:
    # RFC 5424's own example 3, with a BOM before MSG.
    raw = (
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
        b'[examplePriority@32473 class="high"] \xef\xbb\xbfAn application event log entry'
    )
    message = parse(raw, NOW)
    assert (message.facility, message.severity) == (20, 5)
    assert message.timestamp == datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=UTC)
    assert (message.hostname, message.app_name, message.procid, message.msgid) == (
        "mymachine.example.com", "evntslog", None, "ID47",
    )  # fmt: skip
    assert message.structured_data == {
        "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
        "examplePriority@32473": {"class": "high"},
    }
    assert message.msg == "An application event log entry"
    assert message.syslog


def test_rfc5424_escapes_nil_values_and_no_msg() -> None:
    message = parse(b'<14>1 - - - - - [a@1 v="q\\"x\\]y\\\\z\\n"]', NOW)
    assert message.timestamp is None and message.hostname is None and message.app_name is None
    assert message.structured_data == {"a@1": {"v": 'q"x]y\\z\\n'}}
    assert message.msg == ""


def test_rfc5424_high_precision_offset_time() -> None:
    message = parse(b"<13>1 2026-12-06T13:00:00.123456+01:00 host app 42 - - hi", NOW)
    assert message.timestamp == datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC)
    assert message.procid == "42" and message.msg == "hi"


def test_rfc5424_unreadable_time_is_kept_as_text() -> None:
    message = parse(b"<13>1 2026-13-45T99:00:00Z host app - - - hi", NOW)
    assert message.timestamp is None and message.bad_timestamp == "2026-13-45T99:00:00Z"


def test_rfc3164_full_header() -> None:
    message = parse(b"<34>Oct 11 22:14:15 mymachine su[231]: 'su root' failed", NOW)
    assert (message.facility, message.severity) == (4, 2)
    # No year in the message: the one nearest the time received.
    assert message.timestamp == datetime(2026, 10, 11, 22, 14, 15, tzinfo=UTC)
    assert (message.hostname, message.app_name, message.procid) == ("mymachine", "su", "231")
    assert message.msg == "'su root' failed"


@pytest.mark.parametrize(
    ("received", "year"),
    [(datetime(2027, 1, 2, tzinfo=UTC), 2026), (datetime(2026, 12, 31, tzinfo=UTC), 2026),
     (datetime(2026, 12, 20, tzinfo=UTC), 2026), (datetime(2027, 6, 1, tzinfo=UTC), 2026)],
)  # fmt: skip
def test_rfc3164_year_is_the_nearest(received: datetime, year: int) -> None:
    assert parse(b"<13>Dec 30 23:59:59 h t: m", received).timestamp.year == year  # type: ignore[union-attr]


def test_rfc3164_single_digit_day_and_no_host() -> None:
    message = parse(b"<13>Dec  6 10:00:00 cron[7]: job done", NOW)
    assert message.timestamp == datetime(2026, 12, 6, 10, tzinfo=UTC)
    assert message.hostname is None and message.app_name == "cron" and message.procid == "7"


def test_rsyslog_high_precision_bsd_header_and_device_years() -> None:
    message = parse(b"<11>2026-12-06T10:00:00.5+00:00 web nginx: upstream down", NOW)
    assert message.timestamp == datetime(2026, 12, 6, 10, 0, 0, 500000, tzinfo=UTC)
    assert (message.hostname, message.app_name, message.msg) == ("web", "nginx", "upstream down")
    message = parse(b"<11>Dec  6 2025 10:00:00 switch1 LINK: port 3 down", NOW)
    assert message.timestamp == datetime(2025, 12, 6, 10, tzinfo=UTC)
    assert message.hostname == "switch1"


def test_pri_only_as_python_sends_it() -> None:
    message = parse(b"<12>just text, no header", NOW)
    assert (message.severity, message.app_name, message.msg) == (4, None, "just text, no header")
    assert parse(b"<12>worker: started", NOW).app_name == "worker"


@pytest.mark.parametrize("raw", [b"hello", b"<192>too high", b"<>x", b"", b"\xff\xfe<13>"])
def test_what_is_not_syslog_is_a_plain_message(raw: bytes) -> None:
    message = parse(raw, NOW)
    assert not message.syslog
    assert message.msg == raw.decode("utf-8", "replace")
    assert (message.facility, message.severity) == (1, 5)


def test_invalid_utf8_is_replaced() -> None:
    assert parse(b"<13>1 - h a - - - caf\xe9", NOW).msg == "caf\ufffd"


def test_rfc3164_tag_without_colon_after_a_whole_header() -> None:
    message = parse(b"<156>Dec  6 16:20:00 vm shop order 7 shipped", NOW)
    assert (message.hostname, message.app_name, message.msg) == ("vm", "shop", "order 7 shipped")
    # Without a header a first word is only a tag with its colon.
    assert parse(b"<14>order 7 shipped", NOW).app_name is None


# A PARAM-VALUE as the structured-data pattern reads it: plain characters and backslash pairs.
_VALUE_PIECES = st.sampled_from(
    ["a", "]", " ", "=", "\\\\", '\\"', "\\]", "\\n", "\\a", "\\\\\\]", "é", '\\" ']
)


_VALUES = st.lists(_VALUE_PIECES, max_size=30).map("".join)
_NAMES = st.sampled_from(["p", "q", "name.with-dots", "x" * 32])


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=5))
@settings(max_examples=500, deadline=None)
def test_sd_params_and_their_escapes_are_read_as_written(params: list[tuple[str, str]]) -> None:
    element = b"".join(b' %s="%s"' % (name.encode(), value.encode()) for name, value in params)
    message = parse(b'<14>1 - - - - - [x@1%s][y@2 z="=\\"\\" "] m' % element, NOW)
    # The reference: backslash pairs read left to right; the last of two equal names wins.
    expected = {name: re.sub(r'\\([\\"\]])', r"\1", value) for name, value in params}
    assert message.structured_data == {"x@1": expected, "y@2": {"z": '="" '}}
    assert message.msg == "m"
