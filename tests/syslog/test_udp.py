"""Syslog over UDP against the real server: util-linux `logger` and rsyslog's omfwd. (Python's
SysLogHandler over UDP is in test_tcp.py beside its TCP case.)"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from tests.support import DB
from tests.syslog.conftest import Rsyslog, SyslogServer, stored, wait_for_rows


def test_logger_udp_both_formats(syslog_server: SyslogServer, db: DB) -> None:
    base = ["logger", "--server", "127.0.0.1", "--port", str(syslog_server.udp), "--udp", "-t", "edge"]
    subprocess.run([*base, "--rfc5424", "--msgid", "TLS", "-p", "auth.crit", "cert expired"], check=True)
    subprocess.run([*base, "--rfc3164", "-p", "mail.debug", "link up"], check=True)
    assert wait_for_rows(db, 2) == 2
    rows = {row["message"]: row for row in stored(db)}
    crit, debug = rows["cert expired"], rows["link up"]
    assert (crit["service"], crit["level"], crit["metadata"]["facility"], crit["metadata"]["msgid"]) == (
        "edge", "FATAL", "auth", "TLS",
    )  # fmt: skip
    assert (debug["service"], debug["level"], debug["metadata"]["facility"]) == ("edge", "DEBUG", "mail")
    assert syslog_server.metric("logsave_syslog_stored_total", transport="udp") == 2


def test_rsyslog_omfwd_udp(syslog_server: SyslogServer, db: DB, tmp_path: Path) -> None:
    rsyslog = Rsyslog(
        tmp_path, f'action(type="omfwd" target="127.0.0.1" port="{syslog_server.udp}" protocol="udp")\n'
    )
    run = uuid.uuid4().hex[:8]
    # A few lines at a time: UDP on loopback does not lose them unless a burst overflows a buffer.
    lines = [f"{run} sensor {i} reading" for i in range(30)]
    try:
        for start in range(0, len(lines), 10):
            rsyslog.write(lines[start : start + 10])
            assert wait_for_rows(db, start + 10) == start + 10, rsyslog.log()
    finally:
        rsyslog.stop()
    rows = stored(db)
    assert sorted(row["message"] for row in rows) == sorted(lines)
    assert {(r["service"], r["level"], r["metadata"]["facility"]) for r in rows} == {
        ("shop", "WARN", "local3")
    }
