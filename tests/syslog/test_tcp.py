"""Syslog over TCP against the real server: util-linux `logger`, Python's SysLogHandler, rsyslog's omfwd,
raw bytes that are not syslog, and messages over SYSLOG_MAX_MESSAGE."""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support import DB
from tests.syslog.conftest import Rsyslog, SyslogServer, start_syslog, stored, wait_for_rows


def logger(*args: str) -> None:
    subprocess.run(["logger", *args], check=True, timeout=30)


def test_logger_rfc5424_octet_counted_every_priority_once(syslog_server: SyslogServer, db: DB) -> None:
    run = uuid.uuid4().hex[:8]
    levels = {"emerg": "FATAL", "alert": "FATAL", "crit": "FATAL", "err": "ERROR", "warning": "WARN",
              "notice": "INFO", "info": "INFO", "debug": "DEBUG"}  # fmt: skip
    for severity in levels:
        logger("--server", "127.0.0.1", "--port", str(syslog_server.tcp), "--tcp", "--rfc5424", "--octet-count",
               "--sd-id", "order@32473", "--sd-param", 'id="17"', "--sd-param", 'note="say \\"hi\\""',
               "--msgid", "PAY", "-t", "checkout", "-p", f"local4.{severity}", f"{run} {severity}")  # fmt: skip
    assert wait_for_rows(db, len(levels)) == len(levels)
    rows = stored(db)
    assert sorted(row["message"] for row in rows) == sorted(f"{run} {s}" for s in levels)  # each once
    for row in rows:
        severity = row["message"].split()[1]
        assert (row["level"], row["service"]) == (levels[severity], "checkout")
        meta = row["metadata"]
        assert (meta["facility"], meta["severity"], meta["msgid"]) == ("local4", severity, "PAY")
        assert meta["sd"]["order@32473"] == {"id": "17", "note": 'say "hi"'}
        assert meta["hostname"]


def test_logger_rfc3164_lines_over_one_connection(
    syslog_server: SyslogServer, db: DB, tmp_path: Path
) -> None:
    lines = [f"line {i} of many" for i in range(200)]
    subprocess.run(
        ["logger", "--server", "127.0.0.1", "--port", str(syslog_server.tcp), "--tcp", "--rfc3164", "-i",
         "-t", "batchjob", "-p", "daemon.err"],
        input="\n".join(lines).encode(), check=True, timeout=30,
    )  # fmt: skip
    assert wait_for_rows(db, len(lines)) == len(lines)
    rows = stored(db)
    assert sorted(row["message"] for row in rows) == sorted(lines)
    assert {(row["service"], row["level"], row["metadata"]["facility"]) for row in rows} == {
        ("batchjob", "ERROR", "daemon")
    }
    assert all(row["metadata"]["procid"].isdigit() for row in rows)


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM], ids=["tcp", "udp"])
def test_python_sysloghandler(syslog_server: SyslogServer, db: DB, kind: socket.SocketKind) -> None:
    port = syslog_server.tcp if kind == socket.SOCK_STREAM else syslog_server.udp
    handler = logging.handlers.SysLogHandler(("127.0.0.1", port), socktype=kind)
    handler.setFormatter(logging.Formatter("billing: %(message)s"))
    sender = logging.getLogger(f"test-sysloghandler-{kind}")
    sender.propagate = False
    sender.addHandler(handler)
    try:
        sender.warning("card expired for order %d", 1)
        sender.error("card declined for order %d", 2)
    finally:
        sender.removeHandler(handler)
        handler.close()
    assert wait_for_rows(db, 2) == 2
    rows = stored(db)
    # Sorted: two frames read apart may go to PostgreSQL in two groups that commit side by side, and ids come
    # from one sequence in whichever order their COPYs run (CI saw them swapped).
    assert sorted((r["service"], r["level"], r["message"]) for r in rows) == [
        ("billing", "ERROR", "card declined for order 2"),
        ("billing", "WARN", "card expired for order 1"),
    ]


