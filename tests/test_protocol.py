"""app/protocol.py: connections that never finish their headers are closed (against a real server process),
and a response with a Content-Length leaves in one write."""

from __future__ import annotations

import asyncio
import gc
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.server import ServerState

from app.protocol import HeaderTimeoutProtocol, _OneWrite
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


def test_a_later_request_on_a_kept_alive_connection_is_cut_off_too(strict_server: tuple[str, int]) -> None:
    _, port = strict_server
    sock = connect(port)
    for _ in range(3):  # answered requests, over more than HEADER_TIMEOUT in all
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
        time.sleep(0.6)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Padding: ")  # then nothing
    assert closed_by_server(sock)


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


# --- one write per response (app/protocol.py _OneWrite), on a real socket ---------------------------------


class _Recorder:
    """The real transport, with a list of the bytes each write handed it."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport, self.writes = transport, writes

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    path = scope["path"]
    if path == "/stream":  # no Content-Length: chunked, its head at once
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one", b"two"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    answer = b"got " + body
    headers = [(b"content-length", str(len(answer)).encode()), (b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if path == "/fail":
        raise RuntimeError("failed after starting the response")
    if path == "/parts":
        await send({"type": "http.response.body", "body": answer[:2], "more_body": True})
        answer = answer[2:]
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture
def recorded() -> Iterator[tuple[int, list[bytes]]]:
    """HeaderTimeoutProtocol serving `_app` on a thread's event loop; every write the connection makes."""
    writes: list[bytes] = []

    class Recording(HeaderTimeoutProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(_Recorder(transport, writes))  # type: ignore[arg-type]

    config = uvicorn.Config(_app, lifespan="off", log_config=None)
    config.load()
    state = ServerState()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(lambda: Recording(config, state, {}, loop), "127.0.0.1", 0)
    )
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield port, writes
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    server.close()
    loop.close()


def _exchange(port: int, request: bytes) -> bytes:
    """Send one request, read until the server closes (every request here says Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def _request(method: str, path: str, body: bytes = b"", extra: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + extra + b"\r\n" + body


def test_a_response_with_a_length_leaves_in_one_write(recorded: tuple[int, list[bytes]]) -> None:
    port, writes = recorded
    received = _exchange(port, _request("POST", "/logs", b"abc"))
    assert received.startswith(b"HTTP/1.1 200 OK\r\n") and received.endswith(b"\r\n\r\ngot abc")
    assert b"content-length: 7\r\n" in received
    assert writes == [received]


def test_a_body_sent_in_parts_takes_the_head_with_its_first_part(recorded: tuple[int, list[bytes]]) -> None:
    port, writes = recorded
    received = _exchange(port, _request("POST", "/parts", b"abc"))
    assert received.endswith(b"\r\n\r\ngot abc")
    assert len(writes) == 2 and writes[0].endswith(b"\r\n\r\ngo") and writes[1] == b"t abc"


def test_head_empty_and_streamed_responses_are_written_as_uvicorn_writes_them(
    recorded: tuple[int, list[bytes]],
) -> None:
    port, writes = recorded
    head = _exchange(port, _request("HEAD", "/logs"))
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n") and writes == [head]
    writes.clear()
    empty = _exchange(port, _request("GET", "/empty"))
    assert empty.startswith(b"HTTP/1.1 204 No Content\r\n") and writes[0] == empty  # then uvicorn's b""
    writes.clear()
    streamed = _exchange(port, _request("GET", "/stream"))
    assert b"transfer-encoding: chunked\r\n" in streamed and streamed.endswith(
        b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"
    )
    assert len(writes) == 4 and writes[0].endswith(b"\r\n\r\n") and b"".join(writes) == streamed


def test_100_continue_goes_out_before_the_body_is_read(recorded: tuple[int, list[bytes]]) -> None:
    port, writes = recorded
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        head = b"POST /logs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n"
        sock.sendall(head + b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.endswith(b"\r\n\r\ngot abc")
    assert writes == [b"HTTP/1.1 100 Continue\r\n\r\n", received]


def test_an_app_failing_after_its_head_still_sends_the_head_then_closes(
    recorded: tuple[int, list[bytes]],
) -> None:
    port, writes = recorded
    received = _exchange(port, _request("POST", "/fail", b"abc"))
    assert received.startswith(b"HTTP/1.1 200 OK\r\n") and received.endswith(b"\r\n\r\n")
    assert b"content-length: 7\r\n" in received
    assert writes == [received]


def test_answered_requests_are_freed_without_the_garbage_collector(recorded: tuple[int, list[bytes]]) -> None:
    """A request's cycle holds its _OneWrite; were the wrapper to hold the cycle, every answered request's
    scope and state would wait for a collection (more CPU than the saved write, measured)."""
    port, _ = recorded
    gc.collect()
    gc.disable()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            for _ in range(5):  # keep-alive: each request replaces the connection's cycle
                sock.sendall(b"POST /logs HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
                received = b""
                while not received.endswith(b"got abc"):
                    received += sock.recv(65536)
            alive = sum(isinstance(thing, _OneWrite) for thing in gc.get_objects())
    finally:
        gc.enable()
    assert alive <= 1  # the connection's current request's
