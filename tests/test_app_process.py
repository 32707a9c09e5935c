"""`python -m app` as a real uvicorn process: concurrent clients, SIGTERM drain, embedded start-up."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.serverproc import Load, batch, start_server, stored_per_marker
from tests.support import DB


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
