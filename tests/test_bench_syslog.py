"""The syslog suite's senders: its RFC 5424 lines carry the same logs as the JSON arm's bodies."""

from __future__ import annotations

from app.config import Settings
from app.intake.rows import COLUMNS, parse
from app.syslog.framing import Framer
from app.syslog.sink import Sink
from bench import report
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


def test_the_report_renders_the_syslog_arms_against_the_target() -> None:
    data = {
        "parameters": {"batch": 1000, "clients": 8, "workers": 1, "warmup_s": 1.0, "duration_s": 5.0,
                       "rounds": 3, "relp_window": 128, "target": 0.7},
        "results": {"arms": [
            {"arm": "json b1000-gzip-c8", "logs_per_s": 20_000, "vs_json": 1.0, "rounds": [20_000, 19_000, 21_000],
             "server_cpu_us_per_log": 15.0, "postgres_cpu_us_per_log": 11.0, "client_cpu": 0.05},
            {"arm": "tcp octet-counted rfc5424+sd c8", "logs_per_s": 10_000, "vs_json": 0.5, "rounds": [10_000],
             "server_cpu_us_per_log": 30.5},
            {"arm": "tcp octet-counted rfc5424+json c8", "logs_per_s": 16_000, "vs_json": 0.8, "rounds": [16_000],
             "server_cpu_us_per_log": 17.0},
            {"arm": "relp rfc5424+sd window128 c8", "logs_per_s": 9_000, "vs_json": 0.45, "rounds": [9_000],
             "server_cpu_us_per_log": 31.0},
        ]},
    }  # fmt: skip
    section = report.syslog_section(data)
    assert section[0] == "## Syslog beside our JSON (syslog suite)"
    table = [line for line in section if line.startswith("| `")]
    assert table[0] == (
        "| `json b1000-gzip-c8` | 20,000 | 1.00 × | — | 20,000, 19,000, 21,000 | 15.0 | 11.0 | 0.05 |"
    )
    assert "| 0.50 × | **no** |" in table[1] and table[1].endswith("| 30.5 | — | — |")
    assert "| 0.80 × | yes |" in table[2]
    assert "| 0.45 × | (reported) |" in table[3]
    assert "≥ 0.7 × JSON" in section[2] and "a window of 128" in section[2]
