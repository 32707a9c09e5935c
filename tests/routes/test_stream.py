"""GET /logs/stream against the real server process: logs arrive as events as they commit, filtered as
GET /logs filters; a log committed late with a smaller id still arrives; Last-Event-ID resumes; the
stream ends by itself after STREAM_MAX_SECONDS; the number of streams and API keys are enforced."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.serverproc import start_server
from tests.support import DB, log_entry, run


def post(url: str, *entries: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    response = httpx.post(url + "/logs", content=json.dumps({"logs": list(entries)}), headers=headers or {})
    assert response.status_code == 200, response.text


class Events:
    """An open stream, read on a thread: each event as (event, id, data)."""

    def __init__(self, url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
        self.events: list[tuple[str, str | None, str]] = []
        self.comments: list[str] = []
        self.connected = threading.Event()
        self.ended = threading.Event()
        self.status: int | None = None
        self._lock = threading.Condition()
        self._client = httpx.Client(timeout=httpx.Timeout(30, read=60))
        self._thread = threading.Thread(target=self._read, args=(url, params, headers), daemon=True)
        self._thread.start()
        assert self.connected.wait(30)

    def _read(self, url: str, params: dict[str, Any] | None, headers: dict[str, str] | None) -> None:
        try:
            with self._client.stream("GET", url + "/logs/stream", params=params, headers=headers) as response:
                self.status = response.status_code
                self.connected.set()
                event: dict[str, str] = {}
                for line in response.iter_lines():
                    if line.startswith(":"):
                        self.comments.append(line)
                    elif line == "":
                        if "data" in event:
                            with self._lock:
                                self.events.append(
                                    (event.get("event", "message"), event.get("id"), event["data"])
                                )
                                self._lock.notify_all()
                        event = {}
                    else:
                        name, _, value = line.partition(":")
                        event[name] = value.removeprefix(" ")
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by the test
        finally:
            self.connected.set()
            self.ended.set()
            with self._lock:
                self._lock.notify_all()

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(data) for kind, _, data in self.events if kind == "log"]

    def wait_for(self, message: str, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not any(log["message"] == message for log in self.logs()):
                left = deadline - time.monotonic()
                assert left > 0 and not self.ended.is_set(), f"{message!r} never arrived: {self.events[-3:]}"
                self._lock.wait(left)
        return self.logs()

    def close(self) -> None:
        self._client.close()
        self._thread.join(10)


@pytest.fixture
def stream(server: tuple[subprocess.Popen[bytes], str]) -> Iterator[Any]:
    opened: list[Events] = []

    def open_stream(**kwargs: Any) -> Events:
        opened.append(Events(server[1], **kwargs))
        return opened[-1]

    yield open_stream
    for events in opened:
        events.close()


def test_matching_logs_arrive_as_they_commit(
    server: tuple[subprocess.Popen[bytes], str], stream: Any
) -> None:
    _, url = server
    post(url, log_entry(service="checkout", message="before the stream"))
    events = stream(params={"service": "checkout", "not.level": "DEBUG"})
    assert events.status == 200
    post(url, log_entry(service="search", message="another service"))
    post(url, log_entry(service="checkout", level="DEBUG", message="excluded level"))
    post(
        url, log_entry(service="checkout", level="ERROR", message="payment failed", metadata={"a": {"b": 1}})
    )
    logs = events.wait_for("payment failed")
    assert [log["message"] for log in logs] == ["payment failed"]  # nothing from before, nothing filtered out
    assert logs[0]["metadata"] == {"a": {"b": 1}} and logs[0]["level"] == "ERROR"
    (log_event,) = [e for e in events.events if e[0] == "log"]
    assert log_event[1] == str(logs[0]["id"])


def test_a_log_committed_late_with_a_smaller_id_still_arrives(
    server: tuple[subprocess.Popen[bytes], str], database_url: str, stream: Any
) -> None:
    _, url = server
    events = stream()
    release, inserted = threading.Event(), threading.Event()

    async def slow_writer() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO logs (created_at, log_type, service, message) VALUES (now(), 'BACKEND', 'slow', 'late')"
                )
                inserted.set()
                await asyncio_wait(release)
        finally:
            await conn.close()

    writer = threading.Thread(target=run, args=(slow_writer(),))
    writer.start()
    assert inserted.wait(30)
    post(url, log_entry(message="fast"))
    events.wait_for("fast")
    release.set()
    writer.join(30)
    logs = events.wait_for("late")
    assert [log["message"] for log in logs] == ["fast", "late"]
    assert logs[1]["id"] < logs[0]["id"]


async def asyncio_wait(flag: threading.Event) -> None:
    import asyncio

    for _ in range(600):  # bounded: 60 s
        if flag.is_set():
            return
        await asyncio.sleep(0.1)


def test_last_event_id_resumes_after_that_log(
    server: tuple[subprocess.Popen[bytes], str], db: DB, stream: Any
) -> None:
    _, url = server
    post(url, *[log_entry(message=f"m{i}") for i in range(3)])
    ids = [r["id"] for r in db.fetch("SELECT id FROM logs ORDER BY id")]
    events = stream(headers={"Last-Event-ID": str(ids[0])})
    assert [log["id"] for log in events.wait_for("m2")] == ids[1:]
    again = stream(params={"after": str(ids[1])})
    assert [log["message"] for log in again.wait_for("m2")] == ["m2"]


def test_a_stream_ends_by_itself(db: DB, database_url: str, tmp_path: Path) -> None:
    process, url = start_server({"DATABASE_URL": database_url, "STREAM_MAX_SECONDS": "1"}, tmp_path)
    try:
        events = Events(url)
        assert events.ended.wait(30)
        assert events.status == 200 and ": connected" in events.comments
    finally:
        process.kill()
        process.wait(10)


def test_streams_are_limited_and_freed_when_clients_leave(db: DB, database_url: str, tmp_path: Path) -> None:
    process, url = start_server({"DATABASE_URL": database_url, "STREAM_MAX_CLIENTS": "1"}, tmp_path)
    try:
        first = Events(url)
        assert first.status == 200
        busy = httpx.get(url + "/logs/stream", timeout=10)
        assert busy.status_code == 429 and "STREAM_MAX_CLIENTS" in busy.json()["message"]
        assert busy.headers["Retry-After"]
        first.close()
        for _ in range(100):  # bounded: the server notices the client left at its next poll
            second = Events(url)
            second.close()
            if second.status == 200:
                break
            time.sleep(0.2)
        assert second.status == 200
    finally:
        process.kill()
        process.wait(10)


def test_streams_need_a_read_key(db: DB, database_url: str, tmp_path: Path) -> None:
    process, url = start_server(
        {"DATABASE_URL": database_url, "API_KEYS": "reader", "INGEST_API_KEYS": "app"}, tmp_path
    )
    try:
        assert httpx.get(url + "/logs/stream", timeout=10).status_code == 401
        assert httpx.get(url + "/logs/stream", headers={"X-API-Key": "app"}, timeout=10).status_code == 403
        events = Events(url, headers={"X-API-Key": "reader"})
        assert events.status == 200
        post(url, log_entry(message="keyed"), headers={"X-API-Key": "app"})
        events.wait_for("keyed")
        events.close()
    finally:
        process.kill()
        process.wait(10)


@pytest.mark.parametrize(
    ("params", "headers", "field"),
    [
        ({"cursor": "x"}, {}, "query.cursor"),
        ({"since": "2026-01-01T00:00:00Z"}, {}, "query.since"),
        ({"after": "x"}, {}, "query.after"),
        ({}, {"Last-Event-ID": "-1"}, "header.last-event-id"),
        ({}, {"Last-Event-ID": "²".encode("latin-1")}, "header.last-event-id"),
        ({"after": "9" * 20}, {}, "query.after"),
        ({"level": "LOUD"}, {}, "query.level"),
    ],
)
def test_bad_stream_filters_are_a_422(
    server: tuple[subprocess.Popen[bytes], str], params: dict[str, str], headers: dict[str, Any], field: str
) -> None:
    response = httpx.get(server[1] + "/logs/stream", params=params, headers=headers, timeout=10)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_more_than_a_poll_sends_is_said_and_skipped(
    server: tuple[subprocess.Popen[bytes], str], stream: Any
) -> None:
    _, url = server
    events = stream()
    post(url, *[log_entry(message=f"burst {i}") for i in range(600)])  # one commit, more than BATCH
    events.wait_for("burst 499")
    for _ in range(100):  # bounded: the notice follows the poll's logs
        if any(kind == "lagging" for kind, _, _ in events.events):
            break
        time.sleep(0.1)
    post(url, log_entry(message="after the burst"))
    logs = events.wait_for("after the burst")
    kinds = [kind for kind, _, _ in events.events]
    assert kinds.index("lagging") == 500  # a full poll, then the notice
    assert len(logs) == 501 and logs[-1]["message"] == "after the burst"  # the rest of the burst skipped
