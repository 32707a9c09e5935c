"""RELP against the real server: rsyslog's omrelp, with the server stopped (SIGTERM) and started again
mid-stream: every line stored exactly once. And the protocol by hand: acknowledgements in order, only
after commit, close."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

from app.syslog.relp import RelpFramer
from tests.support import DB
from tests.syslog.conftest import Rsyslog, SyslogServer, start_syslog, stored, wait_for_rows


def test_rsyslog_omrelp_across_a_server_restart(db: DB, database_url: str, tmp_path: Path) -> None:
    server = start_syslog(database_url, tmp_path / "first")
    rsyslog = Rsyslog(
        tmp_path,
        'module(load="omrelp")\n'
        f'action(type="omrelp" target="127.0.0.1" port="{server.relp}" template="RSYSLOG_SyslogProtocol23Format" '
        'action.resumeRetryCount="-1" action.resumeInterval="1")\n',
    )
    run = uuid.uuid4().hex[:8]
    lines = [f"{run} payment {i} settled" for i in range(600)]
    again = None
    try:
        rsyslog.write(lines[:200])
        assert wait_for_rows(db, 100) >= 100, rsyslog.log()
        rsyslog.write(lines[200:400])  # while the server is stopping
        server.stop()
        assert server.process.returncode == 0
        rsyslog.write(lines[400:])  # while it is down
        again = start_syslog(database_url, tmp_path / "second", SYSLOG_RELP_PORT=str(server.relp))
        assert wait_for_rows(db, len(lines)) == len(lines), rsyslog.log()
    finally:
        rsyslog.stop()
        if again is not None:
            again.stop()
    rows = stored(db)
    assert sorted(row["message"] for row in rows) == sorted(lines)  # each line exactly once
    assert {(r["service"], r["level"]) for r in rows} == {("shop", "WARN")}


def relp_frame(txnr: int, command: bytes, data: bytes = b"") -> bytes:
    return b"%d %s %d%s\n" % (txnr, command, len(data), b" " + data if data else b"")


def read_until(sock: socket.socket, count: int) -> bytes:
    """Read until `count` LF-ended responses have come (each of ours is one line but open's)."""
    received = b""
    while received.count(b"\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def test_relp_by_hand_acknowledges_in_order_after_commit(syslog_server: SyslogServer, db: DB) -> None:
    with socket.create_connection(("127.0.0.1", syslog_server.relp), timeout=30) as sock:
        sock.sendall(relp_frame(1, b"open", b"relp_version=0\nrelp_software=test\ncommands=syslog"))
        opened = read_until(sock, 4)
        assert opened.startswith(b"1 rsp ") and b"200 OK" in opened and b"commands=syslog" in opened
        messages = b"".join(
            relp_frame(n, b"syslog", b"<11>1 - host relpapp - - - message %d\n" % n) for n in range(2, 52)
        )
        sock.sendall(messages)
        acks = read_until(sock, 50)
        assert acks == b"".join(b"%d rsp 6 200 OK\n" % n for n in range(2, 52))
        # Acknowledged means committed: the rows are there now, without waiting.
        assert db.count() == 50
        sock.sendall(relp_frame(52, b"close"))
        assert read_until(sock, 1) == b"52 rsp 0\n"
    rows = stored(db)
    assert [r["message"] for r in rows] == [f"message {n}" for n in range(2, 52)]
    assert {(r["service"], r["level"]) for r in rows} == {("relpapp", "ERROR")}


def test_relp_framing_error_closes_the_connection(syslog_server: SyslogServer, db: DB) -> None:
    with socket.create_connection(("127.0.0.1", syslog_server.relp), timeout=30) as sock:
        sock.sendall(b"this is not relp at all, not even close to a header\n")
        assert sock.recv(100) == b""
    assert db.count() == 0


def test_relp_frames_split_anywhere_and_oversized_data_cut() -> None:
    stream = relp_frame(1, b"open", b"relp_version=0") + relp_frame(
        2, b"syslog", b"<13>x" + b"y" * 300 + b"\n"
    )
    stream += relp_frame(3, b"close")
    for cut in range(len(stream)):
        framer = RelpFramer(100)
        got = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert got == [
            (1, b"open", b"relp_version=0", False),
            (2, b"syslog", b"<13>x" + b"y" * 95, True),
            (3, b"close", b"", False),
        ]
        assert len(framer.buffer) == 0


def test_relp_an_absurd_datalen_holds_no_more_than_the_cap() -> None:
    framer = RelpFramer(100)
    assert framer.feed(b"2 syslog 999999999 <13>" + b"z" * 1000) == []
    for _ in range(50):
        assert framer.feed(b"z" * 100_000) == []
        assert len(framer.buffer) == 0
