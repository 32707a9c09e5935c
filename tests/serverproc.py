"""A real `python -m app` process for the tests, and load that checks what it acknowledged."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Self

import httpx

from tests.support import DB, log_entry

ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    env: dict[str, str], cwd: Path, port: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = port or free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "LOGSAVE_"))}
    env = {**base, "SERVER_HOST": "127.0.0.1", "SERVER_PORT": str(port), "PYTHONPATH": str(ROOT),
           "LOG_LEVEL": "WARNING", "DB_POOL_MIN_SIZE": "2", "DB_POOL_MAX_SIZE": "4",
           # One worker unless a test asks for more: what a test asserts of one process holds.
           "WEB_CONCURRENCY": "1", **env}  # fmt: skip
    # The server's log goes to a file: a pipe nobody reads would fill up and stall the server.
    log_file = open(cwd / "server.log", "ab")  # noqa: SIM115 - closed when the process is reaped
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


def batch(marker: str, size: int) -> bytes:
    return json.dumps(
        {"logs": [log_entry(trace_id=marker, message=f"{marker}/{i}") for i in range(size)]}
    ).encode()


class Load:
    """Clients that each send batches with unique markers until told to stop (bounded in count and time).

    With `idempotent`, each batch carries its marker as Idempotency-Key and a 429/503 or a broken
    connection is retried (up to `retries` times, waiting as Retry-After says, at most 1 s here), as a
    careful client would.
    """

    def __init__(
        self,
        url: str,
        clients: int,
        batch_size: int,
        max_batches: int,
        max_seconds: float,
        *,
        idempotent: bool = False,
        retries: int = 0,
    ) -> None:
        self.url, self.batch_size, self.max_batches, self.max_seconds = (
            url,
            batch_size,
            max_batches,
            max_seconds,
        )
        self.idempotent, self.retries = idempotent, retries
        self.acknowledged: dict[str, int] = {}
        self.statuses: list[int] = []
        self.retry_after: list[str] = []
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
                if not self._send(client, marker, deadline):
                    return

    def _send(self, client: httpx.Client, marker: str, deadline: float) -> bool:
        """One batch, retried as configured; False when this client should stop."""
        headers = {"Idempotency-Key": marker} if self.idempotent else {}
        for attempt in range(self.retries + 1):
            last = attempt == self.retries or time.monotonic() > deadline
            try:
                response = client.post("/logs", content=batch(marker, self.batch_size), headers=headers)
            except httpx.TransportError:
                if last:
                    return False  # the server stopped accepting: this client is done
                time.sleep(0.2)
                continue
            with self.lock:
                self.statuses.append(response.status_code)
                if response.status_code == 200:
                    self.acknowledged[marker] = response.json()["saved"]
                if "retry-after" in response.headers:
                    self.retry_after.append(response.headers["retry-after"])
            if response.status_code not in (429, 503) or last:
                return True
            time.sleep(min(float(response.headers.get("retry-after", 1)), 1.0))
        return True

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
