"""RFC 6587 framing: octet counting and LF/NUL termination detected per message, the size cap."""

from __future__ import annotations

from app.syslog.framing import Framer


def frames(framer: Framer, *chunks: bytes) -> list[tuple[bytes, bool]]:
    return [frame for chunk in chunks for frame in framer.feed(chunk)]


def test_octet_counted_and_lf_terminated_messages_mix_on_one_stream() -> None:
    framer = Framer(1024)
    stream = b"11 <13>hello\n1<14>line one\n<15>nul ended\x0013 <13>a\nb c d e"
    assert frames(framer, stream) == [
        (b"<13>hello\n1", False),
        (b"<14>line one", False),
        (b"<15>nul ended", False),
        (b"<13>a\nb c d e", False),
    ]
    assert framer.held() == 0


def test_messages_split_anywhere_are_put_back_together() -> None:
    stream = b"15 <13>first frame<14>second line\r\n18 <13>third, counted"
    for cut in range(len(stream)):
        framer = Framer(1024)
        got = frames(framer, stream[:cut], stream[cut:]) + framer.finish()
        assert got == [
            (b"<13>first frame", False),
            (b"<14>second line", False),
            (b"<13>third, counted", False),
        ]


def test_a_line_that_starts_with_a_number_is_not_a_count() -> None:
    framer = Framer(1024)
    assert frames(framer, b"200 OK from a health check\n<13>next\n") == [
        (b"200 OK from a health check", False),
        (b"<13>next", False),
    ]


def test_a_long_octet_counted_message_is_cut_and_the_rest_skipped() -> None:
    framer = Framer(100)
    body = b"<13>" + b"x" * 996
    got = frames(framer, b"1000 ", body[:300], body[300:], b"5 <13>k")
    assert got == [(body[:100], True), (b"<13>k", False)]
    assert framer.held() == 0


def test_an_absurd_count_holds_no_more_than_the_cap() -> None:
    framer = Framer(100)
    assert frames(framer, b"9999999999 <13>" + b"y" * 5000) == [(b"<13>" + b"y" * 96, True)]
    for _ in range(100):
        assert framer.feed(b"z" * 10_000) == []
        assert framer.held() == 0


def test_a_long_line_is_cut_and_the_next_line_read() -> None:
    framer = Framer(100)
    got = frames(framer, b"<13>" + b"a" * 150, b"b" * 500, b"\n<13>after\n")
    assert got == [(b"<13>" + b"a" * 96, True), (b"<13>after", False)]


def test_finish_keeps_a_last_line_and_flags_a_cut_frame() -> None:
    framer = Framer(100)
    assert frames(framer, b"<13>no newline at the end") == []
    assert framer.finish() == [(b"<13>no newline at the end", False)]
    framer = Framer(100)
    assert frames(framer, b"50 <13>half") == []
    assert framer.finish() == [(b"<13>half", True)]


def test_empty_lines_and_stray_terminators_are_skipped() -> None:
    assert frames(Framer(100), b"\n\n\r\n\x00<13>x\n\n") == [(b"<13>x", False)]
