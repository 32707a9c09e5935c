"""The syslog suite's senders: its RFC 5424 lines carry the same logs as the JSON arm's bodies."""

from __future__ import annotations

from app.config import Settings
from app.intake.rows import COLUMNS, parse
from app.syslog.framing import Framer
from app.syslog.sink import Sink
from bench.data import LogFactory, body
from bench.syslog import json_line, octet_counted, sd_line


def test_json_msg_lines_store_what_the_json_arm_stores_plus_the_syslog_header() -> None:
    entries = LogFactory(3).batch(50)
    sink = Sink(Settings(_env_file=None), writer=None, transport="bench")  # type: ignore[arg-type,call-arg]
    rows = sink.rows(Framer(65536).feed(octet_counted([json_line(e) for e in entries])))
    reference = parse(body(entries), 50)
    metadata = COLUMNS.index("metadata")
    assert [row[:metadata] for row in rows] == [row[:metadata] for row in reference]


def test_structured_data_lines_keep_every_field() -> None:
    entries = LogFactory(4).batch(20)
    sink = Sink(Settings(_env_file=None), writer=None, transport="bench")  # type: ignore[arg-type,call-arg]
    frames = Framer(65536).feed(octet_counted([sd_line(e) for e in entries]))
    rows = sink.rows(frames)
    assert len(rows) == 20
    for row, entry in zip(rows, entries, strict=True):
        assert (row[COLUMNS.index("service")], row[COLUMNS.index("message")]) == (
            entry["service"],
            entry["message"],
        )
        assert f'"trace_id":"{entry["trace_id"]}"' in row[COLUMNS.index("metadata")]
