"""What the listeners do when PostgreSQL goes away and comes back (sink.py decides): RELP closes with the
messages unacknowledged and rsyslog sends them again, TCP stops reading until the write succeeds, UDP drops
and counts. Against the real server, a PostgreSQL of the test's own, and rsyslog."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import free_port
from tests.support import DB
from tests.syslog.conftest import Rsyslog, start_syslog, stored, wait_for_rows
from tests.test_faults import _pg_ctl, own_postgres  # noqa: F401 - the fixture


@pytest.fixture
def outage_server(own_postgres: tuple[str, Path], tmp_path: Path) -> Iterator[tuple[object, DB, Path]]:  # noqa: F811
    url, pgdata = own_postgres
    server = start_syslog(url, tmp_path / "server", DB_ACQUIRE_TIMEOUT="2", DB_COMMAND_TIMEOUT="5")
    yield server, DB(url), pgdata
    server.stop()


def test_postgresql_away_relp_and_tcp_resend_or_wait_udp_counts(
    outage_server: tuple[object, DB, Path], tmp_path: Path
) -> None:
    server, db, pgdata = outage_server
    relp = Rsyslog(
        tmp_path,
        'module(load="omrelp")\n'
        f'action(type="omrelp" target="127.0.0.1" port="{server.relp}" '  # type: ignore[attr-defined]
        'template="RSYSLOG_SyslogProtocol23Format" action.resumeRetryCount="-1" action.resumeInterval="1")\n',
        name="relp",
    )
    tcp = Rsyslog(
        tmp_path,
        f'action(type="omfwd" target="127.0.0.1" port="{server.tcp}" protocol="tcp" '  # type: ignore[attr-defined]
        'TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format" '
        'action.resumeRetryCount="-1" action.resumeInterval="1")\n',
        name="tcp",
    )
    run = uuid.uuid4().hex[:8]
    lines = {kind: [f"{run} {kind} line {i}" for i in range(200)] for kind in ("relp", "tcp")}
    try:
        relp.write(lines["relp"][:100])
        tcp.write(lines["tcp"][:100])
        assert wait_for_rows(db, 200) == 200, relp.log() + tcp.log()
        _pg_ctl(pgdata, "stop", "-m", "fast")
        relp.write(lines["relp"][100:])
        tcp.write(lines["tcp"][100:])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for i in range(20):
                udp.sendto(b"<13>udp: lost %d" % i, ("127.0.0.1", server.udp))  # type: ignore[attr-defined]
        dropped = 0.0
        for _ in range(300):  # bounded: 30 s for the UDP writes to fail
            dropped = server.metric("logsave_syslog_dropped_total", transport="udp", reason="unavailable")  # type: ignore[attr-defined]
            if dropped == 20:
                break
            time.sleep(0.1)
        assert dropped == 20
        time.sleep(3)  # RELP reconnects and is refused, TCP waits: both hold their lines meanwhile
        _pg_ctl(pgdata, "start")
        assert wait_for_rows(db, 400, seconds=120) == 400, relp.log() + tcp.log()
        time.sleep(2)  # anything sent twice would show up now
    finally:
        relp.stop()
        tcp.stop()
    rows = stored(db)
    for kind in ("relp", "tcp"):
        assert sorted(r["message"] for r in rows if f" {kind} " in r["message"]) == sorted(lines[kind])
    assert not [r for r in rows if r["message"].startswith("lost")]
    assert free_port()  # the machine still hands out ports: nothing leaked a listener