def test_bytes_that_are_not_syslog_are_stored_and_the_next_message_read(
    syslog_server: SyslogServer, db: DB
) -> None:
    counted = b"<13>1 - h app - - - ok"
    with socket.create_connection(("127.0.0.1", syslog_server.tcp)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\xff\xfe\x00binary\n%d %s<14>tail: last\n" % (len(counted), counted))
    assert wait_for_rows(db, 5) == 5
    rows = stored(db)
    assert [(r["service"], r["message"], r["metadata"].get("unparsed", False)) for r in rows] == [
        ("syslog", "GET / HTTP/1.1", True),
        ("syslog", "\ufffd\ufffd", True),
        ("syslog", "binary", True),
        ("app", "ok", False),
        ("tail", "last", False),
    ]
    assert syslog_server.metric("logsave_syslog_unparsed_total", transport="tcp") == 3
    assert syslog_server.metric("logsave_syslog_received_total", transport="tcp") == 5


def test_a_message_over_the_limit_is_cut_and_flagged(db: DB, database_url: str, tmp_path: Path) -> None:
    server = start_syslog(database_url, tmp_path, SYSLOG_MAX_MESSAGE="1000")
    try:
        big = b"<13>1 - h app - - - " + b"x" * 5000
        with socket.create_connection(("127.0.0.1", server.tcp)) as sock:
            sock.sendall(b"%d %s" % (len(big), big) + b"11 <13>app: ok")
        assert wait_for_rows(db, 2) == 2
        rows = stored(db)
        assert len(rows[0]["message"]) == 1000 - len(b"<13>1 - h app - - - ")
        assert rows[0]["metadata"]["truncated"] is True
        assert rows[1]["message"] == "ok" and "truncated" not in rows[1]["metadata"]
        assert server.metric("logsave_syslog_truncated_total", transport="tcp") == 1
        assert server.metric("logsave_syslog_stored_total", transport="tcp") == 2
    finally:
        server.stop()


def test_rsyslog_omfwd_tcp_octet_counted_rfc5424(syslog_server: SyslogServer, db: DB, tmp_path: Path) -> None:
    rsyslog = Rsyslog(
        tmp_path,
        f'action(type="omfwd" target="127.0.0.1" port="{syslog_server.tcp}" protocol="tcp" '
        'TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")\n',
    )
    run = uuid.uuid4().hex[:8]
    lines = [f"{run} order {i} shipped" for i in range(300)]
    try:
        rsyslog.write(lines[:150])
        assert wait_for_rows(db, 150) >= 150, rsyslog.log()
        rsyslog.write(lines[150:])
        assert wait_for_rows(db, 300) == 300, rsyslog.log()
    finally:
        rsyslog.stop()
    rows = stored(db)
    assert sorted(row["message"] for row in rows) == sorted(lines)
    assert {(r["service"], r["level"], r["metadata"]["facility"]) for r in rows} == {
        ("shop", "WARN", "local3")
    }


def test_two_workers_share_the_ports(db: DB, database_url: str, tmp_path: Path) -> None:
    server = start_syslog(database_url, tmp_path, WEB_CONCURRENCY="2")
    try:
        for connection in range(8):
            with socket.create_connection(("127.0.0.1", server.tcp)) as sock:
                for n in range(100):
                    message = b"<13>1 - h worker - - - c%d m%d" % (connection, n)
                    sock.sendall(b"%d %s" % (len(message), message))
        assert wait_for_rows(db, 800) == 800
        assert sorted(r["message"] for r in stored(db)) == sorted(
            f"c{c} m{n}" for c in range(8) for n in range(100)
        )
        # Each worker counts its own; /metrics adds them up.
        assert server.metric("logsave_syslog_stored_total", transport="tcp") == 800
    finally:
        server.stop()
    assert server.process.returncode == 0


def test_connections_over_the_limit_are_closed_and_not_read(
    db: DB, database_url: str, tmp_path: Path
) -> None:
    server = start_syslog(database_url, tmp_path, SYSLOG_MAX_CONNECTIONS="2")
    try:
        with (
            socket.create_connection(("127.0.0.1", server.tcp), timeout=30) as first,
            socket.create_connection(("127.0.0.1", server.tcp), timeout=30) as second,
        ):
            first.sendall(b"<13>one: open\n")
            second.sendall(b"<13>two: open\n")
            assert wait_for_rows(db, 2) == 2  # both are being read
            with (
                socket.create_connection(("127.0.0.1", server.tcp), timeout=30) as third,
                contextlib.suppress(OSError),
            ):
                third.sendall(b"<13>three: refused\n")
                assert third.recv(10) == b""  # closed as soon as it connected (or reset)
        # Once the server has seen the two close, a new connection is read again (tried until it is).
        for attempt in range(100):
            with socket.create_connection(("127.0.0.1", server.tcp), timeout=30) as again:
                again.sendall(b"<13>four: after %d\n" % attempt)
            if wait_for_rows(db, 3, seconds=0.5) >= 3:
                break
        messages = [r["message"] for r in stored(db)]
        assert messages[:2] == ["open", "open"] and messages[2].startswith("after")
        assert "refused" not in messages
    finally:
        server.stop()


def test_a_silent_connection_is_closed_after_the_idle_timeout(
    db: DB, database_url: str, tmp_path: Path
) -> None:
    server = start_syslog(database_url, tmp_path, SYSLOG_IDLE_TIMEOUT="1")
    try:
        with socket.create_connection(("127.0.0.1", server.tcp), timeout=60) as sock:
            sock.sendall(b"<13>app: then silence\n")
            assert sock.recv(10) == b""  # the server's end of stream, once it has been silent long enough
        assert wait_for_rows(db, 1) == 1
    finally:
        server.stop()


def test_sigterm_right_after_the_last_line_writes_every_line_read_once(
    db: DB, database_url: str, tmp_path: Path
) -> None:
    # Fewer lines than a connection takes before it stops reading (sink.BATCH, tcp.HIGH_WATER): the server
    # reads them all as they arrive, and SIGTERM must then write each of them, once, before the exit.
    server = start_syslog(database_url, tmp_path)
    lines = [b"<14>1 - h app - - - line %d" % n for n in range(500)]
    with socket.create_connection(("127.0.0.1", server.tcp)) as sock:
        sock.sendall(b"".join(b"%d %s" % (len(line), line) for line in lines))
        server.process.terminate()
        assert server.process.wait(60) == 0
    messages = [row["message"] for row in stored(db)]
    assert sorted(messages) == sorted(f"line {n}" for n in range(500))
