"""Connections that never finish their headers are closed (app/protocol.py), against a real server process."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serverproc import start_server
from tests.support import DB


@pytest.fixture
def strict_server(db: DB, database_url: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    env = {"DATABASE_URL": database_url, "HEADER_TIMEOUT": "1", "MAX_CONNECTIONS": "400"}
    process, url = start_server(env, tmp_path)
    yield url, int(url.rsplit(":", 1)[1])
    process.kill()
    process.wait(10)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closes the connection (within the socket's 15 s bound)."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_unfinished_headers_are_cut_off(strict_server: tuple[str, int]) -> None:
    _, port = strict_server
    sock = connect(port)
    sock.sendall(b"POST /logs HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
    assert closed_by_server(sock)


def test_headers_sent_a_byte_at_a_time_are_cut_off(strict_server: tuple[str, int]) -> None:
    _, port = strict_server
    sock = connect(port)
    request = b"POST /logs HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100
    sent = 0
    try:
        for byte in request:  # 0.1 s a byte: 10 s for the line, ten times HEADER_TIMEOUT
            sock.sendall(bytes([byte]))
            sent += 1
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert sent < len(request)
    assert closed_by_server(sock)


def test_a_connection_that_sends_nothing_is_closed(strict_server: tuple[str, int]) -> None:
    _, port = strict_server
    assert closed_by_server(connect(port))


def test_many_stalled_connections_are_all_closed_and_the_server_keeps_serving(
    strict_server: tuple[str, int],
) -> None:
    url, port = strict_server
    socks = [connect(port) for _ in range(200)]
    for sock in socks:
        sock.sendall(b"POST /logs HTTP/1.1\r\nHost: x\r\n")
    assert all(closed_by_server(sock) for sock in socks)
    assert httpx.get(url + "/").status_code == 200


def test_keep_alive_requests_are_unaffected(strict_server: tuple[str, int]) -> None:
    url, _ = strict_server
    with httpx.Client(base_url=url) as client:
        for _ in range(3):
            assert client.get("/").status_code == 200
            time.sleep(0.5)  # idle, but under both the keep-alive and the header timeout


def test_connections_past_max_connections_get_503(db: DB, database_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": database_url, "MAX_CONNECTIONS": "5"}
    process: subprocess.Popen[bytes]
    process, url = start_server(env, tmp_path)
    port = int(url.rsplit(":", 1)[1])
    try:
        idle = [connect(port) for _ in range(5)]
        time.sleep(0.3)  # let the server accept them all
        response = httpx.get(url + "/")
        assert response.status_code == 503
        for sock in idle:
            sock.close()
    finally:
        process.kill()
        process.wait(10)
