"""`python -m app` as a real uvicorn process: concurrent clients, SIGTERM drain, embedded start-up."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import httpx
import pytest

from tests.support import DB, log_entry

ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "LOGSAVE_"))}
    env = {**base, "SERVER_HOST": "127.0.0.1", "SERVER_PORT": str(port), "PYTHONPATH": str(ROOT),
           "LOG_LEVEL": "WARNING", "DB_POOL_MIN_SIZE": "2", "DB_POOL_MAX_SIZE": "4", **env}  # fmt: skip
    # The server's log goes to a file: a pipe nobody reads would fill up and stall the server.
    log_file = open(cwd / "server.log", "wb")  # noqa: SIM115 - closed when the process is reaped
    process = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=cwd, stderr=log_file)
    log_file.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {(cwd / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start within 60 s")


@pytest.fixture
def server(db: DB, database_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    process, url = start_server({"DATABASE_URL": database_url}, tmp_path)
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait(10)


def batch(marker: str, size: int) -> bytes:
    return json.dumps(
        {"logs": [log_entry(trace_id=marker, message=f"{marker}/{i}") for i in range(size)]}
    ).encode()


class Load:
    """Clients that each send batches with unique markers until told to stop (bounded in count and time)."""

    def __init__(self, url: str, clients: int, batch_size: int, max_batches: int, max_seconds: float) -> None:
        self.url, self.batch_size, self.max_batches, self.max_seconds = (
            url,
            batch_size,
            max_batches,
            max_seconds,
        )
        self.acknowledged: dict[str, int] = {}
        self.statuses: list[int] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(n,)) for n in range(clients)]

    def _client(self, n: int) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(
            base_url=self.url, timeout=30, headers={"Content-Type": "application/json"}
        ) as client:
            for i in range(self.max_batches):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                marker = f"c{n}-{i}"
                try:
                    response = client.post("/logs", content=batch(marker, self.batch_size))
                except httpx.TransportError:
                    return  # the server stopped accepting: this client is done
                with self.lock:
                    self.statuses.append(response.status_code)
                    if response.status_code == 200:
                        self.acknowledged[marker] = response.json()["saved"]

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def stored_per_marker(db: DB) -> dict[str, int]:
    return {
        r["trace_id"]: r["n"] for r in db.fetch("SELECT trace_id, count(*) AS n FROM logs GROUP BY trace_id")
    }


def test_concurrent_clients_store_exactly_what_was_acknowledged(
    server: tuple[subprocess.Popen[bytes], str], db: DB
) -> None:
    _, url = server
    with Load(url, clients=8, batch_size=50, max_batches=15, max_seconds=60) as load:
        for thread in load.threads:
            thread.join(60)
    assert set(load.statuses) == {200}
    assert len(load.acknowledged) == 8 * 15
    assert stored_per_marker(db) == load.acknowledged


def test_sigterm_drains_in_flight_requests_and_exits_0(
    server: tuple[subprocess.Popen[bytes], str], db: DB
) -> None:
    process, url = server
    with Load(url, clients=6, batch_size=200, max_batches=10_000, max_seconds=60) as load:
        deadline = time.monotonic() + 30
        while len(load.acknowledged) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    assert len(load.acknowledged) >= 20
    stored = stored_per_marker(db)
    # Every acknowledged batch is there in full; nothing was stored that is not a whole batch.
    assert {m: stored.get(m) for m in load.acknowledged} == load.acknowledged
    assert all(count == 200 for count in stored.values())
    assert set(load.statuses) <= {200, 503}


def test_without_a_database_it_starts_and_stops_an_embedded_one(tmp_path: Path) -> None:
    process, url = start_server({"LOGSAVE_DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "INFO"}, tmp_path)
    try:
        response = httpx.post(
            url + "/logs", content=batch("embedded", 3), headers={"Content-Type": "application/json"}
        )
        assert response.json() == {"saved": 3, "status": "success"}
        assert httpx.get(url + "/stats").json()["total_logs"] == 3
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    pgdata = tmp_path / "data" / "pg"
    assert (pgdata / "PG_VERSION").exists()
    assert not (pgdata / "postmaster.pid").exists(), "the embedded PostgreSQL was left running"
    log_lines = [
        json.loads(line)
        for line in (tmp_path / "server.log").read_text().splitlines()
        if line.startswith("{")
    ]
    assert any(line["message"].startswith(f"database: embedded PostgreSQL in {pgdata}") for line in log_lines)
    assert any(
        line.get("path") == "/logs" and line.get("saved") == 3 and line.get("status") == 200
        for line in log_lines
    )
