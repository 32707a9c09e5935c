"""Bodies in flight: a memory budget per worker, and cut-offs for clients that stall or trickle
(app/intake/body.py), against a real server process."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.serverproc import start_server
from tests.support import DB, log_entry

MiB = 1024 * 1024


@pytest.fixture(params=["1"])
def limited(
    request: pytest.FixtureRequest, db: DB, database_url: str, tmp_path: Path
) -> Iterator[tuple[psutil.Process, int]]:
    """A server with a 64 MiB body budget; the parameter is BODY_READ_TIMEOUT."""
    env = {
        "DATABASE_URL": database_url,
        "BODY_MEMORY_LIMIT": str(64 * MiB),
        "BODY_READ_TIMEOUT": request.param,
        "BODY_MIN_RATE": "1000",
        "HEADER_TIMEOUT": "30",
    }
    process, url = start_server(env, tmp_path)
    yield psutil.Process(process.pid), int(url.rsplit(":", 1)[1])
    process.kill()
    process.wait(10)


# Bodies that stall stay held (and counted) for these tests' whole length.
patient = pytest.mark.parametrize("limited", ["60"], indirect=True)


def headers(length: int) -> bytes:
    return (
        f"POST /logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def response_of(sock: socket.socket) -> tuple[int, bytes]:
    """Status and raw head+body of the server's answer (bounded by the socket's timeout)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def rss(process: psutil.Process) -> int:
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])


@patient
def test_stalled_bodies_cannot_take_more_than_the_budget(limited: tuple[psutil.Process, int]) -> None:
    process, port = limited
    before = rss(process)
    held, refused = [], []
    chunk = b" " * MiB
    for _ in range(30):  # 30 x 9 MiB would be 270 MiB; the budget is 64 MiB
        sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        sock.sendall(headers(9 * MiB))
        try:
            for _ in range(8):
                sock.sendall(chunk)
            held.append(sock)
        except (BrokenPipeError, ConnectionResetError):
            refused.append(sock)
            continue
        time.sleep(0.05)
    statuses = []
    for sock in held + refused:
        sock.settimeout(0.5)
        try:
            statuses.append(response_of(sock)[0])
        except (TimeoutError, OSError):
            statuses.append(None)  # still held: its body is counted in the budget
    assert statuses.count(429) >= 20, statuses
    # 7 bodies of 9 MiB fit in 64 MiB; the rest were turned away before their bodies were read.
    assert rss(process) - before < 150 * MiB


@patient
def test_a_body_past_the_budget_is_refused_before_it_is_read(limited: tuple[psutil.Process, int]) -> None:
    _, port = limited
    first = socket.create_connection(("127.0.0.1", port), timeout=15)
    first.sendall(headers(6 * MiB))  # within MAX_BODY_BYTES
    first.sendall(b" " * 1024)
    blockers = []
    for _ in range(9):  # 10 x 6 MiB declared: more than 64 MiB
        sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        sock.sendall(headers(6 * MiB))
        sock.sendall(b" ")
        blockers.append(sock)
    late = socket.create_connection(("127.0.0.1", port), timeout=15)
    late.sendall(headers(6 * MiB))  # no body sent at all: the answer comes from Content-Length alone
    status, raw = response_of(late)
    assert status == 429
    assert b"retry-after: 1" in raw.lower()
    for sock in [first, *blockers, late]:
        sock.close()


def test_a_stalled_body_gets_408_and_the_connection_is_closed(limited: tuple[psutil.Process, int]) -> None:
    _, port = limited
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(headers(1000) + b'{"logs": [')
    status, raw = response_of(sock)
    assert status == 408 and b"no body bytes arrived" in raw + sock.recv(4096)


def test_a_trickling_body_gets_408(limited: tuple[psutil.Process, int]) -> None:
    _, port = limited
    body = json.dumps({"logs": [log_entry()]}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(headers(len(body)))
    try:
        for byte in body:  # 5 bytes/s, under BODY_MIN_RATE=1000, never pausing past BODY_READ_TIMEOUT
            sock.sendall(bytes([byte]))
            time.sleep(0.2)
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, raw = response_of(sock)
    assert status == 408 and b"bytes/s" in raw + sock.recv(4096)


def test_an_ordinary_body_is_stored(limited: tuple[psutil.Process, int], db: DB) -> None:
    _, port = limited
    body = json.dumps({"logs": [log_entry()] * 3}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(headers(len(body)) + body)
    assert response_of(sock)[0] == 200
    assert db.count() == 3
